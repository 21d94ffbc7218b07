package meta

import (
	"encoding/binary"
	"encoding/json"

	bolt "go.etcd.io/bbolt"
)

// seqLog is an append-only log of JSON records in one bbolt bucket, keyed
// by a sequence number that only grows (the bucket's own sequence, so a
// number is never reused after records are dropped). The outbox of
// replication events and the webhook notices are seqLogs.
type seqLog[T any] struct {
	bucket []byte
	// setSeq writes the record's sequence into it before it is stored, so
	// that a reader of the record knows its place in the log.
	setSeq func(rec *T, seq uint64)
	// keep, when not zero, bounds the records kept: appending one past it
	// drops the oldest.
	keep uint64
}

var (
	// outbox holds the replication events of local writes until every
	// known peer region has acknowledged them (ackOutbox trims it).
	outbox = seqLog[Event]{
		bucket: bucketOutbox,
		setSeq: func(e *Event, seq uint64) { e.Seq = seq },
	}
	// notices holds the newest MaxNotices notices for the region's
	// webhooks; a webhook that falls further behind misses the oldest.
	notices = seqLog[Notice]{
		bucket: bucketNotices,
		setSeq: func(n *Notice, seq uint64) { n.Seq = seq },
		keep:   MaxNotices,
	}
)

// append stores rec under the next sequence and drops the oldest record
// beyond keep.
func (l seqLog[T]) append(tx *bolt.Tx, rec T) error {
	b, err := tx.CreateBucketIfNotExists(l.bucket)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	l.setSeq(&rec, seq)
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return err
	}
	if l.keep > 0 && seq > l.keep {
		return b.Delete(seqKey(seq - l.keep))
	}
	return nil
}

// after returns up to n records with a sequence above seq, in order.
func (l seqLog[T]) after(tx *bolt.Tx, seq uint64, n int) ([]T, error) {
	var out []T
	b := tx.Bucket(l.bucket)
	if b == nil {
		return out, nil
	}
	c := b.Cursor()
	for k, v := c.Seek(seqKey(seq + 1)); k != nil && len(out) < n; k, v = c.Next() {
		var rec T
		if err := json.Unmarshal(v, &rec); err != nil {
			return out, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// last returns the sequence of the newest record ever appended, dropped or
// not.
func (l seqLog[T]) last(tx *bolt.Tx) uint64 {
	if b := tx.Bucket(l.bucket); b != nil {
		return b.Sequence()
	}
	return 0
}

// dropThrough drops the records with a sequence up to seq.
func (l seqLog[T]) dropThrough(tx *bolt.Tx, seq uint64) error {
	b := tx.Bucket(l.bucket)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.First() {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}
