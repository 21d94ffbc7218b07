// Package syncbuf is a bytes.Buffer that one goroutine may read while others
// write: the logs of nodes a test runs, a child process's output copied by
// exec's goroutines.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects writes under a mutex. The zero value is empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// CountLines returns how many lines written so far contain every one of
// parts: how tests count log lines that report an event.
func (b *Buffer) CountLines(parts ...string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
