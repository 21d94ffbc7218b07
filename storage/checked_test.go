package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/storagetest"
)

func newChecked(t *testing.T) (*storage.Checked, *storage.FS) {
	t.Helper()
	fs, _ := newFS(t)
	return storage.NewChecked(storage.CheckedConfig{Store: fs, Logger: testLogger(t)}), fs
}

func TestCheckedSuite(t *testing.T) {
	storagetest.Run(t, storagetest.Config{NewStore: func(t *testing.T) storage.BlobStore {
		c, _ := newChecked(t)
		return c
	}})
}

// TestCheckedOverPlainStore: over a store with no optional abilities,
// Checked still ingests files and takes vouched copies (through Put).
func TestCheckedOverPlainStore(t *testing.T) {
	storagetest.Run(t, storagetest.Config{NewStore: func(t *testing.T) storage.BlobStore {
		fs, _ := newFS(t)
		return storage.NewChecked(storage.CheckedConfig{Store: plainStore{fs}})
	}})
}

// plainStore hides every optional ability of the store it wraps.
type plainStore struct{ s storage.BlobStore }

func (p plainStore) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	return p.s.Stat(ctx, dgst)
}

func (p plainStore) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, err := p.s.Open(ctx, dgst, offset)
	if err != nil {
		return nil, err
	}
	return struct{ io.ReadCloser }{rc}, nil
}

func (p plainStore) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	return p.s.Put(ctx, dgst, size, r)
}

func (p plainStore) Delete(ctx context.Context, dgst digest.Digest) error {
	return p.s.Delete(ctx, dgst)
}

func (p plainStore) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	return p.s.Walk(ctx, fn)
}

// rot changes the stored copy of dgst in place, as a failing disk would,
// late enough for its stamp to change.
func rot(t *testing.T, fs *storage.FS, dgst digest.Digest) {
	t.Helper()
	time.Sleep(20 * time.Millisecond) // file times move in clock ticks
	path := blobPath(t, fs, dgst)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckedTrust walks one copy through the states Checked tells apart.
func TestCheckedTrust(t *testing.T) {
	data := []byte("checked content")
	dgst := digest.FromBytes(data)
	put := func(c *storage.Checked) {
		if _, err := c.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name    string
		do      func(c *storage.Checked, fs *storage.FS)
		trusted bool  // before Check
		check   error // what Check returns
		present bool  // after Check
	}{
		{"absent", func(*storage.Checked, *storage.FS) {}, false, storage.ErrNotFound, false},
		{"written here", func(c *storage.Checked, _ *storage.FS) { put(c) }, true, nil, true},
		{"rotted", func(_ *storage.Checked, fs *storage.FS) { rot(t, fs, dgst) }, false, storage.ErrCorrupt, false},
		{"written again", func(c *storage.Checked, _ *storage.FS) { put(c) }, true, nil, true},
		{"rotted, then written over", func(c *storage.Checked, fs *storage.FS) {
			// The second write leaves the rotten copy as it was: its
			// bytes say nothing of it.
			rot(t, fs, dgst)
			put(c)
		}, false, storage.ErrDigestMismatch, false},
		{"written by another writer", func(_ *storage.Checked, fs *storage.FS) {
			if _, err := fs.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}, false, nil, true},
		{"hashed by Check", func(*storage.Checked, *storage.FS) {}, true, nil, true},
		{"distrusted", func(c *storage.Checked, _ *storage.FS) { c.Distrust(dgst) }, false, nil, true},
		{"deleted", func(c *storage.Checked, _ *storage.FS) {
			if err := c.Delete(t.Context(), dgst); err != nil {
				t.Fatal(err)
			}
		}, false, storage.ErrNotFound, false},
	}
	c, fs := newChecked(t)
	for _, st := range steps {
		st.do(c, fs)
		trusted, err := c.Trusted(t.Context(), dgst)
		if trusted != st.trusted || (err != nil) != errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: Trusted = %v, %v; want %v", st.name, trusted, err, st.trusted)
		}
		if err := c.Check(t.Context(), dgst); !errors.Is(err, st.check) {
			t.Fatalf("%s: Check = %v, want %v", st.name, err, st.check)
		}
		if _, err := fs.Stat(t.Context(), dgst); (err == nil) != st.present {
			t.Fatalf("%s: after Check, Stat = %v; want the copy present: %v", st.name, err, st.present)
		}
	}
}

// TestCheckedVouched: copies written vouched or ingested are trusted like
// those written by Put.
func TestCheckedVouched(t *testing.T) {
	data := []byte("vouched or ingested")
	dgst := digest.FromBytes(data)
	for _, tc := range []struct {
		name  string
		write func(c *storage.Checked) error
	}{
		{"PutVouched", func(c *storage.Checked) error {
			_, err := c.PutVouched(t.Context(), dgst, int64(len(data)), bytes.NewReader(data))
			return err
		}},
		{"IngestFile", func(c *storage.Checked) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return c.IngestFile(t.Context(), dgst, int64(len(data)), path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, fs := newChecked(t)
			if err := tc.write(c); err != nil {
				t.Fatal(err)
			}
			if trusted, err := c.Trusted(t.Context(), dgst); !trusted || err != nil {
				t.Fatalf("Trusted = %v, %v after a write", trusted, err)
			}
			rot(t, fs, dgst)
			if err := tc.write(c); err != nil {
				t.Fatal(err)
			}
			if trusted, err := c.Trusted(t.Context(), dgst); trusted || err != nil {
				t.Fatalf("rotten copy: Trusted = %v, %v after a write over it", trusted, err)
			}
		})
	}
}
