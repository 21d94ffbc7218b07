package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

func TestBlobPrefixIsPartOfContent(t *testing.T) {
	for _, tc := range []struct {
		name         string
		prefix, rest string
	}{
		{"no prefix", "", "hello"},
		{"prefix", "stamp", "hello"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlob([]byte(tc.prefix), []byte(tc.rest))
			whole := tc.prefix + tc.rest
			sum := sha256.Sum256([]byte(whole))
			if want := "sha256:" + hex.EncodeToString(sum[:]); b.digest != want {
				t.Errorf("digest %s, want %s", b.digest, want)
			}
			got, _ := io.ReadAll(b.reader())
			if string(got) != whole || b.size() != int64(len(whole)) {
				t.Errorf("reader gives %q (size %d), want %q", got, b.size(), whole)
			}
		})
	}
}

func TestForEach(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		n        int
		parallel int
		failAt   int // -1: never
		wantErr  error
	}{
		{"all run", 100, 4, -1, nil},
		{"more workers than work", 2, 8, -1, nil},
		{"none", 0, 4, -1, nil},
		{"first error wins", 100, 4, 10, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			err := forEach(context.Background(), tc.n, tc.parallel, func(ctx context.Context, i int) error {
				calls.Add(1)
				if i == tc.failAt {
					return boom
				}
				return nil
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && calls.Load() != int64(tc.n) {
				t.Errorf("%d calls, want %d", calls.Load(), tc.n)
			}
		})
	}
}
