// Package storagetest is the conformance suite for storage.BlobStore and
// its optional abilities (FileIngester, Stamper, VouchedPutter): the one
// set of tests every implementation runs, so that they all keep the
// contract written on the interfaces. An implementation's own test is a
// call to Run with a constructor; checks that only make sense for one
// implementation (no temporary files left on disk, no orphaned multipart
// uploads) belong in that constructor's t.Cleanup. The cases of an
// optional ability skip stores that do not implement it.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
)

// largeSize crosses the 16 MiB multipart part size and the buffer sizes of
// the copy loops, and is not a multiple of any of them.
const largeSize = 40<<20 + 12345

// Config describes the store under test.
type Config struct {
	// NewStore returns an empty store that lives until the end of the
	// (sub)test it is given; each case gets its own.
	NewStore func(t *testing.T) storage.BlobStore
	// ReadsFallBack says the store reads a blob it lacks from copies kept
	// elsewhere, which its Delete leaves in place (region.Blobs: Delete
	// removes one zone's copy, and the next read fetches it from another
	// zone). The suite then checks that a deleted blob is no longer
	// listed and that a read returns it whole or not at all.
	ReadsFallBack bool
}

// Run runs the suite.
func Run(t *testing.T, cfg Config) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s storage.BlobStore)
	}{
		{"Missing", testMissing},
		{"PutStatOpen", testPutStatOpen},
		{"OpenOffsets", testOpenOffsets},
		{"OpenSeekReaderAt", testOpenSeekReaderAt},
		{"EmptyBlob", testEmptyBlob},
		{"UnknownSize", testUnknownSize},
		{"SHA512", testSHA512},
		{"Mismatch", testMismatch},
		{"InvalidDigest", testInvalidDigest},
		{"ReaderError", testReaderError},
		{"IdempotentPut", testIdempotentPut},
		{"Delete", func(t *testing.T, s storage.BlobStore) { testDelete(t, s, cfg.ReadsFallBack) }},
		{"Walk", testWalk},
		{"WalkStops", testWalkStops},
		{"ConcurrentSameDigest", testConcurrentSameDigest},
		{"ConcurrentDistinct", testConcurrentDistinct},
		{"Large", testLarge},
		{"CancelledPut", testCancelledPut},
		{"Verify", testVerify},
		{"IngestFile", testIngestFile},
		{"Stamp", testStamp},
		{"PutVouched", testPutVouched},
		{"PutVouchedStored", testPutVouchedStored},
		{"PutVouchedFails", testPutVouchedFails},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, cfg.NewStore(t))
		})
	}
}

// blob is test content with its digest.
type blob struct {
	data []byte
	dgst digest.Digest
}

func newBlob(seed uint64, size int) blob {
	return newBlobAlg(seed, size, digest.SHA256)
}

func newBlobAlg(seed uint64, size int, alg digest.Algorithm) blob {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, uint64(size)))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return blob{data: data, dgst: alg.FromBytes(data)}
}

func put(t *testing.T, s storage.BlobStore, b blob) {
	t.Helper()
	n, err := s.Put(t.Context(), b.dgst, int64(len(b.data)), bytes.NewReader(b.data))
	if err != nil {
		t.Fatalf("Put(%s): %v", b.dgst, err)
	}
	if n != int64(len(b.data)) {
		t.Fatalf("Put(%s) = %d bytes, want %d", b.dgst, n, len(b.data))
	}
}

// read returns the content of dgst from offset.
func read(t *testing.T, s storage.BlobStore, dgst digest.Digest, offset int64) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), dgst, offset)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", dgst, offset, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s from %d: %v", dgst, offset, err)
	}
	return got
}

// checkContent fails unless s holds exactly b.
func checkContent(t *testing.T, s storage.BlobStore, b blob) {
	t.Helper()
	size, err := s.Stat(t.Context(), b.dgst)
	if err != nil {
		t.Fatalf("Stat(%s): %v", b.dgst, err)
	}
	if size != int64(len(b.data)) {
		t.Fatalf("Stat(%s) = %d, want %d", b.dgst, size, len(b.data))
	}
	if got := read(t, s, b.dgst, 0); !bytes.Equal(got, b.data) {
		t.Fatalf("content of %s differs: got %d bytes (%s), want %d", b.dgst, len(got), digest.FromBytes(got), len(b.data))
	}
}

// checkAbsent fails unless dgst is absent from s.
func checkAbsent(t *testing.T, s storage.BlobStore, dgst digest.Digest) {
	t.Helper()
	if _, err := s.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%s) error = %v, want ErrNotFound", dgst, err)
	}
	if rc, err := s.Open(t.Context(), dgst, 0); !errors.Is(err, storage.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("Open(%s) error = %v, want ErrNotFound", dgst, err)
	}
}

// checkWholeOrAbsent fails unless s holds exactly b or lacks it.
func checkWholeOrAbsent(t *testing.T, s storage.BlobStore, b blob) {
	t.Helper()
	if _, err := s.Stat(t.Context(), b.dgst); errors.Is(err, storage.ErrNotFound) {
		checkAbsent(t, s, b.dgst)
		return
	}
	checkContent(t, s, b)
}

// walk returns what Walk lists, failing on duplicates.
func walk(t *testing.T, s storage.BlobStore) map[digest.Digest]int64 {
	t.Helper()
	got := make(map[digest.Digest]int64)
	err := s.Walk(t.Context(), func(dgst digest.Digest, size int64) error {
		if _, dup := got[dgst]; dup {
			return fmt.Errorf("%s listed twice", dgst)
		}
		got[dgst] = size
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return got
}

// checkEmpty fails unless s lists no blob.
func checkEmpty(t *testing.T, s storage.BlobStore) {
	t.Helper()
	if got := walk(t, s); len(got) != 0 {
		t.Fatalf("Walk listed %v, want nothing", got)
	}
}

func testMissing(t *testing.T, s storage.BlobStore) {
	dgst := newBlob(1, 10).dgst
	checkAbsent(t, s, dgst)
	if err := s.Delete(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Delete(missing) error = %v, want ErrNotFound", err)
	}
	if err := storage.Verify(t.Context(), s, dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Verify(missing) error = %v, want ErrNotFound", err)
	}
	checkEmpty(t, s)
}

func testPutStatOpen(t *testing.T, s storage.BlobStore) {
	for _, size := range []int{1, 100, 64 << 10, 1<<20 + 1} {
		b := newBlob(2, size)
		put(t, s, b)
		checkContent(t, s, b)
	}
}

func testOpenOffsets(t *testing.T, s storage.BlobStore) {
	const size = 1000
	b := newBlob(3, size)
	put(t, s, b)
	for _, tc := range []struct {
		offset  int64
		wantErr error
	}{
		{0, nil},
		{1, nil},
		{size / 2, nil},
		{size - 1, nil},
		{size, nil}, // an empty read, not an error
		{size + 1, storage.ErrInvalidOffset},
		{1 << 40, storage.ErrInvalidOffset},
		{-1, storage.ErrInvalidOffset},
	} {
		t.Run(fmt.Sprint(tc.offset), func(t *testing.T) {
			rc, err := s.Open(t.Context(), b.dgst, tc.offset)
			if tc.wantErr != nil {
				if err == nil {
					rc.Close()
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open(%d) error = %v, want %v", tc.offset, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%d): %v", tc.offset, err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, b.data[tc.offset:]) {
				t.Fatalf("Open(%d) read %d bytes, want the %d from offset", tc.offset, len(got), size-tc.offset)
			}
		})
	}
}

// testOpenSeekReaderAt checks the documented promise of the readers that
// offer io.Seeker or io.ReaderAt: they address the whole blob, whatever
// offset Open was given.
func testOpenSeekReaderAt(t *testing.T, s storage.BlobStore) {
	b := newBlob(4, 5000)
	put(t, s, b)
	rc, err := s.Open(t.Context(), b.dgst, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if ra, ok := rc.(io.ReaderAt); ok {
		p := make([]byte, 100)
		if _, err := ra.ReadAt(p, 10); err != nil {
			t.Fatalf("ReadAt: %v", err)
		}
		if !bytes.Equal(p, b.data[10:110]) {
			t.Error("ReadAt(10) did not read the blob's bytes 10..110")
		}
	}
	if sk, ok := rc.(io.Seeker); ok {
		pos, err := sk.Seek(0, io.SeekCurrent)
		if err != nil || pos != 1000 {
			t.Fatalf("Seek(0, current) = %d, %v; want 1000", pos, err)
		}
		if _, err := sk.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b.data) {
			t.Error("reading after Seek(0, start) did not return the whole blob")
		}
		if end, err := sk.Seek(0, io.SeekEnd); err != nil || end != int64(len(b.data)) {
			t.Errorf("Seek(0, end) = %d, %v; want %d", end, err, len(b.data))
		}
	}
}

func testEmptyBlob(t *testing.T, s storage.BlobStore) {
	b := newBlob(5, 0)
	for _, size := range []int64{0, -1} {
		n, err := s.Put(t.Context(), b.dgst, size, bytes.NewReader(nil))
		if err != nil || n != 0 {
			t.Fatalf("Put(empty, size %d) = %d, %v", size, n, err)
		}
		checkContent(t, s, b)
	}
	if got := walk(t, s); len(got) != 1 || got[b.dgst] != 0 {
		t.Errorf("Walk = %v, want the empty blob", got)
	}
}

func testUnknownSize(t *testing.T, s storage.BlobStore) {
	b := newBlob(6, 300<<10)
	// OneByteReader would make this test slow; HalfReader still exercises
	// short reads.
	n, err := s.Put(t.Context(), b.dgst, -1, iotest.HalfReader(bytes.NewReader(b.data)))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(b.data)) {
		t.Fatalf("Put = %d bytes, want %d", n, len(b.data))
	}
	checkContent(t, s, b)
}

func testSHA512(t *testing.T, s storage.BlobStore) {
	b := newBlobAlg(7, 4096, digest.SHA512)
	put(t, s, b)
	checkContent(t, s, b)
	if got := walk(t, s); got[b.dgst] != int64(len(b.data)) {
		t.Errorf("Walk = %v, want %s", got, b.dgst)
	}
	if err := storage.Verify(t.Context(), s, b.dgst); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// The same bytes under sha256 are a different blob.
	other := blob{data: b.data, dgst: digest.SHA256.FromBytes(b.data)}
	checkAbsent(t, s, other.dgst)
	put(t, s, other)
	if got := walk(t, s); len(got) != 2 {
		t.Errorf("Walk listed %d blobs, want 2", len(got))
	}
}

func testMismatch(t *testing.T, s storage.BlobStore) {
	b := newBlob(8, 20000)
	other := newBlob(9, 20000)
	for _, tc := range []struct {
		name    string
		dgst    digest.Digest
		size    int64
		data    []byte
		wantErr error
	}{
		{"wrong digest", other.dgst, 20000, b.data, storage.ErrDigestMismatch},
		{"wrong digest unknown size", other.dgst, -1, b.data, storage.ErrDigestMismatch},
		{"wrong digest sha512", digest.SHA512.FromBytes(other.data), 20000, b.data, storage.ErrDigestMismatch},
		{"short", b.dgst, 20001, b.data, storage.ErrSizeMismatch},
		{"long", b.dgst, 19999, b.data, storage.ErrSizeMismatch},
		{"truncated", b.dgst, 20000, b.data[:10000], storage.ErrSizeMismatch},
		{"truncated unknown size", b.dgst, -1, b.data[:10000], storage.ErrDigestMismatch},
		{"empty", b.dgst, 20000, nil, storage.ErrSizeMismatch},
		{"empty for a real digest", b.dgst, -1, nil, storage.ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.Put(t.Context(), tc.dgst, tc.size, bytes.NewReader(tc.data))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Put error = %v, want %v", err, tc.wantErr)
			}
			if n != 0 {
				t.Errorf("failed Put stored %d bytes", n)
			}
			checkAbsent(t, s, tc.dgst)
			checkEmpty(t, s)
		})
	}
	// A mismatch is reported even when the digest is already stored.
	put(t, s, b)
	if _, err := s.Put(t.Context(), b.dgst, 20000, bytes.NewReader(other.data)); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Errorf("Put(stored digest, wrong bytes) error = %v, want ErrDigestMismatch", err)
	}
	if _, err := s.Put(t.Context(), b.dgst, 20001, bytes.NewReader(b.data)); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Errorf("Put(stored digest, wrong size) error = %v, want ErrSizeMismatch", err)
	}
	checkContent(t, s, b)
}

func testInvalidDigest(t *testing.T, s storage.BlobStore) {
	data := []byte("hello")
	for _, dgst := range []digest.Digest{
		"",
		"sha256",
		"sha256:",
		"sha256:abc",
		"sha256:../../../../etc/passwd",
		"md5:5d41402abc4b2a76b9719d911017c592",
		digest.Digest("sha256:" + fmt.Sprintf("%064X", 1)), // uppercase hex
		digest.FromBytes(data) + "/x",
	} {
		t.Run(string(dgst), func(t *testing.T) {
			if _, err := s.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err == nil {
				t.Error("Put succeeded")
			}
			if _, err := s.Stat(t.Context(), dgst); err == nil {
				t.Error("Stat succeeded")
			}
			if rc, err := s.Open(t.Context(), dgst, 0); err == nil {
				rc.Close()
				t.Error("Open succeeded")
			}
			if err := s.Delete(t.Context(), dgst); err == nil {
				t.Error("Delete succeeded")
			}
		})
	}
	checkEmpty(t, s)
}

func testReaderError(t *testing.T, s storage.BlobStore) {
	b := newBlob(10, 3<<20)
	boom := errors.New("boom")
	for _, size := range []int64{int64(len(b.data)), -1} {
		r := io.MultiReader(bytes.NewReader(b.data[:1<<20]), iotest.ErrReader(boom))
		if _, err := s.Put(t.Context(), b.dgst, size, r); !errors.Is(err, boom) {
			t.Errorf("Put(size %d) error = %v, want the reader's error", size, err)
		}
		checkAbsent(t, s, b.dgst)
		checkEmpty(t, s)
	}
}

func testIdempotentPut(t *testing.T, s storage.BlobStore) {
	b := newBlob(11, 10000)
	put(t, s, b)
	for _, size := range []int64{int64(len(b.data)), -1} {
		n, err := s.Put(t.Context(), b.dgst, size, bytes.NewReader(b.data))
		if err != nil || n != int64(len(b.data)) {
			t.Fatalf("second Put(size %d) = %d, %v", size, n, err)
		}
	}
	checkContent(t, s, b)
	if got := walk(t, s); len(got) != 1 {
		t.Errorf("Walk listed %d blobs, want 1", len(got))
	}
}

func testDelete(t *testing.T, s storage.BlobStore, readsFallBack bool) {
	a, b := newBlob(12, 100), newBlob(13, 100)
	put(t, s, a)
	put(t, s, b)
	if err := s.Delete(t.Context(), a.dgst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(t.Context(), a.dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second Delete error = %v, want ErrNotFound", err)
	}
	if got := walk(t, s); len(got) != 1 || got[b.dgst] != 100 {
		t.Errorf("Walk = %v, want only %s", got, b.dgst)
	}
	if readsFallBack {
		checkWholeOrAbsent(t, s, a)
	} else {
		checkAbsent(t, s, a.dgst)
	}
	checkContent(t, s, b)
	put(t, s, a) // a deleted digest can come back
	checkContent(t, s, a)
}

func testWalk(t *testing.T, s storage.BlobStore) {
	want := make(map[digest.Digest]int64)
	for i := range 20 {
		b := newBlob(uint64(100+i), 1+i*37)
		put(t, s, b)
		want[b.dgst] = int64(len(b.data))
	}
	b := newBlobAlg(200, 50, digest.SHA512)
	put(t, s, b)
	want[b.dgst] = 50
	got := walk(t, s)
	if len(got) != len(want) {
		t.Fatalf("Walk listed %d blobs, want %d", len(got), len(want))
	}
	for dgst, size := range want {
		if got[dgst] != size {
			t.Errorf("Walk: %s has size %d, want %d", dgst, got[dgst], size)
		}
	}
}

func testWalkStops(t *testing.T, s storage.BlobStore) {
	for i := range 5 {
		put(t, s, newBlob(uint64(300+i), 10))
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Walk(t.Context(), func(digest.Digest, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk = %v after %d calls, want fn's error after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Walk(ctx, func(digest.Digest, int64) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Walk(cancelled) = %v, want context.Canceled", err)
	}
}

func testConcurrentSameDigest(t *testing.T, s storage.BlobStore) {
	b := newBlob(14, 2<<20)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			size := int64(len(b.data))
			if i%2 == 1 {
				size = -1
			}
			_, errs[i] = s.Put(t.Context(), b.dgst, size, bytes.NewReader(b.data))
		})
	}
	// Readers racing the writers see the blob absent or complete.
	for range 20 {
		if rc, err := s.Open(t.Context(), b.dgst, 0); err == nil {
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Errorf("reading during Puts: %v", err)
			} else if !bytes.Equal(got, b.data) {
				t.Errorf("read a partial blob during Puts: %d bytes", len(got))
			}
		} else if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open during Puts: %v", err)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put %d: %v", i, err)
		}
	}
	checkContent(t, s, b)
	if got := walk(t, s); len(got) != 1 {
		t.Errorf("Walk listed %d blobs, want 1", len(got))
	}
}

func testConcurrentDistinct(t *testing.T, s storage.BlobStore) {
	blobs := make([]blob, 16)
	for i := range blobs {
		blobs[i] = newBlob(uint64(400+i), 50000+i)
	}
	var wg sync.WaitGroup
	for _, b := range blobs {
		wg.Go(func() {
			if _, err := s.Put(t.Context(), b.dgst, int64(len(b.data)), bytes.NewReader(b.data)); err != nil {
				t.Errorf("Put(%s): %v", b.dgst, err)
			}
		})
	}
	wg.Wait()
	for _, b := range blobs {
		checkContent(t, s, b)
	}
	if got := walk(t, s); len(got) != len(blobs) {
		t.Errorf("Walk listed %d blobs, want %d", len(got), len(blobs))
	}
}

func testLarge(t *testing.T, s storage.BlobStore) {
	b := newBlob(15, largeSize)
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"known size", largeSize},
		{"unknown size", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.Put(t.Context(), b.dgst, tc.size, bytes.NewReader(b.data))
			if err != nil {
				t.Fatal(err)
			}
			if n != largeSize {
				t.Fatalf("Put = %d bytes, want %d", n, largeSize)
			}
			checkContent(t, s, b)
			const off = 20<<20 + 3
			if got := read(t, s, b.dgst, off); !bytes.Equal(got, b.data[off:]) {
				t.Fatalf("read from %d differs", off)
			}
			if err := storage.Verify(t.Context(), s, b.dgst); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := s.Delete(t.Context(), b.dgst); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// cancellingReader serves data and cancels the Put's context once it has
// served after bytes, as a client hanging up mid-upload would.
type cancellingReader struct {
	r      io.Reader
	n      int
	after  int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.n >= c.after {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func testCancelledPut(t *testing.T, s storage.BlobStore) {
	b := newBlob(16, 20<<20)
	for _, tc := range []struct {
		name  string
		size  int64
		after int
	}{
		{"before start", int64(len(b.data)), 0},
		{"known size", int64(len(b.data)), 1 << 20},
		{"unknown size", -1, 1 << 20},
		{"known size after a part", int64(len(b.data)), 17 << 20},
		{"unknown size after a part", -1, 17 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := &cancellingReader{r: bytes.NewReader(b.data), after: tc.after, cancel: cancel}
			if _, err := s.Put(ctx, b.dgst, tc.size, r); !errors.Is(err, context.Canceled) {
				t.Fatalf("Put error = %v, want context.Canceled", err)
			}
			checkAbsent(t, s, b.dgst)
			checkEmpty(t, s)
		})
	}
}

func testVerify(t *testing.T, s storage.BlobStore) {
	b := newBlob(17, 100000)
	put(t, s, b)
	if err := storage.Verify(t.Context(), s, b.dgst); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	rc, err := s.Open(t.Context(), b.dgst, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, storage.VerifyingReader(rc, b.dgst, int64(len(b.data)))); err != nil {
		t.Errorf("VerifyingReader over a good blob: %v", err)
	}
}

func testIngestFile(t *testing.T, s storage.BlobStore) {
	fi, ok := s.(storage.FileIngester)
	if !ok {
		t.Skip("store does not implement FileIngester")
	}
	dir := t.TempDir()
	write := func(b blob) string {
		t.Helper()
		f, err := os.CreateTemp(dir, "ingest-*")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b.data); err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	exists := func(path string) bool {
		_, err := os.Stat(path)
		return err == nil
	}

	b := newBlob(18, 1<<20+7)
	path := write(b)
	if err := fi.IngestFile(t.Context(), b.dgst, int64(len(b.data)), path); err != nil {
		t.Fatalf("IngestFile: %v", err)
	}
	checkContent(t, s, b)
	if exists(path) {
		t.Error("IngestFile left the source file in place")
	}

	// Ingesting a digest already stored succeeds and consumes the file.
	path = write(b)
	if err := fi.IngestFile(t.Context(), b.dgst, -1, path); err != nil {
		t.Fatalf("IngestFile(stored digest): %v", err)
	}
	if exists(path) {
		t.Error("IngestFile(stored digest) left the source file in place")
	}

	// On failure the caller keeps the file and nothing is stored.
	c := newBlob(19, 1000)
	path = write(c)
	if err := fi.IngestFile(t.Context(), c.dgst, 999, path); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Errorf("IngestFile(wrong size) error = %v, want ErrSizeMismatch", err)
	}
	if !exists(path) {
		t.Error("failed IngestFile removed the caller's file")
	}
	checkAbsent(t, s, c.dgst)
	if err := fi.IngestFile(t.Context(), c.dgst, 1000, filepath.Join(dir, "missing")); err == nil {
		t.Error("IngestFile(missing file) succeeded")
	}
	checkAbsent(t, s, c.dgst)

	// A large file crosses the multipart threshold of object stores.
	l := newBlob(20, largeSize)
	path = write(l)
	if err := fi.IngestFile(t.Context(), l.dgst, largeSize, path); err != nil {
		t.Fatalf("IngestFile(large): %v", err)
	}
	checkContent(t, s, l)
	if got := walk(t, s); len(got) != 2 {
		t.Errorf("Walk listed %d blobs, want 2", len(got))
	}
}

func testStamp(t *testing.T, s storage.BlobStore) {
	st, ok := s.(storage.Stamper)
	if !ok {
		t.Skip("store does not implement Stamper")
	}
	b := newBlob(21, 1000)
	if _, err := st.Stamp(t.Context(), b.dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stamp(missing) error = %v, want ErrNotFound", err)
	}
	if _, err := st.Stamp(t.Context(), "sha256:nope"); err == nil {
		t.Error("Stamp(invalid digest) succeeded")
	}
	put(t, s, b)
	first, err := st.Stamp(t.Context(), b.dgst)
	if err != nil || first == "" {
		t.Fatalf("Stamp = %q, %v", first, err)
	}
	// Reading, re-putting the same bytes and storing other blobs leave the
	// stored copy as it was, so its stamp too.
	read(t, s, b.dgst, 0)
	put(t, s, b)
	put(t, s, newBlob(22, 1000))
	if again, err := st.Stamp(t.Context(), b.dgst); err != nil || again != first {
		t.Errorf("Stamp changed from %q to %q (%v) with the copy untouched", first, again, err)
	}
	if err := s.Delete(t.Context(), b.dgst); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stamp(t.Context(), b.dgst); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stamp(deleted) error = %v, want ErrNotFound", err)
	}
}

// putVouched returns the store's VouchedPutter, or skips the test.
func putVouched(t *testing.T, s storage.BlobStore) storage.VouchedPutter {
	t.Helper()
	vp, ok := s.(storage.VouchedPutter)
	if !ok {
		t.Skip("store does not implement VouchedPutter")
	}
	return vp
}

// testPutVouched: a vouched Put stores what it is given under the digest,
// whether the size is known or not, and is a Put like any other to the
// readers.
func testPutVouched(t *testing.T, s storage.BlobStore) {
	vp := putVouched(t, s)
	blobs := []blob{newBlob(23, 0), newBlob(23, 1), newBlob(23, 100), newBlob(23, 1<<20+1),
		newBlob(23, 9<<20+3), newBlobAlg(23, 5000, digest.SHA512)}
	want := make(map[digest.Digest]int64)
	for i, b := range blobs {
		size := int64(len(b.data))
		if i%2 == 1 {
			size = -1
		}
		n, err := vp.PutVouched(t.Context(), b.dgst, size, iotest.HalfReader(bytes.NewReader(b.data)))
		if err != nil || n != int64(len(b.data)) {
			t.Fatalf("PutVouched(%d bytes, size %d) = %d, %v", len(b.data), size, n, err)
		}
		checkContent(t, s, b)
		if err := storage.Verify(t.Context(), s, b.dgst); err != nil {
			t.Errorf("Verify after PutVouched: %v", err)
		}
		want[b.dgst] = int64(len(b.data))
	}
	if got := walk(t, s); len(got) != len(want) {
		t.Errorf("Walk listed %d blobs, want %d", len(got), len(want))
	}

	// Concurrent vouched copies of one blob all succeed, and readers see
	// it absent or whole.
	c := newBlob(24, 2<<20)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = vp.PutVouched(t.Context(), c.dgst, int64(len(c.data)), bytes.NewReader(c.data))
		})
	}
	for range 10 {
		if rc, err := s.Open(t.Context(), c.dgst, 0); err == nil {
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, c.data) {
				t.Errorf("read during vouched Puts: %d bytes, %v", len(got), err)
			}
		} else if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open during vouched Puts: %v", err)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("PutVouched %d: %v", i, err)
		}
	}
	checkContent(t, s, c)
}

// testPutVouchedStored: a vouched Put of a digest already stored checks
// the size of the bytes and leaves the stored copy as it was.
func testPutVouchedStored(t *testing.T, s storage.BlobStore) {
	vp := putVouched(t, s)
	b := newBlob(25, 30000)
	put(t, s, b)
	for _, size := range []int64{int64(len(b.data)), -1} {
		n, err := vp.PutVouched(t.Context(), b.dgst, size, bytes.NewReader(b.data))
		if err != nil || n != int64(len(b.data)) {
			t.Fatalf("PutVouched(stored, size %d) = %d, %v", size, n, err)
		}
	}
	for _, tc := range []struct {
		name string
		size int64
		data []byte
	}{
		{"short", int64(len(b.data)), b.data[:len(b.data)-1]},
		{"long", int64(len(b.data)) - 1, b.data},
	} {
		if _, err := vp.PutVouched(t.Context(), b.dgst, tc.size, bytes.NewReader(tc.data)); !errors.Is(err, storage.ErrSizeMismatch) {
			t.Errorf("PutVouched(stored, %s) error = %v, want ErrSizeMismatch", tc.name, err)
		}
	}
	checkContent(t, s, b)

	// A blob first stored vouched takes a plain Put like any other.
	c := newBlob(26, 1000)
	if _, err := vp.PutVouched(t.Context(), c.dgst, int64(len(c.data)), bytes.NewReader(c.data)); err != nil {
		t.Fatal(err)
	}
	put(t, s, c)
	checkContent(t, s, c)
	if got := walk(t, s); len(got) != 2 {
		t.Errorf("Walk listed %d blobs, want 2", len(got))
	}
}

// testPutVouchedFails: a vouched Put that gets other than the promised
// size, whose source fails, or that is cancelled stores nothing.
func testPutVouchedFails(t *testing.T, s storage.BlobStore) {
	vp := putVouched(t, s)
	b := newBlob(27, 3<<20)
	size := int64(len(b.data))
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		size    int64
		r       func(cancel context.CancelFunc) io.Reader
		wantErr error
	}{
		{"short", size, func(context.CancelFunc) io.Reader { return bytes.NewReader(b.data[:size-1]) }, storage.ErrSizeMismatch},
		{"long", size - 1, func(context.CancelFunc) io.Reader { return bytes.NewReader(b.data) }, storage.ErrSizeMismatch},
		{"empty", size, func(context.CancelFunc) io.Reader { return bytes.NewReader(nil) }, storage.ErrSizeMismatch},
		{"reader error", size, func(context.CancelFunc) io.Reader {
			return io.MultiReader(bytes.NewReader(b.data[:1<<20]), iotest.ErrReader(boom))
		}, boom},
		{"reader error unknown size", -1, func(context.CancelFunc) io.Reader {
			return io.MultiReader(bytes.NewReader(b.data[:1<<20]), iotest.ErrReader(boom))
		}, boom},
		{"cancelled", size, func(cancel context.CancelFunc) io.Reader {
			return &cancellingReader{r: bytes.NewReader(b.data), after: 1 << 20, cancel: cancel}
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			n, err := vp.PutVouched(ctx, b.dgst, tc.size, tc.r(cancel))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("PutVouched error = %v, want %v", err, tc.wantErr)
			}
			if n != 0 {
				t.Errorf("failed PutVouched stored %d bytes", n)
			}
			checkAbsent(t, s, b.dgst)
			checkEmpty(t, s)
		})
	}
}
