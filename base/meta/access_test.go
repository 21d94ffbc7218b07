package meta

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/georeg/georeg/base/access"
)

func TestAccessCommands(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sm := access.ScopeMap{Name: "pull-samples", Created: now, Permissions: []access.Permission{{Pattern: "samples/*", Actions: []access.Action{access.ContentRead}}}}
	tok := access.Token{Name: "ci-bot", ScopeMap: "pull-samples", Status: access.Enabled, Created: now}
	steps := []struct {
		name string
		cmd  Command
		want error
	}{
		{"token before its scope map", PutToken{Token: tok, Create: true}, ErrAccessConflict},
		{"create scope map", PutScopeMap{ScopeMap: sm, Create: true}, nil},
		{"create it again", PutScopeMap{ScopeMap: sm, Create: true}, ErrAccessConflict},
		{"update a missing scope map", PutScopeMap{ScopeMap: access.ScopeMap{Name: "nothere", Permissions: sm.Permissions}}, ErrAccessUnknown},
		{"a built-in name", PutScopeMap{ScopeMap: access.ScopeMap{Name: access.PullScopeMap, Permissions: sm.Permissions}, Create: true}, access.ErrInvalid},
		{"bad pattern", PutScopeMap{ScopeMap: access.ScopeMap{Name: "bad-pattern", Permissions: []access.Permission{{Pattern: "de*mo", Actions: []access.Action{access.ContentRead}}}}, Create: true}, access.ErrInvalid},
		{"create token", PutToken{Token: tok, Create: true}, nil},
		{"create it again", PutToken{Token: tok, Create: true}, ErrAccessConflict},
		{"token of a built-in scope map", PutToken{Token: access.Token{Name: "puller", ScopeMap: access.PullScopeMap, Status: access.Enabled}, Create: true}, nil},
		{"bad status", PutToken{Token: access.Token{Name: "weird", ScopeMap: access.PullScopeMap, Status: "paused"}, Create: true}, access.ErrInvalid},
		{"delete a scope map in use", DeleteScopeMap{Name: "pull-samples"}, ErrAccessConflict},
		{"disable token", PutToken{Token: access.Token{Name: "ci-bot", ScopeMap: "pull-samples", Status: access.Disabled}}, nil},
		{"delete token", DeleteToken{Name: "ci-bot"}, nil},
		{"delete it again", DeleteToken{Name: "ci-bot"}, ErrAccessUnknown},
		{"delete the scope map", DeleteScopeMap{Name: "pull-samples"}, nil},
		{"settings", PutAccessConfig{Settings: &access.Settings{AuthEnabled: true}}, nil},
	}
	var last uint64
	for _, st := range steps {
		err := s.Apply(ctx, st.cmd)
		if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
			t.Fatalf("%s: Apply = %v, want %v", st.name, err, st.want)
		}
		v, verr := s.AccessVersion()
		if verr != nil {
			t.Fatal(verr)
		}
		if err == nil && v <= last || err != nil && v != last {
			t.Fatalf("%s: version %d after %d (err %v): a change must bump it, a refusal must not", st.name, v, last, err)
		}
		last = v
	}
	st, err := s.AccessState()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tokens) != 1 || st.Tokens[0].Name != "puller" || st.Tokens[0].Version != 1 || len(st.ScopeMaps) != 0 || !st.Settings.AuthEnabled || st.Version != last {
		t.Fatalf("state %+v", st)
	}
}

func TestTokenVersionGrows(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	tok := access.Token{Name: "puller", ScopeMap: access.PullScopeMap, Status: access.Enabled}
	if err := s.Apply(ctx, PutToken{Token: tok, Create: true}); err != nil {
		t.Fatal(err)
	}
	tok.Status = access.Disabled
	if err := s.Apply(ctx, PutToken{Token: tok}); err != nil {
		t.Fatal(err)
	}
	st, err := s.AccessState()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Tokens[0]; got.Version != 2 || got.Status != access.Disabled {
		t.Fatalf("token %+v: want version 2, disabled", got)
	}
}
