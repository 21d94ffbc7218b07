package storage

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeBehindEvery is how many bytes a buffered Put writes before it asks
// the kernel to start writing them to the device.
const writeBehindEvery = 8 << 20

// writeBehind writes to a buffered file and starts the write-back of every
// writeBehindEvery bytes as soon as they are written, so that the device
// works while the rest of the blob is still arriving and the final fsync
// waits for the tail of the file instead of all of it. Left alone, the
// kernel starts write-back only after about 30 s or under memory pressure,
// and a Put's fsync then writes the whole blob in one burst.
type writeBehind struct {
	f       *os.File
	raw     syscall.RawConn // nil: no write-behind, plain writes
	written int64           // the file offset after the last write
	started int64           // the offset up to which write-back was started
}

// NewWriteBehind returns a writer to f, whose offset is offset, that starts
// the write-back of what it wrote every few MiB instead of leaving it all to
// the final fsync. Use it for large files that are fsync'd once complete.
// Only Linux starts the write-back early; elsewhere it writes to f.
func NewWriteBehind(f *os.File, offset int64) io.Writer {
	w := newWriteBehind(f)
	w.written, w.started = offset, offset
	return w
}

func newWriteBehind(f *os.File) *writeBehind {
	w := &writeBehind{f: f}
	if raw, err := f.SyscallConn(); err == nil {
		w.raw = raw
	}
	return w
}

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.raw != nil && w.written-w.started >= writeBehindEvery {
		off, length := w.started, w.written-w.started
		// Only a hint: SYNC_FILE_RANGE_WRITE starts the writes without
		// waiting for them, and an I/O error shows again at the fsync.
		_ = w.raw.Control(func(fd uintptr) {
			_ = unix.SyncFileRange(int(fd), off, length, unix.SYNC_FILE_RANGE_WRITE)
		})
		w.started = w.written
	}
	return n, err
}
