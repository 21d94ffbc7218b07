package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	peers := r.peerRegions()
	for _, peer := range peers {
		err := r.pullManifest(ctx, peer, repo, ref, true)
		if err == nil {
			r.m.ReadThrough.WithLabelValues("manifest").Inc()
			return nil
		}
		errs = append(errs, err)
	}
	return readThroughError(fmt.Sprintf("%s:%s", repo, ref), peers, errs)
}

// FetchBlob copies blob dgst of repo from the first peer region that holds
// it in repo, and links it into repo here. The peer is first asked, for
// nothing but its word, whether the blob is repo's; the bytes then come
// through the same single-flight transfer as replication's own, so a pull
// racing an offer on this node does not fetch the blob twice, and bytes the
// region already holds are not fetched at all.
func (r *Replicator) FetchBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var errs []error
	peers := r.peerRegions()
	for _, peer := range peers {
		var size int64 = -1
		err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
			// Asking from past any real size transfers nothing but still
			// makes the peer check that the blob is repo's.
			s, err := c.GetBlob(ctx, &replicationpb.GetBlobRequest{Digest: dgst.String(), Offset: 1 << 62, Region: r.region, Repo: repo})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			if status.Code(err) == codes.OutOfRange {
				return nil // linked there; only the offset was refused
			}
			return err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.ensureBlob(ctx, peer, dgst, size); err != nil {
			errs = append(errs, err)
			continue
		}
		got, err := r.cfg.Blobs.Stat(ctx, dgst)
		if err != nil {
			return err
		}
		r.m.ReadThrough.WithLabelValues("blob").Inc()
		return r.cfg.Meta.Apply(ctx, meta.Command{Op: meta.OpLinkBlob, Repo: repo, Digest: dgst, Size: got, Time: time.Now().UTC()})
	}
	return readThroughError(fmt.Sprintf("blob %s of %s", dgst, repo), peers, errs)
}

// readThroughError says why content was read through from no peer: not
// found (storage.ErrNotFound) when every peer region answered that it does
// not hold it, or when there is no peer; unavailable
// (storage.ErrUnavailable) when a peer could not be asked (it may be the
// one that holds it: a region restarting, or this node just restarted and
// has not found the others yet), so that the client, or the traffic
// manager, retries instead of taking a 404 for an answer.
func readThroughError(what string, peers []string, errs []error) error {
	unasked := 0
	for _, err := range errs {
		if !errors.Is(err, storage.ErrNotFound) && status.Code(err) != codes.NotFound {
			unasked++
		}
	}
	if len(peers) == 0 || unasked == 0 {
		return fmt.Errorf("%w: %s in no peer region: %v", storage.ErrNotFound, what, errors.Join(errs...))
	}
	return fmt.Errorf("%w: %s: no peer region could be asked: %v", storage.ErrUnavailable, what, errors.Join(errs...))
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
