package replication

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
)

// Small blobs travel inline: a manifest push's event carries the bytes of
// the small blobs its manifest references (its config, small layers), so
// that the peer stores them and commits the manifest as soon as the offer
// arrives, instead of answering it a round trip later, after fetching
// them (a small image cost one-way + a full round trip + work; it now
// costs one-way + work). Everything else about a push is unchanged: the
// peer checks every inline blob against its digest and the manifest's
// descriptor before it applies any of the batch, skips those it already
// holds, stores the others durably before it commits the manifest (and
// the tag with it), and fetches whatever was not inlined by the usual
// path. Anti-entropy and read-through fetch, as before.

const (
	// maxInlineBlob is the largest blob an event carries inline. At
	// 64 KiB its bytes cost well under a millisecond of a 100 MB/s link,
	// against a round trip of 70-140 ms between regions to fetch it; a
	// larger blob is the more likely to be a layer other images share,
	// which the fetch path sends a region once and inlining would send
	// with each push that references it.
	maxInlineBlob = 64 << 10
	// maxInlineEvent bounds the inline bytes of one event, so that an
	// image of many small layers still makes a message of bounded size;
	// its other layers are fetched, concurrently, as before. Inline bytes
	// also count against Config.OfferBatchBytes, which bounds a batch.
	maxInlineEvent = 256 << 10
	// inlineMemoSize is how many digests a sender remembers inlining to a
	// peer. A small blob many pushes share (a common config, a small base
	// layer) goes inline once; the peer holds it when the next push that
	// references it arrives, or fetches it if it lost it.
	inlineMemoSize = 4096
)

// inlineMemo is the digests a sender inlined to one peer lately, the
// oldest forgotten first. Only the peer's send loop uses it.
type inlineMemo struct {
	set  map[digest.Digest]struct{}
	ring []digest.Digest
	next int
}

func newInlineMemo() *inlineMemo {
	return &inlineMemo{set: map[digest.Digest]struct{}{}, ring: make([]digest.Digest, inlineMemoSize)}
}

func (m *inlineMemo) has(d digest.Digest) bool {
	_, ok := m.set[d]
	return ok
}

func (m *inlineMemo) add(d digest.Digest) {
	if m.has(d) {
		return
	}
	if old := m.ring[m.next]; old != "" {
		delete(m.set, old)
	}
	m.ring[m.next] = d
	m.set[d] = struct{}{}
	m.next = (m.next + 1) % len(m.ring)
}

// inlineBlobs returns the small blobs of a pushed manifest to carry with
// its event to a peer: at most maxInlineEvent bytes of blobs of at most
// maxInlineBlob each, those in memo left out, in the manifest's order. A
// blob this region cannot read whole and matching its digest is left to
// the peer's fetch, which reports the problem where it always did.
func (r *Replicator) inlineBlobs(ctx context.Context, mediaType string, content []byte, memo *inlineMemo) []inlineBlob {
	m, err := oci.ParseManifest(mediaType, content)
	if err != nil {
		return nil
	}
	var out []inlineBlob
	total := int64(0)
	for _, b := range m.Blobs() {
		if b.Size < 0 || b.Size > maxInlineBlob || total+b.Size > maxInlineEvent || memo.has(b.Digest) || b.Digest.Validate() != nil {
			continue
		}
		if slicesContainsBlob(out, b.Digest) {
			continue
		}
		data, err := r.readSmallBlob(ctx, b.Digest, b.Size)
		if err != nil {
			r.log.Debug("not inlining a blob; the peer fetches it", "digest", b.Digest, "err", err)
			continue
		}
		out = append(out, inlineBlob{digest: b.Digest, data: data})
		total += b.Size
		memo.add(b.Digest)
	}
	return out
}

func slicesContainsBlob(bs []inlineBlob, d digest.Digest) bool {
	for _, b := range bs {
		if b.digest == d {
			return true
		}
	}
	return false
}

// readSmallBlob reads a blob of size bytes whole and checks it against
// its digest: a sender that inlined bad bytes would have its whole batch
// refused.
func (r *Replicator) readSmallBlob(ctx context.Context, d digest.Digest, size int64) ([]byte, error) {
	rc, err := r.cfg.Blobs.Open(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("%w: %d bytes stored, the manifest says %d", storage.ErrSizeMismatch, len(data), size)
	}
	if d.Algorithm().FromBytes(data) != d {
		return nil, storage.ErrDigestMismatch
	}
	return data, nil
}

// checkInline checks the inline blobs of a pushed manifest m: each a
// well-formed digest of a blob m references, of the size m says and no
// more than maxInlineBlob, matching its digest, once; no more than
// maxInlineEvent in all.
func checkInline(m *oci.Manifest, inline []inlineBlob) error {
	if len(inline) == 0 {
		return nil
	}
	sizes := map[digest.Digest]int64{}
	for _, b := range m.Blobs() {
		sizes[b.Digest] = b.Size
	}
	seen := map[digest.Digest]bool{}
	total := 0
	for _, b := range inline {
		if err := b.digest.Validate(); err != nil {
			return fmt.Errorf("inline blob %q: %w", b.digest, err)
		}
		size, ok := sizes[b.digest]
		switch {
		case !ok:
			return fmt.Errorf("inline blob %s is not a blob of the manifest", b.digest)
		case seen[b.digest]:
			return fmt.Errorf("inline blob %s comes twice", b.digest)
		case len(b.data) > maxInlineBlob:
			return fmt.Errorf("inline blob %s holds %d bytes, more than %d", b.digest, len(b.data), maxInlineBlob)
		case int64(len(b.data)) != size:
			return fmt.Errorf("inline blob %s holds %d bytes, the manifest says %d", b.digest, len(b.data), size)
		}
		seen[b.digest] = true
		if total += len(b.data); total > maxInlineEvent {
			return fmt.Errorf("inline blobs of more than %d bytes", maxInlineEvent)
		}
		if got := b.digest.Algorithm().FromBytes(b.data); got != b.digest {
			return fmt.Errorf("inline blob %s does not match its digest (its bytes hash to %s)", b.digest, got)
		}
	}
	return nil
}

// storeInline stores a blob a peer carried inline, already checked
// against its digest, unless the region holds it already. It shares the
// fetches' flight per digest, so that two events carrying the same blob,
// or an event and a fetch, store it once; like a fetch, the flight does
// not end with the caller that started it.
func (r *Replicator) storeInline(ctx context.Context, from string, d digest.Digest, data []byte) error {
	_, err, _ := r.fetches.Do(d.String(), func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		if _, err := r.cfg.Blobs.Stat(ctx, d); err == nil {
			return nil, nil
		}
		if _, err := r.cfg.Blobs.Put(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("storing blob %s that %s sent inline: %w", d, from, err)
		}
		return nil, nil
	})
	return err
}
