//go:build !linux

package storage

import (
	"io"
	"os"
)

// writeBehind writes to a buffered file; only Linux starts the write-back
// early (see writebehind_linux.go).
type writeBehind struct{ f *os.File }

func newWriteBehind(f *os.File) *writeBehind { return &writeBehind{f: f} }

func (w *writeBehind) Write(p []byte) (int, error) { return w.f.Write(p) }

// NewWriteBehind returns f as a writer: only Linux starts the write-back
// early (see writebehind_linux.go).
func NewWriteBehind(f *os.File, offset int64) io.Writer { return f }
