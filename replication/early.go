package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/proto/replicationpb"
)

// Early blob offers. A manifest's offer reaches a peer only once the client
// pushed the manifest, after every layer: a big image's bytes would start
// crossing the link only then, and a client pushing 256 MiB spends most of a
// second on its layers first. So a node that stores a big blob tells every
// peer region at once (BlobLanded → OfferBlob), and the peer's leader starts
// fetching it in the background. The manifest's offer, when it comes, finds
// the bytes there or joins the fetch in flight (fetchBlob is single-flight
// by digest). An early offer is a hint: a lost one costs time, never data;
// the bytes are linked into no repository until an offer commits a manifest
// that references them, and a blob no manifest ever references stays in
// the peer's blob store as it does in the origin's.

const (
	// earlyMinBytes is the smallest blob offered early: below it, the
	// manifest's offer carries the blob inline or fetches it in one round
	// trip, and an offer per blob and peer would cost more than it saves.
	earlyMinBytes = 1 << 20
	// maxEarlyFetches bounds the early fetches a region's leader runs at
	// once; past it, early offers are declined (the manifest's offer
	// fetches as ever).
	maxEarlyFetches = 32
	// maxEarlySends bounds the early offers a node has on the way to its
	// peers at once; past it, blobs that land are not offered early.
	maxEarlySends = 64
	// earlySendTimeout bounds one early offer to one peer region.
	earlySendTimeout = 10 * time.Second
)

// BlobLanded offers a blob that was just stored and linked into repo to
// every peer region, without waiting for them, when it is big enough to be
// worth fetching ahead of its manifest. It never blocks the caller.
func (r *Replicator) BlobLanded(repo string, dgst digest.Digest, size int64) {
	if size < earlyMinBytes {
		return
	}
	for _, peer := range r.peerRegions() {
		select {
		case r.earlySends <- struct{}{}:
		default:
			return
		}
		go func() {
			defer func() { <-r.earlySends }()
			ctx, cancel := context.WithTimeout(r.life, earlySendTimeout)
			defer cancel()
			req := &replicationpb.OfferBlobRequest{Origin: r.region, Repo: repo, Digest: dgst.String(), Size: size}
			err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
				_, err := c.OfferBlob(ctx, req)
				return err
			})
			if err != nil && status.Code(err) != codes.Unimplemented {
				r.log.Debug("early blob offer", "peer", peer, "repo", repo, "digest", dgst, "err", err)
			}
		}()
	}
}

// OfferBlob starts fetching a blob that landed in a peer region, at this
// region's leader, unless the region holds it or fetches it already.
func (r *Replicator) OfferBlob(ctx context.Context, req *replicationpb.OfferBlobRequest) (*replicationpb.OfferBlobResponse, error) {
	dgst, err := r.checkOfferBlob(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if c, ok := r.leaderClient(); ok {
		return c.OfferBlob(ctx, req)
	}
	if !r.cfg.Meta.IsLeader() {
		return nil, status.Error(codes.Unavailable, "the region has no leader to fetch the blob")
	}
	if r.xfers.isActive(dgst) || r.cfg.Meta.BlobUnlinked(req.Repo, dgst) {
		return &replicationpb.OfferBlobResponse{}, nil
	}
	if _, err := r.cfg.Blobs.Stat(ctx, dgst); err == nil {
		return &replicationpb.OfferBlobResponse{}, nil
	}
	select {
	case r.earlyFetches <- struct{}{}:
	default:
		r.m.EarlyBlobs.WithLabelValues("declined").Inc()
		return &replicationpb.OfferBlobResponse{}, nil
	}
	r.m.EarlyBlobs.WithLabelValues("started").Inc()
	go func() {
		defer func() { <-r.earlyFetches }()
		if err := r.fetchBlob(r.life, req.Origin, dgst, req.Size); err != nil && r.life.Err() == nil {
			// The manifest's offer fetches it again, resuming the
			// partial file.
			r.log.Info("early blob fetch", "from", req.Origin, "digest", dgst, "err", err)
		}
	}()
	return &replicationpb.OfferBlobResponse{Started: true}, nil
}

// checkOfferBlob checks an early offer before anything is done with it.
func (r *Replicator) checkOfferBlob(req *replicationpb.OfferBlobRequest) (digest.Digest, error) {
	switch origin := req.GetOrigin(); {
	case origin == "":
		return "", errors.New("the offer names no origin region")
	case origin == r.region:
		return "", fmt.Errorf("a blob offered as from %s, this region", origin)
	}
	if err := oci.ValidateName(req.GetRepo()); err != nil {
		return "", fmt.Errorf("repository: %w", err)
	}
	dgst, err := oci.ParseDigest(req.GetDigest())
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	if req.GetSize() < earlyMinBytes {
		return "", fmt.Errorf("size %d is below the %d bytes of an early offer", req.GetSize(), earlyMinBytes)
	}
	return dgst, nil
}
