package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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

// TestAccessLimits fills the registry to ACR's limits (20,000 tokens and
// 20,000 scope maps): the last one is accepted, one more is refused naming
// the limit, and a refusal changes nothing. The first 19,999 are written
// straight into the buckets, since applying them one by one would only
// test bbolt's fsync.
func TestAccessLimits(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	perm := []access.Permission{{Pattern: "samples/*", Actions: []access.Action{access.ContentRead}}}
	err := s.db.Update(func(tx *bolt.Tx) error {
		sb, err := tx.CreateBucketIfNotExists(bucketScopeMaps)
		if err != nil {
			return err
		}
		tb, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		for i := range access.MaxScopeMaps - 1 {
			name := fmt.Sprintf("map-%05d", i)
			if err := putJSON(sb, name, access.ScopeMap{Name: name, Permissions: perm}); err != nil {
				return err
			}
		}
		for i := range access.MaxTokens - 1 {
			name := fmt.Sprintf("tok-%05d", i)
			if err := putJSON(tb, name, access.Token{Name: name, ScopeMap: access.PullScopeMap, Status: access.Enabled}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		cmd  Command
		want error
	}{
		{"scope map 20,000", PutScopeMap{ScopeMap: access.ScopeMap{Name: "map-last", Permissions: perm}, Create: true}, nil},
		{"scope map 20,001", PutScopeMap{ScopeMap: access.ScopeMap{Name: "map-over", Permissions: perm}, Create: true}, access.ErrLimit},
		{"token 20,000", PutToken{Token: access.Token{Name: "tok-last", ScopeMap: "map-last", Status: access.Enabled}, Create: true}, nil},
		{"token 20,001", PutToken{Token: access.Token{Name: "tok-over", ScopeMap: "map-last", Status: access.Enabled}, Create: true}, access.ErrLimit},
		{"an update at the limit", PutToken{Token: access.Token{Name: "tok-last", ScopeMap: "map-last", Status: access.Disabled}}, nil},
	}
	for _, st := range steps {
		err := s.Apply(ctx, st.cmd)
		if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
			t.Fatalf("%s: Apply = %v, want %v", st.name, err, st.want)
		}
		if err != nil && !strings.Contains(err.Error(), "20000") {
			t.Errorf("%s: the refusal %q does not name the limit", st.name, err)
		}
	}
	state, err := s.ReadOnly().AccessState()
	if err != nil {
		t.Fatal(err)
	}
	if len(state.Tokens) != access.MaxTokens || len(state.ScopeMaps) != access.MaxScopeMaps {
		t.Fatalf("%d tokens and %d scope maps, want %d and %d", len(state.Tokens), len(state.ScopeMaps), access.MaxTokens, access.MaxScopeMaps)
	}
}
