package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/region/meta"
	"github.com/georeg/georeg/storage"
)

// FetchManifest copies repo's manifest ref (a tag or digest) from the first
// peer region that holds it, so that a pull never fails because replication
// has not delivered it yet. It returns an error wrapping storage.ErrNotFound
// when no reachable peer holds it.
func (r *Replicator) FetchManifest(ctx context.Context, repo, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	for _, peer := range r.peerRegions() {
		err := r.pullManifest(ctx, peer, repo, ref, true)
		if err == nil {
			r.m.ReadThrough.WithLabelValues("manifest").Inc()
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w: %s:%s in no peer region: %v", storage.ErrNotFound, repo, ref, errors.Join(errs...))
}

// FetchBlob copies blob dgst of repo from the first peer region that holds
// it in repo, and links it into repo here. Bytes this region already holds
// (in any repository) are not sent again: only the peer's word that the
// blob belongs to repo is asked for.
func (r *Replicator) FetchBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var errs []error
	for _, peer := range r.peerRegions() {
		// Asking from the blob's end transfers nothing but still makes the
		// peer check that the blob is repo's.
		offset := int64(0)
		if size, err := r.cfg.Meta.Blob(dgst); err == nil {
			if _, serr := r.cfg.Blobs.Stat(ctx, dgst); serr == nil {
				offset = size
			}
		}
		if offset > 0 {
			err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
				s, err := c.GetBlob(ctx, &replicationpb.GetBlobRequest{Digest: dgst.String(), Offset: offset, Region: r.region, Repo: repo})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
		} else if err := r.fetchRepoBlob(ctx, peer, repo, dgst, -1); err != nil {
			errs = append(errs, err)
			continue
		}
		size, err := r.cfg.Blobs.Stat(ctx, dgst)
		if err != nil {
			return err
		}
		r.m.ReadThrough.WithLabelValues("blob").Inc()
		return r.cfg.Meta.Apply(ctx, meta.Command{Op: meta.OpLinkBlob, Repo: repo, Digest: dgst, Size: size, Time: time.Now().UTC()})
	}
	return fmt.Errorf("%w: blob %s of %s in no peer region: %v", storage.ErrNotFound, dgst, repo, errors.Join(errs...))
}

// WaitReplicated returns once n regions, this one included, hold manifest
// dgst of repo, or fails with an error wrapping storage.ErrUnavailable when
// ctx ends first. It is how a push asks for geo-durability: acknowledged
// only when losing a whole region cannot lose it.
func (r *Replicator) WaitReplicated(ctx context.Context, repo string, dgst digest.Digest, n int) error {
	have := map[string]bool{}
	for {
		for _, peer := range r.peerRegions() {
			if have[peer] {
				continue
			}
			err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
				resp, err := c.GetManifest(ctx, &replicationpb.GetManifestRequest{Repo: repo, Reference: dgst.String()})
				if err == nil && resp.Found {
					have[peer] = true
				}
				return err
			})
			_ = err // a peer that cannot be asked simply does not count yet
		}
		if 1+len(have) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s@%s is in %d of the %d regions asked for", storage.ErrUnavailable, repo, dgst, 1+len(have), n)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
