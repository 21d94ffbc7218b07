package meta

import "sync"

// broadcast wakes every waiter once: wait returns a channel that the next
// notify closes. A waiter takes the channel before it reads the state the
// channel announces changes of, so no change is missed between the two.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// Changed returns a channel that is closed once a write to the store
// (Apply, ApplyAt, Restore) has committed or failed after the call: a
// reader waiting for new outbox events takes it, reads, and waits on it
// instead of polling. Take it before reading, so that a write committed
// between the read and the wait still wakes the reader.
func (r *Reader) Changed() <-chan struct{} { return r.changed.wait() }
