package storage_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/storagetest"
)

func newQuota(t *testing.T, limitFile string) *storage.Quota {
	t.Helper()
	fs, _ := newFS(t)
	q, err := storage.NewQuota(context.Background(), storage.QuotaConfig{Store: fs, LimitFile: limitFile, ReloadInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestQuotaSuite: a store under a quota (here a generous one) is still a
// BlobStore in every respect.
func TestQuotaSuite(t *testing.T) {
	storagetest.Run(t, storagetest.Config{NewStore: func(t *testing.T) storage.BlobStore {
		limit := filepath.Join(t.TempDir(), "quota")
		if err := os.WriteFile(limit, []byte("1GiB"), 0o644); err != nil {
			t.Fatal(err)
		}
		return newQuota(t, limit)
	}})
}

func TestQuota(t *testing.T) {
	ctx := context.Background()
	limit := filepath.Join(t.TempDir(), "quota")
	q := newQuota(t, limit)
	blob := func(n int, b byte) ([]byte, digest.Digest) {
		data := bytes.Repeat([]byte{b}, n)
		return data, digest.FromBytes(data)
	}
	put := func(data []byte, d digest.Digest, size int64) error {
		_, err := q.Put(ctx, d, size, bytes.NewReader(data))
		return err
	}
	a, da := blob(600, 'a')
	if err := put(a, da, 600); err != nil {
		t.Fatalf("no quota file: %v", err)
	}
	if q.Full() {
		t.Error("full without a limit")
	}
	if err := os.WriteFile(limit, []byte("1000"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		n       int
		fill    byte
		size    int64 // -1: unknown
		wantErr bool
	}{
		{"fits", 300, 'b', 300, false},
		{"too big, size known", 200, 'c', 200, true},
		{"too big, size unknown", 200, 'd', -1, true},
		{"fits exactly, size unknown", 100, 'e', -1, false},
	}
	for _, tt := range tests {
		data, d := blob(tt.n, tt.fill)
		err := put(data, d, tt.size)
		if tt.wantErr != (err != nil) {
			t.Fatalf("%s: err = %v", tt.name, err)
		}
		if err != nil {
			if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("%s: %v is not ErrNoSpace/ENOSPC", tt.name, err)
			}
			if _, err := q.Stat(ctx, d); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s: a refused blob is stored (%v)", tt.name, err)
			}
		}
	}
	if used, lim := q.Used(); used != 1000 || lim != 1000 {
		t.Errorf("used %d of %d, want 1000 of 1000", used, lim)
	}
	if !q.Full() {
		t.Error("not full at the limit")
	}
	// A blob already held costs nothing more.
	if err := put(a, da, 600); err != nil {
		t.Errorf("putting a held blob on a full store: %v", err)
	}
	// Deleting frees space; lifting the quota lifts the limit.
	if err := q.Delete(ctx, da); err != nil {
		t.Fatal(err)
	}
	if used, _ := q.Used(); used != 400 {
		t.Errorf("used %d after deleting 600 of 1000, want 400", used)
	}
	big, dbig := blob(5000, 'f')
	if err := put(big, dbig, 5000); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("5000 bytes under a 1000-byte quota: %v", err)
	}
	if err := os.Remove(limit); err != nil {
		t.Fatal(err)
	}
	if err := put(big, dbig, 5000); err != nil {
		t.Fatalf("after the quota file was removed: %v", err)
	}
	if q.Full() {
		t.Error("full without a limit")
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"1048576", 1 << 20, false},
		{"64MiB", 64 << 20, false},
		{"64MB", 64e6, false},
		{" 1GiB\n", 1 << 30, false},
		{"10B", 10, false},
		{"-1", 0, true},
		{"lots", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := storage.ParseBytes(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v", tt.in, got, err)
		}
	}
}
