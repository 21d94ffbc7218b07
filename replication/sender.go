package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/replicationpb"
)

// The sending side of offers. A peer's sender reads the outbox in order
// and cuts it into batches (Config.OfferBatchEvents events, or
// Config.OfferBatchBytes of manifests), and keeps up to
// Config.OffersInFlight batches unanswered, so that one round trip to a
// distant region carries hundreds of events and several round trips
// overlap. The peer's cursor in the region's Raft log only moves past a
// batch once the peer has answered it and every batch before it: a
// restarted or new leader offers again from there, and since delivery is
// idempotent, offering twice costs time, not correctness. When a batch
// fails, the sender lets the others in flight finish, then starts again
// after the last batch acknowledged in order, after a backoff.

// outboxIdle is how often a sender with nothing new to offer looks at the
// outbox anyway. New events do not wait for it: a write to the local
// replica wakes the sender (Metadata.Changed) while it has room for
// another batch, idle or with batches in flight; this only bounds how
// long a missed wake-up could last, and it re-checks the outbox's bound.
const outboxIdle = time.Second

// boundCheckInterval is how often a sender backing off from a peer checks
// the outbox's bound (Config.OutboxMaxEvents, OutboxMaxAge).
const boundCheckInterval = 250 * time.Millisecond

// outBatch is a batch of events offered to a peer.
type outBatch struct {
	req    *replicationpb.OfferBatchRequest
	last   uint64    // the newest seq the batch covers (delivered or skipped)
	oldest time.Time // when its first event was written
	newest time.Time // when its last event was written
	bytes  int       // of manifests and inline blobs
	// inlineBytes are the bytes of the blobs its events carry inline.
	inlineBytes int

	finished bool
	err      error
}

type batchResult struct {
	b   *outBatch
	err error
}

// sendLoop offers outbox events to one peer region.
func (r *Replicator) sendLoop(ctx context.Context, peer string) {
	cursor, known := r.cfg.Meta.Cursors()[peer]
	if !known {
		// Give the peer a cursor before offering it anything: the outbox
		// drops the events every peer with a cursor acknowledged, so a
		// peer slow or cut off from its first offer on would otherwise
		// lose them to its faster siblings' acks and wait for
		// anti-entropy.
		r.ack(ctx, peer, cursor)
	}
	var (
		acked    = cursor // recorded in the region's Raft log
		done     = cursor // the peer answered every batch up to here
		next     = cursor // the newest seq sent or skipped
		inflight []*outBatch
		failed   bool
		lastAck  = time.Now()
		backoff  = 100 * time.Millisecond
		results  = make(chan batchResult, r.cfg.OffersInFlight)
		memo     = newInlineMemo()
	)
	for ctx.Err() == nil {
		// Taken before the outbox is read, so that a write committed
		// after the read still wakes the wait below.
		changed := r.cfg.Meta.Changed()
		if len(inflight) == 0 {
			if head, ok := r.dropBacklog(ctx, peer, done); ok {
				acked, done, next, lastAck = head, head, head, time.Now()
			}
		}
		for !failed && len(inflight) < r.cfg.OffersInFlight && inflightBytes(inflight) < r.maxInflightBytes() {
			// Read the last sequence before the events: if none come back
			// while nothing is in flight, every event up to it was dropped
			// from the outbox (all peers known then had it), and a peer
			// that joined since catches up through anti-entropy instead.
			head := r.cfg.Meta.LastSeq()
			events, err := r.cfg.Meta.OutboxAfter(next, r.cfg.OfferBatchEvents)
			if err != nil {
				r.log.Error("reading the outbox", "err", err)
				break
			}
			if len(events) == 0 {
				if len(inflight) == 0 && next < head {
					next, done = head, head
				}
				break
			}
			// Events written between the two reads came back too: the
			// batch's head covers them, or the peer would refuse it as
			// claiming events beyond the origin's newest.
			b, err := r.buildBatch(ctx, next, max(head, events[len(events)-1].Seq), events, memo)
			if err != nil {
				r.log.Error("reading the outbox's manifests", "err", err)
				break
			}
			next = b.last
			inflight = append(inflight, b)
			if len(b.req.Events) == 0 {
				results <- batchResult{b: b}
				continue
			}
			go func() { results <- batchResult{b, r.sendBatch(ctx, peer, b)} }()
		}
		r.updateLag(peer, done, inflight)
		if len(inflight) == 0 {
			if acked < done {
				r.ack(ctx, peer, done)
				acked, lastAck = done, time.Now()
			}
			idle := time.NewTimer(outboxIdle)
			select {
			case <-ctx.Done():
				idle.Stop()
				return
			case <-changed:
			case <-idle.C:
			}
			idle.Stop()
			continue
		}
		// With room for another batch, offer what is written meanwhile
		// at once rather than wait for an answer a round trip away.
		var more <-chan struct{}
		if !failed && len(inflight) < r.cfg.OffersInFlight && inflightBytes(inflight) < r.maxInflightBytes() {
			more = changed
		}
		var res batchResult
		select {
		case <-ctx.Done():
			return
		case res = <-results:
		case <-more:
			continue
		}
		res.b.finished, res.b.err = true, res.err
		if res.err != nil {
			if ctx.Err() != nil {
				return
			}
			failed = true
			// The peer may lack what the failed batches carried: inline
			// it again when they are offered again.
			memo = newInlineMemo()
			r.setPeer(peer, func(p *PeerStatus) { p.LastError = res.err.Error() })
			r.log.Warn("offer failed, will retry", "peer", peer, "after", res.b.req.After, "events", len(res.b.req.Events), "err", res.err)
		} else if n := len(res.b.req.Events); n > 0 {
			r.m.EventsSent.WithLabelValues(peer).Add(float64(n))
			r.m.OfferBytes.WithLabelValues(peer).Add(float64(res.b.bytes))
			delivery := time.Since(res.b.newest)
			r.m.DeliverySeconds.WithLabelValues(peer).Observe(delivery.Seconds())
			r.setPeer(peer, func(p *PeerStatus) { p.DeliverySeconds = delivery.Seconds() })
			r.setLive(peer, func(l *peerLive) { l.events.add(time.Now(), float64(n)) })
			if !failed {
				r.setPeer(peer, func(p *PeerStatus) { p.LastError = ""; p.LastSync = time.Now().UTC() })
			}
		}
		for len(inflight) > 0 && inflight[0].finished && inflight[0].err == nil {
			done = inflight[0].last
			inflight = inflight[1:]
		}
		if done-acked >= uint64(r.cfg.OfferBatchEvents) || time.Since(lastAck) > time.Second {
			r.ack(ctx, peer, done)
			acked, lastAck = done, time.Now()
		}
		if !failed {
			backoff = 100 * time.Millisecond
			continue
		}
		if !allFinished(inflight) {
			continue
		}
		// Start again after the last batch answered in order.
		inflight, next, failed = nil, done, false
		// Exponential backoff with full jitter.
		sleep := time.Duration(rand.Int64N(int64(backoff)))
		backoff = min(backoff*2, 5*time.Second)
		wake, changed := time.After(sleep), r.cfg.Members.Changed()
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				waiting = false
			case <-changed:
				// A node joined or left: perhaps the peer's, back from a
				// restart; try again now rather than after the backoff.
				waiting = false
			case <-time.After(boundCheckInterval):
				// A peer that is down is where the outbox grows.
				if head, ok := r.dropBacklog(ctx, peer, done); ok {
					acked, done, next, lastAck = head, head, head, time.Now()
				}
			}
		}
	}
}

// dropBacklog drops the events after done that peer has not acknowledged
// when they are past the outbox's bound, recording the drop in the
// region's Raft log with the peer's new cursor, so that the outbox is
// trimmed of them once the other peers hold them. The peer re-syncs from
// summaries: its own anti-entropy rounds pull what it lacks. It returns
// the peer's new cursor.
func (r *Replicator) dropBacklog(ctx context.Context, peer string, done uint64) (uint64, bool) {
	head := r.cfg.Meta.LastSeq()
	if head <= done {
		return 0, false
	}
	why := ""
	if limit := r.cfg.OutboxMaxEvents; limit > 0 && head-done > uint64(limit) {
		why = fmt.Sprintf("more than %d events", limit)
	} else if age := r.cfg.OutboxMaxAge; age > 0 {
		if events, err := r.cfg.Meta.OutboxAfter(done, 1); err == nil && len(events) > 0 && time.Since(events[0].Time) > age {
			why = fmt.Sprintf("an event older than %v", age)
		}
	}
	if why == "" {
		return 0, false
	}
	n := head - done
	if err := r.cfg.Meta.Apply(ctx, meta.AckOutbox{Peer: peer, Seq: head, Dropped: n, Time: time.Now().UTC()}); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("dropping a peer's events past the outbox's bound", "peer", peer, "err", err)
		}
		return 0, false
	}
	r.m.EventsDropped.WithLabelValues(peer).Add(float64(n))
	r.log.Warn("peer left "+why+" unacknowledged: dropped them; it re-syncs from summaries (anti-entropy)",
		"peer", peer, "events", n, "through", head)
	return head, true
}

// maxInflightBytes bounds the manifest and inline bytes of the batches
// offered to a peer and not answered yet: the most that 8 full batches
// hold. Under a stream of pushes batches are small, and many are in
// flight (Config.OffersInFlight) to a distant peer; a few full ones use
// the budget.
func (r *Replicator) maxInflightBytes() int { return 8 * r.cfg.OfferBatchBytes }

func inflightBytes(bs []*outBatch) int {
	n := 0
	for _, b := range bs {
		if !b.finished {
			n += b.bytes
		}
	}
	return n
}

func allFinished(bs []*outBatch) bool {
	for _, b := range bs {
		if !b.finished {
			return false
		}
	}
	return true
}

// buildBatch makes a batch of events read after seq after: as many as
// Config.OfferBatchBytes of manifests and inline blobs allow (at least
// one). A push whose manifest was deleted since is skipped: the delete's
// own event follows. A push carries the small blobs of its manifest that
// memo does not name (see inline.go).
func (r *Replicator) buildBatch(ctx context.Context, after, head uint64, events []meta.Event, memo *inlineMemo) (*outBatch, error) {
	b := &outBatch{req: &replicationpb.OfferBatchRequest{Origin: r.region, After: after, Head: head}, last: after}
	for _, e := range events {
		o := offer{event: e}
		if e.Op == meta.OpPutManifest {
			m, err := r.cfg.Meta.Manifest(e.Repo, e.Digest)
			if errors.Is(err, meta.ErrManifestUnknown) {
				b.last = e.Seq
				continue
			}
			if err != nil {
				return nil, err
			}
			if len(b.req.Events) > 0 && b.bytes+len(m.Content) > r.cfg.OfferBatchBytes {
				break
			}
			inlined := 0
			if len(b.req.Events) == 0 || b.bytes+len(m.Content)+maxInlineEvent <= r.cfg.OfferBatchBytes {
				o.inline = r.inlineBlobs(ctx, m.MediaType, m.Content, memo)
				for _, ib := range o.inline {
					inlined += len(ib.data)
				}
			}
			o.mediaType, o.manifest = m.MediaType, m.Content
			b.bytes += len(m.Content) + inlined
			b.inlineBytes += inlined
		}
		pb, err := offerToProto(o)
		if err != nil {
			return nil, err
		}
		if b.oldest.IsZero() {
			b.oldest = e.Time
		}
		b.newest = e.Time
		b.req.Events = append(b.req.Events, pb)
		b.last = e.Seq
	}
	return b, nil
}

// sendBatch offers a batch to a peer region. A peer that does not know
// OfferBatch gets the events one at a time.
func (r *Replicator) sendBatch(ctx context.Context, peer string, b *outBatch) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	sent := r.m.BytesSent.WithLabelValues(peer)
	return r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
		// Inline blob bytes cross the link as streamed ones do, and are
		// counted as they leave, as those are.
		sent.Add(float64(b.inlineBytes))
		_, err := c.OfferBatch(ctx, b.req)
		if status.Code(err) != codes.Unimplemented {
			return err
		}
		sent.Add(float64(b.inlineBytes))
		for _, e := range b.req.Events {
			if _, err := c.Offer(ctx, &replicationpb.OfferRequest{Event: e, Origin: b.req.Origin}); err != nil {
				return err
			}
		}
		return nil
	})
}

// updateLag records how far behind peer is: the events after done, and the
// age of the oldest of them.
func (r *Replicator) updateLag(peer string, done uint64, inflight []*outBatch) {
	last := r.cfg.Meta.LastSeq()
	backlog := last - min(done, last)
	lag := 0.0
	if backlog > 0 {
		var oldest time.Time
		if len(inflight) > 0 {
			oldest = inflight[0].oldest
		} else if events, err := r.cfg.Meta.OutboxAfter(done, 1); err == nil && len(events) > 0 {
			oldest = events[0].Time
		}
		if !oldest.IsZero() {
			lag = time.Since(oldest).Seconds()
		}
	}
	r.m.OffersInFlight.WithLabelValues(peer).Set(float64(len(inflight)))
	r.setLive(peer, func(l *peerLive) { l.offersInFlight = len(inflight) })
	r.m.OutboxBacklog.WithLabelValues(peer).Set(float64(backlog))
	r.m.LagSeconds.WithLabelValues(peer).Set(lag)
	r.setPeer(peer, func(p *PeerStatus) { p.Backlog, p.LagSeconds = backlog, lag })
}
