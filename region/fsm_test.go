package region

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
)

func openStore(t *testing.T) *meta.Store {
	t.Helper()
	s, err := meta.Open(meta.Config{Path: filepath.Join(t.TempDir(), "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func commandLog(t *testing.T, index uint64, cmd meta.Command) *raft.Log {
	t.Helper()
	b, err := meta.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

func TestFSMApply(t *testing.T) {
	blob := digest.FromString("blob")
	tests := []struct {
		name string
		log  func(t *testing.T, index uint64) *raft.Log
		// check inspects the result of Apply and the store after it.
		check func(t *testing.T, result any, s *meta.Store)
	}{
		{
			name: "command applies",
			log: func(t *testing.T, index uint64) *raft.Log {
				return commandLog(t, index, linkBlob("r", blob, 5))
			},
			check: func(t *testing.T, result any, s *meta.Store) {
				if result != nil {
					t.Fatalf("result %v", result)
				}
				if size, err := s.BlobLink("r", blob); err != nil || size != 5 {
					t.Fatalf("blob link: %d, %v", size, err)
				}
			},
		},
		{
			name: "refused command returns its refusal",
			log: func(t *testing.T, index uint64) *raft.Log {
				return commandLog(t, index, meta.DeleteTag{Repo: "r", Tag: "nope"})
			},
			check: func(t *testing.T, result any, s *meta.Store) {
				if err, _ := result.(error); !errors.Is(err, meta.ErrManifestUnknown) {
					t.Fatalf("result %v, want meta.ErrManifestUnknown", result)
				}
			},
		},
		{
			name: "undecodable entry",
			log: func(t *testing.T, index uint64) *raft.Log {
				return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte("{not json")}
			},
			check: func(t *testing.T, result any, s *meta.Store) {
				if err, _ := result.(error); err == nil {
					t.Fatalf("result %v, want an error", result)
				}
			},
		},
		{
			name: "entry that is not a command",
			log: func(t *testing.T, index uint64) *raft.Log {
				return &raft.Log{Index: index, Term: 1, Type: raft.LogNoop}
			},
			check: func(t *testing.T, result any, s *meta.Store) {
				if result != nil {
					t.Fatalf("result %v", result)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			f := newFSM(s, slog.New(slog.DiscardHandler))
			applied, next := f.appliedIndex()
			if applied != 0 {
				t.Fatalf("fresh fsm at index %d", applied)
			}
			var rf raft.FSM = f
			result := rf.Apply(tt.log(t, 7))
			tt.check(t, result, s)
			select {
			case <-next:
			default:
				t.Fatal("waiters not woken by Apply")
			}
			if applied, _ := f.appliedIndex(); applied != 7 {
				t.Fatalf("applied index %d, want 7", applied)
			}
		})
	}
}

func TestFSMAppliedIndex(t *testing.T) {
	s := openStore(t)
	for i := uint64(1); i <= 3; i++ {
		if err := s.ApplyAt(i, linkBlob("r", digest.FromString("b"), 1)); err != nil {
			t.Fatal(err)
		}
	}
	f := newFSM(s, slog.New(slog.DiscardHandler))
	if applied, _ := f.appliedIndex(); applied != 3 {
		t.Fatalf("fsm over a store at 3 starts at %d", applied)
	}
	// Raft replays entries the store has after a restart: they change
	// nothing and do not move the index back.
	before, _ := s.Digest()
	_, next := f.appliedIndex()
	if result := f.Apply(commandLog(t, 2, meta.UnlinkBlob{Repo: "r", Digest: digest.FromString("b")})); result != nil {
		t.Fatalf("replayed entry: %v", result)
	}
	if after, _ := s.Digest(); after != before {
		t.Fatal("a replayed entry changed the store")
	}
	if applied, _ := f.appliedIndex(); applied != 3 {
		t.Fatalf("applied index %d after a replay, want 3", applied)
	}
	select {
	case <-next:
		t.Fatal("waiters woken though the index did not advance")
	default:
	}
}

// TestFSMSnapshotRestore takes a snapshot through the raft.FSM interface
// into raft's file snapshot store and restores it into a replica that had
// gone further on another history: its state and applied index become the
// snapshot's.
func TestFSMSnapshotRestore(t *testing.T) {
	snaps, err := raft.NewFileSnapshotStore(t.TempDir(), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	src := newFSM(openStore(t), slog.New(slog.DiscardHandler))
	blob := digest.FromString("layer")
	m := &meta.ManifestRecord{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 2}
	entries := []meta.Command{
		linkBlob("r", blob, 9),
		meta.PutManifest{Repo: "r", Tag: "v1", Manifest: *m, Requires: []digest.Digest{blob}},
	}
	for i, cmd := range entries {
		if result := src.Apply(commandLog(t, uint64(i+1), cmd)); result != nil {
			t.Fatal(result)
		}
	}

	var rf raft.FSM = src
	fs, err := rf.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 2, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	fs.Release()
	// Persist captures the store as it is when it runs, which may be past
	// the index Raft asked for; the store's own applied index says where.
	src.Apply(commandLog(t, 3, linkBlob("later", digest.FromString("later"), 1)))

	dstStore := openStore(t)
	dst := newFSM(dstStore, slog.New(slog.DiscardHandler))
	for i := uint64(1); i <= 10; i++ {
		dst.Apply(commandLog(t, i, linkBlob("other", digest.FromString("other"), int64(i))))
	}
	list, err := snaps.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("snapshots: %v, %v", list, err)
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Restore(rc); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if applied, _ := dst.appliedIndex(); applied != 2 {
		t.Fatalf("applied index %d after restore, want the snapshot's 2", applied)
	}
	if dstStore.AppliedIndex() != 2 {
		t.Fatalf("store applied index %d after restore, want 2", dstStore.AppliedIndex())
	}
	if tag, err := dstStore.Tag("r", "v1"); err != nil || tag.Digest != m.Digest {
		t.Fatalf("tag after restore: %+v, %v", tag, err)
	}
	if _, err := dstStore.BlobLink("other", digest.FromString("other")); !errors.Is(err, meta.ErrBlobUnknown) && !errors.Is(err, meta.ErrRepositoryUnknown) {
		t.Fatalf("restore kept the replica's own history: %v", err)
	}
	// The log after the snapshot applies on top of it.
	if result := dst.Apply(commandLog(t, 3, linkBlob("later", digest.FromString("later"), 1))); result != nil {
		t.Fatal(result)
	}
	want, _ := src.store.Digest()
	if got, _ := dstStore.Digest(); got != want {
		t.Fatalf("restored replica %s, source %s", got, want)
	}
}

func TestSnapshotPersistFailure(t *testing.T) {
	snaps, err := raft.NewFileSnapshotStore(t.TempDir(), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := meta.Open(meta.Config{Path: filepath.Join(t.TempDir(), "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	f := newFSM(s, slog.New(slog.DiscardHandler))
	fs, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Persist(sink); err == nil {
		t.Fatal("persist of a closed store succeeded")
	}
	if list, _ := snaps.List(); len(list) != 0 {
		t.Fatalf("a failed persist left snapshot %v", list[0].ID)
	}
}
