// Package storage holds the bytes of blobs: immutable, content-addressed
// objects named by their digest. It is the bottom of georeg's stack. A zone
// node keeps every blob it holds in one BlobStore; the zone and replication
// layers decide which blobs a store must hold, and the metadata that names
// them (repositories, tags, manifests, which zones hold what) lives in Raft,
// never here. A BlobStore knows nothing about repositories: one copy of a
// layer serves every repository that references it.
//
// # Basics
//
// Two implementations keep the same contract, written on BlobStore:
//
//   - FS, the embedded default, stores each blob as a file under
//     <root>/blobs/<algorithm>/<first two hex digits>/<hex>. Put writes to a
//     temporary file in <root>/tmp, hashing as it writes, checks digest and
//     size, fsyncs the file, renames it into place and fsyncs the directory,
//     so a blob is visible only once it is complete, verified and durable.
//   - S3 stores each blob as the object <prefix>/blobs/<algorithm>/<hex> in
//     a bucket of any S3-compatible server, through minio-go. Put streams to
//     <prefix>/tmp/<uuid> while hashing, checks, then copies server-side to
//     the final key, so readers never see a partial or unverified object.
//
// Both implement FileIngester: a caller that has already written and hashed
// a blob to a local file (an upload session, a replication transfer) hands
// the file over without the store reading it again when it can avoid it.
//
// Both implement Stamper too: a cheap fingerprint of a stored copy, so that
// a reader that verified a blob once verifies it again only when the copy
// may have changed.
//
// FS (and Quota over it) implements VouchedPutter: a Put of bytes whose
// digest the caller has checked (a zone's copy of a blob the sending zone
// hashed), which checks their size but does not hash them again. On Linux,
// FS starts the write-back of a blob every 8 MiB while it writes it
// (sync_file_range), so the disk works while the bytes arrive and the
// final fsync waits for the tail of the file instead of all of it.
//
// Open does not verify. Checked, a BlobStore over another, owns the
// integrity of a node's copies: it is the one place that knows which
// copies match their digests (each one's stamp when it was written from
// hashed bytes, or last hashed), and Checked.Check is the verified read a
// server calls before it sends a byte: it hashes a copy only when its stamp
// changed, and removes a copy that does not match (ErrCorrupt). Writes
// through Checked are what make a copy trusted; nothing else marks one.
// Lower down, VerifyingReader fails at the end of a stream whose bytes did
// not hash to the digest (a zone node checks what it sends to another with
// it), and Verify re-reads and re-hashes a whole blob.
//
// The package exports one conformance suite, storagetest.Run, which covers
// the optional abilities too (FileIngester, Stamper, VouchedPutter); every
// implementation runs it (FS, S3, Quota, Checked, and region.Blobs in one
// zone and in three), and a new implementation is done when it passes.
//
// # Caveats
//
// Verification while streaming detects corruption only at the end of the
// stream, after the earlier bytes have been handed on; a ranged read cannot
// be verified at all without reading the whole blob. That is why readers
// call Checked.Check before they read rather than verify as they stream. A
// copy that changes between the Check and the read (a disk failing at that
// very moment) is not caught until the next Check.
//
// A stamp is only as good as the store's: a copy over a store without
// stamps is hashed in full by every Check, and a VouchedPutter copy is
// trusted as its caller vouched.
//
// An FS stamp is made of file times, which have the resolution of the
// kernel's clock tick: a write within a few milliseconds of taking a stamp
// may leave it unchanged.
//
// Putting a digest that is already stored keeps the stored copy even when
// it is corrupt: to repair a copy, Delete it and Put it again.
//
// FS removes everything in <root>/tmp when it is created: at most one FS may
// use a root at a time. The reader FS.Open returns is an *os.File positioned
// at the requested offset; Seek and ReadAt on it address the whole blob, and
// io.Copy from it to a socket can use sendfile. S3.Open returns a plain
// stream of the requested range.
//
// Cancelling the context of a Put stops it at the next Read of the source;
// a source that blocks forever in Read is the caller's to unblock (an HTTP
// request body is closed by the server when the request is cancelled).
//
// S3 removes temporary objects and abandoned multipart uploads under its
// prefix only when they are older than S3Config.StaleTempAge, because other
// processes may be putting into the same prefix. Give each zone node its own
// prefix (or bucket) anyway: Walk and Delete assume they own what they list.
//
// The S3 store is tested against versitygw, an Apache-2.0 S3 gateway over a
// POSIX directory, started by the test on loopback. Not against an in-memory
// fake: gofakes3 corrupts multipart objects larger than 16 MiB, exactly the
// path large layers take. Not against MinIO server: it is AGPL and a heavy
// dependency to build for a test. versitygw is a real S3 protocol
// implementation (multipart, server-side copy, streaming signatures,
// checksums) that builds from source in tools/ like the other test tools.
package storage
