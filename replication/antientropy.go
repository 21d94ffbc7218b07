package replication

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/storage"
)

const (
	// aePage is how many repositories a page of an anti-entropy round
	// holds: their states come in one RepoStates answer, the manifests
	// they lack in one or a few GetManifests answers, and they commit in
	// batches (meta.ReplicatedBatch). aePages pages are reconciled at
	// once.
	aePage  = 64
	aePages = 4
	// aeManifests is how many manifests of a page are prepared at once
	// (their blobs fetched, or found here).
	aeManifests = 32
	// aeBatch is the most items one meta.ReplicatedBatch carries, and
	// aeBatchBytes about the most manifest bytes.
	aeBatch      = 512
	aeBatchBytes = 2 << 20
	// aeRepos and aeManifests1 are the repositories reconciled at once,
	// and the manifests pulled at once into each, with a peer that
	// answers one repository and one manifest per request (an older
	// build).
	aeRepos      = 16
	aeManifests1 = 16
)

// antiEntropy compares this region with peer repository by repository and
// pulls whatever the peer holds that this region lacks: manifests, newer
// tags and tombstones. Every region does the same with every peer, so all
// converge on the union of their writes, resolved last-writer-wins.
//
// The repositories that differ are copied in pages (aePage at once: one
// round trip for their states, one per thousand manifests they lack, and
// a Raft entry per few hundred writes), aePages pages at once: an initial
// sync or a catch-up after a long outage is bound by the bytes to copy
// and the log's writes, not by a round trip per tag.
func (r *Replicator) antiEntropy(ctx context.Context, peer string) {
	if _, busy := r.aeRunning.LoadOrStore(peer, true); busy {
		return
	}
	defer r.aeRunning.Delete(peer)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var theirs *replicationpb.SummaryResponse
	err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
		var err error
		theirs, err = c.Summary(ctx, &replicationpb.SummaryRequest{})
		return err
	})
	if err != nil {
		r.log.Debug("anti-entropy: peer unreachable", "peer", peer, "err", err)
		return
	}
	ours, err := r.cfg.Meta.RepoSummaries()
	if err != nil {
		r.log.Error("anti-entropy: summaries", "err", err)
		return
	}
	var differ []string
	var tags, bytes int64
	for repo, sum := range theirs.Repos {
		if ours[repo].String() != sum {
			differ = append(differ, repo)
			tags += theirs.Sizes[repo].GetTags()
			bytes += theirs.Sizes[repo].GetBytes()
		}
	}
	if len(differ) == 0 {
		r.stateMu.Lock()
		r.synced[peer] = time.Now().UTC()
		r.stateMu.Unlock()
		return
	}
	sort.Strings(differ)
	// A round with work to do replaces the last one's progress.
	r.setLive(peer, func(l *peerLive) {
		l.sync = syncProgress{started: time.Now(), repos: len(differ), tags: tags, bytes: bytes}
	})
	defer r.setLive(peer, func(l *peerLive) { l.sync.ended = time.Now() })
	done := func(repo string) {
		r.setLive(peer, func(l *peerLive) {
			l.sync.reposDone++
			l.sync.tagsDone += theirs.Sizes[repo].GetTags()
			l.sync.bytesDone += theirs.Sizes[repo].GetBytes()
		})
	}
	var failed atomic.Bool
	var g errgroup.Group
	g.SetLimit(aePages)
	paged := true
	var pagedMu sync.Mutex
	for len(differ) > 0 {
		page := differ[:min(aePage, len(differ))]
		differ = differ[len(page):]
		g.Go(func() error {
			pagedMu.Lock()
			p := paged
			pagedMu.Unlock()
			if p {
				err := r.reconcilePage(ctx, peer, page, done)
				if status.Code(errors.Unwrap(err)) != codes.Unimplemented && status.Code(err) != codes.Unimplemented {
					if err != nil {
						failed.Store(true)
						r.log.Warn("anti-entropy: page not reconciled yet", "peer", peer, "repos", len(page), "first", page[0], "err", err)
					}
					return nil
				}
				// An older build: one repository and one manifest per
				// request.
				pagedMu.Lock()
				paged = false
				pagedMu.Unlock()
			}
			var pg errgroup.Group
			pg.SetLimit(aeRepos / aePages)
			for _, repo := range page {
				pg.Go(func() error {
					if err := r.reconcile(ctx, peer, repo); err != nil {
						failed.Store(true)
						r.log.Warn("anti-entropy: repository not reconciled yet", "peer", peer, "repo", repo, "err", err)
					} else {
						done(repo)
					}
					return nil
				})
			}
			return pg.Wait()
		})
	}
	g.Wait()
	if !failed.Load() {
		r.stateMu.Lock()
		r.synced[peer] = time.Now().UTC()
		r.stateMu.Unlock()
	}
}

// reconcilePage brings the repositories of page in step with peer: their
// states in one request, the manifests they lack in as few as the answers'
// bounds allow, deletes first, manifests and then tags committed in
// batches. It calls done for each repository reconciled.
func (r *Replicator) reconcilePage(ctx context.Context, peer string, page []string, done func(repo string)) error {
	states, err := r.repoStates(ctx, peer, page)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	type want struct {
		repo, ref string
		tagged    bool
	}
	var wants []want
	for _, repo := range page {
		theirs := states[repo]
		mine, err := r.cfg.Meta.RepoState(repo)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, m := range mine.Manifests {
			have[m.Digest.String()] = true
		}
		dead, err := r.applyTombstones(ctx, repo, mine, theirs, now)
		if err != nil {
			return err
		}
		tagOf := liveTags(theirs)
		for _, m := range theirs.Manifests {
			if have[m.Digest.String()] {
				continue
			}
			if d, ok := dead[m.Digest.String()]; ok && (d.Clock > m.Clock || (d.Clock == m.Clock && d.Origin >= m.Origin)) {
				continue
			}
			w := want{repo: repo, ref: m.Digest.String()}
			if tag := tagOf[w.ref]; tag != "" {
				w.ref, w.tagged = tag, true
			}
			wants = append(wants, w)
		}
	}

	// The manifests, fetched by the thousand, prepared (blobs here)
	// several at once, and committed in batches.
	failedRepos := map[string]error{}
	var mu sync.Mutex
	fail := func(repo string, err error) {
		mu.Lock()
		if failedRepos[repo] == nil {
			failedRepos[repo] = err
		}
		mu.Unlock()
	}
	var batch []meta.PutManifest
	for len(wants) > 0 {
		chunk := wants[:min(maxPage, len(wants))]
		refs := make([]*replicationpb.ManifestRef, len(chunk))
		for i, w := range chunk {
			refs[i] = &replicationpb.ManifestRef{Repo: w.repo, Reference: w.ref}
		}
		var resp *replicationpb.GetManifestsResponse
		err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
			var err error
			resp, err = c.GetManifests(ctx, &replicationpb.GetManifestsRequest{Refs: refs})
			return err
		})
		if err != nil {
			return err
		}
		if len(resp.Manifests) == 0 || len(resp.Manifests) > len(chunk) {
			return fmt.Errorf("%s answered %d manifests of %d asked", peer, len(resp.Manifests), len(chunk))
		}
		wants = wants[len(resp.Manifests):]
		var g errgroup.Group
		g.SetLimit(aeManifests)
		for i, got := range resp.Manifests {
			w := chunk[i]
			g.Go(func() error {
				if !got.Found {
					fail(w.repo, fmt.Errorf("%w: %s@%s not in %s", storage.ErrNotFound, w.repo, w.ref, peer))
					return nil
				}
				tag, clock, origin := "", got.Clock, got.Origin
				if w.tagged {
					tag, clock, origin = w.ref, got.TagClock, got.TagOrigin
				}
				cmd, err := r.prepareManifest(ctx, peer, w.repo, digest.Digest(got.Digest), got.MediaType, got.Content, nil, tag, clock, origin, now)
				if err == nil && len(cmd.RequiresManifests) > 0 {
					// An index commits on its own (its children may be
					// refused, after its links were written).
					err = r.cfg.Meta.Apply(ctx, cmd)
					if err == nil {
						r.m.AntiEntropyFix.Inc()
						r.setLive(peer, func(l *peerLive) { l.sync.manifests++ })
					}
				} else if err == nil {
					mu.Lock()
					batch = append(batch, cmd)
					mu.Unlock()
				}
				if err != nil {
					fail(w.repo, err)
				}
				return nil
			})
		}
		g.Wait()
		for _, b := range splitBatch(batch) {
			for repo, err := range r.applyBatch(ctx, meta.ReplicatedBatch{Manifests: b}) {
				fail(repo, err)
			}
			r.m.AntiEntropyFix.Add(float64(len(b)))
			r.setLive(peer, func(l *peerLive) { l.sync.manifests += len(b) })
		}
		batch = batch[:0]
	}

	// Then the tags that differ, in the repositories whose manifests all
	// arrived.
	var merges []meta.MergeTag
	for _, repo := range page {
		if failedRepos[repo] != nil {
			continue
		}
		mine, err := r.cfg.Meta.RepoState(repo)
		if err != nil {
			return err
		}
		ourTags := map[string]meta.TagState{}
		for _, t := range mine.Tags {
			ourTags[t.Tag] = t
		}
		for _, t := range states[repo].Tags {
			o, ok := ourTags[t.Tag]
			if ok && (o.Clock > t.Clock || (o.Clock == t.Clock && o.Origin >= t.Origin)) {
				continue
			}
			merges = append(merges, meta.MergeTag{Repo: repo, Tag: t.Tag, Digest: t.Digest,
				Deleted: t.Deleted, Clock: t.Clock, Origin: t.Origin, Time: t.Updated})
		}
	}
	for len(merges) > 0 {
		b := merges[:min(aeBatch, len(merges))]
		merges = merges[len(b):]
		for repo, err := range r.applyBatch(ctx, meta.ReplicatedBatch{Tags: b}) {
			fail(repo, err)
		}
		r.m.AntiEntropyFix.Add(float64(len(b)))
	}
	var first error
	for _, repo := range page {
		if err := failedRepos[repo]; err != nil {
			if first == nil {
				first = fmt.Errorf("%d of %d repositories not reconciled, %s: %w", len(failedRepos), len(page), repo, err)
			}
			continue
		}
		done(repo)
	}
	return first
}

// splitBatch cuts manifests into batches of at most aeBatch items and
// about aeBatchBytes of content.
func splitBatch(ms []meta.PutManifest) [][]meta.PutManifest {
	var out [][]meta.PutManifest
	size := 0
	for i := 0; i < len(ms); {
		j := i
		for size = 0; j < len(ms) && j-i < aeBatch && (j == i || size+len(ms[j].Manifest.Content) <= aeBatchBytes); j++ {
			size += len(ms[j].Manifest.Content)
		}
		out = append(out, ms[i:j])
		i = j
	}
	return out
}

// applyBatch commits a batch; when it fails, each of its items is applied
// on its own (every item is idempotent), to tell the repositories whose
// writes failed from the others. It returns the errors by repository.
func (r *Replicator) applyBatch(ctx context.Context, b meta.ReplicatedBatch) map[string]error {
	if err := r.cfg.Meta.Apply(ctx, b); err == nil {
		return nil
	}
	failed := map[string]error{}
	for _, m := range b.Manifests {
		if err := r.cfg.Meta.Apply(ctx, m); err != nil && failed[m.Repo] == nil {
			failed[m.Repo] = err
		}
	}
	for _, t := range b.Tags {
		if err := r.cfg.Meta.Apply(ctx, t); err != nil && failed[t.Repo] == nil {
			failed[t.Repo] = err
		}
	}
	return failed
}

// repoStates asks peer for the states of repos, as many requests as its
// answers' bounds take.
func (r *Replicator) repoStates(ctx context.Context, peer string, repos []string) (map[string]meta.RepoState, error) {
	out := make(map[string]meta.RepoState, len(repos))
	for len(repos) > 0 {
		ask := repos[:min(maxPage, len(repos))]
		var resp *replicationpb.RepoStatesResponse
		err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
			var err error
			resp, err = c.RepoStates(ctx, &replicationpb.RepoStatesRequest{Repos: ask})
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(resp.Repos) == 0 || len(resp.Repos) > len(ask) {
			return nil, fmt.Errorf("%s answered %d repositories of %d asked", peer, len(resp.Repos), len(ask))
		}
		for i, st := range resp.Repos {
			if st.Repo != ask[i] {
				return nil, fmt.Errorf("%s answered %q for %q", peer, st.Repo, ask[i])
			}
			out[st.Repo] = repoStateFromProto(st)
		}
		repos = repos[len(resp.Repos):]
	}
	return out, nil
}

// applyTombstones applies the deletes the peer's state of repo has and
// this region's lacks or has older, before anything is fetched (a manifest
// deleted there must not be fetched here), and returns every tombstone
// the repository now has, by digest.
func (r *Replicator) applyTombstones(ctx context.Context, repo string, mine, theirs meta.RepoState, now time.Time) (map[string]meta.ManifestState, error) {
	dead := map[string]meta.ManifestState{}
	for _, t := range mine.Tombstones {
		dead[t.Digest.String()] = t
	}
	for _, t := range theirs.Tombstones {
		if d, ok := dead[t.Digest.String()]; ok && d.Clock >= t.Clock {
			continue
		}
		if err := r.cfg.Meta.Apply(ctx, meta.DeleteManifest{Repo: repo, Digest: t.Digest,
			Replicated: true, Clock: t.Clock, Origin: t.Origin, Time: now}); err != nil {
			return nil, err
		}
		r.m.AntiEntropyFix.Inc()
		dead[t.Digest.String()] = t
	}
	return dead, nil
}

// liveTags maps each digest a live tag of st points at to that tag: a
// missing manifest that a tag points at is pulled by that tag, so it
// arrives as one tagged push (one webhook event, with its tag).
func liveTags(st meta.RepoState) map[string]string {
	tagOf := map[string]string{}
	for _, t := range st.Tags {
		if !t.Deleted {
			tagOf[t.Digest.String()] = t.Tag
		}
	}
	return tagOf
}

func (r *Replicator) reconcile(ctx context.Context, peer, repo string) error {
	var resp *replicationpb.RepoStateResponse
	err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
		var err error
		resp, err = c.RepoState(ctx, &replicationpb.RepoStateRequest{Repo: repo})
		return err
	})
	if err != nil {
		return err
	}
	theirs := repoStateFromProto(resp)
	mine, err := r.cfg.Meta.RepoState(repo)
	if err != nil {
		return err
	}
	have := map[string]meta.ManifestState{}
	for _, m := range mine.Manifests {
		have[m.Digest.String()] = m
	}
	now := time.Now().UTC()
	dead, err := r.applyTombstones(ctx, repo, mine, theirs, now)
	if err != nil {
		return err
	}
	tagOf := liveTags(theirs)
	// Missing manifests are pulled several at once (an index pulls the
	// children it lacks itself; pulling one twice is harmless).
	var g errgroup.Group
	g.SetLimit(aeManifests1)
	for _, m := range theirs.Manifests {
		if _, ok := have[m.Digest.String()]; ok {
			continue
		}
		if d, ok := dead[m.Digest.String()]; ok && (d.Clock > m.Clock || (d.Clock == m.Clock && d.Origin >= m.Origin)) {
			continue
		}
		ref, tagged := m.Digest.String(), false
		if tag := tagOf[ref]; tag != "" {
			ref, tagged = tag, true
		}
		g.Go(func() error {
			if err := r.pullManifest(ctx, peer, repo, ref, tagged); err != nil {
				return err
			}
			r.m.AntiEntropyFix.Inc()
			r.setLive(peer, func(l *peerLive) { l.sync.manifests++ })
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	mine, err = r.cfg.Meta.RepoState(repo)
	if err != nil {
		return err
	}
	ourTags := map[string]meta.TagState{}
	for _, t := range mine.Tags {
		ourTags[t.Tag] = t
	}
	for _, t := range theirs.Tags {
		o, ok := ourTags[t.Tag]
		if ok && (o.Clock > t.Clock || (o.Clock == t.Clock && o.Origin >= t.Origin)) {
			continue
		}
		if err := r.cfg.Meta.Apply(ctx, meta.MergeTag{Repo: repo, Tag: t.Tag, Digest: t.Digest,
			Deleted: t.Deleted, Clock: t.Clock, Origin: t.Origin, Time: t.Updated}); err != nil {
			return err
		}
		r.m.AntiEntropyFix.Inc()
	}
	return nil
}

// Synced returns when anti-entropy last found nothing to pull from each
// peer.
func (r *Replicator) Synced() map[string]time.Time {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	out := make(map[string]time.Time, len(r.synced))
	for k, v := range r.synced {
		out[k] = v
	}
	return out
}
