package meta

import (
	"context"
	"errors"
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
