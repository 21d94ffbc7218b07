//go:build linux

package storage

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment direct I/O asks of buffers, file offsets
// and lengths: the logical block size of every disk in common use.
const directAlign = 4096

// directBlock is the unit of a direct write. Larger blocks mean fewer,
// longer device requests; two of them are in use per Put.
const directBlock = 1 << 20

// createDirect creates a new temporary file in dir (as os.CreateTemp
// does) set for direct I/O (O_DIRECT), which writes straight from the
// caller's memory to the device instead of through the page cache. It
// returns ok false, with the file still usable for buffered writes, when
// the filesystem does not offer direct I/O (tmpfs, for one).
func createDirect(dir string) (f *os.File, ok bool, err error) {
	f, err = os.CreateTemp(dir, "put-*")
	if err != nil {
		return nil, false, err
	}
	return f, setDirect(f, true) == nil, nil
}

// setDirect turns direct I/O on or off for f.
func setDirect(f *os.File, on bool) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = raw.Control(func(fd uintptr) {
		var flags int
		if flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0); ferr != nil {
			return
		}
		if on {
			flags |= unix.O_DIRECT
		} else {
			flags &^= unix.O_DIRECT
		}
		_, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags)
	})
	if err != nil {
		return err
	}
	return ferr
}

// directBlocks recycles the aligned blocks of direct writes: every
// uncached Put of a large blob uses two.
var directBlocks = sync.Pool{New: func() any { b := alignedBuf(directBlock); return &b }}

// directCopy copies r to f, a file createDirect opened, and returns the
// number of bytes copied. Reading and writing overlap: one block is filled
// from r while the previous one is written. The last, partial block is
// written padded with zeros (direct writes cover whole blocks) and the file
// then truncated to its length. A filesystem that accepted O_DIRECT at open
// but refuses a direct write gets the rest through the page cache.
func directCopy(f *os.File, r io.Reader) (int64, error) {
	type block struct {
		buf []byte
		n   int // bytes of buf that belong to the blob
	}
	free := make(chan []byte, 2)
	for range 2 {
		free <- *directBlocks.Get().(*[]byte)
	}
	defer func() {
		for range 2 {
			b := <-free
			directBlocks.Put(&b)
		}
	}()
	full := make(chan block, 2)
	var failed atomic.Bool
	werr := make(chan error, 1)
	go func() {
		var err error
		for b := range full {
			if err == nil {
				err = writeDirect(f, b.buf[:roundUp(b.n)])
				failed.Store(err != nil)
			}
			free <- b.buf
		}
		werr <- err
	}()

	var n int64
	var rerr error
	for !failed.Load() {
		buf := <-free
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			clear(buf[m:roundUp(m)])
			full <- block{buf, m}
			n += int64(m)
		} else {
			free <- buf
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(full)
	if err := <-werr; err != nil {
		return n, err
	}
	if rerr != nil {
		return n, rerr
	}
	if n%directAlign != 0 {
		if err := f.Truncate(n); err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeDirect writes p, whose length is a multiple of directAlign, falling
// back to a buffered write when the filesystem refuses direct I/O.
func writeDirect(f *os.File, p []byte) error {
	_, err := f.Write(p)
	if !errors.Is(err, unix.EINVAL) || setDirect(f, false) != nil {
		return err
	}
	_, err = f.Write(p)
	return err
}

func roundUp(n int) int { return (n + directAlign - 1) &^ (directAlign - 1) }

// alignedBuf returns size bytes whose address is a multiple of directAlign.
func alignedBuf(size int) []byte {
	b := make([]byte, size+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) % directAlign)
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+size : off+size]
}
