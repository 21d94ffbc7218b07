package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
)

// ErrCorrupt means Check found a stored copy whose bytes do not match its
// digest, and removed it. The error also wraps ErrDigestMismatch or
// ErrSizeMismatch, whichever the copy failed.
var ErrCorrupt = errors.New("storage: stored copy does not match its digest")

// CheckedConfig configures a Checked store.
type CheckedConfig struct {
	// Store holds the copies.
	Store  BlobStore
	Logger *slog.Logger
}

// Checked is a BlobStore that owns the integrity of the copies in the
// store it wraps: it is the one place on a node that knows which copies
// match their digests. It remembers each verified copy's stamp (see
// Stamper): a copy it wrote from bytes that hashed to their digest (or
// that the caller vouched for), or that it hashed since, is trusted
// without reading it again while its stamp is unchanged.
//
// Writers use Put, PutVouched and IngestFile as on any store; readers
// that must not pass on a corrupt byte call Check before they read, and
// Check hashes a copy only when it is not trusted, and removes it when it
// does not match. Nothing else marks copies verified. One Checked serves
// everything on a node that writes or checks its copies (uploads, copies
// from other zones, repairs, reads), so that no copy is hashed twice.
//
// Checked is safe for concurrent use. Over a store without stamps, every
// Check hashes the whole copy.
type Checked struct {
	store BlobStore
	log   *slog.Logger

	mu     sync.Mutex
	stamps map[digest.Digest]string // the stamp of each copy known to match
}

var (
	_ BlobStore     = (*Checked)(nil)
	_ FileIngester  = (*Checked)(nil)
	_ VouchedPutter = (*Checked)(nil)
)

// NewChecked returns a Checked store over cfg.Store that trusts no copy
// yet.
func NewChecked(cfg CheckedConfig) *Checked {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Checked{store: cfg.Store, log: lg, stamps: map[digest.Digest]string{}}
}

// Stat implements BlobStore.
func (c *Checked) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	return c.store.Stat(ctx, dgst)
}

// Open implements BlobStore. It does not check the copy: call Check first.
func (c *Checked) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	return c.store.Open(ctx, dgst, offset)
}

// Walk implements BlobStore.
func (c *Checked) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	return c.store.Walk(ctx, fn)
}

// Put implements BlobStore. A copy it writes is trusted; a copy that was
// there already is left as it was, and trusted only if it was before.
func (c *Checked) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	var n int64
	err := c.write(ctx, dgst, func() (err error) {
		n, err = c.store.Put(ctx, dgst, size, r)
		return err
	})
	return n, err
}

// PutVouched implements VouchedPutter with the wrapped store's PutVouched,
// or its Put when it has none. The copy is trusted as the caller vouched.
func (c *Checked) PutVouched(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	put := c.store.Put
	if vp, ok := c.store.(VouchedPutter); ok {
		put = vp.PutVouched
	}
	var n int64
	err := c.write(ctx, dgst, func() (err error) {
		n, err = put(ctx, dgst, size, r)
		return err
	})
	return n, err
}

// IngestFile implements FileIngester with the wrapped store's
// IngestFile, or by a Put of the file's bytes when it has none.
func (c *Checked) IngestFile(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	return c.write(ctx, dgst, func() error {
		if fi, ok := c.store.(FileIngester); ok {
			return fi.IngestFile(ctx, dgst, size, path)
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("storage: ingest %s: %w", dgst, err)
		}
		defer f.Close()
		if _, err := c.store.Put(ctx, dgst, size, f); err != nil {
			return err
		}
		return os.Remove(path)
	})
}

// write runs a write of dgst and trusts the copy when the write made it.
// A copy already there was left as it was: the new bytes say nothing of
// it (it may have rotted).
func (c *Checked) write(ctx context.Context, dgst digest.Digest, write func() error) error {
	_, err := c.store.Stat(ctx, dgst)
	had := err == nil
	if err := write(); err != nil {
		return err
	}
	if !had {
		c.trust(ctx, dgst)
	}
	return nil
}

// trust records the current stamp of dgst's copy, which is known to match.
func (c *Checked) trust(ctx context.Context, dgst digest.Digest) {
	st, ok := c.store.(Stamper)
	if !ok {
		return
	}
	if stamp, err := st.Stamp(ctx, dgst); err == nil {
		c.mu.Lock()
		c.stamps[dgst] = stamp
		c.mu.Unlock()
	}
}

// Delete implements BlobStore.
func (c *Checked) Delete(ctx context.Context, dgst digest.Digest) error {
	c.Distrust(dgst)
	return c.store.Delete(ctx, dgst)
}

// Distrust makes the next Check of dgst hash its copy: a reader found
// bytes in it that did not match.
func (c *Checked) Distrust(dgst digest.Digest) {
	c.mu.Lock()
	delete(c.stamps, dgst)
	c.mu.Unlock()
}

// Trusted reports whether the copy of dgst is known to match its digest
// without reading it: it was written or hashed here and its stamp has not
// changed since. It returns the store's error (ErrNotFound, ...) when the
// copy cannot be looked at, and false over a store without stamps.
func (c *Checked) Trusted(ctx context.Context, dgst digest.Digest) (bool, error) {
	st, ok := c.store.(Stamper)
	if !ok {
		_, err := c.store.Stat(ctx, dgst)
		return false, err
	}
	stamp, err := st.Stamp(ctx, dgst)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stamps[dgst] == stamp, nil
}

// Check returns nil when the copy of dgst matches its digest: it hashes
// the copy unless it is trusted, and trusts it from then on. A copy that
// does not match is removed, so that it is never served nor counted as a
// copy, and Check returns an error wrapping ErrCorrupt. It returns
// ErrNotFound when there is no copy.
func (c *Checked) Check(ctx context.Context, dgst digest.Digest) error {
	trusted, err := c.Trusted(ctx, dgst)
	if err != nil || trusted {
		return err
	}
	var stamp string
	st, hasStamp := c.store.(Stamper)
	if hasStamp {
		// Stamp before hashing: a change during the hash makes the recorded
		// stamp stale, so the next check hashes again.
		if stamp, err = st.Stamp(ctx, dgst); err != nil {
			return err
		}
	}
	err = Verify(ctx, c.store, dgst)
	switch {
	case err == nil:
		if hasStamp {
			c.mu.Lock()
			c.stamps[dgst] = stamp
			c.mu.Unlock()
		}
		return nil
	case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrSizeMismatch):
		c.Distrust(dgst)
		c.log.Error("corrupt blob copy removed from the store", "digest", dgst, "err", err)
		if derr := c.store.Delete(context.WithoutCancel(ctx), dgst); derr != nil && !errors.Is(derr, ErrNotFound) {
			c.log.Error("removing corrupt blob copy", "digest", dgst, "err", derr)
		}
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}
