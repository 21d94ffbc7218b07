package region

import (
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/georeg/georeg/base/meta"
)

// fsm applies Raft entries to the metadata store. Raft calls Apply, Snapshot
// and Restore from one goroutine; Persist runs concurrently with Apply (a
// bbolt read transaction makes it consistent).
type fsm struct {
	store *meta.Store
	log   *slog.Logger

	mu      sync.Mutex
	applied uint64
	waiters chan struct{} // closed and replaced whenever applied advances
}

func newFSM(store *meta.Store, log *slog.Logger) *fsm {
	return &fsm{store: store, log: log, applied: store.AppliedIndex(), waiters: make(chan struct{})}
}

// Apply returns the command's result: nil or its error.
func (f *fsm) Apply(l *raft.Log) any {
	var result error
	if l.Type == raft.LogCommand {
		cmd, err := meta.Decode(l.Data)
		if err != nil {
			result = fmt.Errorf("region: entry %d: %w", l.Index, err)
		} else {
			result = f.store.ApplyAt(l.Index, cmd)
		}
	}
	f.advance(l.Index)
	return result
}

func (f *fsm) advance(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index > f.applied {
		f.applied = index
		close(f.waiters)
		f.waiters = make(chan struct{})
	}
}

// appliedIndex returns the last applied index and a channel closed when it
// next advances.
func (f *fsm) appliedIndex() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.waiters
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) { return snapshot{f.store}, nil }

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.Restore(rc); err != nil {
		return err
	}
	f.mu.Lock()
	f.applied = f.store.AppliedIndex()
	f.mu.Unlock()
	f.log.Info("restored metadata from a snapshot", "applied", f.applied)
	return nil
}

type snapshot struct{ store *meta.Store }

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.store.Snapshot(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}
