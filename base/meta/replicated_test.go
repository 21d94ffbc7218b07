package meta

import (
	"bytes"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestApplyAtSnapshotRestore(t *testing.T) {
	blob := digest.FromString("b")
	m := manifest("m", "")
	log := []Command{
		LinkBlob{Repo: "r", Digest: blob, Size: 1},
		PutManifest{Repo: "r", Tag: "t", Manifest: *m, Requires: []digest.Digest{blob}},
		DeleteTag{Repo: "r", Tag: "nope"}, // refused, still consumes its index
		UnlinkBlob{Repo: "r", Digest: blob},
	}
	a := openTest(t)
	for i, c := range log {
		err := a.ApplyAt(uint64(i+1), c)
		if (err != nil) != (i == 2) {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
	if got := a.AppliedIndex(); got != 4 {
		t.Fatalf("applied index %d, want 4", got)
	}
	// Replaying the log on the state that has it changes nothing, even though
	// entry 2 would now be refused (its blob is unlinked).
	before, _ := a.Digest()
	for i, c := range log {
		if err := a.ApplyAt(uint64(i+1), c); err != nil {
			t.Fatalf("replay of entry %d: %v", i+1, err)
		}
	}
	if after, _ := a.Digest(); after != before {
		t.Fatal("replay changed the state")
	}
	if d, idx, err := a.DigestAt(); err != nil || d != before || idx != 4 {
		t.Fatalf("DigestAt = %s at %d (%v), want %s at 4", d, idx, err, before)
	}
	if _, err := a.Manifest("r", m.Digest); err != nil {
		t.Fatalf("manifest lost in replay: %v", err)
	}

	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	b := openTest(t)
	b.ApplyAt(1, LinkBlob{Repo: "other", Digest: blob, Size: 1})
	if err := b.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db || b.AppliedIndex() != 4 {
		t.Fatalf("restored store differs: %s vs %s, applied %d", da, db, b.AppliedIndex())
	}
	if _, _, err := b.Tags("other", "", 0); !errors.Is(err, ErrRepositoryUnknown) {
		t.Fatalf("restore kept old state: %v", err)
	}
}
