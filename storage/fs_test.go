package storage_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/storagetest"
)

// newFS returns an FS in a fresh directory that fails the test if a
// temporary file outlives it.
func newFS(t *testing.T) (*storage.FS, string) {
	t.Helper()
	root := t.TempDir()
	s, err := storage.NewFS(storage.FSConfig{Root: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, err := os.ReadDir(filepath.Join(root, "tmp"))
		if err != nil {
			t.Errorf("reading tmp: %v", err)
		}
		for _, e := range entries {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	})
	return s, root
}

func TestFS(t *testing.T) {
	storagetest.Run(t, storagetest.Config{NewStore: func(t *testing.T) storage.BlobStore {
		s, _ := newFS(t)
		return s
	}})
}

func TestFSLayout(t *testing.T) {
	s, root := newFS(t)
	data := []byte("layout")
	dgst := digest.FromBytes(data)
	if _, err := s.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	enc := dgst.Encoded()
	p := filepath.Join(root, "blobs", "sha256", enc[:2], enc)
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadFile(%s) = %q, %v; want %q", p, got, err, data)
	}
	// Stray files in the tree are not blobs.
	for _, stray := range []string{
		filepath.Join(root, "blobs", "README"),
		filepath.Join(root, "blobs", "sha256", "README"),
		filepath.Join(root, "blobs", "sha256", enc[:2], "not-a-digest"),
		filepath.Join(root, "blobs", "md5", "ab", "ab"),
	} {
		if err := os.MkdirAll(filepath.Dir(stray), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stray, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	err = s.Walk(t.Context(), func(d digest.Digest, size int64) error {
		n++
		if d != dgst || size != int64(len(data)) {
			t.Errorf("Walk listed %s (%d bytes)", d, size)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Errorf("Walk = %v after %d blobs, want 1 blob", err, n)
	}
}

func TestFSRemovesStaleTemp(t *testing.T) {
	root := t.TempDir()
	if _, err := storage.NewFS(storage.FSConfig{Root: root}); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "tmp", "put-123")
	if err := os.WriteFile(stale, []byte("half a blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.NewFS(storage.FSConfig{Root: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file survived NewFS: %v", err)
	}
}

func TestFSVerifyCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(p string) error
		wantErr error
	}{
		{"flipped byte", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{'X'}, 10)
			return err
		}, storage.ErrDigestMismatch},
		{"truncated", func(p string) error { return os.Truncate(p, 100) }, storage.ErrDigestMismatch},
		{"removed", os.Remove, storage.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newFS(t)
			data := bytes.Repeat([]byte("0123456789"), 1000)
			dgst := digest.FromBytes(data)
			if _, err := s.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			stamp, err := s.Stamp(t.Context(), dgst)
			if err != nil {
				t.Fatal(err)
			}
			// File times have the resolution of a clock tick; a write in
			// the same tick as the stamp would keep it (see FS.Stamp).
			time.Sleep(20 * time.Millisecond)
			enc := dgst.Encoded()
			if err := tc.corrupt(filepath.Join(root, "blobs", "sha256", enc[:2], enc)); err != nil {
				t.Fatal(err)
			}
			if err := storage.Verify(t.Context(), s, dgst); !errors.Is(err, tc.wantErr) {
				t.Errorf("Verify = %v, want %v", err, tc.wantErr)
			}
			if got, err := s.Stamp(t.Context(), dgst); err == nil && got == stamp {
				t.Errorf("Stamp unchanged (%q) after the file was damaged", got)
			}
		})
	}
}

// TestFSIngestAcrossFilesystems ingests a file from a tmpfs, where a rename
// into the store fails with EXDEV and the store must copy instead.
func TestFSIngestAcrossFilesystems(t *testing.T) {
	s, root := newFS(t)
	const shm = "/dev/shm"
	if !otherDevice(root, shm) {
		t.Skipf("%s is missing or on the same filesystem as %s", shm, root)
	}
	dir, err := os.MkdirTemp(shm, "storage-test-*")
	if err != nil {
		t.Skipf("cannot write to %s: %v", shm, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := bytes.Repeat([]byte("layer"), 100000)
	dgst := digest.FromBytes(data)
	path := filepath.Join(dir, "upload")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.IngestFile(t.Context(), dgst, int64(len(data)), path); err != nil {
		t.Fatalf("IngestFile: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source file still there: %v", err)
	}
	if err := storage.Verify(t.Context(), s, dgst); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func otherDevice(a, b string) bool {
	var sa, sb syscall.Stat_t
	if syscall.Stat(a, &sa) != nil || syscall.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev != sb.Dev
}

func TestFSOpenIsFile(t *testing.T) {
	s, _ := newFS(t)
	data := []byte("serve me with sendfile")
	dgst := digest.FromBytes(data)
	if _, err := s.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Open(t.Context(), dgst, 6)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.(*os.File); !ok {
		t.Fatalf("Open returned %T, want *os.File", rc)
	}
	got, _ := io.ReadAll(rc)
	if string(got) != "me with sendfile" {
		t.Errorf("read %q", got)
	}
}

func BenchmarkFSPut(b *testing.B) {
	s, err := storage.NewFS(storage.FSConfig{Root: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("benchmark"), 1<<20/9*4) // about 4 MiB
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		// A fresh digest each time, or Put would only hash.
		data[0] = byte(i)
		data[1] = byte(i >> 8)
		data[2] = byte(i >> 16)
		dgst := digest.FromBytes(data)
		if _, err := s.Put(b.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFSOpen(b *testing.B) {
	s, err := storage.NewFS(storage.FSConfig{Root: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("benchmark"), 1<<20/9*4)
	dgst := digest.FromBytes(data)
	if _, err := s.Put(b.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rc, err := s.Open(b.Context(), dgst, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, storage.VerifyingReader(rc, dgst, int64(len(data)))); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}
