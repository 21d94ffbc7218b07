package meta

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Errors callers branch on.
var (
	// ErrRepositoryUnknown means no repository of that name exists.
	ErrRepositoryUnknown = errors.New("repository unknown")
	// ErrManifestUnknown means the repository has no such manifest or tag.
	ErrManifestUnknown = errors.New("manifest unknown")
	// ErrBlobUnknown means the blob is not linked into the repository (or,
	// for the blob index, not known at all).
	ErrBlobUnknown = errors.New("blob unknown")
)

// MissingContentError is returned when a manifest references blobs or child
// manifests the repository does not hold. Nothing was stored.
type MissingContentError struct {
	Digests []digest.Digest
}

func (e *MissingContentError) Error() string {
	return fmt.Sprintf("manifest references unknown content: %v", e.Digests)
}

var (
	bucketRepos     = []byte("repos")
	bucketBlobIndex = []byte("blobs")
	bucketTags      = []byte("tags")
	bucketManifests = []byte("manifests")
	bucketLinks     = []byte("links")
	// bucketUnlinked, in a repository, holds the blobs deleted from it
	// since they were last linked.
	bucketUnlinked  = []byte("unlinked")
	bucketReferrers = []byte("referrers")
	// bucketTombstones holds, per repository, deleted manifests with the
	// clock of their delete.
	bucketTombstones = []byte("tombstones")
	// bucketOutbox holds the replication events of local writes, by sequence.
	bucketOutbox = []byte("outbox")
	// bucketCursors holds, per peer region, the last outbox sequence it
	// acknowledged.
	bucketCursors = []byte("cursors")
)

// Config configures a Store.
type Config struct {
	// Path is the bbolt file.
	Path string
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
}

// Store is a region's metadata in one bbolt file: its read methods (those
// of Reader) and the writes of a state machine (Apply, ApplyAt, Restore).
// It is safe for concurrent use: reads run in parallel with each other and
// with one writer. In a node, the region's Raft group owns the Store and is
// its only writer; everything else reads through ReadOnly.
type Store struct {
	Reader
	log *slog.Logger
}

// Reader reads a Store. It cannot change it, so it can be handed to code
// that must write through a replicated log and never around it. It is safe
// for concurrent use.
type Reader struct {
	db      *bolt.DB
	changed *broadcast // notified after every write (Changed)
}

// ReadOnly returns the store's read side.
func (s *Store) ReadOnly() *Reader { return &s.Reader }

// Open opens or creates the store at cfg.Path.
func Open(cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("meta: open %s: %w", cfg.Path, err)
	}
	// Batching lets concurrent pushes share one fsync; the delay bounds the
	// latency it adds to a lone write.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRepos, bucketBlobIndex, bucketOutbox, bucketCursors} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("meta: init %s: %w", cfg.Path, err)
	}
	return &Store{Reader: Reader{db: db, changed: &broadcast{}}, log: log}, nil
}

// Close closes the bbolt file.
func (s *Store) Close() error { return s.db.Close() }

// ManifestRecord is a stored manifest.
type ManifestRecord struct {
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Subject      digest.Digest     `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Created      time.Time         `json:"created"`
	Content      []byte            `json:"content"`
	// Clock and Origin are the hybrid logical clock and region of the push
	// that stored the manifest; a delete with a later clock wins over it.
	Clock  uint64 `json:"clock,omitempty"`
	Origin string `json:"origin,omitempty"`
}

// TagRecord is what a tag points at. Tags are last-writer-wins registers
// across regions: the write with the greater (Clock, Origin) wins, and a
// delete is a tombstone (Deleted) that wins over older writes.
type TagRecord struct {
	Digest  digest.Digest `json:"digest,omitempty"`
	Updated time.Time     `json:"updated"`
	Clock   uint64        `json:"clock,omitempty"`
	Origin  string        `json:"origin,omitempty"`
	Deleted bool          `json:"deleted,omitempty"`
}

// newer reports whether write (clock a, origin ao) is later than (b, bo).
func newer(a uint64, ao string, b uint64, bo string) bool {
	return a > b || (a == b && ao > bo)
}

// Referrer is one entry of the referrers index: a manifest whose subject is
// another manifest.
type Referrer struct {
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func repoBucket(tx *bolt.Tx, repo string) *bolt.Bucket {
	return tx.Bucket(bucketRepos).Bucket([]byte(repo))
}

func sub(repo *bolt.Bucket, name []byte) *bolt.Bucket {
	if repo == nil {
		return nil
	}
	return repo.Bucket(name)
}

// Repositories returns up to n repository names after last, in lexical
// order, and whether more follow. n <= 0 means no limit.
func (r *Reader) Repositories(last string, n int) (names []string, more bool, err error) {
	err = r.db.View(func(tx *bolt.Tx) error {
		names, more = page(tx.Bucket(bucketRepos).Cursor(), last, n)
		return nil
	})
	return names, more, err
}

// Tags returns up to n tags of repo after last, in lexical order, and whether
// more follow. n <= 0 means no limit.
func (r *Reader) Tags(repo, last string, n int) (tags []string, more bool, err error) {
	err = r.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, repo)
		if rb == nil {
			return ErrRepositoryUnknown
		}
		tags, more = pageLive(rb.Bucket(bucketTags).Cursor(), last, n)
		return nil
	})
	return tags, more, err
}

// pageLive is page over tags, leaving out tombstones.
func pageLive(c *bolt.Cursor, last string, n int) ([]string, bool) {
	out := []string{}
	var k, v []byte
	if last == "" {
		k, v = c.First()
	} else {
		k, v = c.Seek([]byte(last))
		if k != nil && string(k) == last {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		if isTombstone(v) {
			continue
		}
		if n > 0 && len(out) == n {
			return out, true
		}
		out = append(out, string(k))
	}
	return out, false
}

func isTombstone(v []byte) bool {
	var t TagRecord
	return json.Unmarshal(v, &t) == nil && t.Deleted
}

func page(c *bolt.Cursor, last string, n int) ([]string, bool) {
	out := []string{}
	var k []byte
	if last == "" {
		k, _ = c.First()
	} else {
		k, _ = c.Seek([]byte(last))
		if k != nil && string(k) == last {
			k, _ = c.Next()
		}
	}
	for ; k != nil; k, _ = c.Next() {
		if n > 0 && len(out) == n {
			return out, true
		}
		out = append(out, string(k))
	}
	return out, false
}

// RepositoryExists reports whether repo exists.
func (r *Reader) RepositoryExists(repo string) (bool, error) {
	var ok bool
	err := r.db.View(func(tx *bolt.Tx) error {
		ok = repoBucket(tx, repo) != nil
		return nil
	})
	return ok, err
}

// Tag returns what tag points at in repo.
func (r *Reader) Tag(repo, tag string) (TagRecord, error) {
	var rec TagRecord
	err := r.db.View(func(tx *bolt.Tx) error {
		v := getSub(tx, repo, bucketTags, []byte(tag))
		if v == nil {
			return ErrManifestUnknown
		}
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		if rec.Deleted {
			return ErrManifestUnknown
		}
		return nil
	})
	return rec, err
}

// TagState returns the record of tag in repo, a delete's tombstone
// included; ok is false when the tag was never written.
func (r *Reader) TagState(repo, tag string) (rec TagRecord, ok bool, err error) {
	err = r.db.View(func(tx *bolt.Tx) error {
		rec, ok = tagRecord(tx, repo, tag)
		return nil
	})
	return rec, ok, err
}

// Manifest returns the manifest dgst of repo.
func (r *Reader) Manifest(repo string, dgst digest.Digest) (ManifestRecord, error) {
	var rec ManifestRecord
	err := r.db.View(func(tx *bolt.Tx) error {
		v := getSub(tx, repo, bucketManifests, []byte(dgst))
		if v == nil {
			return ErrManifestUnknown
		}
		return json.Unmarshal(v, &rec)
	})
	return rec, err
}

// BlobLink returns the size of blob dgst if it is linked into repo.
func (r *Reader) BlobLink(repo string, dgst digest.Digest) (int64, error) {
	var size int64
	err := r.db.View(func(tx *bolt.Tx) error {
		v := getSub(tx, repo, bucketLinks, []byte(dgst))
		if len(v) != 8 {
			return ErrBlobUnknown
		}
		size = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return size, err
}

// BlobUnlinked reports whether blob dgst was deleted from repo in this
// region and not linked into it again since.
func (r *Reader) BlobUnlinked(repo string, dgst digest.Digest) bool {
	var unlinked bool
	r.db.View(func(tx *bolt.Tx) error {
		unlinked = getSub(tx, repo, bucketUnlinked, []byte(dgst)) != nil
		return nil
	})
	return unlinked
}

// DeleteStamp returns the (clock, origin) stamp of the delete of ref in
// repo, a tag or a manifest digest, when its newest write this region knows
// of, made here or replicated, is a delete; ok is false otherwise.
func (r *Reader) DeleteStamp(repo, ref string) (clock uint64, origin string, ok bool) {
	r.db.View(func(tx *bolt.Tx) error {
		if d, err := digest.Parse(ref); err == nil {
			var t tombstone
			if t, ok = tombstoneOf(tx, repo, d); ok {
				clock, origin = t.Clock, t.Origin
			}
			return nil
		}
		if rec, found := tagRecord(tx, repo, ref); found && rec.Deleted {
			clock, origin, ok = rec.Clock, rec.Origin, true
		}
		return nil
	})
	return clock, origin, ok
}

// NewerWrite reports whether a write stamped (clock, origin) wins over one
// stamped (thanClock, thanOrigin) under last-writer-wins.
func NewerWrite(clock uint64, origin string, thanClock uint64, thanOrigin string) bool {
	return newer(clock, origin, thanClock, thanOrigin)
}

// Blob returns the size of blob dgst if the region knows it in any
// repository.
func (r *Reader) Blob(dgst digest.Digest) (int64, error) {
	var size int64
	err := r.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobIndex).Get([]byte(dgst))
		if len(v) != 8 {
			return ErrBlobUnknown
		}
		size = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return size, err
}

// Referrers returns the manifests of repo whose subject is dgst, ordered by
// digest.
func (r *Reader) Referrers(repo string, subject digest.Digest) ([]Referrer, error) {
	out := []Referrer{}
	err := r.db.View(func(tx *bolt.Tx) error {
		b := sub(repoBucket(tx, repo), bucketReferrers)
		if b == nil {
			return nil
		}
		prefix := []byte(subject + "/")
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var ref Referrer
			if err := json.Unmarshal(v, &ref); err != nil {
				return err
			}
			out = append(out, ref)
		}
		return nil
	})
	return out, err
}

func getSub(tx *bolt.Tx, repo string, name, key []byte) []byte {
	b := sub(repoBucket(tx, repo), name)
	if b == nil {
		return nil
	}
	return b.Get(key)
}
