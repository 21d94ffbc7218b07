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

// The transfer commands. Each takes Command.Transfer and Command.Time. None
// refuses: a command that does not fit the current state (a segment that
// does not start where its transfer ends, a transfer that was dropped
// meanwhile) changes nothing but listing its segment as dead, and the
// proposer reads the record back to see what happened.
const (
	// OpTransferBegin opens the record of Transfer.Digest with Transfer's
	// ID, From, Size and SegmentSize. A record of the same Size and
	// SegmentSize is kept, with its ID and segments (From and Updated are
	// refreshed); one of another shape is replaced and its segments listed
	// as dead. Nothing is opened while MaxTransfers records exist.
	OpTransferBegin Op = "transfer-begin"
	// OpTransferSegment appends Transfer.Segments[0] to the record of
	// Transfer.Digest when Transfer.ID matches and the segment is the next
	// one (it starts where the recorded segments end and has the record's
	// segment size, or ends the blob). A segment the record already holds
	// changes nothing; any other is listed as dead.
	OpTransferSegment Op = "transfer-segment"
	// OpTransferEnd removes the record of Transfer.Digest (when
	// Transfer.ID is empty or matches) and lists its segments, and
	// Transfer.Segments besides, as dead.
	OpTransferEnd Op = "transfer-end"
	// OpForgetDeadSegments drops the dead segments listed before Time (it
	// takes no Transfer): by then every zone has deleted its copies.
	OpForgetDeadSegments Op = "forget-dead-segments"
)

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
func (s *Store) Transfer(dgst digest.Digest) (Transfer, error) {
	var t Transfer
	err := s.db.View(func(tx *bolt.Tx) error {
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
func (s *Store) Transfers() ([]Transfer, error) {
	var out []Transfer
	err := s.db.View(func(tx *bolt.Tx) error {
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
func (s *Store) DeadSegments() ([]DeadSegment, error) {
	var out []DeadSegment
	err := s.db.View(func(tx *bolt.Tx) error {
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

func applyTransfer(tx *bolt.Tx, cmd Command) error {
	if cmd.Op == OpForgetDeadSegments {
		return forgetDeadSegments(tx, cmd.Time)
	}
	t := cmd.Transfer
	if t == nil || t.Digest == "" {
		return fmt.Errorf("meta: %s without a transfer", cmd.Op)
	}
	switch cmd.Op {
	case OpTransferBegin:
		return beginTransfer(tx, t, cmd.Time)
	case OpTransferSegment:
		return addSegment(tx, t, cmd.Time)
	default: // OpTransferEnd
		return endTransfer(tx, t, cmd.Time)
	}
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

func beginTransfer(tx *bolt.Tx, t *Transfer, now time.Time) error {
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

func addSegment(tx *bolt.Tx, t *Transfer, now time.Time) error {
	if len(t.Segments) != 1 {
		return fmt.Errorf("meta: transfer-segment of %s with %d segments, want 1", t.Digest, len(t.Segments))
	}
	seg := t.Segments[0]
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

func endTransfer(tx *bolt.Tx, t *Transfer, now time.Time) error {
	dead := t.Segments
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

func forgetDeadSegments(tx *bolt.Tx, before time.Time) error {
	b := tx.Bucket(bucketDeadSegments)
	if b == nil {
		return nil
	}
	limit := timeKey(before)
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
