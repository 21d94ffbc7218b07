package meta

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// OpReplicatedBatch is the Op of ReplicatedBatch.
const OpReplicatedBatch Op = "replicated-batch"

// MaxBatchItems bounds the manifests and tags of one ReplicatedBatch.
const MaxBatchItems = 1024

// ReplicatedBatch applies another region's manifests, then its tags, in
// one entry and one transaction: a catch-up copies thousands of them, and
// one entry each (one fsync each) bounded it at the rate the log could
// sync. Each item has the effect it has as a command of its own, notices
// included. Every manifest must be a replicated push of an image whose
// blobs it links (no index: an index requires child manifests, and a
// missing one would refuse after the links were written).
//
// Items that a command of their own would refuse for missing content (a
// tag pointing at a manifest the repository does not hold) are skipped
// and the batch, having applied the others, returns a *MissingContentError
// naming what they lacked; any other error applies nothing.
type ReplicatedBatch struct {
	Manifests []PutManifest `json:"manifests,omitempty"`
	Tags      []MergeTag    `json:"tags,omitempty"`
}

// Op implements Command.
func (ReplicatedBatch) Op() Op { return OpReplicatedBatch }

// Stamp implements Stamped with the batch's latest write, so that the
// region's clock observes it as it would each item's; a batch holds only
// replicated writes.
func (b ReplicatedBatch) Stamp() Stamp {
	st := Stamp{Replicated: true}
	for _, m := range b.Manifests {
		st.Clock = max(st.Clock, m.Clock)
	}
	for _, t := range b.Tags {
		st.Clock = max(st.Clock, t.Clock)
	}
	return st
}

// WithStamp implements Stamped: the items keep their own stamps.
func (b ReplicatedBatch) WithStamp(Stamp) Command { return b }

// check refuses a batch that is not made only of replicated writes of
// images whose blobs it links.
func (b ReplicatedBatch) check() error {
	if n := len(b.Manifests) + len(b.Tags); n > MaxBatchItems {
		return fmt.Errorf("meta: replicated batch of %d items, at most %d", n, MaxBatchItems)
	}
	for _, m := range b.Manifests {
		if !m.Replicated || m.Clock == 0 {
			return fmt.Errorf("meta: replicated batch: %s@%s is not a replicated write", m.Repo, m.Manifest.Digest)
		}
		if len(m.RequiresManifests) > 0 {
			return fmt.Errorf("meta: replicated batch: %s@%s requires manifests", m.Repo, m.Manifest.Digest)
		}
		linked := map[digest.Digest]bool{}
		for _, l := range m.Links {
			linked[l.Digest] = true
		}
		for _, d := range m.Requires {
			if !linked[d] {
				return fmt.Errorf("meta: replicated batch: %s@%s requires %s without linking it", m.Repo, m.Manifest.Digest, d)
			}
		}
	}
	return nil
}

func (b ReplicatedBatch) apply(tx *bolt.Tx) error {
	if err := b.check(); err != nil {
		return err
	}
	var missing []digest.Digest
	skip := func(err error) error {
		var mc *MissingContentError
		if errors.As(err, &mc) {
			missing = append(missing, mc.Digests...)
			return nil
		}
		return err
	}
	for _, m := range b.Manifests {
		if err := skip(m.apply(tx)); err != nil {
			return err
		}
	}
	for _, t := range b.Tags {
		if err := skip(t.apply(tx)); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return &MissingContentError{Digests: missing}
	}
	return nil
}
