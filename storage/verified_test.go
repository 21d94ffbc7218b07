package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestVerified(t *testing.T) {
	ctx := context.Background()
	fs, err := NewFS(FSConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	content := "verified content"
	dgst := digest.FromString(content)
	if _, err := fs.Put(ctx, dgst, int64(len(content)), strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	v := NewVerified()
	steps := []struct {
		name    string
		do      func()
		trusted bool
		check   error
	}{
		{"unknown copy is not trusted", func() {}, false, nil},
		{"checked copy is trusted", func() {}, true, nil},
		{"changed copy is not trusted and fails its check", func() {
			time.Sleep(20 * time.Millisecond) // file times move in clock ticks
			var path string
			filepath.Walk(fs.blobs, func(p string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() && strings.HasSuffix(p, dgst.Encoded()) {
					path = p
				}
				return nil
			})
			if err := os.WriteFile(path, []byte("VERIFIED content"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false, ErrDigestMismatch},
	}
	for _, st := range steps {
		st.do()
		trusted, err := v.Trusted(ctx, fs, dgst)
		if err != nil || trusted != st.trusted {
			t.Fatalf("%s: Trusted = %v, %v", st.name, trusted, err)
		}
		if err := v.Check(ctx, fs, dgst); !errors.Is(err, st.check) {
			t.Fatalf("%s: Check = %v, want %v", st.name, err, st.check)
		}
	}
	if _, err := v.Trusted(ctx, fs, digest.FromString("absent")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Trusted of an absent blob: %v", err)
	}
}
