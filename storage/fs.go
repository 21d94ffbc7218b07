package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// FSConfig configures a filesystem BlobStore.
type FSConfig struct {
	// Root is the directory that holds the store. It is created if missing.
	// Temporary files live under it too, so that a finished blob moves into
	// place with a rename rather than a copy.
	Root string
	// Logger receives the store's rare notices; nil discards them.
	Logger *slog.Logger
}

// FS is a BlobStore in a directory of the local filesystem. See the package
// documentation for its layout and its guarantees.
type FS struct {
	blobs string // <root>/blobs: one file per blob
	tmp   string // <root>/tmp: Puts in progress
	log   *slog.Logger
}

var (
	_ BlobStore     = (*FS)(nil)
	_ FileIngester  = (*FS)(nil)
	_ Stamper       = (*FS)(nil)
	_ VouchedPutter = (*FS)(nil)
)

// blobMode is the permission of a stored blob. Blobs are never rewritten in
// place, but they stay writable by the owner so that an operator (or a fault
// test) can damage one on purpose and watch it be repaired.
const blobMode = 0o644

// copyBufSize is the largest buffer of a Put's copy loop: a big layer is
// read, hashed, written and (in a zone-replicated region) handed to the
// other zones' copies a MiB at a time, which costs a quarter of the system
// calls, wake-ups and frames of 256 KiB steps (measured: +10% push
// throughput on the 2-core bench machine).
const copyBufSize = 1 << 20

// copyBufs recycles the copy loops' full-size buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyBuffer returns a buffer for copying a blob of size bytes (-1:
// unknown) and the function that gives it back. A small blob gets a buffer
// of its own size, with a byte to spare to notice a longer source.
func copyBuffer(size int64) (buf []byte, release func()) {
	if size >= 0 && size < copyBufSize {
		return make([]byte, size+1), func() {}
	}
	bp := copyBufs.Get().(*[]byte)
	return *bp, func() { copyBufs.Put(bp) }
}

// NewFS opens the store at cfg.Root, creating it if needed, and removes the
// temporary files that Puts interrupted by a crash left behind.
func NewFS(cfg FSConfig) (*FS, error) {
	if cfg.Root == "" {
		return nil, errors.New("storage: FSConfig.Root is empty")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s := &FS{
		blobs: filepath.Join(root, "blobs"),
		tmp:   filepath.Join(root, "tmp"),
		log:   cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, dir := range []string{s.blobs, s.tmp} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
	}
	if err := syncDir(root); err != nil {
		return nil, err
	}
	if err := s.removeTemp(); err != nil {
		return nil, err
	}
	return s, nil
}

// removeTemp empties the temporary directory. Nothing in it was ever
// visible, so nothing in it is worth keeping.
func (s *FS) removeTemp() error {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return fmt.Errorf("storage: removing stale temporary file: %w", err)
		}
	}
	if len(entries) > 0 {
		s.log.Info("removed stale temporary files", "dir", s.tmp, "count", len(entries))
	}
	return nil
}

// path returns where the blob dgst lives. The two-digit fan-out keeps
// directories small enough to list quickly with millions of blobs.
func (s *FS) path(dgst digest.Digest) string {
	enc := dgst.Encoded()
	return filepath.Join(s.blobs, string(dgst.Algorithm()), enc[:2], enc)
}

// Stat implements BlobStore.
func (s *FS) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	if err := validDigest(dgst); err != nil {
		return 0, err
	}
	fi, err := os.Stat(s.path(dgst))
	if err != nil {
		return 0, s.pathError(dgst, err)
	}
	return fi.Size(), nil
}

// Stamp implements Stamper: the file's inode, size, modification and change
// times. Writing to a file in place changes its change time, which no
// system call can set back; but timestamps have the resolution of the
// kernel's clock tick, so a write within a few milliseconds of the moment a
// stamp was taken can go unnoticed.
func (s *FS) Stamp(ctx context.Context, dgst digest.Digest) (string, error) {
	if err := validDigest(dgst); err != nil {
		return "", err
	}
	fi, err := os.Stat(s.path(dgst))
	if err != nil {
		return "", s.pathError(dgst, err)
	}
	return fileStamp(fi), nil
}

// Open implements BlobStore. The reader is an *os.File positioned at
// offset: it also implements io.Seeker and io.ReaderAt, both addressing the
// whole blob (offset 0 is the blob's first byte whatever offset Open was
// given), which lets a caller serve ranges with http.ServeContent and copy
// to a socket with sendfile.
func (s *FS) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := validDigest(dgst); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(dgst))
	if err != nil {
		return nil, s.pathError(dgst, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	if offset < 0 || offset > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("%w: %s: offset %d, size %d", ErrInvalidOffset, dgst, offset, fi.Size())
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	return f, nil
}

// Put implements BlobStore.
func (s *FS) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	return s.put(ctx, dgst, size, r, false)
}

// PutVouched implements VouchedPutter: Put without hashing the bytes.
func (s *FS) PutVouched(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	return s.put(ctx, dgst, size, r, true)
}

func (s *FS) put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader, vouched bool) (int64, error) {
	if err := validDigest(dgst); err != nil {
		return 0, err
	}
	if size < -1 {
		return 0, fmt.Errorf("storage: put %s: invalid size %d", dgst, size)
	}
	final := s.path(dgst)
	hr := newHashingReader(ctx, r, dgst, size)
	if vouched {
		hr.h = nil
	}

	if _, err := os.Stat(final); err == nil {
		// Already stored: check the caller's bytes all the same, so that
		// Put reports a mismatch whether or not the digest is present.
		buf, release := copyBuffer(size)
		_, err := io.CopyBuffer(io.Discard, hr, buf)
		release()
		if err != nil {
			return 0, fmt.Errorf("storage: put %s: %w", dgst, err)
		}
		if err := hr.check(dgst); err != nil {
			return 0, err
		}
		return hr.n, nil
	}

	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return 0, fmt.Errorf("storage: put %s: %w", dgst, err)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// writeBehind also hides the file's ReadFrom, which would ignore buf
	// and copy 32 KiB at a time.
	buf, release := copyBuffer(size)
	_, err = io.CopyBuffer(newWriteBehind(f), hr, buf)
	release()
	if err != nil {
		return 0, fmt.Errorf("storage: put %s: %w", dgst, err)
	}
	if err := hr.check(dgst); err != nil {
		return 0, err
	}
	if err := s.commit(f, final); err != nil {
		return 0, fmt.Errorf("storage: put %s: %w", dgst, err)
	}
	committed = true
	return hr.n, nil
}

// commit makes the complete, verified temporary file f durable and then
// visible at final. A concurrent commit of the same digest is harmless: the
// rename replaces identical content atomically.
func (s *FS) commit(f *os.File, final string) error {
	if err := f.Chmod(blobMode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return s.rename(f.Name(), final)
}

// rename moves a durable file to final and makes the new name durable.
func (s *FS) rename(from, final string) error {
	dir := filepath.Dir(final)
	if err := s.mkdirAll(dir); err != nil {
		return err
	}
	if err := os.Rename(from, final); err != nil {
		return err
	}
	return syncDir(dir)
}

// mkdirAll creates dir and its missing parents below the blobs directory,
// syncing each parent so that a new directory survives a crash along with
// the blob about to be renamed into it. Directories are never removed, so
// this cannot race a Delete.
func (s *FS) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != s.blobs {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// Delete implements BlobStore.
func (s *FS) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := validDigest(dgst); err != nil {
		return err
	}
	p := s.path(dgst)
	if err := os.Remove(p); err != nil {
		return s.pathError(dgst, err)
	}
	return syncDir(filepath.Dir(p))
}

// Walk implements BlobStore. Files whose names are not digests are skipped.
func (s *FS) Walk(ctx context.Context, fn func(dgst digest.Digest, size int64) error) error {
	algs, err := os.ReadDir(s.blobs)
	if err != nil {
		return fmt.Errorf("storage: walk: %w", err)
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		fans, err := readDirs(filepath.Join(s.blobs, alg.Name()))
		if err != nil {
			return err
		}
		for _, fan := range fans {
			if err := ctx.Err(); err != nil {
				return err
			}
			dir := filepath.Join(s.blobs, alg.Name(), fan.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("storage: walk: %w", err)
			}
			for _, file := range files {
				dgst := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), file.Name())
				if !file.Type().IsRegular() || dgst.Validate() != nil {
					s.log.Debug("walk: skipping stray file", "path", filepath.Join(dir, file.Name()))
					continue
				}
				fi, err := file.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted since the directory was read
				}
				if err != nil {
					return fmt.Errorf("storage: walk: %w", err)
				}
				if err := fn(dgst, fi.Size()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// IngestFile implements FileIngester. The file is renamed into place when
// it is on the store's filesystem and copied (and hashed again) when it is
// not; size -1 skips the size check.
func (s *FS) IngestFile(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	if err := validDigest(dgst); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("storage: ingest %s: %s is not a regular file", dgst, path)
	}
	if size >= 0 && fi.Size() != size {
		return fmt.Errorf("%w: %s: file has %d bytes, want %d", ErrSizeMismatch, dgst, fi.Size(), size)
	}
	final := s.path(dgst)
	if _, err := os.Stat(final); err == nil {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("storage: ingest %s: %w", dgst, err)
		}
		return nil
	}

	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	// The caller wrote the file but may not have synced it; it must be
	// durable before its name is.
	err = f.Chmod(blobMode)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	err = s.rename(path, final)
	if errors.Is(err, syscall.EXDEV) {
		return s.ingestCopy(ctx, dgst, fi.Size(), path)
	}
	if err != nil {
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	return nil
}

// ingestCopy ingests a file from another filesystem by copying it.
func (s *FS) ingestCopy(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("storage: ingest %s: %w", dgst, err)
	}
	defer f.Close()
	if _, err := s.Put(ctx, dgst, size, f); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		s.log.Warn("ingest: could not remove source file", "path", path, "err", err)
	}
	return nil
}

// pathError maps a missing file to ErrNotFound.
func (s *FS) pathError(dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, dgst)
	}
	return fmt.Errorf("storage: %s: %w", dgst, err)
}

// readDirs lists the subdirectories of dir.
func readDirs(dir string) ([]fs.DirEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: walk: %w", err)
	}
	dirs := entries[:0]
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e)
		}
	}
	return dirs, nil
}

// syncDir makes the entries of dir durable: a rename, create or remove in
// it is not on disk until the directory itself is synced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("storage: sync %s: %w", dir, err)
	}
	return nil
}
