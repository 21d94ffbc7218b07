package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/georeg/georeg/base/oci"
)

// Action is what a request does to a repository, after ACR's repository
// permissions.
type Action string

// The repository actions a scope map may grant.
const (
	ContentRead   Action = "content/read"
	ContentWrite  Action = "content/write"
	ContentDelete Action = "content/delete"
	MetadataRead  Action = "metadata/read"
	MetadataWrite Action = "metadata/write"
)

// actions lists every action, in the order they are shown.
var actions = []Action{ContentDelete, ContentRead, ContentWrite, MetadataRead, MetadataWrite}

// Actions returns every action a scope map may grant.
func Actions() []Action { return slices.Clone(actions) }

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	a := Action(s)
	if slices.Contains(actions, a) {
		return a, nil
	}
	return "", fmt.Errorf("%w: unknown action %q (want one of %s)", ErrInvalid, s, joinActions(actions))
}

func joinActions(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// everyRepository is the pattern that matches every repository.
const everyRepository = "*"

// Limits after ACR's: per registry and per scope map.
const (
	MaxTokens          = 20000
	MaxScopeMaps       = 20000
	MaxRepositoryPerms = 500
	// MaxNameLength bounds token and scope map names.
	MaxNameLength = 50
	// MaxDescription bounds a scope map's description.
	MaxDescription = 256
)

// Errors callers branch on.
var (
	// ErrInvalid wraps every refusal of bad input.
	ErrInvalid = errors.New("invalid")
	// ErrLimit wraps a refusal that would pass one of the limits above.
	ErrLimit = errors.New("limit reached")
)

// Permission grants Actions on the repositories Pattern matches: one name,
// or every name under a prefix when it ends in "*" ("samples/*").
type Permission struct {
	Pattern string   `json:"repository"`
	Actions []Action `json:"actions"`
}

// ValidatePattern checks a repository pattern: a repository name, or a
// prefix of one followed by a single trailing "*".
func ValidatePattern(p string) error {
	prefix, wild := strings.CutSuffix(p, "*")
	if strings.Contains(prefix, "*") {
		return fmt.Errorf("%w: repository %q: a wildcard may only end the pattern (as in samples/*)", ErrInvalid, p)
	}
	if !wild {
		if err := oci.ValidateName(p); err != nil {
			return fmt.Errorf("%w: repository %q: %v", ErrInvalid, p, err)
		}
		return nil
	}
	if prefix == "" {
		return nil
	}
	// A prefix must be the start of a valid name: completed by one letter
	// ("samples/" becomes "samples/a", "sam" becomes "sama") it must pass
	// the name grammar.
	if err := oci.ValidateName(prefix + "a"); err != nil {
		return fmt.Errorf("%w: repository %q: %v", ErrInvalid, p, err)
	}
	return nil
}

// Matches reports whether pattern p covers repository name.
func Matches(p, name string) bool {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return p == name
}

// ScopeMap is a named set of repository permissions.
type ScopeMap struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Permissions []Permission `json:"repositories"`
	// BuiltIn marks the scope maps every registry has; they cannot be
	// changed or deleted.
	BuiltIn bool      `json:"builtIn,omitempty"`
	Created time.Time `json:"created"`
}

// Allows reports whether the scope map grants action on repository name.
func (m ScopeMap) Allows(name string, action Action) bool {
	for _, p := range m.Permissions {
		if Matches(p.Pattern, name) && slices.Contains(p.Actions, action) {
			return true
		}
	}
	return false
}

// Reads reports whether the scope map lets its holder see that repository
// name exists (any action on it), which is what _catalog lists.
func (m ScopeMap) Reads(name string) bool {
	for _, p := range m.Permissions {
		if Matches(p.Pattern, name) && len(p.Actions) > 0 {
			return true
		}
	}
	return false
}

// Validate checks a scope map as given by a user.
func (m ScopeMap) Validate() error {
	if err := ValidateName("scope map", m.Name); err != nil {
		return err
	}
	if len(m.Description) > MaxDescription {
		return fmt.Errorf("%w: description is %d bytes, at most %d", ErrInvalid, len(m.Description), MaxDescription)
	}
	if len(m.Permissions) == 0 {
		return fmt.Errorf("%w: scope map %q grants nothing: give at least one --repository REPO ACTION", ErrInvalid, m.Name)
	}
	if len(m.Permissions) > MaxRepositoryPerms {
		return fmt.Errorf("%w: scope map %q has %d repository permissions, at most %d per scope map", ErrLimit, m.Name, len(m.Permissions), MaxRepositoryPerms)
	}
	seen := make(map[string]bool, len(m.Permissions))
	for _, p := range m.Permissions {
		if err := ValidatePattern(p.Pattern); err != nil {
			return err
		}
		if seen[p.Pattern] {
			return fmt.Errorf("%w: repository %q is listed twice", ErrInvalid, p.Pattern)
		}
		seen[p.Pattern] = true
		if len(p.Actions) == 0 {
			return fmt.Errorf("%w: repository %q has no action", ErrInvalid, p.Pattern)
		}
		for _, a := range p.Actions {
			if _, err := ParseAction(string(a)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidateName checks a token or scope map name: ACR's grammar, 5 to 50
// letters, digits, dashes and underscores. Built-in names start with "_",
// which users cannot create.
func ValidateName(kind, name string) error {
	if len(name) < 5 || len(name) > MaxNameLength {
		return fmt.Errorf("%w: %s name %q: want 5 to %d characters", ErrInvalid, kind, name, MaxNameLength)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' && i > 0
		if !ok {
			return fmt.Errorf("%w: %s name %q: only letters, digits, '-' and '_' (not first)", ErrInvalid, kind, name)
		}
	}
	return nil
}

// The built-in scope maps, after ACR's.
const (
	PullScopeMap  = "_repositories_pull"
	PushScopeMap  = "_repositories_push"
	AdminScopeMap = "_repositories_admin"
)

// BuiltIns returns the scope maps every registry has.
func BuiltIns() []ScopeMap {
	all := func(as ...Action) []Permission { return []Permission{{Pattern: everyRepository, Actions: as}} }
	return []ScopeMap{
		{Name: PullScopeMap, Description: "Can pull any repository of the registry", BuiltIn: true,
			Permissions: all(ContentRead, MetadataRead)},
		{Name: PushScopeMap, Description: "Can push to any repository of the registry", BuiltIn: true,
			Permissions: all(ContentRead, ContentWrite, MetadataRead, MetadataWrite)},
		{Name: AdminScopeMap, Description: "Can perform all read, write and delete operations on the registry", BuiltIn: true,
			Permissions: all(ContentDelete, ContentRead, ContentWrite, MetadataRead, MetadataWrite)},
	}
}

// BuiltIn returns the built-in scope map called name.
func BuiltIn(name string) (ScopeMap, bool) {
	for _, m := range BuiltIns() {
		if m.Name == name {
			return m, true
		}
	}
	return ScopeMap{}, false
}

// AdminUser is the admin user's name.
const AdminUser = "admin"

// Status says whether a token may be used.
type Status string

// Token statuses.
const (
	Enabled  Status = "enabled"
	Disabled Status = "disabled"
)

// ParseStatus returns the status named s.
func ParseStatus(s string) (Status, error) {
	switch Status(s) {
	case Enabled, Disabled:
		return Status(s), nil
	}
	return "", fmt.Errorf("%w: status %q: want enabled or disabled", ErrInvalid, s)
}

// Password is one of a token's two passwords, kept only as a slow hash.
type Password struct {
	// Name is password1 or password2.
	Name string `json:"name"`
	// Hash is the bcrypt hash of the password.
	Hash    []byte    `json:"hash"`
	Created time.Time `json:"created"`
	// Expiry is when the password stops working; zero means never.
	Expiry time.Time `json:"expiry,omitzero"`
}

// Expired reports whether the password no longer works at now.
func (p Password) Expired(now time.Time) bool {
	return !p.Expiry.IsZero() && !now.Before(p.Expiry)
}

// Password names.
const (
	Password1 = "password1"
	Password2 = "password2"
)

// Token is a registry credential: a name (the user name clients log in
// with), the scope map it is limited to, and up to two passwords.
type Token struct {
	Name      string     `json:"name"`
	ScopeMap  string     `json:"scopeMap"`
	Status    Status     `json:"status"`
	Passwords []Password `json:"passwords,omitempty"`
	Created   time.Time  `json:"created"`
	// Version changes with every change of the token (status, scope map,
	// passwords): verification caches are keyed by it.
	Version uint64 `json:"version"`
}

// Usable reports why the token cannot be used at now, or nil.
func (t Token) Usable() error {
	if t.Status != Enabled {
		return fmt.Errorf("token %q is %s", t.Name, t.Status)
	}
	return nil
}

// Settings are the registry's access settings.
type Settings struct {
	// AuthEnabled turns authentication on; off, every request is allowed.
	AuthEnabled bool `json:"authEnabled"`
	// AdminEnabled lets the admin user (with its own password) log in.
	AdminEnabled bool `json:"adminEnabled"`
	// AnonymousPull lets clients without credentials pull (content/read and
	// metadata/read on every repository).
	AnonymousPull bool `json:"anonymousPullEnabled"`
}
