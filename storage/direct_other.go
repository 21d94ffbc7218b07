//go:build !linux

package storage

import (
	"io"
	"os"
)

// createDirect creates a temporary file for buffered writes: direct I/O
// is not offered here.
func createDirect(dir string) (f *os.File, ok bool, err error) {
	f, err = os.CreateTemp(dir, "put-*")
	return f, false, err
}

func directCopy(f *os.File, r io.Reader) (int64, error) { return io.Copy(f, r) }
