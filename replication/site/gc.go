package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
)

// Garbage collection at a site. A site holds what its parent holds of its
// repositories (and, ReadWrite, what its clients pushed); what the parent
// deletes, and what falls outside its repositories after an update, the
// sync deletes from the metadata (tags and manifests), and the collector
// then frees the blobs nothing references any more, so that a small
// device does not fill up.
//
// A blob is referenced when a manifest of any repository of the site
// names it (config or layer), or a local write not yet synced up (the
// outbox after OutboxPeer) names the manifest that does. A round of the
// collector (GCRound) reads every repository's manifests, the blob index
// and the blobs on disk, and:
//
//   - marks the blobs it finds unreferenced (meta.MarkBlobs, through the
//     site's Raft log), keeping the time it first found each;
//   - collects those marked at least the grace ago (meta.CollectBlobs):
//     their index entries and links go, unless a write referenced them
//     since the mark (which clears it), and then their bytes, unless a
//     write of them (an upload's Put, or a Stat before a manifest that
//     links them) touched them within the grace (GuardedBlobs): the
//     leader's copies; every zone of the site frees its own copies of
//     blobs the index no longer names (RunSweeper);
//   - marks the repositories that hold no manifest and no live tag, and
//     drops those marked at least the grace ago (with what links they
//     still have: an upload abandoned there), which leaves the catalog;
//     any write into a repository clears its mark.
//
// A blob linked by an upload whose manifest has not come yet is
// unreferenced too: the grace is what lets such a push finish, so it must
// exceed the longest push (and the longest image download from the
// parent); the default is an hour.

// DefaultGCGrace is how long a blob stays unreferenced before a site
// collects it, unless configured.
const DefaultGCGrace = time.Hour

// GCMetadata is what the collector needs of the site's metadata beyond
// Metadata. *region.Group and *meta.Store implement it.
type GCMetadata interface {
	WalkRepositories(ctx context.Context, fn func(meta.RepoContent) error) error
	WalkBlobs(ctx context.Context, fn func(dgst digest.Digest, size int64) error) error
	BlobMarks() (map[digest.Digest]time.Time, error)
	RepoMarks() (map[string]time.Time, error)
	Blob(dgst digest.Digest) (int64, error)
}

// GCStats are the collector's counters.
type GCStats struct {
	Rounds int64 `json:"rounds"`
	// BlobsFreed and BytesFreed count the blobs whose bytes were deleted
	// and their sizes; Marked the blobs found unreferenced in the last
	// round and not freed (collected once the grace has passed).
	BlobsFreed   int64 `json:"blobsFreed"`
	BytesFreed   int64 `json:"bytesFreed"`
	Marked       int64 `json:"marked"`
	ReposDropped int64 `json:"reposDropped"`
	// Kept counts blobs past their grace that a write touched since (an
	// upload or a sync in flight), left for a later round.
	Kept int64 `json:"kept"`
	// ManifestsPruned counts the manifests the resyncs deleted because
	// the parent no longer held them or they fell outside the
	// repositories synced (prune.go).
	ManifestsPruned int64 `json:"manifestsPruned"`
}

// gcCounters are the Syncer's collector counters.
type gcCounters struct {
	rounds, blobsFreed, bytesFreed, marked, reposDropped, kept atomic.Int64
	manifestsPruned                                            atomic.Int64
	// mu makes rounds one at a time.
	mu sync.Mutex
}

// GCStats returns the collector's counters.
func (s *Syncer) GCStats() GCStats {
	g := &s.gc
	return GCStats{Rounds: g.rounds.Load(), BlobsFreed: g.blobsFreed.Load(), BytesFreed: g.bytesFreed.Load(),
		Marked: g.marked.Load(), ReposDropped: g.reposDropped.Load(), Kept: g.kept.Load(), ManifestsPruned: g.manifestsPruned.Load()}
}

// gcInterval is the time between rounds for a grace: often enough that a
// blob goes about the grace after it became garbage, at most every 10
// minutes and at least every second.
func gcInterval(grace time.Duration) time.Duration {
	return min(max(grace/4, time.Second), 10*time.Minute)
}

// RunGC collects garbage every while (gcInterval of grace; grace <= 0
// means DefaultGCGrace) until ctx ends. Run it beside Run, on the site
// region's Raft leader only.
func (s *Syncer) RunGC(ctx context.Context, grace time.Duration) {
	if grace <= 0 {
		grace = DefaultGCGrace
	}
	t := time.NewTicker(gcInterval(grace))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.GCRound(ctx, grace); err != nil && ctx.Err() == nil {
			s.log.Warn("site gc", "err", err)
		}
	}
}

// GCRound runs one round of the collector with the grace given and
// returns what it did.
func (s *Syncer) GCRound(ctx context.Context, grace time.Duration) (GCStats, error) {
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	var out GCStats
	gm, ok := s.cfg.Meta.(GCMetadata)
	if !ok {
		return out, errors.New("site: the metadata cannot be collected (no GCMetadata)")
	}
	start := time.Now()
	now := start.UTC()
	// Marks are read before the references: a write that referenced a
	// marked blob before this read is seen below; one after it cleared
	// the mark, and CollectBlobs leaves the blob alone.
	marks, err := gm.BlobMarks()
	if err != nil {
		return out, err
	}
	repoMarks, err := gm.RepoMarks()
	if err != nil {
		return out, err
	}
	refs, repos, err := s.references(ctx, gm)
	if err != nil {
		return out, err
	}
	sizes := map[digest.Digest]int64{}
	if err := gm.WalkBlobs(ctx, func(d digest.Digest, n int64) error { sizes[d] = n; return nil }); err != nil {
		return out, err
	}
	if err := s.cfg.Blobs.Walk(ctx, func(d digest.Digest, n int64) error { sizes[d] = n; return nil }); err != nil {
		return out, err
	}
	before := now.Add(-grace)
	var mark, unmark, collect []digest.Digest
	unref := 0
	for d := range sizes {
		if refs[d] {
			continue
		}
		unref++
		at, ok := marks[d]
		switch {
		case !ok:
			mark = append(mark, d)
		case !at.After(before):
			collect = append(collect, d)
		}
	}
	for d := range marks {
		if _, ok := sizes[d]; refs[d] || !ok {
			unmark = append(unmark, d)
		}
	}
	for part := range chunks(collect, meta.MaxGCBatch) {
		if err := s.cfg.Meta.Apply(ctx, meta.CollectBlobs{Digests: part, Before: before}); err != nil {
			return out, fmt.Errorf("collecting blobs: %w", err)
		}
	}
	for _, d := range collect {
		if _, err := gm.Blob(d); !errors.Is(err, meta.ErrBlobUnknown) {
			continue // linked again since the mark: it stays
		}
		freed, err := s.guard.deleteUntouched(ctx, d, before)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return out, fmt.Errorf("deleting blob %s: %w", d, err)
		case freed:
			out.BlobsFreed++
			out.BytesFreed += sizes[d]
		default:
			out.Kept++
		}
	}
	var markRepos, dropRepos []string
	for _, r := range repos {
		if at, ok := repoMarks[r]; !ok {
			markRepos = append(markRepos, r)
		} else if !at.After(before) {
			dropRepos = append(dropRepos, r)
		}
	}
	for part := range chunks(dropRepos, meta.MaxGCBatch) {
		if err := s.cfg.Meta.Apply(ctx, meta.CollectBlobs{Repositories: part, Before: before}); err != nil {
			return out, fmt.Errorf("dropping repositories: %w", err)
		}
	}
	for _, r := range dropRepos {
		if _, _, err := s.cfg.Meta.Tags(r, "", 1); errors.Is(err, meta.ErrRepositoryUnknown) {
			out.ReposDropped++
		}
	}
	const part = meta.MaxGCBatch / 3
	for i := 0; i < max(len(mark), len(unmark), len(markRepos)); i += part {
		cmd := meta.MarkBlobs{Mark: window(mark, i, part), Unmark: window(unmark, i, part), Repositories: window(markRepos, i, part), Time: now}
		if err := s.cfg.Meta.Apply(ctx, cmd); err != nil {
			return out, fmt.Errorf("marking blobs: %w", err)
		}
	}
	s.guard.forget(before)
	out.Rounds = 1
	out.Marked = int64(unref) - out.BlobsFreed
	g := &s.gc
	g.rounds.Add(1)
	g.blobsFreed.Add(out.BlobsFreed)
	g.bytesFreed.Add(out.BytesFreed)
	g.marked.Store(out.Marked)
	g.reposDropped.Add(out.ReposDropped)
	g.kept.Add(out.Kept)
	if out.BlobsFreed > 0 || out.ReposDropped > 0 || len(mark) > 0 {
		s.log.Info("site gc", "blobs_freed", out.BlobsFreed, "bytes_freed", out.BytesFreed, "repos_dropped", out.ReposDropped,
			"newly_unreferenced", len(mark), "kept_touched", out.Kept, "blobs", len(sizes), "grace", grace, "took", time.Since(start).Round(time.Millisecond))
	}
	return out, nil
}

// references returns the blobs the site's manifests name and the
// repositories that hold nothing (candidates to drop), leaving out those
// with a local write not synced up.
func (s *Syncer) references(ctx context.Context, gm GCMetadata) (map[digest.Digest]bool, []string, error) {
	pendingRepos := map[string]bool{}
	if s.Mode() == connected.ReadWrite {
		for k := range s.pending() {
			if i := strings.IndexAny(k, ":@"); i > 0 {
				pendingRepos[k[:i]] = true
			}
		}
	}
	refs := map[digest.Digest]bool{}
	var empty []string
	err := gm.WalkRepositories(ctx, func(rc meta.RepoContent) error {
		// Empty for the grace, a repository goes with its links (an
		// upload abandoned there).
		if len(rc.Manifests) == 0 && rc.LiveTags == 0 && !pendingRepos[rc.Repo] {
			empty = append(empty, rc.Repo)
		}
		for _, m := range rc.Manifests {
			pm, err := oci.ParseManifest(m.MediaType, m.Content)
			if err != nil {
				// Its blobs are unknown: collecting anything could take
				// one of them.
				return fmt.Errorf("manifest %s@%s does not parse, nothing collected: %w", rc.Repo, m.Digest, err)
			}
			for _, b := range pm.Blobs() {
				refs[b.Digest] = true
			}
		}
		return nil
	})
	return refs, empty, err
}

// chunks yields s in parts of at most n.
func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for i := 0; i < len(s); i += n {
			if !yield(s[i:min(i+n, len(s))]) {
				return
			}
		}
	}
}

// window returns s[i:i+n], clipped.
func window[T any](s []T, i, n int) []T {
	if i >= len(s) {
		return nil
	}
	return s[i:min(i+n, len(s))]
}

// RunSweeper frees this node's copies of blobs the metadata no longer
// names, every while (as RunGC), until ctx ends. Run it on every zone node
// of a site: the collector (leader only) deletes a blob's metadata and
// the leader's copy, and a blob store of several zones deletes only its
// own copy (region.Blobs.Delete), so each zone sweeps its own. A copy goes
// once it has been unnamed by the blob index for the grace (as this node
// saw it) and no writer of this node touched it within the grace; a copy
// deleted under a write racing it (another zone's upload linking the
// blob a moment later) is fetched back by the zone's repairer, as any
// missing copy of a blob in the index.
func (s *Syncer) RunSweeper(ctx context.Context, grace time.Duration) {
	if grace <= 0 {
		grace = DefaultGCGrace
	}
	t := time.NewTicker(gcInterval(grace))
	defer t.Stop()
	unnamed := map[digest.Digest]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.sweep(ctx, grace, unnamed); err != nil && ctx.Err() == nil {
			s.log.Warn("site gc: sweeping this zone's blob files", "err", err)
		}
	}
}

// sweep is one pass of RunSweeper; unnamed holds, across passes, when
// each local copy was first seen unnamed by the blob index.
func (s *Syncer) sweep(ctx context.Context, grace time.Duration, unnamed map[digest.Digest]time.Time) error {
	gm, ok := s.cfg.Meta.(GCMetadata)
	if !ok {
		return errors.New("site: the metadata cannot be collected (no GCMetadata)")
	}
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	now := time.Now()
	local := map[digest.Digest]int64{}
	if err := s.cfg.Blobs.Walk(ctx, func(d digest.Digest, n int64) error { local[d] = n; return nil }); err != nil {
		return err
	}
	for d := range unnamed {
		if _, ok := local[d]; !ok {
			delete(unnamed, d)
		}
	}
	var freed, bytes int64
	for d, n := range local {
		_, err := gm.Blob(d)
		if !errors.Is(err, meta.ErrBlobUnknown) {
			delete(unnamed, d)
			continue
		}
		at, ok := unnamed[d]
		if !ok {
			unnamed[d] = now
			continue
		}
		if now.Sub(at) < grace {
			continue
		}
		ok, err = s.guard.deleteUntouched(ctx, d, now.Add(-grace))
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return fmt.Errorf("deleting blob %s: %w", d, err)
		case ok:
			freed++
			bytes += n
		}
		delete(unnamed, d)
	}
	if freed > 0 {
		s.gc.blobsFreed.Add(freed)
		s.gc.bytesFreed.Add(bytes)
		s.log.Info("site gc: this zone's copies of blobs no longer named freed", "blobs_freed", freed, "bytes_freed", bytes, "grace", grace)
	}
	return nil
}

// GuardedBlobs is the blob store of a site as its writers see it: each
// Put, IngestFile and Stat of a digest is remembered (touched), and the
// collector deletes a blob's bytes only when nothing touched it within
// the grace. That covers what the metadata's marks cannot see: a write
// that stores (or finds) the bytes and links them a moment later (an
// upload's Put then its LinkBlob; the sync's Stat of a blob it holds
// then the manifest that links it), during which the collector might
// otherwise delete the bytes the link will name. The Syncer makes one
// around Config.Blobs (Syncer.Blobs); give it to the API too. Touches are
// the node's own: every zone of a site guards its own copies.
type GuardedBlobs struct {
	storage.BlobStore
	mu      sync.Mutex
	touched map[digest.Digest]time.Time
}

// Blobs is the site's blob store with the collector's guard: the API's
// writes must go through it.
func (s *Syncer) Blobs() *GuardedBlobs { return s.guard }

var (
	_ storage.BlobStore    = (*GuardedBlobs)(nil)
	_ storage.FileIngester = (*GuardedBlobs)(nil)
)

func (g *GuardedBlobs) touch(d digest.Digest) {
	g.mu.Lock()
	g.touched[d] = time.Now()
	g.mu.Unlock()
}

// Stat implements storage.BlobStore: a writer that finds the blob held
// will link it next.
func (g *GuardedBlobs) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	g.touch(d)
	return g.BlobStore.Stat(ctx, d)
}

// Put implements storage.BlobStore.
func (g *GuardedBlobs) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) (int64, error) {
	g.touch(d)
	return g.BlobStore.Put(ctx, d, size, r)
}

// IngestFile implements storage.FileIngester (with a Put of the file
// when the store it guards cannot take files).
func (g *GuardedBlobs) IngestFile(ctx context.Context, d digest.Digest, size int64, path string) error {
	g.touch(d)
	if fi, ok := g.BlobStore.(storage.FileIngester); ok {
		return fi.IngestFile(ctx, d, size, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := g.BlobStore.Put(ctx, d, size, f); err != nil {
		return err
	}
	f.Close()
	return os.Remove(path)
}

// Check is the guarded store's verified read (region.Blobs.Check), or a
// Stat when it has none.
func (g *GuardedBlobs) Check(ctx context.Context, d digest.Digest) error {
	if c, ok := g.BlobStore.(interface {
		Check(context.Context, digest.Digest) error
	}); ok {
		return c.Check(ctx, d)
	}
	_, err := g.BlobStore.Stat(ctx, d)
	return err
}

// deleteUntouched deletes d's bytes unless a writer touched it after
// since; it reports whether it did.
func (g *GuardedBlobs) deleteUntouched(ctx context.Context, d digest.Digest, since time.Time) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.touched[d]; ok && at.After(since) {
		return false, nil
	}
	if err := g.BlobStore.Delete(ctx, d); err != nil {
		return false, err
	}
	return true, nil
}

// forget drops the touches older than since, which no longer keep
// anything.
func (g *GuardedBlobs) forget(since time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for d, at := range g.touched {
		if !at.After(since) {
			delete(g.touched, d)
		}
	}
}
