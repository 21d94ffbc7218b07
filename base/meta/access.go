package meta

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/georeg/georeg/base/access"
)

// The registry's access state (tokens, scope maps, settings, signing keys)
// is control-plane state: kept in the home region's Raft group, copied by
// every other region.
var (
	bucketScopeMaps    = []byte("access-scope-maps")
	bucketTokens       = []byte("access-tokens")
	bucketAccessConfig = []byte("access-config")
)

// Keys of bucketAccessConfig.
var (
	keyAccessSettings = []byte("settings")
	keyAccessAdmin    = []byte("admin")
	keyAccessKeys     = []byte("signing-keys")
	keyAccessVersion  = []byte("version")
)

// The access commands.
const (
	// OpPutScopeMap is the Op of PutScopeMap.
	OpPutScopeMap Op = "put-scope-map"
	// OpDeleteScopeMap is the Op of DeleteScopeMap.
	OpDeleteScopeMap Op = "delete-scope-map"
	// OpPutToken is the Op of PutToken.
	OpPutToken Op = "put-token"
	// OpDeleteToken is the Op of DeleteToken.
	OpDeleteToken Op = "delete-token"
	// OpPutAccessConfig is the Op of PutAccessConfig.
	OpPutAccessConfig Op = "put-access-config"
)

// Errors of the access commands.
var (
	// ErrAccessUnknown: the named token or scope map does not exist.
	ErrAccessUnknown = errors.New("not found")
	// ErrAccessConflict: the change contradicts the state (a name taken,
	// a scope map in use or missing).
	ErrAccessConflict = errors.New("conflict")
)

// PutScopeMap creates (Create: the name must be free, and the registry
// under access.MaxScopeMaps) or replaces (the name must exist) a scope map.
type PutScopeMap struct {
	ScopeMap access.ScopeMap `json:"scopeMap"`
	Create   bool            `json:"create,omitempty"`
}

// DeleteScopeMap deletes a scope map that no token uses.
type DeleteScopeMap struct {
	Name string `json:"name"`
}

// PutToken creates (Create: the name must be free, and the registry under
// access.MaxTokens) or replaces (the name must exist) a token; its scope
// map must exist. The stored token's Version is one more than the last.
type PutToken struct {
	Token  access.Token `json:"token"`
	Create bool         `json:"create,omitempty"`
}

// DeleteToken deletes a token.
type DeleteToken struct {
	Name string `json:"name"`
}

// PutAccessConfig sets the registry's access settings, admin user and
// signing keys; a nil or empty field keeps what is stored.
type PutAccessConfig struct {
	Settings *access.Settings    `json:"settings,omitempty"`
	Admin    *access.Token       `json:"admin,omitempty"`
	Keys     []access.SigningKey `json:"keys,omitempty"`
}

// Op implements Command.
func (PutScopeMap) Op() Op { return OpPutScopeMap }

// Op implements Command.
func (DeleteScopeMap) Op() Op { return OpDeleteScopeMap }

// Op implements Command.
func (PutToken) Op() Op { return OpPutToken }

// Op implements Command.
func (DeleteToken) Op() Op { return OpDeleteToken }

// Op implements Command.
func (PutAccessConfig) Op() Op { return OpPutAccessConfig }

func (c PutScopeMap) apply(tx *bolt.Tx) error {
	m := c.ScopeMap
	if err := m.Validate(); err != nil {
		return err
	}
	if _, ok := access.BuiltIn(m.Name); ok || m.BuiltIn {
		return fmt.Errorf("%w: scope map %q is built in", ErrAccessConflict, m.Name)
	}
	b, err := tx.CreateBucketIfNotExists(bucketScopeMaps)
	if err != nil {
		return err
	}
	exists := b.Get([]byte(m.Name)) != nil
	switch {
	case c.Create && exists:
		return fmt.Errorf("%w: scope map %q exists", ErrAccessConflict, m.Name)
	case !c.Create && !exists:
		return fmt.Errorf("%w: scope map %q", ErrAccessUnknown, m.Name)
	case c.Create && b.Stats().KeyN >= access.MaxScopeMaps:
		return fmt.Errorf("%w: the registry has %d scope maps, the most it may have", access.ErrLimit, access.MaxScopeMaps)
	}
	if err := putJSON(b, m.Name, m); err != nil {
		return err
	}
	return bumpAccessVersion(tx)
}

func (c DeleteScopeMap) apply(tx *bolt.Tx) error {
	b := tx.Bucket(bucketScopeMaps)
	if b == nil || b.Get([]byte(c.Name)) == nil {
		return fmt.Errorf("%w: scope map %q", ErrAccessUnknown, c.Name)
	}
	if tb := tx.Bucket(bucketTokens); tb != nil {
		var users []string
		err := tb.ForEach(func(k, v []byte) error {
			var t access.Token
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			if t.ScopeMap == c.Name {
				users = append(users, t.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("%w: scope map %q is used by token(s) %v: delete them or give them another scope map first", ErrAccessConflict, c.Name, users)
		}
	}
	if err := b.Delete([]byte(c.Name)); err != nil {
		return err
	}
	return bumpAccessVersion(tx)
}

func (c PutToken) apply(tx *bolt.Tx) error {
	t := c.Token
	if err := access.ValidateName("token", t.Name); err != nil {
		return err
	}
	if _, err := access.ParseStatus(string(t.Status)); err != nil {
		return err
	}
	if _, ok := access.BuiltIn(t.ScopeMap); !ok {
		sb := tx.Bucket(bucketScopeMaps)
		if sb == nil || sb.Get([]byte(t.ScopeMap)) == nil {
			return fmt.Errorf("%w: token %q: scope map %q does not exist", ErrAccessConflict, t.Name, t.ScopeMap)
		}
	}
	b, err := tx.CreateBucketIfNotExists(bucketTokens)
	if err != nil {
		return err
	}
	old := b.Get([]byte(t.Name))
	switch {
	case c.Create && old != nil:
		return fmt.Errorf("%w: token %q exists", ErrAccessConflict, t.Name)
	case !c.Create && old == nil:
		return fmt.Errorf("%w: token %q", ErrAccessUnknown, t.Name)
	case c.Create && b.Stats().KeyN >= access.MaxTokens:
		return fmt.Errorf("%w: the registry has %d tokens, the most it may have", access.ErrLimit, access.MaxTokens)
	}
	if old != nil {
		var prev access.Token
		if err := json.Unmarshal(old, &prev); err != nil {
			return err
		}
		t.Version = prev.Version + 1
		t.Created = prev.Created
	} else {
		t.Version = 1
	}
	if err := putJSON(b, t.Name, t); err != nil {
		return err
	}
	return bumpAccessVersion(tx)
}

func (c DeleteToken) apply(tx *bolt.Tx) error {
	b := tx.Bucket(bucketTokens)
	if b == nil || b.Get([]byte(c.Name)) == nil {
		return fmt.Errorf("%w: token %q", ErrAccessUnknown, c.Name)
	}
	users, err := connectedUsers(tx, c.Name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("%w: token %q is a sync or client token of connected registry(s) %v: update or delete them first", ErrAccessConflict, c.Name, users)
	}
	if err := b.Delete([]byte(c.Name)); err != nil {
		return err
	}
	return bumpAccessVersion(tx)
}

func (c PutAccessConfig) apply(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketAccessConfig)
	if err != nil {
		return err
	}
	if c.Settings != nil {
		if err := putJSON(b, string(keyAccessSettings), c.Settings); err != nil {
			return err
		}
	}
	if c.Admin != nil {
		admin := *c.Admin
		var prev access.Token
		if v := b.Get(keyAccessAdmin); v != nil && json.Unmarshal(v, &prev) == nil {
			admin.Version = prev.Version + 1
		}
		if err := putJSON(b, string(keyAccessAdmin), admin); err != nil {
			return err
		}
	}
	if len(c.Keys) > 0 {
		if err := putJSON(b, string(keyAccessKeys), c.Keys); err != nil {
			return err
		}
	}
	return bumpAccessVersion(tx)
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	enc, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), enc)
}

func bumpAccessVersion(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketAccessConfig)
	if err != nil {
		return err
	}
	return b.Put(keyAccessVersion, binary.BigEndian.AppendUint64(nil, accessVersion(tx)+1))
}

func accessVersion(tx *bolt.Tx) uint64 {
	b := tx.Bucket(bucketAccessConfig)
	if b == nil {
		return 0
	}
	v := b.Get(keyAccessVersion)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// AccessState is the registry's whole access state.
type AccessState struct {
	// Version grows with every change.
	Version   uint64
	Settings  access.Settings
	ScopeMaps []access.ScopeMap
	Tokens    []access.Token
	Keys      []access.SigningKey
	Admin     *access.Token
}

// AccessVersion returns the access state's version: it changes with every
// access command, so a copy is refreshed only when it moved.
func (r *Reader) AccessVersion() (uint64, error) {
	var v uint64
	err := r.db.View(func(tx *bolt.Tx) error {
		v = accessVersion(tx)
		return nil
	})
	return v, err
}

// AccessState returns the access state, scope maps and tokens sorted by
// name.
func (r *Reader) AccessState() (AccessState, error) {
	var st AccessState
	err := r.db.View(func(tx *bolt.Tx) error {
		st.Version = accessVersion(tx)
		if b := tx.Bucket(bucketAccessConfig); b != nil {
			if v := b.Get(keyAccessSettings); v != nil {
				if err := json.Unmarshal(v, &st.Settings); err != nil {
					return err
				}
			}
			if v := b.Get(keyAccessAdmin); v != nil {
				st.Admin = &access.Token{}
				if err := json.Unmarshal(v, st.Admin); err != nil {
					return err
				}
			}
			if v := b.Get(keyAccessKeys); v != nil {
				if err := json.Unmarshal(v, &st.Keys); err != nil {
					return err
				}
			}
		}
		if err := forEachJSON(tx, bucketScopeMaps, func(m access.ScopeMap) { st.ScopeMaps = append(st.ScopeMaps, m) }); err != nil {
			return err
		}
		return forEachJSON(tx, bucketTokens, func(t access.Token) { st.Tokens = append(st.Tokens, t) })
	})
	sort.Slice(st.ScopeMaps, func(i, j int) bool { return st.ScopeMaps[i].Name < st.ScopeMaps[j].Name })
	sort.Slice(st.Tokens, func(i, j int) bool { return st.Tokens[i].Name < st.Tokens[j].Name })
	return st, err
}

func forEachJSON[T any](tx *bolt.Tx, bucket []byte, fn func(T)) error {
	b := tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	return b.ForEach(func(_, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		fn(x)
		return nil
	})
}
