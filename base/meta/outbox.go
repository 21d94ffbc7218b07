package meta

import (
	"encoding/binary"
	"encoding/json"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// OutboxAfter returns up to n replication events with a sequence above seq,
// in order.
func (r *Reader) OutboxAfter(seq uint64, n int) ([]Event, error) {
	var out []Event
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = outbox.after(tx, seq, n)
		return err
	})
	return out, err
}

// LastSeq returns the sequence of the newest event ever appended.
func (r *Reader) LastSeq() uint64 {
	var seq uint64
	r.db.View(func(tx *bolt.Tx) error {
		seq = outbox.last(tx)
		return nil
	})
	return seq
}

// Cursors returns, per peer region, the last event sequence it acknowledged.
func (r *Reader) Cursors() map[string]uint64 {
	out := map[string]uint64{}
	r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				out[string(k)] = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	return out
}

// bucketOutboxDrops holds, per peer region, the events its sender dropped
// from the outbox (OutboxDrop).
var bucketOutboxDrops = []byte("outbox-drops")

// OutboxDrop records the events a peer region's sender dropped, unsent,
// because the peer left them unacknowledged past the outbox's bound: the
// peer gets what they carried from anti-entropy instead.
type OutboxDrop struct {
	// Events counts every event dropped for the peer so far.
	Events uint64 `json:"events"`
	// Through is the newest sequence of the last drop; Last is when it
	// was made.
	Through uint64    `json:"through"`
	Last    time.Time `json:"last"`
}

func recordDrop(tx *bolt.Tx, c AckOutbox) error {
	b, err := tx.CreateBucketIfNotExists(bucketOutboxDrops)
	if err != nil {
		return err
	}
	var d OutboxDrop
	if v := b.Get([]byte(c.Peer)); v != nil {
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
	}
	if c.Seq <= d.Through {
		return nil // applied already
	}
	d.Events += c.Dropped
	d.Through, d.Last = c.Seq, c.Time
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.Peer), v)
}

// OutboxDrops returns, per peer region, the events its sender dropped.
func (r *Reader) OutboxDrops() map[string]OutboxDrop {
	out := map[string]OutboxDrop{}
	r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutboxDrops)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var d OutboxDrop
			if json.Unmarshal(v, &d) == nil {
				out[string(k)] = d
			}
			return nil
		})
	})
	return out
}

// TagState is a tag as anti-entropy compares it: live or a tombstone.
type TagState struct {
	Tag string `json:"tag"`
	TagRecord
}

// ManifestState is a manifest or a manifest tombstone with its clock.
type ManifestState struct {
	Digest digest.Digest `json:"digest"`
	Clock  uint64        `json:"clock"`
	Origin string        `json:"origin"`
}

// RepoState is everything anti-entropy compares about one repository.
type RepoState struct {
	Tags       []TagState      `json:"tags"`
	Manifests  []ManifestState `json:"manifests"`
	Tombstones []ManifestState `json:"tombstones"`
}

// RepoState returns the tags (with tombstones), manifests and manifest
// tombstones of repo, sorted.
func (r *Reader) RepoState(repo string) (RepoState, error) {
	var st RepoState
	err := r.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return nil
		}
		var err error
		st, err = repoState(rb)
		return err
	})
	return st, err
}

func repoState(rb *bolt.Bucket) (RepoState, error) {
	st := RepoState{Tags: []TagState{}, Manifests: []ManifestState{}, Tombstones: []ManifestState{}}
	err := rb.Bucket(bucketTags).ForEach(func(k, v []byte) error {
		var t TagRecord
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		st.Tags = append(st.Tags, TagState{Tag: string(k), TagRecord: t})
		return nil
	})
	if err != nil {
		return st, err
	}
	err = rb.Bucket(bucketManifests).ForEach(func(k, v []byte) error {
		var m struct {
			Clock  uint64 `json:"clock"`
			Origin string `json:"origin"`
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		st.Manifests = append(st.Manifests, ManifestState{digest.Digest(k), m.Clock, m.Origin})
		return nil
	})
	if err != nil {
		return st, err
	}
	if tb := rb.Bucket(bucketTombstones); tb != nil {
		err = tb.ForEach(func(k, v []byte) error {
			var t tombstone
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			st.Tombstones = append(st.Tombstones, ManifestState{digest.Digest(k), t.Clock, t.Origin})
			return nil
		})
	}
	return st, err
}

// RepoSummaries returns, per repository, a digest of what replicates: its
// live tags (name and digest), its manifests and its manifest tombstones.
// Two regions whose summaries agree hold the same repository. Clocks are
// left out: two regions that agree on the content agree, whatever order
// they learnt it in.
func (r *Reader) RepoSummaries() (map[string]digest.Digest, error) {
	sums, err := r.RepoSizes()
	out := make(map[string]digest.Digest, len(sums))
	for repo, s := range sums {
		out[repo] = s.Digest
	}
	return out, err
}

// RepoSize is a repository's summary (as RepoSummaries gives it) with
// what a region that lacks the repository has to copy: its live tags and
// the bytes of the blobs linked into it.
type RepoSize struct {
	Digest digest.Digest
	Tags   int
	Bytes  int64
}

// RepoSizes returns every repository's summary and size.
func (r *Reader) RepoSizes() (map[string]RepoSize, error) {
	out := map[string]RepoSize{}
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRepos).ForEach(func(name, _ []byte) error {
			rb := tx.Bucket(bucketRepos).Bucket(name)
			st, err := repoState(rb)
			if err != nil {
				return err
			}
			s := RepoSize{Digest: summarize(st)}
			for _, t := range st.Tags {
				if !t.Deleted {
					s.Tags++
				}
			}
			if lb := sub(rb, bucketLinks); lb != nil {
				lb.ForEach(func(_, v []byte) error {
					if len(v) == 8 {
						s.Bytes += int64(binary.BigEndian.Uint64(v))
					}
					return nil
				})
			}
			out[string(name)] = s
			return nil
		})
	})
	return out, err
}

func summarize(st RepoState) digest.Digest {
	d := digest.Canonical.Digester()
	h := d.Hash()
	sort.Slice(st.Tags, func(i, j int) bool { return st.Tags[i].Tag < st.Tags[j].Tag })
	for _, t := range st.Tags {
		if !t.Deleted {
			h.Write([]byte("t " + t.Tag + " " + t.Digest.String() + "\n"))
		}
	}
	for _, m := range st.Manifests {
		h.Write([]byte("m " + m.Digest.String() + "\n"))
	}
	for _, m := range st.Tombstones {
		h.Write([]byte("x " + m.Digest.String() + "\n"))
	}
	return d.Digest()
}
