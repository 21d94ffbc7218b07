package meta

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Blob transfers from peer regions. The region's leader fetches a blob from
// a peer region in segments; each completed segment is stored as a blob of
// its own on a majority of the region's zones and recorded here, so that a
// new leader resumes the transfer where the last durable segment ends
// instead of fetching again what already crossed. Segment blobs are never
// linked into a repository (clients cannot see them); once a transfer ends,
// its segments are listed as dead so that every zone deletes its copies.
var (
	// bucketTransfers holds the Transfer records, by blob digest.
	bucketTransfers = []byte("transfers")
	// bucketDeadSegments lists the segment blobs of ended transfers, keyed
	// by the time they died (8 bytes, Unix nanoseconds, big-endian) and
	// their digest, so that the oldest come first.
	bucketDeadSegments = []byte("transfer-dead-segments")
)

// The transfer commands. None refuses: a command that does not fit the
// current state (a segment that does not start where its transfer ends, a
// transfer that was dropped meanwhile) changes nothing but listing its
// segment as dead, and the proposer reads the record back to see what
// happened.
const (
	// OpTransferBegin is the Op of TransferBegin.
	OpTransferBegin Op = "transfer-begin"
	// OpTransferSegment is the Op of TransferSegment.
	OpTransferSegment Op = "transfer-segment"
	// OpTransferEnd is the Op of TransferEnd.
	OpTransferEnd Op = "transfer-end"
	// OpForgetDeadSegments is the Op of ForgetDeadSegments.
	OpForgetDeadSegments Op = "forget-dead-segments"
)

// TransferBegin opens the record of the transfer of blob Digest with ID,
// From, Size and SegmentSize. A record of the same Size and SegmentSize is
// kept, with its ID and segments (From and Updated are refreshed); one of
// another shape is replaced and its segments listed as dead. Nothing is
// opened while MaxTransfers records exist.
type TransferBegin struct {
	Digest      digest.Digest `json:"digest"`
	Size        int64         `json:"size"`
	ID          string        `json:"id"`
	From        string        `json:"from"`
	SegmentSize int64         `json:"segmentSize"`
	Time        time.Time     `json:"time"`
}

// TransferSegment appends Segment to the record of the transfer of blob
// Digest when ID matches and the segment is the next one (it starts where
// the recorded segments end and has the record's segment size, or ends the
// blob). A segment the record already holds changes nothing; any other is
// listed as dead.
type TransferSegment struct {
	Digest  digest.Digest `json:"digest"`
	ID      string        `json:"id"`
	Segment Segment       `json:"segment"`
	Time    time.Time     `json:"time"`
}

// TransferEnd removes the record of the transfer of blob Digest (when ID is
// empty or matches) and lists its segments as dead, and Unrecorded besides:
// segments stored but never recorded.
type TransferEnd struct {
	Digest     digest.Digest `json:"digest"`
	ID         string        `json:"id,omitempty"`
	Unrecorded []Segment     `json:"unrecorded,omitempty"`
	Time       time.Time     `json:"time"`
}

// ForgetDeadSegments drops the dead segments listed before Before: by then
// every zone has deleted its copies.
type ForgetDeadSegments struct {
	Before time.Time `json:"before"`
}

// Op implements Command.
func (TransferBegin) Op() Op { return OpTransferBegin }

// Op implements Command.
func (TransferSegment) Op() Op { return OpTransferSegment }

// Op implements Command.
func (TransferEnd) Op() Op { return OpTransferEnd }

// Op implements Command.
func (ForgetDeadSegments) Op() Op { return OpForgetDeadSegments }

// Bounds of the transfer records.
const (
	// MaxTransfers bounds the transfers a region records at once; a
	// transfer beyond it runs without durable progress.
	MaxTransfers = 256
	// MaxTransferSegments bounds the segments of one transfer (and so the
	// size of its record).
	MaxTransferSegments = 256
	// MaxDeadSegments bounds the dead segments listed; beyond it the
	// oldest are forgotten (their copies, if any zone still holds one, stay
	// until garbage collection).
	MaxDeadSegments = 1 << 16
	// maxTransferIDBytes bounds a transfer's ID.
	maxTransferIDBytes = 64
)

// ErrTransferUnknown means the region records no transfer of that blob.
var ErrTransferUnknown = errors.New("transfer unknown")

// Segment is one durable piece of a transfer: bytes [Offset, Offset+Size)
// of the blob, stored as the blob Digest (which holds a header naming the
// transfer and the segment before those bytes, see the replication
// package).
type Segment struct {
	Offset int64         `json:"offset"`
	Size   int64         `json:"size"`
	Digest digest.Digest `json:"digest"`
}

// End returns the offset just past the segment.
func (s Segment) End() int64 { return s.Offset + s.Size }

// Transfer is the progress of a blob being fetched from a peer region: the
// segments of its first bytes that a majority of the region's zones hold.
type Transfer struct {
	// Digest and Size are the blob's.
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// ID tells this transfer's segments apart from those of any other
	// transfer, of the same blob too.
	ID string `json:"id"`
	// From is the region the bytes last came from.
	From string `json:"from"`
	// SegmentSize is the size of every segment but possibly the last one
	// of the blob.
	SegmentSize int64 `json:"segmentSize"`
	// Segments are the durable segments, in order, from the blob's start.
	Segments []Segment `json:"segments,omitempty"`
	Started  time.Time `json:"started"`
	// Updated is when the transfer was last begun or grew.
	Updated time.Time `json:"updated"`
}

// Durable returns how many of the blob's first bytes the segments hold.
func (t Transfer) Durable() int64 {
	if len(t.Segments) == 0 {
		return 0
	}
	return t.Segments[len(t.Segments)-1].End()
}

// DeadSegment is a segment blob of an ended transfer, which every zone
// deletes.
type DeadSegment struct {
	Digest digest.Digest `json:"digest"`
	// Died is when its transfer ended.
	Died time.Time `json:"died"`
}

// Transfer returns the record of the transfer of blob dgst, or
// ErrTransferUnknown.
func (r *Reader) Transfer(dgst digest.Digest) (Transfer, error) {
	var t Transfer
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfers)
		if b == nil {
			return ErrTransferUnknown
		}
		v := b.Get([]byte(dgst))
		if v == nil {
			return ErrTransferUnknown
		}
		return json.Unmarshal(v, &t)
	})
	return t, err
}

// Transfers returns every transfer record, by blob digest.
func (r *Reader) Transfers() ([]Transfer, error) {
	var out []Transfer
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTransfers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var t Transfer
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// DeadSegments returns the dead segments, oldest first.
func (r *Reader) DeadSegments() ([]DeadSegment, error) {
	var out []DeadSegment
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeadSegments)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) <= 8 {
				return nil
			}
			out = append(out, DeadSegment{
				Digest: digest.Digest(k[8:]),
				Died:   time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC(),
			})
			return nil
		})
	})
	return out, err
}

func getTransfer(b *bolt.Bucket, dgst digest.Digest) (Transfer, bool, error) {
	var t Transfer
	v := b.Get([]byte(dgst))
	if v == nil {
		return t, false, nil
	}
	if err := json.Unmarshal(v, &t); err != nil {
		return t, false, fmt.Errorf("meta: transfer %s: %w", dgst, err)
	}
	return t, true, nil
}

func putTransfer(b *bolt.Bucket, t Transfer) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return b.Put([]byte(t.Digest), v)
}

func (t TransferBegin) apply(tx *bolt.Tx) error {
	now := t.Time
	if t.Digest == "" {
		return errors.New("meta: transfer-begin without a blob")
	}
	if t.Size <= 0 || t.SegmentSize <= 0 || t.ID == "" || len(t.ID) > maxTransferIDBytes ||
		(t.Size+t.SegmentSize-1)/t.SegmentSize > MaxTransferSegments {
		return fmt.Errorf("meta: transfer-begin of %s: size %d in segments of %d (at most %d) with ID %q", t.Digest, t.Size, t.SegmentSize, MaxTransferSegments, t.ID)
	}
	b, err := tx.CreateBucketIfNotExists(bucketTransfers)
	if err != nil {
		return err
	}
	old, ok, err := getTransfer(b, t.Digest)
	if err != nil {
		return err
	}
	if ok && old.Size == t.Size && old.SegmentSize == t.SegmentSize {
		old.From, old.Updated = t.From, now
		return putTransfer(b, old)
	}
	if ok {
		if err := markDead(tx, old.Segments, now); err != nil {
			return err
		}
	} else if b.Stats().KeyN >= MaxTransfers {
		return nil
	}
	return putTransfer(b, Transfer{
		Digest: t.Digest, Size: t.Size, ID: t.ID, From: t.From, SegmentSize: t.SegmentSize,
		Started: now, Updated: now,
	})
}

func (t TransferSegment) apply(tx *bolt.Tx) error {
	now, seg := t.Time, t.Segment
	if t.Digest == "" {
		return errors.New("meta: transfer-segment without a blob")
	}
	b := tx.Bucket(bucketTransfers)
	var rec Transfer
	ok := false
	if b != nil {
		var err error
		if rec, ok, err = getTransfer(b, t.Digest); err != nil {
			return err
		}
	}
	if ok && rec.ID == t.ID {
		for _, s := range rec.Segments {
			if s == seg {
				return nil // recorded before (a proposal retried)
			}
		}
		next := seg.Offset == rec.Durable() && len(rec.Segments) < MaxTransferSegments &&
			seg.Size > 0 && seg.End() <= rec.Size && (seg.Size == rec.SegmentSize || seg.End() == rec.Size)
		if next {
			rec.Segments = append(rec.Segments, seg)
			rec.Updated = now
			return putTransfer(b, rec)
		}
	}
	// Its transfer ended or moved on: nobody will read this segment.
	return markDead(tx, []Segment{seg}, now)
}

func (t TransferEnd) apply(tx *bolt.Tx) error {
	now, dead := t.Time, t.Unrecorded
	if t.Digest == "" {
		return errors.New("meta: transfer-end without a blob")
	}
	if b := tx.Bucket(bucketTransfers); b != nil {
		rec, ok, err := getTransfer(b, t.Digest)
		if err != nil {
			return err
		}
		if ok && (t.ID == "" || t.ID == rec.ID) {
			if err := b.Delete([]byte(t.Digest)); err != nil {
				return err
			}
			dead = append(rec.Segments, dead...)
		}
	}
	return markDead(tx, dead, now)
}

// markDead lists segments as dead at now, forgetting the oldest dead
// segments beyond MaxDeadSegments. The bucket's sequence counts its keys.
func markDead(tx *bolt.Tx, segs []Segment, now time.Time) error {
	if len(segs) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketDeadSegments)
	if err != nil {
		return err
	}
	n := b.Sequence()
	for _, s := range segs {
		if s.Digest == "" {
			continue
		}
		k := deadKey(now, s.Digest)
		if b.Get(k) != nil {
			continue
		}
		if err := b.Put(k, []byte{}); err != nil {
			return err
		}
		n++
	}
	var drop [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && n-uint64(len(drop)) > MaxDeadSegments; k, _ = c.Next() {
		drop = append(drop, bytes.Clone(k))
	}
	if err := deleteKeys(b, drop); err != nil {
		return err
	}
	return b.SetSequence(n - uint64(len(drop)))
}

// deleteKeys deletes keys from b, collected before: a cursor moved while
// its bucket changes skips keys.
func deleteKeys(b *bolt.Bucket, keys [][]byte) error {
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deadKey is the key of a dead segment: when it died, then its digest.
func deadKey(died time.Time, dgst digest.Digest) []byte {
	return append(timeKey(died), dgst...)
}

// timeKey orders times as bytes; times before 1970 count as 1970.
func timeKey(t time.Time) []byte {
	if t.Before(time.Unix(0, 0)) {
		return seqKey(0)
	}
	return seqKey(uint64(t.UnixNano()))
}

func (f ForgetDeadSegments) apply(tx *bolt.Tx) error {
	b := tx.Bucket(bucketDeadSegments)
	if b == nil {
		return nil
	}
	limit := timeKey(f.Before)
	var drop [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:min(8, len(k))], limit) < 0; k, _ = c.Next() {
		drop = append(drop, bytes.Clone(k))
	}
	if err := deleteKeys(b, drop); err != nil {
		return err
	}
	n := b.Sequence()
	return b.SetSequence(n - min(n, uint64(len(drop))))
}
