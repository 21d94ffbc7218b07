package storage

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// Errors returned by every BlobStore. Callers branch on them with errors.Is.
var (
	// ErrNotFound means the store holds no blob with that digest.
	ErrNotFound = errors.New("storage: blob not found")
	// ErrDigestMismatch means the bytes written did not hash to the digest
	// the caller promised; nothing was stored.
	ErrDigestMismatch = errors.New("storage: digest mismatch")
	// ErrSizeMismatch means the bytes written were not the size the caller
	// promised; nothing was stored.
	ErrSizeMismatch = errors.New("storage: size mismatch")
	// ErrInvalidOffset means a read started outside the blob.
	ErrInvalidOffset = errors.New("storage: offset outside blob")
	// ErrUnavailable means a write could not be made as durable as the store
	// promises (too few zones reachable to hold a majority of copies, or no
	// Raft quorum for metadata). Nothing was acknowledged; retry later.
	ErrUnavailable = errors.New("storage: not enough replicas available")
)

// BlobStore holds immutable, content-addressed blobs.
//
// Rules every implementation keeps:
//   - Put is atomic: a blob is either absent or complete and verified. It is
//     written to a temporary place, made durable (fsync or the object store's
//     own acknowledgement), checked against its digest and size, and only then
//     made visible under its digest. A failed or cancelled Put leaves nothing
//     visible and nothing behind.
//   - Putting a digest that is already present succeeds and leaves the
//     existing copy (content addressing makes them equal).
//   - Stat, Open, Put, Delete and Walk are safe for concurrent use, including
//     on the same digest.
//   - Open does not verify: callers that must never serve a corrupt byte
//     verify while streaming (see VerifyingReader) or call Verify.
type BlobStore interface {
	// Stat returns the size of the blob, or ErrNotFound.
	Stat(ctx context.Context, dgst digest.Digest) (int64, error)
	// Open returns a reader of the blob from offset to its end, or
	// ErrNotFound, or ErrInvalidOffset when offset > size.
	Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error)
	// Put stores the bytes of r under dgst. size is the expected length, or
	// -1 when unknown. It returns the number of bytes stored. It fails with
	// ErrDigestMismatch or ErrSizeMismatch (wrapped) and stores nothing when
	// the content does not match.
	Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error)
	// Delete removes the blob. Deleting an absent blob returns ErrNotFound.
	// A store that reads through to copies kept elsewhere (region.Blobs)
	// removes its own copy only, and may fetch it again on a later read.
	Delete(ctx context.Context, dgst digest.Digest) error
	// Walk calls fn for every blob in the store, in no particular order.
	// Returning an error from fn stops the walk and Walk returns it.
	Walk(ctx context.Context, fn func(dgst digest.Digest, size int64) error) error
}

// FileIngester is an optional ability of a BlobStore: taking ownership of a
// local file whose content the caller has already hashed to dgst, without
// copying it when the store can avoid it (a rename on the same filesystem).
// The store still makes the file durable before it becomes visible. On
// success the file at path is gone or owned by the store; on failure the
// caller still owns it.
type FileIngester interface {
	IngestFile(ctx context.Context, dgst digest.Digest, size int64, path string) error
}

// Stamper is an optional ability of a BlobStore: a cheap fingerprint of a
// stored blob's current bytes (for a file: inode, size, modification and
// change times; for an object: its ETag) that changes whenever the bytes may
// have changed. A reader that verified a blob remembers its stamp and
// verifies again only when the stamp changes.
type Stamper interface {
	Stamp(ctx context.Context, dgst digest.Digest) (string, error)
}

// VouchedPutter is an optional ability of a BlobStore: a Put of bytes
// whose digest the caller has already checked, such as a zone's copy of a
// blob that the sending zone hashed and the transfer checked frame by
// frame, so that the store does not hash them a second time. It keeps
// every other rule of Put: a size other than the one given (when it is
// not -1) is refused with ErrSizeMismatch, and the copy is durable before
// PutVouched returns and visible only once complete. A caller that cannot
// vouch for the bytes uses Put.
type VouchedPutter interface {
	PutVouched(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error)
}
