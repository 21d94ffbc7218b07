package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/hlc"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/storage"
)

// The receiving side of offers: a batch is checked whole before any of it
// is applied, then its events are applied concurrently, each after the
// events before it in the batch that touch the same tag or manifest (or a
// child manifest it needs). Within one event the order is what it always
// was: the blobs are durable before the manifest is committed, and the tag
// commits with the manifest, so no region ever shows a tag whose manifest
// or blobs it lacks. Batches in flight at once may apply in any order:
// tags and deletes merge last-writer-wins on (clock, origin), so the
// result is the same.

const (
	// maxOfferEvents bounds the events of one batch a receiver accepts.
	maxOfferEvents = 4096
	// applyConcurrency is how many events of one batch are applied at
	// once. Concurrent commits share the metadata store's fsync (and, in
	// a region, its Raft round).
	applyConcurrency = 128
	// maxClockAhead is how far ahead of this node's clock an event's
	// hybrid logical clock may be. A clock further ahead would win every
	// last-writer-wins merge for that long; a region with a clock that
	// wrong must be fixed, not believed.
	maxClockAhead = 10 * time.Minute
)

// checkedOffer is an offered event that passed checkOffers.
type checkedOffer struct {
	offer
	// children are the child manifests an index needs.
	children []digest.Digest
}

// checkOffers checks every event of a batch from origin, so that a batch
// with one bad event is refused before any of it is applied. after and
// head bound the events' sequences (see OfferBatchRequest); a single
// Offer passes 0 and the event's own sequence.
func (r *Replicator) checkOffers(origin string, after, head uint64, events []*replicationpb.Event) ([]checkedOffer, error) {
	switch {
	case origin == "":
		return nil, errors.New("the batch names no origin region")
	case origin == r.region:
		return nil, fmt.Errorf("a batch offered as from %s, this region", origin)
	case after > head:
		return nil, fmt.Errorf("the batch follows event %d, beyond the origin's newest event %d", after, head)
	case len(events) > maxOfferEvents:
		return nil, fmt.Errorf("the batch holds %d events, more than %d", len(events), maxOfferEvents)
	}
	limit := uint64(time.Now().Add(maxClockAhead).UnixMilli()) << 16
	prev := after
	out := make([]checkedOffer, 0, len(events))
	for i, pb := range events {
		if pb == nil {
			return nil, fmt.Errorf("event %d of the batch is empty", i)
		}
		o, err := offerFromProto(pb)
		if err != nil {
			return nil, err
		}
		e := o.event
		switch {
		case e.Seq <= prev:
			return nil, fmt.Errorf("event %d follows event %d: sequences must grow", e.Seq, prev)
		case e.Seq > head:
			return nil, fmt.Errorf("event %d is beyond the origin's newest event %d", e.Seq, head)
		case e.Origin == "":
			return nil, fmt.Errorf("event %d names no origin region", e.Seq)
		case e.Clock == 0:
			return nil, fmt.Errorf("event %d has no clock", e.Seq)
		case e.Clock > limit:
			return nil, fmt.Errorf("event %d has a clock of %v, more than %v ahead of this node's", e.Seq, hlc.Time(e.Clock).UTC(), maxClockAhead)
		}
		prev = e.Seq
		if err := oci.ValidateName(e.Repo); err != nil {
			return nil, fmt.Errorf("event %d: repository %q: %w", e.Seq, e.Repo, err)
		}
		c := checkedOffer{offer: o}
		if e.Op == meta.OpPutManifest || e.Op == meta.OpDeleteTag {
			if e.Tag != "" || e.Op == meta.OpDeleteTag {
				if err := oci.ValidateTag(e.Tag); err != nil {
					return nil, fmt.Errorf("event %d: tag %q: %w", e.Seq, e.Tag, err)
				}
			}
		}
		if e.Op == meta.OpPutManifest || e.Op == meta.OpDeleteManifest {
			if err := e.Digest.Validate(); err != nil {
				return nil, fmt.Errorf("event %d: digest %q: %w", e.Seq, e.Digest, err)
			}
		}
		if e.Op == meta.OpPutManifest {
			if e.Digest.Algorithm().FromBytes(o.manifest) != e.Digest {
				return nil, fmt.Errorf("event %d: manifest %s does not match its digest", e.Seq, e.Digest)
			}
			m, err := oci.ParseManifest(o.mediaType, o.manifest)
			if err != nil {
				return nil, fmt.Errorf("event %d: manifest %s: %w", e.Seq, e.Digest, err)
			}
			for _, d := range m.Manifests {
				c.children = append(c.children, d.Digest)
			}
			if err := checkInline(m, o.inline); err != nil {
				return nil, fmt.Errorf("event %d: manifest %s: %w", e.Seq, e.Digest, err)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// OfferBatch applies a batch of a peer region's events.
func (r *Replicator) OfferBatch(ctx context.Context, req *replicationpb.OfferBatchRequest) (*replicationpb.OfferBatchResponse, error) {
	offers, err := r.checkOffers(req.GetOrigin(), req.GetAfter(), req.GetHead(), req.GetEvents())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "offer from %s refused, nothing applied: %v", req.GetOrigin(), err)
	}
	if c, ok := r.leaderClient(); ok {
		// The leader fetches for the whole region; hand the batch over.
		return c.OfferBatch(ctx, req)
	}
	if err := r.applyOffers(ctx, req.GetOrigin(), offers); err != nil {
		return nil, offerStatus(err)
	}
	return &replicationpb.OfferBatchResponse{}, nil
}

// Offer applies one event of a peer region (a batch of one).
func (r *Replicator) Offer(ctx context.Context, req *replicationpb.OfferRequest) (*replicationpb.OfferResponse, error) {
	ev := req.GetEvent()
	offers, err := r.checkOffers(req.GetOrigin(), 0, ev.GetSeq(), []*replicationpb.Event{ev})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "offer from %s refused, nothing applied: %v", req.GetOrigin(), err)
	}
	if c, ok := r.leaderClient(); ok {
		return c.Offer(ctx, req)
	}
	if err := r.applyOffers(ctx, req.GetOrigin(), offers); err != nil {
		return nil, offerStatus(err)
	}
	return &replicationpb.OfferResponse{}, nil
}

// leaderClient returns a client of the region's leader when another node
// leads it.
func (r *Replicator) leaderClient() (replicationpb.ReplicationClient, bool) {
	if r.cfg.Meta.IsLeader() {
		return nil, false
	}
	l, ok := r.cfg.Meta.Leader()
	if !ok || l.ID == r.cfg.Members.Self().ID {
		return nil, false
	}
	c, err := r.client(l.GRPC)
	return c, err == nil
}

func offerStatus(err error) error {
	if errors.Is(err, storage.ErrUnavailable) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// applyOffers applies checked events from region from: concurrently, each
// after the earlier events of the batch it shares a key with.
func (r *Replicator) applyOffers(ctx context.Context, from string, offers []checkedOffer) error {
	// Any event of the batch may use a blob another one carries: a sender
	// inlines a blob once however many of its pushes reference it.
	var inline map[digest.Digest][]byte
	received := 0
	for _, o := range offers {
		for _, b := range o.inline {
			if inline == nil {
				inline = map[digest.Digest][]byte{}
			}
			inline[b.digest] = b.data
			received += len(b.data)
		}
	}
	if received > 0 {
		r.m.BytesReceived.WithLabelValues(from).Add(float64(received))
		r.setLive(from, func(l *peerLive) { l.blobBytes.add(time.Now(), float64(received)) })
	}
	done := make([]chan struct{}, len(offers))
	errs := make([]error, len(offers))
	last := map[string]int{}
	sem := make(chan struct{}, applyConcurrency)
	var wg sync.WaitGroup
	for i, o := range offers {
		done[i] = make(chan struct{})
		var deps []int
		for _, k := range offerKeys(o) {
			if j, ok := last[k]; ok {
				deps = append(deps, j)
			}
			last[k] = i
		}
		// Taken in batch order, so an event's dependencies already run or
		// ran: waiting on them cannot deadlock.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer close(done[i])
			defer func() { <-sem }()
			for _, j := range deps {
				<-done[j]
			}
			errs[i] = r.applyOffer(ctx, from, o.offer, inline)
		})
	}
	wg.Wait()
	var failed []error
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Errorf("event %d: %w", offers[i].event.Seq, err))
		}
	}
	if len(failed) > 3 {
		failed = append(failed[:3], fmt.Errorf("and %d more", len(failed)-3))
	}
	return errors.Join(failed...)
}

// offerKeys names what an event touches, for ordering within a batch.
func offerKeys(o checkedOffer) []string {
	e := o.event
	var keys []string
	if e.Tag != "" {
		keys = append(keys, "t "+e.Repo+" "+e.Tag)
	}
	if e.Digest != "" {
		keys = append(keys, "m "+e.Repo+" "+e.Digest.String())
	}
	for _, c := range o.children {
		keys = append(keys, "m "+e.Repo+" "+c.String())
	}
	return keys
}

// applyOffer applies one checked event; inline are the blobs its batch
// carries.
func (r *Replicator) applyOffer(ctx context.Context, from string, o offer, inline map[digest.Digest][]byte) error {
	e := o.event
	switch e.Op {
	case meta.OpPutManifest:
		_, err := r.ingestManifest(ctx, from, e.Repo, e.Digest, o.mediaType, o.manifest, inline, e.Tag, e.Clock, e.Origin, e.Time)
		return err
	case meta.OpDeleteTag:
		return r.cfg.Meta.Apply(ctx, meta.MergeTag{Repo: e.Repo, Tag: e.Tag, Deleted: true,
			Clock: e.Clock, Origin: e.Origin, Time: e.Time})
	case meta.OpDeleteManifest:
		return r.cfg.Meta.Apply(ctx, meta.DeleteManifest{Repo: e.Repo, Digest: e.Digest,
			Replicated: true, Clock: e.Clock, Origin: e.Origin, Time: e.Time})
	}
	return fmt.Errorf("unknown event %q", e.Op)
}
