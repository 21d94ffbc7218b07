package meta

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Op names the kind of a Command.
type Op string

// The commands a Store applies.
const (
	// OpLinkBlob records a verified blob (Digest, Size) and links it into Repo.
	OpLinkBlob Op = "link-blob"
	// OpUnlinkBlob removes the link of Digest from Repo. The bytes stay until
	// garbage collection.
	OpUnlinkBlob Op = "unlink-blob"
	// OpPutManifest links Links into Repo, stores Manifest, tags it with Tag
	// when set, and indexes it as a referrer of its subject. It fails with
	// *MissingContentError unless every digest in Requires is linked into
	// Repo and every digest in RequiresManifests is a manifest of Repo. A
	// replicated put loses to a newer delete of the manifest or tag.
	OpPutManifest Op = "put-manifest"
	// OpDeleteManifest removes manifest Digest from Repo with every tag that
	// points at it and its referrers-index entry, leaving a tombstone.
	OpDeleteManifest Op = "delete-manifest"
	// OpDeleteTag removes Tag from Repo, leaving a tombstone.
	OpDeleteTag Op = "delete-tag"
	// OpMergeTag merges a peer region's state of Tag (Digest, or Deleted)
	// with Clock and Origin: the later write wins.
	OpMergeTag Op = "merge-tag"
	// OpAckOutbox records that peer region Peer holds every event up to Seq
	// and drops events every known peer holds.
	OpAckOutbox Op = "ack-outbox"
)

// ErrUnknownCommand is returned for a command of an Op this version does not
// know (a newer node's command in a mixed-version group).
var ErrUnknownCommand = errors.New("meta: unknown command")

// Link is a blob to link into a repository.
type Link struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// Command is one metadata change. Its JSON encoding is stable: it is what a
// replicated log carries.
type Command struct {
	Op                Op              `json:"op"`
	Repo              string          `json:"repo"`
	Digest            digest.Digest   `json:"digest,omitempty"`
	Size              int64           `json:"size,omitempty"`
	Tag               string          `json:"tag,omitempty"`
	Manifest          *ManifestRecord `json:"manifest,omitempty"`
	Links             []Link          `json:"links,omitempty"`
	Requires          []digest.Digest `json:"requires,omitempty"`
	RequiresManifests []digest.Digest `json:"requiresManifests,omitempty"`
	// Time is when the command was proposed; it is recorded instead of the
	// applying replica's clock so that every replica stores the same value.
	Time time.Time `json:"time"`
	// Clock is the hybrid logical clock of the write and Origin the region
	// where a client made it. They order writes to one tag or manifest
	// across regions (last writer wins).
	Clock  uint64 `json:"clock,omitempty"`
	Origin string `json:"origin,omitempty"`
	// Replicated marks a write that another region made: it merges by
	// (Clock, Origin) and is not offered to other regions again.
	Replicated bool `json:"replicated,omitempty"`
	// Deleted is the tombstone flag of OpMergeTag.
	Deleted bool `json:"deleted,omitempty"`
	// Peer and Seq are the arguments of OpAckOutbox.
	Peer string `json:"peer,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
	// Replication is the argument of the replication commands.
	Replication *Replication `json:"replication,omitempty"`
	// Transfer is the argument of the transfer commands.
	Transfer *Transfer `json:"transfer,omitempty"`
	// Webhook and Delivery are the arguments of the webhook commands.
	Webhook  *Webhook  `json:"webhook,omitempty"`
	Delivery *Delivery `json:"delivery,omitempty"`
	// Request describes the client request behind a write, for webhooks.
	Request *RequestInfo `json:"request,omitempty"`
}

// Event is a replication event: a local write other regions must learn. It
// is appended to the outbox in the same transaction as the write.
type Event struct {
	Seq    uint64        `json:"seq"`
	Op     Op            `json:"op"`
	Repo   string        `json:"repo"`
	Tag    string        `json:"tag,omitempty"`
	Digest digest.Digest `json:"digest,omitempty"`
	Clock  uint64        `json:"clock"`
	Origin string        `json:"origin"`
	Time   time.Time     `json:"time"`
}

// Apply executes cmd in one transaction. ctx is checked before the
// transaction starts; once started, it commits or fails as a whole.
// Concurrent Apply calls are batched into shared transactions; each still
// commits or fails on its own.
func (s *Store) Apply(ctx context.Context, cmd Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error { return apply(tx, cmd) })
}

func apply(tx *bolt.Tx, cmd Command) error {
	switch cmd.Op {
	case OpLinkBlob:
		return link(tx, cmd.Repo, Link{cmd.Digest, cmd.Size})
	case OpUnlinkBlob:
		rb := repoBucket(tx, cmd.Repo)
		b := sub(rb, bucketLinks)
		if b == nil || b.Get([]byte(cmd.Digest)) == nil {
			return ErrBlobUnknown
		}
		if err := b.Delete([]byte(cmd.Digest)); err != nil {
			return err
		}
		// Remembered so that read-through does not bring back from
		// another region a blob deleted here (blob deletes stay in
		// their region); a later link of the same blob forgets it.
		unlinked, err := rb.CreateBucketIfNotExists(bucketUnlinked)
		if err != nil {
			return err
		}
		return unlinked.Put([]byte(cmd.Digest), []byte{1})
	case OpPutManifest:
		return putManifest(tx, cmd)
	case OpDeleteManifest:
		return deleteManifest(tx, cmd)
	case OpDeleteTag:
		rec, ok := tagRecord(tx, cmd.Repo, cmd.Tag)
		if !ok || rec.Deleted {
			return ErrManifestUnknown
		}
		clock := max(cmd.Clock, rec.Clock+1)
		if err := setTag(tx, cmd.Repo, cmd.Tag, TagRecord{Updated: cmd.Time, Clock: clock, Origin: cmd.Origin, Deleted: true}); err != nil {
			return err
		}
		if err := notices.append(tx, Notice{Action: "delete", Repo: cmd.Repo, Tag: cmd.Tag, Digest: rec.Digest, Time: cmd.Time, Request: cmd.Request}); err != nil {
			return err
		}
		return outbox.append(tx, Event{Op: OpDeleteTag, Repo: cmd.Repo, Tag: cmd.Tag, Clock: clock, Origin: cmd.Origin, Time: cmd.Time})
	case OpMergeTag:
		return mergeTag(tx, cmd)
	case OpAckOutbox:
		return ackOutbox(tx, cmd.Peer, cmd.Seq)
	case OpTransferBegin, OpTransferSegment, OpTransferEnd, OpForgetDeadSegments:
		return applyTransfer(tx, cmd)
	case OpPutWebhook:
		return putWebhook(tx, cmd.Webhook)
	case OpDeleteWebhook:
		return deleteWebhook(tx, cmd.Tag)
	case OpWebhookDelivered:
		return webhookDelivered(tx, cmd.Delivery, cmd.Seq)
	case OpPutReplication:
		return putReplication(tx, cmd.Replication)
	case OpDeleteReplication:
		if cmd.Replication == nil {
			return ErrReplicationUnknown
		}
		return deleteReplication(tx, cmd.Replication.Region)
	default:
		return fmt.Errorf("%w: %q", ErrUnknownCommand, cmd.Op)
	}
}

func link(tx *bolt.Tx, repo string, l Link) error {
	rb, err := ensureRepo(tx, repo)
	if err != nil {
		return err
	}
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(l.Size))
	if err := tx.Bucket(bucketBlobIndex).Put([]byte(l.Digest), size[:]); err != nil {
		return err
	}
	if unlinked := rb.Bucket(bucketUnlinked); unlinked != nil {
		if err := unlinked.Delete([]byte(l.Digest)); err != nil {
			return err
		}
	}
	return rb.Bucket(bucketLinks).Put([]byte(l.Digest), size[:])
}

func ensureRepo(tx *bolt.Tx, repo string) (*bolt.Bucket, error) {
	rb, err := tx.Bucket(bucketRepos).CreateBucketIfNotExists([]byte(repo))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketTags, bucketManifests, bucketLinks, bucketReferrers, bucketTombstones} {
		if _, err := rb.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return rb, nil
}

func tagRecord(tx *bolt.Tx, repo, tag string) (TagRecord, bool) {
	var rec TagRecord
	v := getSub(tx, repo, bucketTags, []byte(tag))
	if v == nil || json.Unmarshal(v, &rec) != nil {
		return rec, false
	}
	return rec, true
}

func setTag(tx *bolt.Tx, repo, tag string, rec TagRecord) error {
	rb, err := ensureRepo(tx, repo)
	if err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return rb.Bucket(bucketTags).Put([]byte(tag), v)
}

// tombstone is a deleted manifest.
type tombstone struct {
	Clock  uint64    `json:"clock"`
	Origin string    `json:"origin"`
	Time   time.Time `json:"time"`
}

func tombstoneOf(tx *bolt.Tx, repo string, d digest.Digest) (tombstone, bool) {
	var t tombstone
	v := getSub(tx, repo, bucketTombstones, []byte(d))
	if v == nil || json.Unmarshal(v, &t) != nil {
		return t, false
	}
	return t, true
}

func putManifest(tx *bolt.Tx, cmd Command) error {
	m := cmd.Manifest
	if m == nil {
		return fmt.Errorf("meta: put-manifest without a manifest")
	}
	if cmd.Replicated {
		if t, ok := tombstoneOf(tx, cmd.Repo, m.Digest); ok && !newer(cmd.Clock, cmd.Origin, t.Clock, t.Origin) {
			// Deleted after this push, in some region: the delete wins.
			return nil
		}
	}
	// Links first: a replicated manifest arrives with the blobs it needs.
	for _, l := range cmd.Links {
		if err := link(tx, cmd.Repo, l); err != nil {
			return err
		}
	}
	rb := repoBucket(tx, cmd.Repo)
	var missing []digest.Digest
	for _, d := range cmd.Requires {
		if sub(rb, bucketLinks) == nil || sub(rb, bucketLinks).Get([]byte(d)) == nil {
			missing = append(missing, d)
		}
	}
	for _, d := range cmd.RequiresManifests {
		if sub(rb, bucketManifests) == nil || sub(rb, bucketManifests).Get([]byte(d)) == nil {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		if len(cmd.Links) > 0 {
			// Links were written above; refuse the whole command so that a
			// refused command leaves nothing behind.
			return &refusal{&MissingContentError{Digests: missing}}
		}
		return &MissingContentError{Digests: missing}
	}
	rb, err := ensureRepo(tx, cmd.Repo)
	if err != nil {
		return err
	}
	rec := *m
	rec.Clock, rec.Origin = cmd.Clock, cmd.Origin
	old := rb.Bucket(bucketManifests).Get([]byte(m.Digest))
	existed := old != nil
	if old != nil {
		// Re-pushing the same manifest keeps its creation time.
		var prev ManifestRecord
		if json.Unmarshal(old, &prev) == nil {
			rec.Created = prev.Created
			if newer(prev.Clock, prev.Origin, rec.Clock, rec.Origin) {
				rec.Clock, rec.Origin = prev.Clock, prev.Origin
			}
		}
	}
	if rec.Created.IsZero() {
		rec.Created = cmd.Time
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := rb.Bucket(bucketManifests).Put([]byte(m.Digest), v); err != nil {
		return err
	}
	if err := rb.Bucket(bucketTombstones).Delete([]byte(m.Digest)); err != nil {
		return err
	}
	clock := cmd.Clock
	tagMoved := false
	if cmd.Tag != "" {
		old, ok := tagRecord(tx, cmd.Repo, cmd.Tag)
		tagMoved = !ok || old.Deleted || old.Digest != m.Digest
		switch {
		case !cmd.Replicated:
			// A local write follows every write this region has seen.
			if ok {
				clock = max(clock, old.Clock+1)
			}
			err = setTag(tx, cmd.Repo, cmd.Tag, TagRecord{Digest: m.Digest, Updated: cmd.Time, Clock: clock, Origin: cmd.Origin})
		case !ok || newer(cmd.Clock, cmd.Origin, old.Clock, old.Origin):
			err = setTag(tx, cmd.Repo, cmd.Tag, TagRecord{Digest: m.Digest, Updated: cmd.Time, Clock: cmd.Clock, Origin: cmd.Origin})
		default:
			tagMoved = false // an older write lost to the tag's current one
		}
		if err != nil {
			return err
		}
	}
	// One notice per image arriving in the region: a redelivered offer or
	// a re-push of the same tag and digest announces nothing new.
	if !existed || tagMoved {
		if err := notices.append(tx, Notice{Action: "push", Repo: cmd.Repo, Tag: cmd.Tag, Digest: m.Digest,
			MediaType: m.MediaType, Size: m.Size, Time: cmd.Time, Request: cmd.Request}); err != nil {
			return err
		}
	}
	if m.Subject != "" {
		r, err := json.Marshal(Referrer{
			Digest: m.Digest, MediaType: m.MediaType, Size: m.Size,
			ArtifactType: m.ArtifactType, Annotations: m.Annotations,
		})
		if err != nil {
			return err
		}
		if err := rb.Bucket(bucketReferrers).Put(referrerKey(m.Subject, m.Digest), r); err != nil {
			return err
		}
	}
	if cmd.Replicated {
		return nil
	}
	return outbox.append(tx, Event{Op: OpPutManifest, Repo: cmd.Repo, Tag: cmd.Tag, Digest: m.Digest, Clock: clock, Origin: cmd.Origin, Time: cmd.Time})
}

// refusal is a refused command that must roll back what it wrote before it
// found the reason to refuse.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func mergeTag(tx *bolt.Tx, cmd Command) error {
	old, ok := tagRecord(tx, cmd.Repo, cmd.Tag)
	if ok && !newer(cmd.Clock, cmd.Origin, old.Clock, old.Origin) {
		return nil
	}
	if !cmd.Deleted {
		if getSub(tx, cmd.Repo, bucketManifests, []byte(cmd.Digest)) == nil {
			return &MissingContentError{Digests: []digest.Digest{cmd.Digest}}
		}
	}
	if err := setTag(tx, cmd.Repo, cmd.Tag, TagRecord{Digest: cmd.Digest, Updated: cmd.Time, Clock: cmd.Clock, Origin: cmd.Origin, Deleted: cmd.Deleted}); err != nil {
		return err
	}
	if cmd.Deleted && ok && !old.Deleted {
		return notices.append(tx, Notice{Action: "delete", Repo: cmd.Repo, Tag: cmd.Tag, Digest: old.Digest, Time: cmd.Time, Request: cmd.Request})
	}
	if !cmd.Deleted && (!ok || old.Deleted || old.Digest != cmd.Digest) {
		// The image is now available here under this tag.
		var rec ManifestRecord
		json.Unmarshal(getSub(tx, cmd.Repo, bucketManifests, []byte(cmd.Digest)), &rec)
		return notices.append(tx, Notice{Action: "push", Repo: cmd.Repo, Tag: cmd.Tag, Digest: cmd.Digest,
			MediaType: rec.MediaType, Size: rec.Size, Time: cmd.Time, Request: cmd.Request})
	}
	return nil
}

func referrerKey(subject, referrer digest.Digest) []byte {
	return []byte(subject.String() + "/" + referrer.String())
}

func deleteManifest(tx *bolt.Tx, cmd Command) error {
	repo, dgst := cmd.Repo, cmd.Digest
	rb := repoBucket(tx, repo)
	mb := sub(rb, bucketManifests)
	var v []byte
	if mb != nil {
		v = mb.Get([]byte(dgst))
	}
	clock := cmd.Clock
	if v == nil {
		if !cmd.Replicated {
			return ErrManifestUnknown
		}
		// Deleted elsewhere before it arrived here: keep the tombstone so
		// that the late push loses.
		if t, ok := tombstoneOf(tx, repo, dgst); ok && !newer(clock, cmd.Origin, t.Clock, t.Origin) {
			return nil
		}
		return putTombstone(tx, repo, dgst, tombstone{clock, cmd.Origin, cmd.Time})
	}
	var rec ManifestRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return err
	}
	if cmd.Replicated && !newer(clock, cmd.Origin, rec.Clock, rec.Origin) {
		return nil // pushed again after this delete
	}
	if !cmd.Replicated {
		clock = max(clock, rec.Clock+1)
	}
	if err := mb.Delete([]byte(dgst)); err != nil {
		return err
	}
	if err := putTombstone(tx, repo, dgst, tombstone{clock, cmd.Origin, cmd.Time}); err != nil {
		return err
	}
	if err := notices.append(tx, Notice{Action: "delete", Repo: repo, Digest: dgst, MediaType: rec.MediaType, Size: rec.Size, Time: cmd.Time, Request: cmd.Request}); err != nil {
		return err
	}
	if rec.Subject != "" {
		if err := rb.Bucket(bucketReferrers).Delete(referrerKey(rec.Subject, dgst)); err != nil {
			return err
		}
	}
	tags := rb.Bucket(bucketTags)
	var stale [][]byte
	var stamps []TagRecord
	err := tags.ForEach(func(k, v []byte) error {
		var t TagRecord
		if json.Unmarshal(v, &t) == nil && !t.Deleted && t.Digest == dgst {
			stale = append(stale, append([]byte(nil), k...))
			stamps = append(stamps, t)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, k := range stale {
		if err := setTag(tx, repo, string(k), TagRecord{Updated: cmd.Time, Clock: max(clock, stamps[i].Clock+1), Origin: cmd.Origin, Deleted: true}); err != nil {
			return err
		}
	}
	if cmd.Replicated {
		return nil
	}
	return outbox.append(tx, Event{Op: OpDeleteManifest, Repo: repo, Digest: dgst, Clock: clock, Origin: cmd.Origin, Time: cmd.Time})
}

func putTombstone(tx *bolt.Tx, repo string, d digest.Digest, t tombstone) error {
	rb, err := ensureRepo(tx, repo)
	if err != nil {
		return err
	}
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return rb.Bucket(bucketTombstones).Put([]byte(d), v)
}

func ackOutbox(tx *bolt.Tx, peer string, seq uint64) error {
	cb := tx.Bucket(bucketCursors)
	if v := cb.Get([]byte(peer)); len(v) == 8 && binary.BigEndian.Uint64(v) >= seq {
		return nil
	}
	if err := cb.Put([]byte(peer), seqKey(seq)); err != nil {
		return err
	}
	// Drop events every known peer holds.
	low := seq
	cb.ForEach(func(_, v []byte) error {
		if len(v) == 8 {
			low = min(low, binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return outbox.dropThrough(tx, low)
}
