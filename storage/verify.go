package storage

import (
	"context"
	// Link the hash functions go-digest names, so that Digest.Validate and
	// Algorithm.Hash accept sha256 and sha512 digests.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// VerifyingReader returns a reader of r that fails instead of returning
// io.EOF when the bytes read do not hash to dgst, and fails as soon as more
// than size bytes arrive (size -1 means unknown). The errors wrap
// ErrDigestMismatch or ErrSizeMismatch. An invalid or unsupported digest
// makes the first Read fail.
//
// The check happens at the end of the stream: every byte before it has
// already been handed to the caller. See the package Caveats.
func VerifyingReader(r io.Reader, dgst digest.Digest, size int64) io.Reader {
	if err := validDigest(dgst); err != nil {
		return &verifyingReader{err: err}
	}
	return &verifyingReader{r: r, dgst: dgst, size: size, h: dgst.Algorithm().Hash()}
}

type verifyingReader struct {
	r    io.Reader
	dgst digest.Digest
	size int64
	h    hash.Hash
	n    int64
	err  error // sticky: once failed or finished, every Read returns it
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		// Hand on none of the excess: the caller may be forwarding bytes.
		v.err = check(v.dgst, v.size, v.h, v.n)
		return n - int(v.n-v.size), v.err
	}
	if err == io.EOF {
		v.err = check(v.dgst, v.size, v.h, v.n)
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// Verify reads the whole of the blob dgst from store and checks that it
// hashes to dgst and has the size the store reports. It returns ErrNotFound
// when the blob is absent and a wrapped ErrDigestMismatch or ErrSizeMismatch
// when the stored bytes are corrupt.
func Verify(ctx context.Context, store BlobStore, dgst digest.Digest) error {
	size, err := store.Stat(ctx, dgst)
	if err != nil {
		return err
	}
	rc, err := store.Open(ctx, dgst, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, VerifyingReader(contextReader{ctx, rc}, dgst, size)); err != nil {
		return fmt.Errorf("storage: verify %s: %w", dgst, err)
	}
	return nil
}

// validDigest reports whether dgst is well formed and names an algorithm
// this package can compute. Besides rejecting garbage, it is what keeps a
// digest from the network safe to use in a file path or object key.
func validDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("storage: digest %q: %w", dgst, err)
	}
	return nil
}

// check compares what was hashed and counted with what the caller promised;
// with h nil (bytes the caller vouched for), only the size.
func check(dgst digest.Digest, size int64, h hash.Hash, n int64) error {
	switch {
	case size >= 0 && n > size:
		return fmt.Errorf("%w: %s: got more than %d bytes", ErrSizeMismatch, dgst, size)
	case size >= 0 && n < size:
		return fmt.Errorf("%w: %s: got %d bytes, want %d", ErrSizeMismatch, dgst, n, size)
	}
	if h == nil {
		return nil
	}
	if got := digest.NewDigest(dgst.Algorithm(), h); got != dgst {
		return fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, dgst)
	}
	return nil
}

// contextReader stops a copy at the next Read once ctx is done, so that a
// cancelled Put does not keep writing a source that never blocks.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// hashingReader hashes and counts what passes through it and refuses to
// read past limit+1 bytes, which is enough to tell that a source is longer
// than promised without draining an unbounded one.
type hashingReader struct {
	r     io.Reader
	h     hash.Hash // nil: count only (vouched bytes)
	n     int64
	limit int64 // -1: no limit
	eof   bool  // the source ended
	err   error // the source failed with this error
}

func newHashingReader(ctx context.Context, r io.Reader, dgst digest.Digest, size int64) *hashingReader {
	return &hashingReader{r: contextReader{ctx, r}, h: dgst.Algorithm().Hash(), limit: size}
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	if hr.limit >= 0 {
		if hr.n > hr.limit {
			return 0, io.EOF
		}
		if rest := hr.limit + 1 - hr.n; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := hr.r.Read(p)
	if hr.h != nil {
		hr.h.Write(p[:n])
	}
	hr.n += int64(n)
	switch {
	case err == io.EOF:
		hr.eof = true
	case err != nil:
		hr.err = err
	}
	return n, err
}

// check reports whether the source had exactly the promised bytes.
func (hr *hashingReader) check(dgst digest.Digest) error {
	return check(dgst, hr.limit, hr.h, hr.n)
}
