package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
)

// TestFSPutVouched: FS does not hash vouched bytes (the suite checks the
// rest of PutVouched's contract): bytes that do not match the digest are
// the caller's broken promise, stored as given.
func TestFSPutVouched(t *testing.T) {
	s, _ := newFS(t)
	dgst := digest.FromBytes(bytes.Repeat([]byte("vouched "), 1000))
	other := bytes.Repeat([]byte("other!! "), 1000)
	if _, err := s.PutVouched(t.Context(), dgst, int64(len(other)), bytes.NewReader(other)); err != nil {
		t.Fatalf("PutVouched of unhashed bytes: %v", err)
	}
	if got, err := os.ReadFile(blobPath(t, s, dgst)); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("the blob holds %d bytes (%v), want the %d given", len(got), err, len(other))
	}
}

// TestQuotaPutVouched: the quota counts vouched copies like any other.
func TestQuotaPutVouched(t *testing.T) {
	limit := filepath.Join(t.TempDir(), "quota")
	if err := os.WriteFile(limit, []byte("1000"), 0o644); err != nil {
		t.Fatal(err)
	}
	q := newQuota(t, limit)
	small := bytes.Repeat([]byte{'s'}, 600)
	if _, err := q.PutVouched(t.Context(), digest.FromBytes(small), 600, bytes.NewReader(small)); err != nil {
		t.Fatalf("PutVouched within the quota: %v", err)
	}
	big := bytes.Repeat([]byte{'b'}, 600)
	if _, err := q.PutVouched(t.Context(), digest.FromBytes(big), 600, bytes.NewReader(big)); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("PutVouched beyond the quota = %v, want ErrNoSpace", err)
	}
}

// TestFSPutSizes writes blobs through Put and PutVouched around the sizes
// the write path cares about (its 256 KiB copy buffer, its 8 MiB
// write-behind steps), with their size given and unknown, and reads them
// back byte for byte with their exact length.
func TestFSPutSizes(t *testing.T) {
	s, _ := newFS(t)
	const kib, mib = 1 << 10, 1 << 20
	sizes := []int{0, 1, 4*kib + 1, 256*kib - 1, 256 * kib, 256*kib + 1, 3*mib + 7,
		8*mib - 1, 8 * mib, 8*mib + 1, 17*mib + 3}
	puts := []struct {
		name string
		put  func(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error)
	}{
		{"Put", s.Put},
		{"PutVouched", s.PutVouched},
	}
	for i, size := range sizes {
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(i), uint64(size)))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		dgst := digest.FromBytes(data)
		for _, p := range puts {
			for _, known := range []bool{true, false} {
				declared := int64(size)
				if !known {
					declared = -1
				}
				// A reader that returns few bytes at a time, never a
				// multiple of a block, makes the blocks fill over many reads.
				r := &trickleReader{r: bytes.NewReader(data), max: 3000}
				if size > 4*mib {
					r.max = 100_003
				}
				n, err := p.put(t.Context(), dgst, declared, r)
				if err != nil || n != int64(size) {
					t.Fatalf("%s(size %d, declared %d) = %d, %v", p.name, size, declared, n, err)
				}
				got, err := os.ReadFile(blobPath(t, s, dgst))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s, size %d: stored %d bytes, want the %d written", p.name, size, len(got), len(data))
				}
				if err := s.Delete(t.Context(), dgst); err != nil {
					t.Fatal(err)
				}
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
