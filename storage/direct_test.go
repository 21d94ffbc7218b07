package storage_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/storagetest"
)

// uncachedFS is an FS whose Put is its PutUncached, so that the shared
// suite holds the direct-I/O path to every rule of a BlobStore.
type uncachedFS struct{ *storage.FS }

func (u uncachedFS) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	return u.PutUncached(ctx, dgst, size, r)
}

type uncachedQuota struct{ *storage.Quota }

func (u uncachedQuota) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	return u.PutUncached(ctx, dgst, size, r)
}

func TestFSUncached(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.BlobStore {
		s, _ := newFS(t)
		return uncachedFS{s}
	})
}

// TestFSUncachedTmpfs: on a filesystem without direct I/O (tmpfs), the
// uncached Put falls back to the page cache and keeps every rule.
func TestFSUncachedTmpfs(t *testing.T) {
	const shm = "/dev/shm"
	if fi, err := os.Stat(shm); err != nil || !fi.IsDir() {
		t.Skipf("no %s here: %v", shm, err)
	}
	storagetest.Run(t, func(t *testing.T) storage.BlobStore {
		root, err := os.MkdirTemp(shm, "georeg-storage-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(root) })
		s, err := storage.NewFS(storage.FSConfig{Root: root, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return uncachedFS{s}
	})
}

func TestQuotaUncachedSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.BlobStore {
		limit := filepath.Join(t.TempDir(), "quota")
		if err := os.WriteFile(limit, []byte("1GiB"), 0o644); err != nil {
			t.Fatal(err)
		}
		return uncachedQuota{newQuota(t, limit)}
	})
}

// TestFSUncachedSizes writes blobs around the sizes direct I/O cares
// about (its 4 KiB alignment, its 1 MiB blocks), with their size given and
// unknown, and reads them back byte for byte with their exact length.
func TestFSUncachedSizes(t *testing.T) {
	s, _ := newFS(t)
	const kib, mib = 1 << 10, 1 << 20
	sizes := []int{0, 1, 511, 4*kib - 1, 4 * kib, 4*kib + 1, 64 * kib, mib - 1, mib, mib + 1, 2*mib + 4*kib + 7, 3 * mib}
	for i, size := range sizes {
		for _, known := range []bool{true, false} {
			data := make([]byte, size)
			rng := rand.New(rand.NewPCG(uint64(i), uint64(size)))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			dgst := digest.FromBytes(data)
			declared := int64(size)
			if !known {
				declared = -1
			}
			// A reader that returns few bytes at a time makes the blocks
			// fill over many reads.
			r := &trickleReader{r: bytes.NewReader(data), max: 3000}
			n, err := s.PutUncached(t.Context(), dgst, declared, r)
			if err != nil || n != int64(size) {
				t.Fatalf("PutUncached(size %d, declared %d) = %d, %v", size, declared, n, err)
			}
			got, err := os.ReadFile(blobPath(t, s, dgst))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("size %d: stored %d bytes, want the %d written", size, len(got), len(data))
			}
			if err := s.Delete(t.Context(), dgst); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// blobPath finds the file of dgst through Open, which returns an *os.File.
func blobPath(t *testing.T, s *storage.FS, dgst digest.Digest) string {
	t.Helper()
	rc, err := s.Open(t.Context(), dgst, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, ok := rc.(*os.File)
	if !ok {
		t.Fatalf("Open returned %T, want *os.File", rc)
	}
	return f.Name()
}

type trickleReader struct {
	r   io.Reader
	max int
}

func (t *trickleReader) Read(p []byte) (int, error) {
	if len(p) > t.max {
		p = p[:t.max]
	}
	return t.r.Read(p)
}
