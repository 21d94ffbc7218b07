package replication

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/replicationpb"
)

const (
	// aeRepos is how many repositories an anti-entropy round reconciles
	// at once, and aeManifests how many manifests it pulls at once into
	// each of them.
	aeRepos     = 16
	aeManifests = 16
)

// antiEntropy compares this region with peer repository by repository and
// pulls whatever the peer holds that this region lacks: manifests, newer
// tags and tombstones. Every region does the same with every peer, so all
// converge on the union of their writes, resolved last-writer-wins.
func (r *Replicator) antiEntropy(ctx context.Context, peer string) {
	if _, busy := r.aeRunning.LoadOrStore(peer, true); busy {
		return
	}
	defer r.aeRunning.Delete(peer)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
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
	// Repositories are reconciled several at once: one at a time, a round
	// after a long outage took a round trip per repository and two per
	// manifest, in sequence.
	var differ []string
	for repo, sum := range theirs.Repos {
		if ours[repo].String() != sum {
			differ = append(differ, repo)
		}
	}
	if len(differ) > 0 {
		// A round with work to do replaces the last one's progress.
		r.setLive(peer, func(l *peerLive) {
			l.sync = syncProgress{started: time.Now(), repos: len(differ)}
		})
		defer r.setLive(peer, func(l *peerLive) { l.sync.ended = time.Now() })
	}
	var failed atomic.Bool
	var g errgroup.Group
	g.SetLimit(aeRepos)
	for _, repo := range differ {
		g.Go(func() error {
			if err := r.reconcile(ctx, peer, repo); err != nil {
				failed.Store(true)
				r.log.Warn("anti-entropy: repository not reconciled yet", "peer", peer, "repo", repo, "err", err)
			}
			r.setLive(peer, func(l *peerLive) { l.sync.reposDone++ })
			return nil
		})
	}
	g.Wait()
	if !failed.Load() {
		r.stateMu.Lock()
		r.synced[peer] = time.Now().UTC()
		r.stateMu.Unlock()
	}
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
	dead := map[string]meta.ManifestState{}
	for _, t := range mine.Tombstones {
		dead[t.Digest.String()] = t
	}
	now := time.Now().UTC()
	// Deletes first: a manifest deleted there should not be fetched here.
	for _, t := range theirs.Tombstones {
		if d, ok := dead[t.Digest.String()]; ok && d.Clock >= t.Clock {
			continue
		}
		if err := r.cfg.Meta.Apply(ctx, meta.DeleteManifest{Repo: repo, Digest: t.Digest,
			Replicated: true, Clock: t.Clock, Origin: t.Origin, Time: now}); err != nil {
			return err
		}
		r.m.AntiEntropyFix.Inc()
		dead[t.Digest.String()] = t
	}
	// A missing manifest that a tag points at is pulled by that tag, so it
	// arrives as one tagged push (one webhook event, with its tag).
	tagOf := map[string]string{}
	for _, t := range theirs.Tags {
		if !t.Deleted {
			tagOf[t.Digest.String()] = t.Tag
		}
	}
	// Missing manifests are pulled several at once (an index pulls the
	// children it lacks itself; pulling one twice is harmless).
	var g errgroup.Group
	g.SetLimit(aeManifests)
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
