package connected

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/georeg/georeg/base/access"
)

// Mode says what local clients of a connected registry may do.
type Mode string

// The modes, after ACR's.
const (
	// ReadOnly: clients only pull; the default.
	ReadOnly Mode = "ReadOnly"
	// ReadWrite: clients also push, and pushes sync up to the parent.
	ReadWrite Mode = "ReadWrite"
)

// ParseMode returns the mode named s (case-insensitive); "" is ReadOnly.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "readonly":
		return ReadOnly, nil
	case "readwrite":
		return ReadWrite, nil
	}
	return "", fmt.Errorf("%w: mode %q: want ReadOnly or ReadWrite", ErrInvalid, s)
}

// Activation says whether an instance runs with the connected registry's
// sync token.
type Activation string

// The activation states.
const (
	// Inactive: no instance has connected since creation or the last
	// deactivate.
	Inactive Activation = "Inactive"
	// Active: an instance connected with the sync token; a second one is
	// refused until deactivate.
	Active Activation = "Active"
)

// Limits, after ACR's.
const (
	// MaxClientTokens bounds the client tokens of one connected registry.
	MaxClientTokens = 20
	// MaxRegistries bounds the connected registries of a registry.
	MaxRegistries = 50
	// MaxRepositories bounds the repository patterns of one.
	MaxRepositories = access.MaxRepositoryPerms
	// MaxNotifications bounds the notification patterns of one.
	MaxNotifications = 12
	// MaxDepth bounds the nesting below the cloud registry.
	MaxDepth = 10
)

// Errors callers branch on. ErrInvalid and ErrLimit are access's, so a
// caller maps both packages' refusals the same way.
var (
	// ErrInvalid wraps every refusal of bad input.
	ErrInvalid = access.ErrInvalid
	// ErrLimit wraps a refusal that would pass one of the limits above.
	ErrLimit = access.ErrLimit
	// ErrParent: the definition does not fit its parent (mode, repositories,
	// a cycle).
	ErrParent = errors.New("does not fit its parent")
)

// Log levels a connected registry may be given.
var logLevels = []string{"Debug", "Information", "Warning", "Error", "None"}

// Registry is a connected registry's definition and activation state.
type Registry struct {
	Name string `json:"name"`
	// Parent is the parent connected registry's name; "" is the cloud
	// registry (its home region).
	Parent string `json:"parent,omitempty"`
	Mode   Mode   `json:"mode"`
	// Repositories are the repository patterns it syncs (names and
	// trailing wildcards, as in scope maps).
	Repositories []string `json:"repositories"`
	// ClientTokens are the registry tokens its local clients may use.
	ClientTokens []string `json:"clientTokens,omitempty"`
	// SyncToken is the token it authenticates to its parent with, created
	// with it.
	SyncToken string `json:"syncToken"`
	// SyncSchedule (a cron expression, UTC) and SyncWindow (ISO 8601,
	// PT1H to P7D) make the registry sync only in windows that open at
	// each time of the schedule; both empty is continuous sync.
	SyncSchedule string `json:"syncSchedule,omitempty"`
	SyncWindow   string `json:"syncWindow,omitempty"`
	// SyncMessageTTL (ISO 8601, P1D to P90D; "" is P2D) is how long its
	// parent keeps the events meant for it.
	SyncMessageTTL string     `json:"syncMessageTtl,omitempty"`
	LogLevel       string     `json:"logLevel"`
	Notifications  []string   `json:"notifications,omitempty"`
	Activation     Activation `json:"activation"`
	// Instance identifies the instance that activated it.
	Instance    string    `json:"instance,omitempty"`
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
	Created     time.Time `json:"created"`
	// Reported is the last status the active instance reported, and Seen
	// when the cloud recorded one last.
	Reported Status    `json:"reported,omitzero"`
	Seen     time.Time `json:"seen,omitzero"`
	// Notified is the Seq of the last notification of the active
	// instance that the cloud announced (each is announced once).
	Notified uint64 `json:"notified,omitempty"`
}

// ConnectionState is how the cloud shows r at now: Offline when it has
// not reported for OfflineAfter (or never), else the state it reported.
func (r Registry) ConnectionState(now time.Time) string {
	if r.Activation != Active || r.Seen.IsZero() || now.Sub(r.Seen) > OfflineAfter || r.Reported.State == "" {
		return Offline
	}
	return r.Reported.State
}

// SyncTokenName is the name of the sync token created with the connected
// registry called name (ACR's convention).
func SyncTokenName(name string) string { return name + "-sync-token" }

// SyncScopeMapName is the name of the scope map of that sync token.
func SyncScopeMapName(name string) string { return name + "-sync-scope-map" }

// ValidateName checks a connected registry name: ACR's grammar, 5 to 40
// letters and digits (it becomes part of token and scope map names).
func ValidateName(name string) error {
	if len(name) < 5 || len(name) > 40 {
		return fmt.Errorf("%w: connected registry name %q: want 5 to 40 characters", ErrInvalid, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("%w: connected registry name %q: only letters and digits", ErrInvalid, name)
		}
	}
	return nil
}

// Validate checks the definition on its own, as a user gave it.
func (r Registry) Validate() error {
	if err := ValidateName(r.Name); err != nil {
		return err
	}
	if r.Parent == r.Name {
		return fmt.Errorf("%w: connected registry %q cannot be its own parent", ErrParent, r.Name)
	}
	if r.Parent != "" {
		if err := ValidateName(r.Parent); err != nil {
			return fmt.Errorf("parent: %w", err)
		}
	}
	if _, err := ParseMode(string(r.Mode)); err != nil || r.Mode == "" {
		return fmt.Errorf("%w: mode %q: want ReadOnly or ReadWrite", ErrInvalid, r.Mode)
	}
	if len(r.Repositories) == 0 {
		return fmt.Errorf("%w: connected registry %q syncs no repository: give at least one --repository", ErrInvalid, r.Name)
	}
	if len(r.Repositories) > MaxRepositories {
		return fmt.Errorf("%w: %d repositories, at most %d per connected registry", ErrLimit, len(r.Repositories), MaxRepositories)
	}
	if err := validatePatterns("repository", r.Repositories); err != nil {
		return err
	}
	if len(r.ClientTokens) > MaxClientTokens {
		return fmt.Errorf("%w: %d client tokens, at most %d per connected registry", ErrLimit, len(r.ClientTokens), MaxClientTokens)
	}
	seen := map[string]bool{}
	for _, t := range r.ClientTokens {
		if err := access.ValidateName("client token", t); err != nil {
			return err
		}
		if seen[t] {
			return fmt.Errorf("%w: client token %q is listed twice", ErrInvalid, t)
		}
		seen[t] = true
	}
	if !slices.Contains(logLevels, r.LogLevel) {
		return fmt.Errorf("%w: log level %q: want one of %s", ErrInvalid, r.LogLevel, strings.Join(logLevels, ", "))
	}
	if _, err := ParseSchedule(r.SyncSchedule, r.SyncWindow); err != nil {
		return err
	}
	if _, err := ParseMessageTTL(r.SyncMessageTTL); err != nil {
		return err
	}
	if len(r.Notifications) > MaxNotifications {
		return fmt.Errorf("%w: %d notification patterns, at most %d", ErrLimit, len(r.Notifications), MaxNotifications)
	}
	for _, n := range r.Notifications {
		if err := ValidateNotification(n); err != nil {
			return err
		}
	}
	return nil
}

func validatePatterns(kind string, ps []string) error {
	seen := map[string]bool{}
	for _, p := range ps {
		if err := access.ValidatePattern(p); err != nil {
			return err
		}
		if seen[p] {
			return fmt.Errorf("%w: %s %q is listed twice", ErrInvalid, kind, p)
		}
		seen[p] = true
	}
	return nil
}

// ValidateNotification checks a notification pattern, after ACR's
// `--notifications`: REPOSITORY[:TAG|@DIGEST]:ACTIONS, where the repository
// and tag may be "*" and ACTIONS is push, delete or * ("hello-world:*:push",
// "*:*:*").
func ValidateNotification(n string) error {
	parts := strings.Split(n, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("%w: notification %q: want REPOSITORY:TAG:ACTION (as in hello-world:*:push or *:*:*)", ErrInvalid, n)
	}
	repo, action := parts[0], parts[len(parts)-1]
	if repo != "*" {
		if r, _, ok := strings.Cut(repo, "@"); ok {
			repo = r
		}
		if err := access.ValidatePattern(repo); err != nil {
			return fmt.Errorf("notification %q: %w", n, err)
		}
	}
	switch action {
	case "push", "delete", "*":
	default:
		return fmt.Errorf("%w: notification %q: action %q: want push, delete or *", ErrInvalid, n, action)
	}
	return nil
}

// Notifies reports whether r's notification patterns cover an event at
// its site: action ("push" or "delete") on repo, with tag and digest as
// the event names them (either may be empty).
func (r Registry) Notifies(action, repo, tag, dgst string) bool {
	return slices.ContainsFunc(r.Notifications, func(p string) bool { return notificationMatches(p, action, repo, tag, dgst) })
}

// notificationMatches matches one pattern of ValidateNotification's
// grammar: the repository is a scope-map pattern or "*", the tag a tag or
// "*" (which also covers events without a tag), REPOSITORY@DIGEST names
// one manifest.
func notificationMatches(p, action, repo, tag, dgst string) bool {
	parts := strings.Split(p, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	repoPat, act := parts[0], parts[len(parts)-1]
	if act != "*" && act != action {
		return false
	}
	ref := "*"
	if len(parts) == 3 {
		ref = parts[1]
	}
	if r, alg, ok := strings.Cut(repoPat, "@"); ok {
		if len(parts) != 3 || dgst != alg+":"+parts[1] {
			return false
		}
		repoPat, ref = r, "*"
	}
	if repoPat != "*" && !access.Matches(repoPat, repo) {
		return false
	}
	return ref == "*" || ref == tag
}

// Covers reports whether pattern p covers every repository pattern c
// covers: c is p, c names a repository p matches, or both are wildcards
// and c's prefix starts with p's.
func Covers(p, c string) bool {
	if p == c {
		return true
	}
	pp, pWild := strings.CutSuffix(p, "*")
	if !pWild {
		return false
	}
	cp, _ := strings.CutSuffix(c, "*")
	return strings.HasPrefix(cp, pp)
}

// FitsParent checks a child's definition against its parent's: a ReadWrite
// child needs a ReadWrite parent, and every repository the child syncs must
// be one its parent syncs.
func FitsParent(child, parent Registry) error {
	if child.Mode == ReadWrite && parent.Mode != ReadWrite {
		return fmt.Errorf("%w: a ReadWrite connected registry needs a ReadWrite parent; %q is %s", ErrParent, parent.Name, parent.Mode)
	}
	for _, c := range child.Repositories {
		if !slices.ContainsFunc(parent.Repositories, func(p string) bool { return Covers(p, c) }) {
			return fmt.Errorf("%w: repository %q is outside its parent %q's repositories %v", ErrParent, c, parent.Name, parent.Repositories)
		}
	}
	return nil
}

// Syncs reports whether r syncs repository name.
func (r Registry) Syncs(name string) bool {
	return slices.ContainsFunc(r.Repositories, func(p string) bool { return access.Matches(p, name) })
}

// SyncScopeMap returns the scope map of r's sync token: reading its
// repositories, and for a ReadWrite registry writing them too (its local
// pushes sync up through it).
func (r Registry) SyncScopeMap(now time.Time) access.ScopeMap {
	acts := []access.Action{access.ContentRead, access.MetadataRead}
	if r.Mode == ReadWrite {
		acts = append(acts, access.ContentWrite, access.MetadataWrite)
	}
	m := access.ScopeMap{
		Name:        SyncScopeMapName(r.Name),
		Description: fmt.Sprintf("sync token scope map of connected registry %s", r.Name),
		Created:     now,
	}
	for _, p := range r.Repositories {
		m.Permissions = append(m.Permissions, access.Permission{Pattern: p, Actions: slices.Clone(acts)})
	}
	return m
}

// Relays reports whether connected registry via may make the activation
// and status calls of connected registry name: via is name itself or one
// of its ancestors, following parent (which returns a registry's parent,
// "" for the cloud, and false for a registry it does not know). A nested
// registry relays its children's calls to its own parent with its own
// sync token, so each level authenticates to its parent only.
func Relays(parent func(name string) (string, bool), via, name string) bool {
	for range MaxDepth + 1 {
		if name == via {
			return true
		}
		p, ok := parent(name)
		if !ok || p == "" {
			return false
		}
		name = p
	}
	return false
}
