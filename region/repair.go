package region

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
)

// BlobIndex is the region's list of blobs that must exist. *meta.Reader,
// and so *Group, implements it.
type BlobIndex interface {
	WalkBlobs(ctx context.Context, fn func(dgst digest.Digest, size int64) error) error
}

// RepairerConfig configures a Repairer.
type RepairerConfig struct {
	Index BlobIndex
	Blobs *Blobs
	// Interval between passes; a change of membership (a zone coming back)
	// starts a pass at once. Zero means 5 s.
	Interval time.Duration
	Members  Membership
	Logger   *slog.Logger
}

// Repairer brings the local store to a full, verified copy of every blob in
// the region's index: it fetches missing blobs from other zones, and
// re-verifies a copy whenever its stamp changed since it was last verified,
// replacing a corrupt one.
type Repairer struct {
	cfg RepairerConfig
	log *slog.Logger

	backlog  atomic.Int64
	repaired atomic.Int64
	passes   atomic.Int64
}

// NewRepairer returns a Repairer; call Run to start it.
func NewRepairer(cfg RepairerConfig) *Repairer {
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Repairer{cfg: cfg, log: lg}
}

// Backlog returns how many blobs the last pass found missing or corrupt and
// could not repair yet.
func (r *Repairer) Backlog() int64 { return r.backlog.Load() }

// Repaired returns how many copies the repairer has restored.
func (r *Repairer) Repaired() int64 { return r.repaired.Load() }

// Passes returns how many passes have completed.
func (r *Repairer) Passes() int64 { return r.passes.Load() }

// Run repairs until ctx ends.
func (r *Repairer) Run(ctx context.Context) {
	for {
		if err := r.pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("repair pass failed", "err", err)
		}
		r.passes.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.Interval):
		case <-r.cfg.Members.Changed():
		}
	}
}

func (r *Repairer) pass(ctx context.Context) error {
	local := r.cfg.Blobs.local
	var backlog int64
	err := r.cfg.Index.WalkBlobs(ctx, func(dgst digest.Digest, size int64) error {
		// Check hashes only copies that changed since they were written or
		// last hashed (the local store knows, for uploads and reads too).
		err := local.Check(ctx, dgst)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, storage.ErrNotFound):
			// Missing here: fetch below.
		case errors.Is(err, storage.ErrCorrupt):
			// Check removed it.
			r.log.Error("corrupt local blob copy, replacing it from another zone", "digest", dgst, "err", err)
		default:
			return err
		}
		if err := r.cfg.Blobs.fetch(ctx, dgst); err != nil {
			backlog++
			r.log.Debug("blob not repaired yet", "digest", dgst, "err", err)
			return nil
		}
		r.repaired.Add(1)
		return nil
	})
	r.backlog.Store(backlog)
	return err
}
