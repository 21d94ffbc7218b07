package storage_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
)

// testLogger sends a store's logs to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestVerifyingReader(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	dgst := digest.FromBytes(data)
	for _, tc := range []struct {
		name     string
		data     []byte
		dgst     digest.Digest
		size     int64
		wantErr  error // nil: reads to a clean io.EOF
		wantRead int   // bytes handed on before the error
	}{
		{"match", data, dgst, int64(len(data)), nil, len(data)},
		{"match unknown size", data, dgst, -1, nil, len(data)},
		{"match sha512", data, digest.SHA512.FromBytes(data), int64(len(data)), nil, len(data)},
		{"corrupt", append([]byte("T"), data[1:]...), dgst, int64(len(data)), storage.ErrDigestMismatch, len(data)},
		{"short", data[:10], dgst, int64(len(data)), storage.ErrSizeMismatch, 10},
		{"short unknown size", data[:10], dgst, -1, storage.ErrDigestMismatch, 10},
		{"long", append(data, 'x'), dgst, int64(len(data)), storage.ErrSizeMismatch, len(data)},
		{"empty", nil, digest.FromBytes(nil), 0, nil, 0},
		{"invalid digest", data, "sha256", int64(len(data)), digest.ErrDigestInvalidFormat, 0},
		{"short digest", data, "sha256:abc", int64(len(data)), digest.ErrDigestInvalidLength, 0},
		{"unsupported digest", data, "md5:5d41402abc4b2a76b9719d911017c592", -1, digest.ErrDigestUnsupported, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A one-byte reader makes the size check meet the end of the
			// stream at every possible boundary.
			for _, r := range []io.Reader{bytes.NewReader(tc.data), iotest.OneByteReader(bytes.NewReader(tc.data))} {
				got, err := io.ReadAll(storage.VerifyingReader(r, tc.dgst, tc.size))
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Errorf("error = %v, want %v", err, tc.wantErr)
				}
				if len(got) != tc.wantRead {
					t.Errorf("handed on %d bytes, want %d", len(got), tc.wantRead)
				}
			}
		})
	}
}

func TestVerifyingReaderSticky(t *testing.T) {
	data := []byte("abc")
	r := storage.VerifyingReader(bytes.NewReader(data), digest.FromString("xyz"), 3)
	if _, err := io.ReadAll(r); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("ReadAll = %v", err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Errorf("Read after failure = %v, want the same failure", err)
	}
}
