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

// TestForward checks the writes a child site syncs up: a forwarded merge
// enters the outbox with the site's stamp only when it wins, and a local
// push records the digest it replaced (Event.Prev).
func TestForward(t *testing.T) {
	ctx := context.Background()
	blob := digest.FromString("layer")
	a, b := manifest("a", ""), manifest("b", "")
	s := openTest(t)
	put := func(m *ManifestRecord, tag string) {
		t.Helper()
		if err := s.Apply(ctx, PutManifest{Repo: "r", Tag: tag, Manifest: *m, Clock: 10, Origin: "westus",
			Links: []Link{{blob, 5}}, Requires: []digest.Digest{blob}}); err != nil {
			t.Fatal(err)
		}
	}
	put(a, "t")
	put(b, "")
	last := func() Event {
		t.Helper()
		evs, err := s.OutboxAfter(s.LastSeq()-1, 1)
		if err != nil || len(evs) != 1 {
			t.Fatalf("outbox: %v %v", evs, err)
		}
		return evs[0]
	}
	seq := s.LastSeq()
	tests := []struct {
		name    string
		cmd     Command
		tag     digest.Digest // "" means no live tag
		entered bool          // an outbox event with the command's stamp
	}{
		{"an older site write loses, forwards nothing", MergeTag{Repo: "r", Tag: "t", Digest: b.Digest, Clock: 5, Origin: "factory1", Forward: true}, a.Digest, false},
		{"a later site write wins and is forwarded", MergeTag{Repo: "r", Tag: "t", Digest: b.Digest, Clock: 50, Origin: "factory1", Forward: true}, b.Digest, true},
		{"a site's tag delete is forwarded", MergeTag{Repo: "r", Tag: "t", Deleted: true, Clock: 60, Origin: "factory1", Forward: true}, "", true},
		{"an unforwarded merge stays out of the outbox", MergeTag{Repo: "r", Tag: "t", Digest: a.Digest, Clock: 70, Origin: "eastus"}, a.Digest, false},
		{"a site's manifest delete is forwarded", DeleteManifest{Repo: "r", Digest: b.Digest, Clock: 80, Origin: "factory1", Replicated: true, Forward: true}, a.Digest, true},
	}
	for _, tt := range tests {
		if err := s.Apply(ctx, tt.cmd); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		tr, err := s.Tag("r", "t")
		if tt.tag == "" && err == nil || tt.tag != "" && (err != nil || tr.Digest != tt.tag) {
			t.Errorf("%s: tag = %s, %v; want %q", tt.name, tr.Digest, err, tt.tag)
		}
		st := tt.cmd.(Stamped).Stamp()
		if got := s.LastSeq() > seq; got != tt.entered {
			t.Errorf("%s: entered the outbox = %v, want %v", tt.name, got, tt.entered)
		} else if got {
			if e := last(); e.Clock != st.Clock || e.Origin != st.Origin {
				t.Errorf("%s: outbox event stamped (%d, %s), want (%d, %s)", tt.name, e.Clock, e.Origin, st.Clock, st.Origin)
			}
		}
		seq = s.LastSeq()
	}
	put(b, "t2")
	put(a, "t2")
	if e := last(); e.Prev != b.Digest {
		t.Errorf("a push over t2 recorded Prev %q, want %s", e.Prev, b.Digest)
	}
	if err := s.Apply(ctx, DeleteTag{Repo: "r", Tag: "t2", Clock: 90, Origin: "westus"}); err != nil {
		t.Fatal(err)
	}
	if e := last(); e.Prev != a.Digest {
		t.Errorf("a tag delete recorded Prev %q, want %s", e.Prev, a.Digest)
	}
}
