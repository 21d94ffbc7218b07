package connected

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func valid() Registry {
	return Registry{Name: "factory1", Mode: ReadOnly, Repositories: []string{"samples/*", "hello-world"}, LogLevel: "Information", SyncToken: SyncTokenName("factory1")}
}

func TestValidate(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	cases := []struct {
		name string
		edit func(r *Registry)
		want error // nil: valid
		says string
	}{
		{"valid", func(*Registry) {}, nil, ""},
		{"read write", func(r *Registry) { r.Mode = ReadWrite }, nil, ""},
		{"name too short", func(r *Registry) { r.Name = "fac" }, ErrInvalid, "5 to 40"},
		{"name too long", func(r *Registry) { r.Name = strings.Repeat("a", 41) }, ErrInvalid, "5 to 40"},
		{"name with dash", func(r *Registry) { r.Name = "fact-ory" }, ErrInvalid, "only letters and digits"},
		{"own parent", func(r *Registry) { r.Parent = r.Name }, ErrParent, "its own parent"},
		{"bad parent name", func(r *Registry) { r.Parent = "p" }, ErrInvalid, "parent"},
		{"mode", func(r *Registry) { r.Mode = "WriteOnly" }, ErrInvalid, "ReadOnly or ReadWrite"},
		{"empty mode", func(r *Registry) { r.Mode = "" }, ErrInvalid, "ReadOnly or ReadWrite"},
		{"no repository", func(r *Registry) { r.Repositories = nil }, ErrInvalid, "at least one --repository"},
		{"wildcard inside", func(r *Registry) { r.Repositories = []string{"de*mo"} }, ErrInvalid, "wildcard"},
		{"name grammar", func(r *Registry) { r.Repositories = []string{"Bad/Name"} }, ErrInvalid, "Bad/Name"},
		{"repository twice", func(r *Registry) { r.Repositories = []string{"a/b", "a/b"} }, ErrInvalid, "twice"},
		{"too many repositories", func(r *Registry) {
			r.Repositories = many(MaxRepositories+1, func(i int) string { return fmt.Sprintf("r%d", i) })
		}, ErrLimit, "at most 500"},
		{"20 client tokens", func(r *Registry) {
			r.ClientTokens = many(MaxClientTokens, func(i int) string { return fmt.Sprintf("client%02d", i) })
		}, nil, ""},
		{"21 client tokens", func(r *Registry) {
			r.ClientTokens = many(MaxClientTokens+1, func(i int) string { return fmt.Sprintf("client%02d", i) })
		}, ErrLimit, "at most 20"},
		{"client token twice", func(r *Registry) { r.ClientTokens = []string{"client1", "client1"} }, ErrInvalid, "twice"},
		{"client token name", func(r *Registry) { r.ClientTokens = []string{"c"} }, ErrInvalid, "client token"},
		{"log level", func(r *Registry) { r.LogLevel = "Verbose" }, ErrInvalid, "log level"},
		{"notification", func(r *Registry) { r.Notifications = []string{"hello-world:*:push", "*:*:*", "a/b@sha256:1:delete"} }, nil, ""},
		{"notification action", func(r *Registry) { r.Notifications = []string{"hello-world:*:pull"} }, ErrInvalid, "push, delete or *"},
		{"notification shape", func(r *Registry) { r.Notifications = []string{"hello-world"} }, ErrInvalid, "REPOSITORY:TAG:ACTION"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := valid()
			tc.edit(&r)
			err := r.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Validate = %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ReadOnly, "readonly": ReadOnly, "ReadOnly": ReadOnly, "ReadWrite": ReadWrite, "READWRITE": ReadWrite} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("mirror"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseMode(mirror) = %v, want ErrInvalid", err)
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		p, c string
		want bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/*", "a/b", true},
		{"a/*", "a/b/*", true},
		{"a/*", "a/*", true},
		{"a/*", "ab", false},
		{"a*", "ab/c", true},
		{"*", "x/y", true},
		{"*", "x/*", true},
		{"a/b", "a/*", false},
		{"a/b/*", "a/*", false},
	}
	for _, tc := range cases {
		if got := Covers(tc.p, tc.c); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.p, tc.c, got, tc.want)
		}
	}
}

func TestFitsParent(t *testing.T) {
	parent := Registry{Name: "parent1", Mode: ReadWrite, Repositories: []string{"samples/*", "hello"}}
	ro := parent
	ro.Mode = ReadOnly
	cases := []struct {
		name   string
		parent Registry
		child  Registry
		ok     bool
	}{
		{"ro under rw", parent, Registry{Mode: ReadOnly, Repositories: []string{"samples/a", "hello"}}, true},
		{"rw under rw", parent, Registry{Mode: ReadWrite, Repositories: []string{"samples/*"}}, true},
		{"ro under ro", ro, Registry{Mode: ReadOnly, Repositories: []string{"samples/x/*"}}, true},
		{"rw under ro", ro, Registry{Mode: ReadWrite, Repositories: []string{"hello"}}, false},
		{"outside", parent, Registry{Mode: ReadOnly, Repositories: []string{"other/x"}}, false},
		{"wider wildcard", parent, Registry{Mode: ReadOnly, Repositories: []string{"*"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := FitsParent(tc.child, tc.parent)
			if tc.ok != (err == nil) {
				t.Fatalf("FitsParent = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrParent) {
				t.Fatalf("FitsParent = %v, want ErrParent", err)
			}
		})
	}
}

func TestSyncScopeMap(t *testing.T) {
	r := valid()
	m := r.SyncScopeMap(r.Created)
	if err := m.Validate(); err != nil {
		t.Fatalf("the sync scope map does not validate: %v", err)
	}
	if !m.Allows("samples/a", "content/read") || m.Allows("samples/a", "content/write") || m.Allows("other", "content/read") {
		t.Errorf("ReadOnly sync scope map: %+v", m)
	}
	r.Mode = ReadWrite
	if m := r.SyncScopeMap(r.Created); !m.Allows("hello-world", "content/write") || m.Allows("hello-world", "content/delete") {
		t.Errorf("ReadWrite sync scope map: %+v", m)
	}
}

func TestConnectionState(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	active := Registry{Activation: Active, Reported: Status{State: Syncing}, Seen: now.Add(-5 * time.Second)}
	cases := []struct {
		name string
		r    Registry
		want string
	}{
		{"reported lately", active, Syncing},
		{"silent too long", func() Registry { r := active; r.Seen = now.Add(-OfflineAfter - time.Second); return r }(), Offline},
		{"never reported", Registry{Activation: Active}, Offline},
		{"inactive", Registry{Activation: Inactive, Reported: Status{State: Online}, Seen: now}, Offline},
	}
	for _, tc := range cases {
		if got := tc.r.ConnectionState(now); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestNotifies(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		pattern, action, repo, tag, dgst string
		want                             bool
	}{
		{"hello-world:*:push", "push", "hello-world", "v1", d, true},
		{"hello-world:*:push", "delete", "hello-world", "v1", d, false},
		{"hello-world:*:push", "push", "hello-world", "", d, true},
		{"hello-world:*:push", "push", "other", "v1", d, false},
		{"hello-world:v1:*", "delete", "hello-world", "v1", d, true},
		{"hello-world:v1:*", "push", "hello-world", "v2", d, false},
		{"hello-world:v1:*", "push", "hello-world", "", d, false},
		{"samples/*:*:*", "push", "samples/app", "v1", d, true},
		{"samples/*:*:*", "push", "sample", "v1", d, false},
		{"*:*:*", "delete", "x/y", "", d, true},
		{"samples/app:push", "push", "samples/app", "v9", d, true},
		{"samples/app@" + d + ":delete", "delete", "samples/app", "", d, true},
		{"samples/app@" + d + ":delete", "delete", "samples/app", "", "sha256:" + strings.Repeat("f", 64), false},
	}
	for _, tc := range cases {
		if err := ValidateNotification(tc.pattern); err != nil {
			t.Fatalf("pattern %q: %v", tc.pattern, err)
		}
		r := Registry{Notifications: []string{tc.pattern}}
		if got := r.Notifies(tc.action, tc.repo, tc.tag, tc.dgst); got != tc.want {
			t.Errorf("%q notifies %s %s:%s@%s = %v, want %v", tc.pattern, tc.action, tc.repo, tc.tag, tc.dgst, got, tc.want)
		}
	}
	if (Registry{}).Notifies("push", "a", "v1", d) {
		t.Error("a registry without patterns notifies")
	}
}

func TestRelays(t *testing.T) {
	// cloud ← factory1 ← line1 ← cell1; factory1 ← line2; loop1 ↔ loop2.
	parents := map[string]string{"factory1": "", "line1": "factory1", "line2": "factory1", "cell1": "line1", "loop1": "loop2", "loop2": "loop1"}
	parent := func(name string) (string, bool) { p, ok := parents[name]; return p, ok }
	cases := []struct {
		via, name string
		want      bool
	}{
		{"line1", "line1", true},
		{"factory1", "line1", true},
		{"factory1", "cell1", true},
		{"line1", "cell1", true},
		{"line2", "cell1", false}, // a sibling's child
		{"cell1", "line1", false}, // a child for its parent
		{"line1", "factory1", false},
		{"factory1", "unknown", false},
		{"other", "factory1", false},
		{"loop3", "loop1", false}, // a cycle ends
	}
	for _, c := range cases {
		if got := Relays(parent, c.via, c.name); got != c.want {
			t.Errorf("Relays(via %s, %s) = %v, want %v", c.via, c.name, got, c.want)
		}
	}
}
