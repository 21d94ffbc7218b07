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

// Op names the kind of a command in its envelope, and the kind of write a
// replication Event reports.
type Op string

// The repository commands.
const (
	// OpLinkBlob is the Op of LinkBlob.
	OpLinkBlob Op = "link-blob"
	// OpUnlinkBlob is the Op of UnlinkBlob.
	OpUnlinkBlob Op = "unlink-blob"
	// OpPutManifest is the Op of PutManifest.
	OpPutManifest Op = "put-manifest"
	// OpDeleteManifest is the Op of DeleteManifest.
	OpDeleteManifest Op = "delete-manifest"
	// OpDeleteTag is the Op of DeleteTag.
	OpDeleteTag Op = "delete-tag"
	// OpMergeTag is the Op of MergeTag.
	OpMergeTag Op = "merge-tag"
	// OpAckOutbox is the Op of AckOutbox.
	OpAckOutbox Op = "ack-outbox"
)

// Command is one metadata change: one of the command types of this package
// (LinkBlob, PutManifest, PutWebhook, TransferBegin, ...), each holding the
// arguments of its operation only. Store.Apply and Store.ApplyAt execute it
// in one transaction; Encode and Decode turn it into the envelope a
// replicated log carries. Its effect depends only on the command and the
// state it is applied to, so every replica of a log reaches the same state.
// The interface is closed: only this package's types implement it.
type Command interface {
	// Op names the command's operation in its envelope.
	Op() Op
	// apply executes the command inside tx. A refusal (ErrManifestUnknown,
	// *MissingContentError, ...) leaves nothing behind: a command checks
	// before it writes, or returns a *refusal so that the caller rolls
	// back what it wrote.
	apply(tx *bolt.Tx) error
}

// Stamp orders writes to one tag or manifest across regions: the write with
// the greater (Clock, Origin) wins (last writer wins). Clock is the hybrid
// logical clock of the write and Origin the region where a client made it;
// Replicated marks a write another region made.
type Stamp struct {
	Clock      uint64
	Origin     string
	Replicated bool
}

// Stamped is a command ordered across regions by its Stamp. The proposer
// of a local write that has no stamp yet gives it one (its region's clock
// and name) before the write enters the log; the proposer of a replicated
// write lets its clock observe the stamp's.
type Stamped interface {
	Command
	// Stamp returns the command's stamp.
	Stamp() Stamp
	// WithStamp returns a copy of the command stamped with st.
	WithStamp(st Stamp) Command
}

// Clock is the hybrid logical clock of a region (*hlc.Clock).
type Clock interface {
	// Now returns a new timestamp, later than every one returned or
	// observed before.
	Now() uint64
	// Observe makes later timestamps follow ts.
	Observe(ts uint64)
}

// StampFor returns cmd as a proposer in region logs it: a local write
// ordered across regions (Stamped) that has no stamp yet is stamped with
// clock and region, and a replicated one makes clock observe its stamp, so
// that the region's later writes follow it. Other commands are returned as
// they are.
func StampFor(cmd Command, clock Clock, region string) Command {
	s, ok := cmd.(Stamped)
	if !ok {
		return cmd
	}
	switch st := s.Stamp(); {
	case st.Replicated:
		clock.Observe(st.Clock)
	case st.Clock == 0:
		return s.WithStamp(Stamp{Clock: clock.Now(), Origin: region})
	}
	return cmd
}

// ErrUnknownCommand is returned for a command of an Op this version does not
// know (a newer node's command in a mixed-version group).
var ErrUnknownCommand = errors.New("meta: unknown command")

// Link is a blob to link into a repository.
type Link struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// LinkBlob records a verified blob in the blob index and links it into
// Repo.
type LinkBlob struct {
	Repo   string        `json:"repo"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// UnlinkBlob removes the link of Digest from Repo; it fails with
// ErrBlobUnknown if there is none. The bytes stay until garbage collection.
type UnlinkBlob struct {
	Repo   string        `json:"repo"`
	Digest digest.Digest `json:"digest"`
}

// PutManifest links Links into Repo, stores Manifest, tags it with Tag when
// set, and indexes it as a referrer of its subject. It fails with
// *MissingContentError unless every digest in Requires is linked into Repo
// and every digest in RequiresManifests is a manifest of Repo. A replicated
// put loses to a newer delete of the manifest or tag.
type PutManifest struct {
	Repo              string          `json:"repo"`
	Tag               string          `json:"tag,omitempty"`
	Manifest          ManifestRecord  `json:"manifest"`
	Links             []Link          `json:"links,omitempty"`
	Requires          []digest.Digest `json:"requires,omitempty"`
	RequiresManifests []digest.Digest `json:"requiresManifests,omitempty"`
	// Time is when the command was proposed; it is recorded instead of the
	// applying replica's clock so that every replica stores the same value.
	Time time.Time `json:"time"`
	// Clock is the hybrid logical clock of the write and Origin the region
	// where a client made it: the later (Clock, Origin) wins.
	Clock  uint64 `json:"clock,omitempty"`
	Origin string `json:"origin,omitempty"`
	// Replicated marks a write another region made: it merges by (Clock,
	// Origin) and is not offered to other regions again.
	Replicated bool `json:"replicated,omitempty"`
	// Request describes the client request behind the write, for webhooks.
	Request *RequestInfo `json:"request,omitempty"`
}

// DeleteManifest removes manifest Digest from Repo with every tag that
// points at it and its referrers-index entry, leaving a tombstone. A local
// delete of an unknown manifest fails with ErrManifestUnknown.
type DeleteManifest struct {
	Repo       string        `json:"repo"`
	Digest     digest.Digest `json:"digest"`
	Time       time.Time     `json:"time"`
	Clock      uint64        `json:"clock,omitempty"`
	Origin     string        `json:"origin,omitempty"`
	Replicated bool          `json:"replicated,omitempty"`
	// Forward, with Replicated, marks a delete a child site made (see
	// MergeTag.Forward): it also enters this region's outbox.
	Forward bool         `json:"forward,omitempty"`
	Request *RequestInfo `json:"request,omitempty"`
}

// DeleteTag removes Tag from Repo, leaving a tombstone; it fails with
// ErrManifestUnknown if the tag does not exist. Deletes of a tag made in
// another region arrive as MergeTag.
type DeleteTag struct {
	Repo    string       `json:"repo"`
	Tag     string       `json:"tag"`
	Time    time.Time    `json:"time"`
	Clock   uint64       `json:"clock,omitempty"`
	Origin  string       `json:"origin,omitempty"`
	Request *RequestInfo `json:"request,omitempty"`
}

// MergeTag merges another region's state of Tag in Repo (it points at
// Digest, or is Deleted) written at (Clock, Origin): the later write wins.
// A tag pointing at a manifest Repo does not hold fails with
// *MissingContentError.
type MergeTag struct {
	Repo    string        `json:"repo"`
	Tag     string        `json:"tag"`
	Digest  digest.Digest `json:"digest,omitempty"`
	Deleted bool          `json:"deleted,omitempty"`
	Clock   uint64        `json:"clock"`
	Origin  string        `json:"origin"`
	Time    time.Time     `json:"time"`
	// Forward marks a write that a ReadWrite connected registry (a child
	// site) made and synced up: it merges like another region's write, and
	// when it wins it enters this region's outbox with its own stamp, so
	// that the peer regions merge it the same way.
	Forward bool `json:"forward,omitempty"`
}

// AckOutbox records that peer region Peer holds every event up to Seq and
// drops the events every known peer holds. With Dropped, the peer does not
// hold them: its sender gave up on Dropped events the peer left
// unacknowledged past the outbox's bound, which the peer gets back through
// anti-entropy; the drop is recorded (Reader.OutboxDrops) at Time.
type AckOutbox struct {
	Peer    string    `json:"peer"`
	Seq     uint64    `json:"seq"`
	Dropped uint64    `json:"dropped,omitempty"`
	Time    time.Time `json:"time,omitzero"`
}

// Op implements Command.
func (LinkBlob) Op() Op { return OpLinkBlob }

// Op implements Command.
func (UnlinkBlob) Op() Op { return OpUnlinkBlob }

// Op implements Command.
func (PutManifest) Op() Op { return OpPutManifest }

// Op implements Command.
func (DeleteManifest) Op() Op { return OpDeleteManifest }

// Op implements Command.
func (DeleteTag) Op() Op { return OpDeleteTag }

// Op implements Command.
func (MergeTag) Op() Op { return OpMergeTag }

// Op implements Command.
func (AckOutbox) Op() Op { return OpAckOutbox }

// Stamp implements Stamped.
func (cmd PutManifest) Stamp() Stamp { return Stamp{cmd.Clock, cmd.Origin, cmd.Replicated} }

// WithStamp implements Stamped.
func (cmd PutManifest) WithStamp(st Stamp) Command {
	cmd.Clock, cmd.Origin, cmd.Replicated = st.Clock, st.Origin, st.Replicated
	return cmd
}

// Stamp implements Stamped.
func (cmd DeleteManifest) Stamp() Stamp { return Stamp{cmd.Clock, cmd.Origin, cmd.Replicated} }

// WithStamp implements Stamped.
func (cmd DeleteManifest) WithStamp(st Stamp) Command {
	cmd.Clock, cmd.Origin, cmd.Replicated = st.Clock, st.Origin, st.Replicated
	return cmd
}

// Stamp implements Stamped.
func (c DeleteTag) Stamp() Stamp { return Stamp{Clock: c.Clock, Origin: c.Origin} }

// WithStamp implements Stamped. A tag delete is always local: Replicated is
// ignored.
func (c DeleteTag) WithStamp(st Stamp) Command {
	c.Clock, c.Origin = st.Clock, st.Origin
	return c
}

// Stamp implements Stamped: a merge is always another region's write.
func (cmd MergeTag) Stamp() Stamp {
	return Stamp{Clock: cmd.Clock, Origin: cmd.Origin, Replicated: true}
}

// WithStamp implements Stamped.
func (cmd MergeTag) WithStamp(st Stamp) Command {
	cmd.Clock, cmd.Origin = st.Clock, st.Origin
	return cmd
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
	// Prev is the digest the tag pointed at before the write ("" when it
	// pointed nowhere): a connected registry's parent tells from it
	// whether the write raced one made elsewhere (a conflict).
	Prev digest.Digest `json:"prev,omitempty"`
}

// Apply executes cmd in one transaction. ctx is checked before the
// transaction starts; once started, it commits or fails as a whole.
// Concurrent Apply calls are batched into shared transactions; each still
// commits or fails on its own. It writes around any replicated log: only the
// owner of the store (the region's Raft group) and tests call it.
func (s *Store) Apply(ctx context.Context, cmd Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.changed.notify()
	// As in ApplyAt, what a refusal leaves is committed: a command refuses
	// before it writes, a *refusal excepted, and a ReplicatedBatch keeps
	// the items it applied.
	var result error
	err := s.db.Batch(func(tx *bolt.Tx) error {
		result = cmd.apply(tx)
		var undo *refusal
		if result != nil && (!isRefusal(result) || errors.As(result, &undo)) {
			return result
		}
		return nil
	})
	var undo *refusal
	if errors.As(err, &undo) {
		return undo.err
	}
	if err != nil {
		return err
	}
	return result
}

func (c LinkBlob) apply(tx *bolt.Tx) error {
	return link(tx, c.Repo, Link{c.Digest, c.Size})
}

func (c UnlinkBlob) apply(tx *bolt.Tx) error {
	rb := repoBucket(tx, c.Repo)
	b := sub(rb, bucketLinks)
	if b == nil || b.Get([]byte(c.Digest)) == nil {
		return ErrBlobUnknown
	}
	if err := b.Delete([]byte(c.Digest)); err != nil {
		return err
	}
	// Remembered so that read-through does not bring back from another
	// region a blob deleted here (blob deletes stay in their region); a
	// later link of the same blob forgets it.
	unlinked, err := rb.CreateBucketIfNotExists(bucketUnlinked)
	if err != nil {
		return err
	}
	return unlinked.Put([]byte(c.Digest), []byte{1})
}

func (c DeleteTag) apply(tx *bolt.Tx) error {
	rec, ok := tagRecord(tx, c.Repo, c.Tag)
	if !ok || rec.Deleted {
		return ErrManifestUnknown
	}
	clock := max(c.Clock, rec.Clock+1)
	if err := setTag(tx, c.Repo, c.Tag, TagRecord{Updated: c.Time, Clock: clock, Origin: c.Origin, Deleted: true}); err != nil {
		return err
	}
	if err := notices.append(tx, Notice{Action: "delete", Repo: c.Repo, Tag: c.Tag, Digest: rec.Digest, Time: c.Time, Request: c.Request}); err != nil {
		return err
	}
	return outbox.append(tx, Event{Op: OpDeleteTag, Repo: c.Repo, Tag: c.Tag, Clock: clock, Origin: c.Origin, Time: c.Time, Prev: rec.Digest})
}

func (c AckOutbox) apply(tx *bolt.Tx) error {
	if c.Dropped > 0 {
		if err := recordDrop(tx, c); err != nil {
			return err
		}
	}
	return ackOutbox(tx, c.Peer, c.Seq)
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
	if err := unmark(tx, l.Digest); err != nil {
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
	// A write into the repository keeps it from the collector.
	if err := unmarkRepo(tx, repo); err != nil {
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

func (cmd PutManifest) apply(tx *bolt.Tx) error {
	m := &cmd.Manifest
	if m.Digest == "" {
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
	if len(missing) == 0 {
		// A manifest referencing a blob keeps it from the collector.
		for _, d := range cmd.Requires {
			if err := unmark(tx, d); err != nil {
				return err
			}
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
	var prev digest.Digest
	if cmd.Tag != "" {
		old, ok := tagRecord(tx, cmd.Repo, cmd.Tag)
		tagMoved = !ok || old.Deleted || old.Digest != m.Digest
		if ok && !old.Deleted {
			prev = old.Digest
		}
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
	return outbox.append(tx, Event{Op: OpPutManifest, Repo: cmd.Repo, Tag: cmd.Tag, Digest: m.Digest, Clock: clock, Origin: cmd.Origin, Time: cmd.Time, Prev: prev})
}

// refusal is a refused command that must roll back what it wrote before it
// found the reason to refuse.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func (cmd MergeTag) apply(tx *bolt.Tx) error {
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
	if cmd.Forward {
		e := Event{Op: OpPutManifest, Repo: cmd.Repo, Tag: cmd.Tag, Digest: cmd.Digest, Clock: cmd.Clock, Origin: cmd.Origin, Time: cmd.Time}
		if cmd.Deleted {
			e.Op, e.Digest = OpDeleteTag, ""
		}
		if err := outbox.append(tx, e); err != nil {
			return err
		}
	}
	if cmd.Deleted && ok && !old.Deleted {
		return notices.append(tx, Notice{Action: "delete", Repo: cmd.Repo, Tag: cmd.Tag, Digest: old.Digest, Time: cmd.Time})
	}
	if !cmd.Deleted && (!ok || old.Deleted || old.Digest != cmd.Digest) {
		// The image is now available here under this tag.
		var rec ManifestRecord
		json.Unmarshal(getSub(tx, cmd.Repo, bucketManifests, []byte(cmd.Digest)), &rec)
		return notices.append(tx, Notice{Action: "push", Repo: cmd.Repo, Tag: cmd.Tag, Digest: cmd.Digest,
			MediaType: rec.MediaType, Size: rec.Size, Time: cmd.Time})
	}
	return nil
}

func referrerKey(subject, referrer digest.Digest) []byte {
	return []byte(subject.String() + "/" + referrer.String())
}

func (cmd DeleteManifest) apply(tx *bolt.Tx) error {
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
		if err := putTombstone(tx, repo, dgst, tombstone{clock, cmd.Origin, cmd.Time}); err != nil || !cmd.Forward {
			return err
		}
		return outbox.append(tx, Event{Op: OpDeleteManifest, Repo: repo, Digest: dgst, Clock: clock, Origin: cmd.Origin, Time: cmd.Time})
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
	if cmd.Replicated && !cmd.Forward {
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
