package meta

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Garbage collection (a connected registry's: replication/site) works in
// two steps through the log, so that a blob is deleted only once it has
// stayed unreferenced for a grace period, whatever happens meanwhile:
//
//   - MarkBlobs records when the collector first found a blob
//     unreferenced. Every write that references a blob (LinkBlob, a
//     PutManifest's links and required blobs) clears its mark in the same
//     transaction, so a mark that survives says that nothing referenced
//     the blob since it was made.
//   - CollectBlobs deletes the blobs whose marks are older than its
//     Before: from the blob index and every repository's links. A blob
//     referenced after the collector's last look has no mark any more and
//     is left alone, so the collector's reads need not be a snapshot of
//     the whole store.
//
// The bytes are the collector's to delete once the metadata is gone.

// The garbage collection commands.
const (
	// OpMarkBlobs is the Op of MarkBlobs.
	OpMarkBlobs Op = "mark-blobs"
	// OpCollectBlobs is the Op of CollectBlobs.
	OpCollectBlobs Op = "collect-blobs"
)

// bucketGCMarks holds, by digest, when the collector first found a blob
// unreferenced (a Unix nanosecond time, big-endian); bucketGCRepoMarks,
// by name, when it first found a repository empty.
var (
	bucketGCMarks     = []byte("gcmarks")
	bucketGCRepoMarks = []byte("gcrepomarks")
)

// MaxGCBatch bounds the digests and repositories of one MarkBlobs or
// CollectBlobs, so that one log entry stays small.
const MaxGCBatch = 2000

// MarkBlobs marks the blobs of Mark as unreferenced since Time (a blob
// marked already keeps its older mark) and clears the marks of Unmark.
// It marks the repositories of Repositories as empty (no manifest, no
// live tag) since Time the same way; any write into a repository clears
// its mark.
type MarkBlobs struct {
	Mark         []digest.Digest `json:"mark,omitempty"`
	Unmark       []digest.Digest `json:"unmark,omitempty"`
	Repositories []string        `json:"repositories,omitempty"`
	Time         time.Time       `json:"time"`
}

// CollectBlobs deletes every blob of Digests whose mark is at or before
// Before from the blob index and from the links of every repository, and
// its mark; a blob without such a mark (referenced since) is left as it
// is. Then it drops each repository of Repositories marked empty at or
// before Before that still holds no manifest and no live tag, with its
// tombstones and links (an upload abandoned there for the grace).
type CollectBlobs struct {
	Digests      []digest.Digest `json:"digests,omitempty"`
	Before       time.Time       `json:"before"`
	Repositories []string        `json:"repositories,omitempty"`
}

// Op implements Command.
func (MarkBlobs) Op() Op { return OpMarkBlobs }

// Op implements Command.
func (CollectBlobs) Op() Op { return OpCollectBlobs }

func (c MarkBlobs) apply(tx *bolt.Tx) error {
	if len(c.Mark)+len(c.Unmark) > MaxGCBatch {
		return fmt.Errorf("meta: mark-blobs: %d digests, at most %d", len(c.Mark)+len(c.Unmark), MaxGCBatch)
	}
	b, err := tx.CreateBucketIfNotExists(bucketGCMarks)
	if err != nil {
		return err
	}
	for _, d := range c.Unmark {
		if err := b.Delete([]byte(d)); err != nil {
			return err
		}
	}
	for _, d := range c.Mark {
		if b.Get([]byte(d)) != nil {
			continue
		}
		if err := b.Put([]byte(d), seqKey(uint64(c.Time.UnixNano()))); err != nil {
			return err
		}
	}
	rm, err := tx.CreateBucketIfNotExists(bucketGCRepoMarks)
	if err != nil {
		return err
	}
	for _, r := range c.Repositories {
		if rm.Get([]byte(r)) != nil || repoBucket(tx, r) == nil {
			continue
		}
		if err := rm.Put([]byte(r), seqKey(uint64(c.Time.UnixNano()))); err != nil {
			return err
		}
	}
	return nil
}

func (c CollectBlobs) apply(tx *bolt.Tx) error {
	if len(c.Digests)+len(c.Repositories) > MaxGCBatch {
		return fmt.Errorf("meta: collect-blobs: %d digests and repositories, at most %d", len(c.Digests)+len(c.Repositories), MaxGCBatch)
	}
	marks := tx.Bucket(bucketGCMarks)
	repos := tx.Bucket(bucketRepos)
	for _, d := range c.Digests {
		if marks == nil {
			break
		}
		v := marks.Get([]byte(d))
		if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) > c.Before.UnixNano() {
			continue
		}
		if err := marks.Delete([]byte(d)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBlobIndex).Delete([]byte(d)); err != nil {
			return err
		}
		err := repos.ForEachBucket(func(name []byte) error {
			if lb := sub(repos.Bucket(name), bucketLinks); lb != nil {
				return lb.Delete([]byte(d))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	rm := tx.Bucket(bucketGCRepoMarks)
	for _, r := range c.Repositories {
		if rm == nil {
			break
		}
		v := rm.Get([]byte(r))
		if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) > c.Before.UnixNano() {
			continue
		}
		if err := rm.Delete([]byte(r)); err != nil {
			return err
		}
		rb := repos.Bucket([]byte(r))
		if rb == nil || !emptyRepo(rb) {
			continue
		}
		if err := repos.DeleteBucket([]byte(r)); err != nil {
			return err
		}
	}
	return nil
}

// emptyRepo reports whether a repository holds no manifest and no live
// tag.
func emptyRepo(rb *bolt.Bucket) bool {
	if b := rb.Bucket(bucketManifests); b != nil {
		if k, _ := b.Cursor().First(); k != nil {
			return false
		}
	}
	live := false
	if tb := rb.Bucket(bucketTags); tb != nil {
		tb.ForEach(func(_, v []byte) error {
			if !isTombstone(v) {
				live = true
			}
			return nil
		})
	}
	return !live
}

// unmark clears the collector's mark of a blob that a write references.
func unmark(tx *bolt.Tx, d digest.Digest) error {
	if b := tx.Bucket(bucketGCMarks); b != nil {
		return b.Delete([]byte(d))
	}
	return nil
}

// unmarkRepo clears the collector's mark of a repository written to.
func unmarkRepo(tx *bolt.Tx, repo string) error {
	if b := tx.Bucket(bucketGCRepoMarks); b != nil {
		return b.Delete([]byte(repo))
	}
	return nil
}

// RepoMarks returns the collector's marks of repositories: when each was
// first found empty.
func (r *Reader) RepoMarks() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGCRepoMarks)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				out[string(k)] = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
			}
			return nil
		})
	})
	return out, err
}

// BlobMarks returns the collector's marks: when each blob marked was
// first found unreferenced.
func (r *Reader) BlobMarks() (map[digest.Digest]time.Time, error) {
	out := map[digest.Digest]time.Time{}
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGCMarks)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				out[digest.Digest(k)] = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
			}
			return nil
		})
	})
	return out, err
}

// RepoContent is what a repository references, as the collector reads it.
type RepoContent struct {
	Repo string
	// Manifests are the repository's manifests, with their content.
	Manifests []ManifestRecord
	// Links are the blobs linked into the repository.
	Links []digest.Digest
	// LiveTags counts the tags that point at a manifest.
	LiveTags int
}

// WalkRepositories calls fn with the content of every repository, one
// repository read at a time (each in its own read transaction).
func (r *Reader) WalkRepositories(ctx context.Context, fn func(RepoContent) error) error {
	last := ""
	for {
		names, more, err := r.Repositories(last, 100)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			rc := RepoContent{Repo: name}
			err := r.db.View(func(tx *bolt.Tx) error {
				rb := repoBucket(tx, name)
				if rb == nil {
					return nil
				}
				if mb := rb.Bucket(bucketManifests); mb != nil {
					err := mb.ForEach(func(_, v []byte) error {
						var m ManifestRecord
						if err := json.Unmarshal(v, &m); err != nil {
							return fmt.Errorf("meta: manifest of %s: %w", name, err)
						}
						rc.Manifests = append(rc.Manifests, m)
						return nil
					})
					if err != nil {
						return err
					}
				}
				if lb := rb.Bucket(bucketLinks); lb != nil {
					lb.ForEach(func(k, _ []byte) error {
						rc.Links = append(rc.Links, digest.Digest(k))
						return nil
					})
				}
				if tb := rb.Bucket(bucketTags); tb != nil {
					tb.ForEach(func(_, v []byte) error {
						if !isTombstone(v) {
							rc.LiveTags++
						}
						return nil
					})
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := fn(rc); err != nil {
				return err
			}
		}
		if !more || len(names) == 0 {
			return nil
		}
		last = names[len(names)-1]
	}
}
