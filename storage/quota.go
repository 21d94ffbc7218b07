package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrNoSpace means a write would take a store beyond its space. It wraps
// syscall.ENOSPC, so callers that handle a full disk handle it too.
var ErrNoSpace = fmt.Errorf("storage: no space left in the blob store: %w", syscall.ENOSPC)

// QuotaConfig configures a Quota.
type QuotaConfig struct {
	// Store is the store whose space is limited. It must implement
	// FileIngester and Stamper (FS and S3 do).
	Store BlobStore
	// LimitFile holds the limit in bytes ("67108864", "64MiB", "1GB"). It is
	// read again when it changes, at most once per ReloadInterval; while
	// it is missing the store has no limit.
	LimitFile string
	// ReloadInterval is how often LimitFile is checked (default 1 s).
	ReloadInterval time.Duration
	Logger         *slog.Logger
}

// Quota is a BlobStore whose blobs may not take more than a limit: a disk
// quota of the registry's own, which an operator (or a chaos test) sets and
// lifts at run time by writing or removing a file. A write that would go
// beyond the limit fails at once with ErrNoSpace and stores nothing.
type Quota struct {
	store BlobStore
	ing   FileIngester
	stamp Stamper
	cfg   QuotaConfig
	log   *slog.Logger

	mu        sync.Mutex
	used      int64 // bytes of the blobs stored, plus writes in flight
	limit     int64 // 0: none
	checked   time.Time
	modTime   time.Time
	refusedAt time.Time // last refused write
}

// NewQuota wraps cfg.Store, counting the bytes it holds now.
func NewQuota(ctx context.Context, cfg QuotaConfig) (*Quota, error) {
	ing, ok1 := cfg.Store.(FileIngester)
	st, ok2 := cfg.Store.(Stamper)
	if !ok1 || !ok2 {
		return nil, errors.New("storage: a quota needs a store that ingests files and stamps blobs")
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = time.Second
	}
	q := &Quota{store: cfg.Store, ing: ing, stamp: st, cfg: cfg, log: cfg.Logger}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	err := cfg.Store.Walk(ctx, func(_ digest.Digest, size int64) error {
		q.used += size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: quota: %w", err)
	}
	return q, nil
}

// ParseBytes reads a size such as "1048576", "64MiB", "64MB" or "1GiB".
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return n * mult, nil
}

// refreshLocked rereads the limit file when it changed.
func (q *Quota) refreshLocked() {
	if q.cfg.LimitFile == "" || time.Since(q.checked) < q.cfg.ReloadInterval {
		return
	}
	q.checked = time.Now()
	fi, err := os.Stat(q.cfg.LimitFile)
	if err != nil {
		if q.limit != 0 {
			q.log.Info("blob store quota lifted", "file", q.cfg.LimitFile)
		}
		q.limit, q.modTime = 0, time.Time{}
		return
	}
	if fi.ModTime().Equal(q.modTime) {
		return
	}
	b, err := os.ReadFile(q.cfg.LimitFile)
	if err != nil {
		return
	}
	limit, err := ParseBytes(string(b))
	if err != nil {
		q.log.Warn("ignoring the blob store quota file", "file", q.cfg.LimitFile, "err", err)
		return
	}
	q.limit, q.modTime = limit, fi.ModTime()
	q.log.Info("blob store quota", "limit", limit, "used", q.used)
}

// reserve counts size bytes as used, or fails with ErrNoSpace when they do
// not fit. release gives them back.
func (q *Quota) reserve(size int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refreshLocked()
	if q.limit > 0 && q.used+size > q.limit {
		q.refusedAt = time.Now()
		return fmt.Errorf("%w (%d of %d bytes used, %d more asked)", ErrNoSpace, q.used, q.limit, size)
	}
	q.used += size
	return nil
}

func (q *Quota) release(size int64) {
	q.mu.Lock()
	q.used -= size
	q.mu.Unlock()
}

// Full reports whether the store refused a write in the last ten seconds
// or has no room left under its limit.
func (q *Quota) Full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refreshLocked()
	if q.limit == 0 {
		return false
	}
	return q.used >= q.limit || time.Since(q.refusedAt) < 10*time.Second
}

// Used returns the bytes the store holds (and writes in flight), and the
// limit (0: none).
func (q *Quota) Used() (used, limit int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refreshLocked()
	return q.used, q.limit
}

// Stat implements BlobStore.
func (q *Quota) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	return q.store.Stat(ctx, dgst)
}

// Open implements BlobStore.
func (q *Quota) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	return q.store.Open(ctx, dgst, offset)
}

// Stamp implements Stamper.
func (q *Quota) Stamp(ctx context.Context, dgst digest.Digest) (string, error) {
	return q.stamp.Stamp(ctx, dgst)
}

// Walk implements BlobStore.
func (q *Quota) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	return q.store.Walk(ctx, fn)
}

// Put implements BlobStore. A blob of unknown size is counted as it
// arrives and refused once it goes beyond the limit.
func (q *Quota) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	return q.put(ctx, dgst, size, r, q.store.Put)
}

// PutVouched implements VouchedPutter, with the store's own PutVouched
// when it has one and its Put otherwise.
func (q *Quota) PutVouched(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	if vp, ok := q.store.(VouchedPutter); ok {
		return q.put(ctx, dgst, size, r, vp.PutVouched)
	}
	return q.put(ctx, dgst, size, r, q.store.Put)
}

type putFunc func(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error)

func (q *Quota) put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader, put putFunc) (int64, error) {
	if _, err := q.store.Stat(ctx, dgst); err == nil {
		return put(ctx, dgst, size, r)
	}
	if size >= 0 {
		if err := q.reserve(size); err != nil {
			return 0, err
		}
		n, err := put(ctx, dgst, size, r)
		if err != nil {
			q.release(size)
		}
		return n, err
	}
	cr := &countingReader{r: r, q: q}
	n, err := put(ctx, dgst, size, cr)
	if err != nil {
		q.release(cr.n)
	}
	return n, err
}

// IngestFile implements FileIngester.
func (q *Quota) IngestFile(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	if _, err := q.store.Stat(ctx, dgst); err == nil {
		return q.ing.IngestFile(ctx, dgst, size, path)
	}
	if err := q.reserve(size); err != nil {
		return err
	}
	err := q.ing.IngestFile(ctx, dgst, size, path)
	if err != nil {
		q.release(size)
	}
	return err
}

// Delete implements BlobStore.
func (q *Quota) Delete(ctx context.Context, dgst digest.Digest) error {
	size, err := q.store.Stat(ctx, dgst)
	if err != nil {
		return err
	}
	if err := q.store.Delete(ctx, dgst); err != nil {
		return err
	}
	q.release(size)
	return nil
}

// countingReader reserves quota for the bytes of a blob of unknown size as
// they are read.
type countingReader struct {
	r io.Reader
	q *Quota
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if qerr := c.q.reserve(int64(n)); qerr != nil {
			return 0, qerr
		}
		c.n += int64(n)
	}
	return n, err
}

var (
	_ BlobStore     = (*Quota)(nil)
	_ FileIngester  = (*Quota)(nil)
	_ Stamper       = (*Quota)(nil)
	_ VouchedPutter = (*Quota)(nil)
)
