package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
)

// Connected registries are control-plane state (home region). Their sync
// tokens and scope maps are access state, written in the same transaction.
var bucketConnected = []byte("connected-registries")

// The connected registry commands.
const (
	// OpPutConnectedRegistry is the Op of PutConnectedRegistry.
	OpPutConnectedRegistry Op = "put-connected-registry"
	// OpDeleteConnectedRegistry is the Op of DeleteConnectedRegistry.
	OpDeleteConnectedRegistry Op = "delete-connected-registry"
	// OpSetConnectedActivation is the Op of SetConnectedActivation.
	OpSetConnectedActivation Op = "set-connected-activation"
	// OpSetConnectedStatus is the Op of SetConnectedStatus.
	OpSetConnectedStatus Op = "set-connected-status"
)

// Errors of the connected registry commands.
var (
	// ErrConnectedUnknown: no connected registry has that name.
	ErrConnectedUnknown = errors.New("connected registry not found")
	// ErrConnectedConflict: the change contradicts the state (a name
	// taken, children or an active instance in the way).
	ErrConnectedConflict = errors.New("connected registry conflict")
)

// PutConnectedRegistry creates (Create: the name must be free, and its
// sync token and sync scope map are created with it) or updates (the name
// must exist; parent, mode and sync token stay as they were, and the sync
// scope map follows the repositories) a connected registry. The parent
// must exist and the registry must fit it; client tokens must exist.
type PutConnectedRegistry struct {
	Registry connected.Registry `json:"registry"`
	Create   bool               `json:"create,omitempty"`
	// SyncToken is the sync token created with the registry (Create only).
	SyncToken *access.Token `json:"syncToken,omitempty"`
}

// DeleteConnectedRegistry deletes a connected registry with its sync token
// and scope map. One with children is refused; an Active one only with
// Force.
type DeleteConnectedRegistry struct {
	Name  string `json:"name"`
	Force bool   `json:"force,omitempty"`
}

// SetConnectedActivation activates a connected registry for Instance
// (refused while another instance holds it) or, with Activation Inactive,
// deactivates it.
type SetConnectedActivation struct {
	Name       string               `json:"name"`
	Activation connected.Activation `json:"activation"`
	Instance   string               `json:"instance,omitempty"`
	At         time.Time            `json:"at"`
}

// SetConnectedStatus records the status the active instance of a
// connected registry reported at Seen; a report from another instance is
// refused. The report's notifications newer than the registry's Notified
// are appended to the notices (for the region's webhooks) in the same
// transaction, so each is announced once however often it is sent.
type SetConnectedStatus struct {
	Name   string           `json:"name"`
	Status connected.Status `json:"status"`
	Seen   time.Time        `json:"seen"`
}

// Op implements Command.
func (SetConnectedStatus) Op() Op { return OpSetConnectedStatus }

func (c SetConnectedStatus) apply(tx *bolt.Tx) error {
	r, exists, err := getConnected(tx, c.Name)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %q", ErrConnectedUnknown, c.Name)
	}
	if r.Activation != connected.Active || r.Instance != c.Status.Instance {
		return fmt.Errorf("%w: connected registry %q: the status comes from instance %q, which is not the active one", ErrConnectedConflict, c.Name, c.Status.Instance)
	}
	for _, n := range c.Status.Notifications {
		if n.Seq <= r.Notified {
			continue
		}
		d, _ := digest.Parse(n.Digest)
		if err := notices.append(tx, Notice{Action: n.Action, Repo: n.Repo, Tag: n.Tag, Digest: d, MediaType: n.MediaType,
			Size: n.Size, Time: n.Time, Connected: r.Name}); err != nil {
			return err
		}
		r.Notified = n.Seq
	}
	r.Reported, r.Seen = c.Status, c.Seen
	r.Reported.Notifications = nil
	return putJSON(tx.Bucket(bucketConnected), r.Name, r)
}

// Op implements Command.
func (PutConnectedRegistry) Op() Op { return OpPutConnectedRegistry }

// Op implements Command.
func (DeleteConnectedRegistry) Op() Op { return OpDeleteConnectedRegistry }

// Op implements Command.
func (SetConnectedActivation) Op() Op { return OpSetConnectedActivation }

func getConnected(tx *bolt.Tx, name string) (connected.Registry, bool, error) {
	var r connected.Registry
	b := tx.Bucket(bucketConnected)
	if b == nil {
		return r, false, nil
	}
	v := b.Get([]byte(name))
	if v == nil {
		return r, false, nil
	}
	return r, true, json.Unmarshal(v, &r)
}

func allConnected(tx *bolt.Tx) ([]connected.Registry, error) {
	var out []connected.Registry
	err := forEachJSON(tx, bucketConnected, func(r connected.Registry) { out = append(out, r) })
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func (c PutConnectedRegistry) apply(tx *bolt.Tx) error {
	r := c.Registry
	if err := r.Validate(); err != nil {
		return err
	}
	old, exists, err := getConnected(tx, r.Name)
	if err != nil {
		return err
	}
	all, err := allConnected(tx)
	if err != nil {
		return err
	}
	switch {
	case c.Create && exists:
		return fmt.Errorf("%w: connected registry %q exists", ErrConnectedConflict, r.Name)
	case !c.Create && !exists:
		return fmt.Errorf("%w: %q", ErrConnectedUnknown, r.Name)
	case c.Create && len(all) >= connected.MaxRegistries:
		return fmt.Errorf("%w: the registry has %d connected registries, the most it may have", access.ErrLimit, connected.MaxRegistries)
	case c.Create && c.SyncToken == nil:
		return fmt.Errorf("%w: connected registry %q: no sync token", access.ErrInvalid, r.Name)
	}
	if exists {
		if r.Parent != old.Parent {
			return fmt.Errorf("%w: the parent of connected registry %q is %s; it cannot change (delete and create it again)", access.ErrInvalid, r.Name, parentName(old.Parent))
		}
		if r.Mode != old.Mode {
			return fmt.Errorf("%w: the mode of connected registry %q is %s; it cannot change (delete and create it again)", access.ErrInvalid, r.Name, old.Mode)
		}
		r.SyncToken, r.Activation, r.Instance, r.ActivatedAt, r.Created = old.SyncToken, old.Activation, old.Instance, old.ActivatedAt, old.Created
		r.Reported, r.Seen, r.Notified = old.Reported, old.Seen, old.Notified
	} else {
		r.SyncToken, r.Activation, r.Instance, r.ActivatedAt = c.SyncToken.Name, connected.Inactive, "", time.Time{}
	}
	byName := make(map[string]connected.Registry, len(all))
	for _, x := range all {
		byName[x.Name] = x
	}
	if r.Parent != "" {
		parent, ok := byName[r.Parent]
		if !ok {
			return fmt.Errorf("%w: connected registry %q: parent %q does not exist", access.ErrInvalid, r.Name, r.Parent)
		}
		if err := connected.FitsParent(r, parent); err != nil {
			return err
		}
		// The parent cannot change, so a new registry cannot close a
		// cycle; the walk bounds the depth and guards the state anyway.
		depth := 1
		for p := parent; p.Parent != ""; p = byName[p.Parent] {
			if p.Parent == r.Name || depth >= connected.MaxDepth {
				return fmt.Errorf("%w: connected registry %q: the chain of parents above it is a cycle or deeper than %d", connected.ErrParent, r.Name, connected.MaxDepth)
			}
			depth++
		}
	}
	for _, child := range all {
		if child.Parent == r.Name {
			if err := connected.FitsParent(child, r); err != nil {
				return fmt.Errorf("connected registry %q would no longer fit its child %q: %w", r.Name, child.Name, err)
			}
		}
	}
	tb := tx.Bucket(bucketTokens)
	for _, t := range r.ClientTokens {
		if tb == nil || tb.Get([]byte(t)) == nil {
			return fmt.Errorf("%w: connected registry %q: client token %q does not exist (create it first with georeg token create)", access.ErrInvalid, r.Name, t)
		}
		if t == r.SyncToken {
			return fmt.Errorf("%w: connected registry %q: its sync token cannot be a client token", access.ErrInvalid, r.Name)
		}
	}
	now := r.Created
	if !exists {
		now = c.SyncToken.Created
	}
	m := r.SyncScopeMap(now)
	if err := (PutScopeMap{ScopeMap: m, Create: !exists}).apply(tx); err != nil {
		return fmt.Errorf("connected registry %q: sync scope map: %w", r.Name, err)
	}
	if !exists {
		tok := *c.SyncToken
		tok.ScopeMap = m.Name
		if err := (PutToken{Token: tok, Create: true}).apply(tx); err != nil {
			return fmt.Errorf("connected registry %q: sync token: %w", r.Name, err)
		}
	}
	b, err := tx.CreateBucketIfNotExists(bucketConnected)
	if err != nil {
		return err
	}
	return putJSON(b, r.Name, r)
}

func parentName(p string) string {
	if p == "" {
		return "the cloud registry"
	}
	return p
}

func (c DeleteConnectedRegistry) apply(tx *bolt.Tx) error {
	r, exists, err := getConnected(tx, c.Name)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %q", ErrConnectedUnknown, c.Name)
	}
	all, err := allConnected(tx)
	if err != nil {
		return err
	}
	var children []string
	for _, x := range all {
		if x.Parent == r.Name {
			children = append(children, x.Name)
		}
	}
	if len(children) > 0 {
		return fmt.Errorf("%w: connected registry %q is the parent of %v: delete them first", ErrConnectedConflict, r.Name, children)
	}
	if r.Activation == connected.Active && !c.Force {
		return fmt.Errorf("%w: connected registry %q is Active (an instance runs with its sync token): deactivate it first, or delete with --force", ErrConnectedConflict, r.Name)
	}
	if err := tx.Bucket(bucketConnected).Delete([]byte(r.Name)); err != nil {
		return err
	}
	if tb := tx.Bucket(bucketTokens); tb != nil && tb.Get([]byte(r.SyncToken)) != nil {
		if err := tb.Delete([]byte(r.SyncToken)); err != nil {
			return err
		}
	}
	if sb := tx.Bucket(bucketScopeMaps); sb != nil {
		if err := sb.Delete([]byte(connected.SyncScopeMapName(r.Name))); err != nil {
			return err
		}
	}
	return bumpAccessVersion(tx)
}

func (c SetConnectedActivation) apply(tx *bolt.Tx) error {
	r, exists, err := getConnected(tx, c.Name)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %q", ErrConnectedUnknown, c.Name)
	}
	switch c.Activation {
	case connected.Active:
		if c.Instance == "" {
			return fmt.Errorf("%w: activating %q needs an instance", access.ErrInvalid, c.Name)
		}
		if r.Activation == connected.Active && r.Instance != c.Instance {
			return fmt.Errorf("%w: connected registry %q is already Active (another instance, since %s): run `georeg connected-registry deactivate --name %s` first", ErrConnectedConflict, r.Name, r.ActivatedAt.Format(time.RFC3339), r.Name)
		}
		if r.Instance != c.Instance {
			// A new instance numbers its notifications from its own log.
			r.Notified = 0
		}
		r.Activation, r.Instance, r.ActivatedAt = connected.Active, c.Instance, c.At
	case connected.Inactive:
		r.Activation, r.Instance, r.ActivatedAt = connected.Inactive, "", time.Time{}
		r.Reported, r.Seen, r.Notified = connected.Status{}, time.Time{}, 0
	default:
		return fmt.Errorf("%w: activation %q: want Active or Inactive", access.ErrInvalid, c.Activation)
	}
	return putJSON(tx.Bucket(bucketConnected), r.Name, r)
}

// connectedUsers returns the connected registries that use token name as
// their sync token or a client token.
func connectedUsers(tx *bolt.Tx, name string) ([]string, error) {
	all, err := allConnected(tx)
	var users []string
	for _, r := range all {
		if r.SyncToken == name || slices.Contains(r.ClientTokens, name) {
			users = append(users, r.Name)
		}
	}
	return users, err
}

// ConnectedRegistries returns every connected registry, sorted by name.
func (r *Reader) ConnectedRegistries() ([]connected.Registry, error) {
	var out []connected.Registry
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = allConnected(tx)
		return err
	})
	return out, err
}
