package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/meta"
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
//
// An early fetch is the same transfer as an offer's (durable segments in a
// region of several zones, resumed by a new leader), with two differences:
// it runs on the Replicator's lifetime, so Close stops it, and it is not
// started over a transfer the region already records (an interrupted one,
// which the offers and anti-entropy resume with the size they know), and a
// fetch the origin answers NOT_FOUND ends the record it began, so that a
// bad offer leaves nothing behind.

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
	// maxEarlyBytes bounds the size an early offer may claim.
	maxEarlyBytes = 1 << 40
	// forwardedKey marks an early offer a follower passed on to its
	// leader: a node that receives one and does not lead answers
	// UNAVAILABLE instead of passing it on again, so that a call cannot
	// go round while leadership moves.
	forwardedKey = "georeg-forwarded"
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
			continue // the slots are taken by slow peers; try the next
		}
		started := r.goBackground(func() {
			defer func() { <-r.earlySends }()
			ctx, cancel := context.WithTimeout(r.life, earlySendTimeout)
			defer cancel()
			req := &replicationpb.OfferBlobRequest{Origin: r.region, Repo: repo, Digest: dgst.String(), Size: size}
			err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
				_, err := c.OfferBlob(ctx, req)
				if status.Code(err) == codes.Unimplemented {
					return nil // an older build: its offers fetch as ever
				}
				return err
			})
			if err != nil {
				r.log.Debug("early blob offer", "peer", peer, "repo", repo, "digest", dgst, "err", err)
			}
		})
		if !started {
			<-r.earlySends
			return
		}
	}
}

// OfferBlob starts fetching a blob that landed in a peer region, at this
// region's leader, unless the region holds it or fetches it already.
func (r *Replicator) OfferBlob(ctx context.Context, req *replicationpb.OfferBlobRequest) (*replicationpb.OfferBlobResponse, error) {
	dgst, err := r.checkOfferBlob(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	forwarded := len(metadata.ValueFromIncomingContext(ctx, forwardedKey)) > 0
	if c, ok := r.leaderClient(); ok && !forwarded {
		return c.OfferBlob(metadata.AppendToOutgoingContext(ctx, forwardedKey, "1"), req)
	}
	if !r.cfg.Meta.IsLeader() {
		return nil, status.Error(codes.Unavailable, "this node does not lead its region, which fetches the blob")
	}
	if !slices.Contains(r.peerRegions(), req.Origin) {
		return nil, status.Errorf(codes.InvalidArgument, "%s is not a region this one replicates with", req.Origin)
	}
	if r.xfers.isActive(dgst) {
		return &replicationpb.OfferBlobResponse{}, nil
	}
	if _, err := r.cfg.Blobs.Stat(ctx, dgst); err == nil {
		return &replicationpb.OfferBlobResponse{}, nil
	}
	if tlog, ok := r.cfg.Meta.(TransferLog); ok {
		if _, err := tlog.Transfer(dgst); err == nil {
			return &replicationpb.OfferBlobResponse{}, nil
		}
	}
	if !r.early.claim(dgst) {
		return &replicationpb.OfferBlobResponse{}, nil
	}
	select {
	case r.earlyFetches <- struct{}{}:
	default:
		r.early.end(dgst)
		r.m.EarlyBlobs.WithLabelValues("declined").Inc()
		return &replicationpb.OfferBlobResponse{}, nil
	}
	started := r.goBackground(func() {
		defer func() { <-r.earlyFetches }()
		defer r.early.end(dgst)
		err := r.fetchShared(r.life, req.Origin, dgst, req.Size)
		if err == nil || r.life.Err() != nil {
			return
		}
		// The manifest's offer fetches it again, resuming what is kept.
		r.log.Info("early blob fetch", "from", req.Origin, "digest", dgst, "err", err)
		if status.Code(err) == codes.NotFound {
			r.endTransferRecord(r.life, dgst)
		}
	})
	if !started {
		<-r.earlyFetches
		r.early.end(dgst)
		return nil, status.Error(codes.Unavailable, "this node is shutting down")
	}
	r.m.EarlyBlobs.WithLabelValues("started").Inc()
	return &replicationpb.OfferBlobResponse{Started: true}, nil
}

// goBackground runs f in a goroutine Close waits for, and reports false,
// running nothing, once Close has begun.
func (r *Replicator) goBackground(f func()) bool {
	r.bgMu.Lock()
	defer r.bgMu.Unlock()
	if r.closed {
		return false
	}
	r.background.Go(f)
	return true
}

// endTransferRecord ends the region's record of a transfer of dgst, if
// there is one: an early offer of a blob the origin does not hold must not
// leave a record behind for a day.
func (r *Replicator) endTransferRecord(ctx context.Context, dgst digest.Digest) {
	tlog, ok := r.cfg.Meta.(TransferLog)
	if !ok {
		return
	}
	rec, err := tlog.Transfer(dgst)
	if err != nil {
		return
	}
	if err := r.cfg.Meta.Apply(ctx, meta.TransferEnd{Digest: dgst, ID: rec.ID, Time: time.Now().UTC()}); err != nil {
		r.log.Warn("early blob fetch: ending the record of its transfer", "digest", dgst, "err", err)
	}
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
	if size := req.GetSize(); size < earlyMinBytes || size > maxEarlyBytes {
		return "", fmt.Errorf("size %d is outside the %d to %d bytes of an early offer", size, earlyMinBytes, int64(maxEarlyBytes))
	}
	return dgst, nil
}
