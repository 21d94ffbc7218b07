package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
)

func TestConnectedCommands(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	reg := func(name, parent string, mode connected.Mode, repos ...string) connected.Registry {
		return connected.Registry{Name: name, Parent: parent, Mode: mode, Repositories: repos, LogLevel: "Information", Created: now}
	}
	sync := func(name string) *access.Token {
		return &access.Token{Name: connected.SyncTokenName(name), Status: access.Enabled, Created: now}
	}
	create := func(r connected.Registry) PutConnectedRegistry {
		return PutConnectedRegistry{Registry: r, Create: true, SyncToken: sync(r.Name)}
	}
	withTokens := func(r connected.Registry, ts ...string) connected.Registry { r.ClientTokens = ts; return r }
	cloud := reg("factory1", "", connected.ReadWrite, "samples/*", "hello")
	steps := []struct {
		name string
		cmd  Command
		want error
	}{
		{"create", create(cloud), nil},
		{"create it again", create(cloud), ErrConnectedConflict},
		{"unknown parent", create(reg("child1", "nothere", connected.ReadOnly, "hello")), access.ErrInvalid},
		{"outside the parent", create(reg("child1", "factory1", connected.ReadOnly, "other/x")), connected.ErrParent},
		{"child under parent", create(reg("child1", "factory1", connected.ReadOnly, "samples/a")), nil},
		{"rw under ro", create(reg("child2", "child1", connected.ReadWrite, "samples/a")), connected.ErrParent},
		{"ro under ro", create(reg("child2", "child1", connected.ReadOnly, "samples/a")), nil},
		{"missing client token", PutConnectedRegistry{Registry: withTokens(cloud, "nothere")}, access.ErrInvalid},
		{"client token", PutToken{Token: access.Token{Name: "client1", ScopeMap: access.PullScopeMap, Status: access.Enabled}, Create: true}, nil},
		{"update with a client token", PutConnectedRegistry{Registry: withTokens(cloud, "client1")}, nil},
		{"delete a client token in use", DeleteToken{Name: "client1"}, ErrAccessConflict},
		{"delete a sync token", DeleteToken{Name: connected.SyncTokenName("factory1")}, ErrAccessConflict},
		{"parent no longer covers child", PutConnectedRegistry{Registry: reg("factory1", "", connected.ReadWrite, "hello")}, connected.ErrParent},
		{"mode cannot change", PutConnectedRegistry{Registry: reg("factory1", "", connected.ReadOnly, "samples/*", "hello")}, access.ErrInvalid},
		{"parent cannot change", PutConnectedRegistry{Registry: reg("child2", "factory1", connected.ReadOnly, "samples/a")}, access.ErrInvalid},
		{"update missing", PutConnectedRegistry{Registry: reg("nothere", "", connected.ReadOnly, "hello")}, ErrConnectedUnknown},
		{"delete a parent", DeleteConnectedRegistry{Name: "child1"}, ErrConnectedConflict},
		{"activate", SetConnectedActivation{Name: "child2", Activation: connected.Active, Instance: "i-1", At: now}, nil},
		{"activate again, same instance", SetConnectedActivation{Name: "child2", Activation: connected.Active, Instance: "i-1", At: now}, nil},
		{"a second instance", SetConnectedActivation{Name: "child2", Activation: connected.Active, Instance: "i-2", At: now}, ErrConnectedConflict},
		{"status", SetConnectedStatus{Name: "child2", Status: connected.Status{Instance: "i-1", State: connected.Online}, Seen: now}, nil},
		{"status of another instance", SetConnectedStatus{Name: "child2", Status: connected.Status{Instance: "i-2", State: connected.Online}, Seen: now}, ErrConnectedConflict},
		{"delete active", DeleteConnectedRegistry{Name: "child2"}, ErrConnectedConflict},
		{"deactivate", SetConnectedActivation{Name: "child2", Activation: connected.Inactive}, nil},
		{"second instance after deactivate", SetConnectedActivation{Name: "child2", Activation: connected.Active, Instance: "i-2", At: now}, nil},
		{"delete active with force", DeleteConnectedRegistry{Name: "child2", Force: true}, nil},
		{"delete child1", DeleteConnectedRegistry{Name: "child1"}, nil},
		{"delete it again", DeleteConnectedRegistry{Name: "child1"}, ErrConnectedUnknown},
	}
	for _, st := range steps {
		err := s.Apply(ctx, st.cmd)
		if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
			t.Fatalf("%s: Apply = %v, want %v", st.name, err, st.want)
		}
	}
	all, err := s.ConnectedRegistries()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Name != "factory1" || all[0].SyncToken != "factory1-sync-token" || len(all[0].ClientTokens) != 1 || all[0].Activation != connected.Inactive {
		t.Fatalf("connected registries: %+v", all)
	}
	st, err := s.AccessState()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tok := range st.Tokens {
		names = append(names, tok.Name+"/"+tok.ScopeMap)
	}
	// The deleted registries took their sync tokens and scope maps along;
	// factory1's sync token reads and writes its repositories.
	if len(st.Tokens) != 2 || len(st.ScopeMaps) != 1 {
		t.Fatalf("tokens %v, scope maps %+v", names, st.ScopeMaps)
	}
	if m := st.ScopeMaps[0]; m.Name != "factory1-sync-scope-map" || !m.Allows("samples/x", access.ContentWrite) || m.Allows("other", access.ContentRead) {
		t.Fatalf("sync scope map %+v", m)
	}
}

func TestConnectedUpdateFollowsRepositories(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	r := connected.Registry{Name: "shop0001", Mode: connected.ReadOnly, Repositories: []string{"a"}, LogLevel: "Information"}
	if err := s.Apply(ctx, PutConnectedRegistry{Registry: r, Create: true, SyncToken: &access.Token{Name: connected.SyncTokenName(r.Name), Status: access.Enabled}}); err != nil {
		t.Fatal(err)
	}
	r.Repositories = []string{"b/*"}
	if err := s.Apply(ctx, PutConnectedRegistry{Registry: r}); err != nil {
		t.Fatal(err)
	}
	st, err := s.AccessState()
	if err != nil {
		t.Fatal(err)
	}
	if m := st.ScopeMaps[0]; m.Allows("a", access.ContentRead) || !m.Allows("b/c", access.ContentRead) {
		t.Fatalf("the sync scope map does not follow the repositories: %+v", m)
	}
}

// TestConnectedNotifications: a status report's notifications become
// notices of the region once each, however often the report is sent, and
// a new instance numbers its own.
func TestConnectedNotifications(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now().UTC()
	r := connected.Registry{Name: "shop0001", Mode: connected.ReadOnly, Repositories: []string{"a/*"}, LogLevel: "Information", Notifications: []string{"*:*:*"}}
	steps := []Command{
		PutConnectedRegistry{Registry: r, Create: true, SyncToken: &access.Token{Name: connected.SyncTokenName(r.Name), Status: access.Enabled}},
		SetConnectedActivation{Name: r.Name, Activation: connected.Active, Instance: "i-1", At: now},
	}
	for _, c := range steps {
		if err := s.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	d := "sha256:" + strings.Repeat("a", 64)
	report := func(instance string, seqs ...uint64) {
		t.Helper()
		st := connected.Status{Instance: instance, State: connected.Online}
		for _, q := range seqs {
			st.Notifications = append(st.Notifications, connected.Notification{Seq: q, Action: "push", Repo: "a/b", Tag: fmt.Sprint("v", q), Digest: d, Time: now})
		}
		if err := s.Apply(ctx, SetConnectedStatus{Name: r.Name, Status: st, Seen: now}); err != nil {
			t.Fatal(err)
		}
	}
	tags := func() []string {
		ns, err := s.NoticesAfter(0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range ns {
			if n.Connected != r.Name {
				t.Fatalf("notice %+v does not name the connected registry", n)
			}
			out = append(out, n.Tag)
		}
		return out
	}
	report("i-1", 1, 2)
	report("i-1", 1, 2, 3) // sent again, with one more
	report("i-1")
	if got := fmt.Sprint(tags()); got != "[v1 v2 v3]" {
		t.Fatalf("notices %s, want [v1 v2 v3]", got)
	}
	all, _ := s.ConnectedRegistries()
	if all[0].Notified != 3 || len(all[0].Reported.Notifications) != 0 {
		t.Fatalf("recorded %+v", all[0])
	}
	for _, c := range []Command{
		SetConnectedActivation{Name: r.Name, Activation: connected.Inactive},
		SetConnectedActivation{Name: r.Name, Activation: connected.Active, Instance: "i-2", At: now},
	} {
		if err := s.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	report("i-2", 1)
	if got := fmt.Sprint(tags()); got != "[v1 v2 v3 v1]" {
		t.Fatalf("notices after a new instance %s, want [v1 v2 v3 v1]", got)
	}
}
