package meta

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLastWriterWins applies the same writes in every order and checks that
// the result does not depend on the order: what makes regions converge.
func TestLastWriterWins(t *testing.T) {
	blob := digest.FromString("layer")
	a, b := manifest("a", ""), manifest("b", "")
	put := func(m *ManifestRecord, clock uint64, origin string) Command {
		return PutManifest{Repo: "r", Tag: "t", Manifest: *m, Replicated: true, Clock: clock, Origin: origin,
			Links: []Link{{blob, 5}}, Requires: []digest.Digest{blob}}
	}
	del := func(m *ManifestRecord, clock uint64, origin string) Command {
		return DeleteManifest{Repo: "r", Digest: m.Digest, Replicated: true, Clock: clock, Origin: origin}
	}
	tests := []struct {
		name    string
		writes  []Command
		tag     digest.Digest // "" means no live tag
		aExists bool
	}{
		{"later clock wins", []Command{put(a, 10, "westus"), put(b, 20, "eastus")}, b.Digest, true},
		{"same clock: greater region wins", []Command{put(a, 10, "westus"), put(b, 10, "eastus")}, a.Digest, true},
		{"delete after push wins", []Command{put(a, 10, "westus"), del(a, 20, "eastus")}, "", false},
		{"push after delete wins", []Command{del(a, 10, "eastus"), put(a, 20, "westus")}, a.Digest, true},
	}
	for _, tt := range tests {
		orders := [][]Command{tt.writes, {tt.writes[1], tt.writes[0]}}
		for i, order := range orders {
			s := openTest(t)
			for _, c := range order {
				if err := s.Apply(context.Background(), c); err != nil {
					t.Fatalf("%s order %d: %v", tt.name, i, err)
				}
			}
			tr, err := s.Tag("r", "t")
			switch {
			case tt.tag == "" && err == nil:
				t.Errorf("%s order %d: tag points at %s, want none", tt.name, i, tr.Digest)
			case tt.tag != "" && (err != nil || tr.Digest != tt.tag):
				t.Errorf("%s order %d: tag = %s, %v; want %s", tt.name, i, tr.Digest, err, tt.tag)
			}
			if _, err := s.Manifest("r", a.Digest); (err == nil) != tt.aExists {
				t.Errorf("%s order %d: manifest a exists = %v, want %v", tt.name, i, err == nil, tt.aExists)
			}
		}
	}
}
