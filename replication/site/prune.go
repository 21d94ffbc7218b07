package site

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
)

// The resync compares tags, and tags alone do not say which manifests the
// parent still holds: a manifest deleted there while the site was away
// past its message TTL lost its tags at the site but stayed by digest.
// pruneManifests makes the site's manifests of a repository follow the
// parent's: a manifest the parent no longer has is deleted at the site
// (with the tags that point at it), and the collector then frees its
// blobs. A manifest a local write not yet synced up names is left alone
// (ReadWrite): the site's own content is dropped only once the parent has
// had it.

// repoStater reads one repository's manifests and tags (*meta.Reader).
type repoStater interface {
	RepoState(repo string) (meta.RepoState, error)
}

// pruneManifests deletes the manifests of repo the parent does not hold.
// confirmed are manifests the parent was just seen to hold (the targets
// of its tags): they and their index children are kept without asking.
// The others are asked for by digest (HEAD), unless outside is set (repo
// is not among the repositories the site syncs: every manifest goes).
func (s *Syncer) pruneManifests(ctx context.Context, repo string, confirmed map[digest.Digest]bool, outside bool) error {
	rs, ok := s.cfg.Meta.(repoStater)
	if !ok {
		return nil
	}
	st, err := rs.RepoState(repo)
	if err != nil {
		return err
	}
	keep := map[digest.Digest]bool{}
	for d := range confirmed {
		s.keepWithChildren(repo, d, keep, 0)
	}
	for _, m := range st.Manifests {
		if keep[m.Digest] || s.isPending(repo, "", m.Digest.String()) {
			continue
		}
		if !outside {
			_, err := s.c.headManifest(ctx, repo, m.Digest.String())
			var he *HTTPError
			if err == nil || !errors.As(err, &he) || he.Status != http.StatusNotFound {
				if err != nil {
					return fmt.Errorf("%s@%s: %w", repo, m.Digest, err)
				}
				continue
			}
		}
		s.clock.Observe(m.Clock)
		err := s.cfg.Meta.Apply(ctx, meta.DeleteManifest{Repo: repo, Digest: m.Digest, Time: time.Now().UTC(),
			Replicated: true, Clock: s.clock.Now(), Origin: s.origin.Load().(string)})
		if err != nil && !errors.Is(err, meta.ErrManifestUnknown) {
			return fmt.Errorf("deleting %s@%s: %w", repo, m.Digest, err)
		}
		s.gc.manifestsPruned.Add(1)
		s.log.Info("manifest gone from the parent: deleted here", "repo", repo, "digest", m.Digest, "outside", outside)
	}
	return nil
}

// keepWithChildren adds d and the manifests it indexes to keep.
func (s *Syncer) keepWithChildren(repo string, d digest.Digest, keep map[digest.Digest]bool, depth int) {
	if keep[d] || depth > maxDepth {
		return
	}
	keep[d] = true
	rec, err := s.cfg.Meta.Manifest(repo, d)
	if err != nil {
		return
	}
	m, err := oci.ParseManifest(rec.MediaType, rec.Content)
	if err != nil {
		return
	}
	for _, c := range m.Manifests {
		s.keepWithChildren(repo, c.Digest, keep, depth+1)
	}
}

// pruneOutside deletes what the site holds of the repositories it no
// longer syncs (after an update of its repositories); the resync does it
// too, so a failure is only logged.
func (s *Syncer) pruneOutside(ctx context.Context) {
	reg := s.reg()
	if len(reg.Repositories) == 0 {
		return
	}
	local, _, err := s.cfg.Meta.Repositories("", 0)
	if err != nil {
		s.log.Warn("pruning repositories no longer synced", "err", err)
		return
	}
	for _, r := range local {
		if reg.Syncs(r) {
			continue
		}
		if err := s.pruneManifests(ctx, r, nil, true); err != nil {
			s.log.Warn("pruning a repository no longer synced", "repo", r, "err", err)
		}
	}
}
