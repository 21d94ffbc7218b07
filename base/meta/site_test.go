package meta

import (
	"context"
	"errors"
	"testing"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
)

// TestPutSite: the first instance recorded stays the site's; the
// definition follows the latest record; bad input changes nothing.
func TestPutSite(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	reg := connected.Registry{Name: "factory1", Mode: connected.ReadWrite, Repositories: []string{"samples/*"}, LogLevel: "Information"}
	if _, ok, err := s.Site(); ok || err != nil {
		t.Fatalf("a new store's site: %v %v, want none", ok, err)
	}
	steps := []struct {
		name string
		site Site
		want error
		// after: the record's instance and mode
		instance string
		mode     connected.Mode
	}{
		{"first", Site{Instance: "i-1"}, nil, "i-1", ""},
		{"another zone's instance", Site{Instance: "i-2", Registry: reg}, nil, "i-1", connected.ReadWrite},
		{"no instance", Site{Registry: reg}, access.ErrInvalid, "i-1", connected.ReadWrite},
		{"bad definition", Site{Instance: "i-1", Registry: connected.Registry{Name: "factory1", Mode: "x", Repositories: []string{"a"}}}, access.ErrInvalid, "i-1", connected.ReadWrite},
	}
	for _, st := range steps {
		err := s.Apply(ctx, PutSite{Site: st.site})
		if !errors.Is(err, st.want) && (st.want != nil || err != nil) {
			t.Errorf("%s: %v, want %v", st.name, err, st.want)
		}
		got, ok, err := s.Site()
		if !ok || err != nil || got.Instance != st.instance || got.Registry.Mode != st.mode {
			t.Errorf("%s: the site is %+v (%v %v), want instance %s, mode %q", st.name, got, ok, err, st.instance, st.mode)
		}
	}
}
