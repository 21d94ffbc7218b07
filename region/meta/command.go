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
	// OpPutManifest stores Manifest in Repo, tags it with Tag when set, and
	// indexes it as a referrer of its subject. It fails with
	// *MissingContentError unless every digest in Requires is linked into
	// Repo and every digest in RequiresManifests is a manifest of Repo.
	OpPutManifest Op = "put-manifest"
	// OpDeleteManifest removes manifest Digest from Repo with every tag that
	// points at it and its referrers-index entry.
	OpDeleteManifest Op = "delete-manifest"
	// OpDeleteTag removes Tag from Repo.
	OpDeleteTag Op = "delete-tag"
)

// ErrUnknownCommand is returned for a command of an Op this version does not
// know (a newer node's command in a mixed-version group).
var ErrUnknownCommand = errors.New("meta: unknown command")

// Command is one metadata change. Its JSON encoding is stable: it is what a
// replicated log carries.
type Command struct {
	Op                Op              `json:"op"`
	Repo              string          `json:"repo"`
	Digest            digest.Digest   `json:"digest,omitempty"`
	Size              int64           `json:"size,omitempty"`
	Tag               string          `json:"tag,omitempty"`
	Manifest          *ManifestRecord `json:"manifest,omitempty"`
	Requires          []digest.Digest `json:"requires,omitempty"`
	RequiresManifests []digest.Digest `json:"requiresManifests,omitempty"`
	// Time is when the command was proposed; it is recorded instead of the
	// applying replica's clock so that every replica stores the same value.
	Time time.Time `json:"time"`
}

// Apply executes cmd in one transaction. ctx is checked before the
// transaction starts; once started, it commits or fails as a whole.
// Concurrent Apply calls are batched
// into shared transactions; each still commits or fails on its own.
func (s *Store) Apply(ctx context.Context, cmd Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error { return apply(tx, cmd) })
}

func apply(tx *bolt.Tx, cmd Command) error {
	switch cmd.Op {
	case OpLinkBlob:
		rb, err := ensureRepo(tx, cmd.Repo)
		if err != nil {
			return err
		}
		var size [8]byte
		binary.BigEndian.PutUint64(size[:], uint64(cmd.Size))
		if err := tx.Bucket(bucketBlobIndex).Put([]byte(cmd.Digest), size[:]); err != nil {
			return err
		}
		return rb.Bucket(bucketLinks).Put([]byte(cmd.Digest), size[:])
	case OpUnlinkBlob:
		b := sub(repoBucket(tx, cmd.Repo), bucketLinks)
		if b == nil || b.Get([]byte(cmd.Digest)) == nil {
			return ErrBlobUnknown
		}
		return b.Delete([]byte(cmd.Digest))
	case OpPutManifest:
		return putManifest(tx, cmd)
	case OpDeleteManifest:
		return deleteManifest(tx, cmd.Repo, cmd.Digest)
	case OpDeleteTag:
		b := sub(repoBucket(tx, cmd.Repo), bucketTags)
		if b == nil || b.Get([]byte(cmd.Tag)) == nil {
			return ErrManifestUnknown
		}
		return b.Delete([]byte(cmd.Tag))
	default:
		return fmt.Errorf("%w: %q", ErrUnknownCommand, cmd.Op)
	}
}

func ensureRepo(tx *bolt.Tx, repo string) (*bolt.Bucket, error) {
	rb, err := tx.Bucket(bucketRepos).CreateBucketIfNotExists([]byte(repo))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketTags, bucketManifests, bucketLinks, bucketReferrers} {
		if _, err := rb.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return rb, nil
}

func putManifest(tx *bolt.Tx, cmd Command) error {
	m := cmd.Manifest
	if m == nil {
		return fmt.Errorf("meta: put-manifest without a manifest")
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
		return &MissingContentError{Digests: missing}
	}
	rb, err := ensureRepo(tx, cmd.Repo)
	if err != nil {
		return err
	}
	rec := *m
	if old := rb.Bucket(bucketManifests).Get([]byte(m.Digest)); old != nil {
		// Re-pushing the same manifest keeps its creation time.
		var prev ManifestRecord
		if json.Unmarshal(old, &prev) == nil {
			rec.Created = prev.Created
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
	if cmd.Tag != "" {
		t, err := json.Marshal(TagRecord{Digest: m.Digest, Updated: cmd.Time})
		if err != nil {
			return err
		}
		if err := rb.Bucket(bucketTags).Put([]byte(cmd.Tag), t); err != nil {
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
	return nil
}

func referrerKey(subject, referrer digest.Digest) []byte {
	return []byte(subject.String() + "/" + referrer.String())
}

func deleteManifest(tx *bolt.Tx, repo string, dgst digest.Digest) error {
	rb := repoBucket(tx, repo)
	mb := sub(rb, bucketManifests)
	if mb == nil {
		return ErrManifestUnknown
	}
	v := mb.Get([]byte(dgst))
	if v == nil {
		return ErrManifestUnknown
	}
	var rec ManifestRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return err
	}
	if err := mb.Delete([]byte(dgst)); err != nil {
		return err
	}
	if rec.Subject != "" {
		if err := rb.Bucket(bucketReferrers).Delete(referrerKey(rec.Subject, dgst)); err != nil {
			return err
		}
	}
	tags := rb.Bucket(bucketTags)
	var stale [][]byte
	err := tags.ForEach(func(k, v []byte) error {
		var t TagRecord
		if json.Unmarshal(v, &t) == nil && t.Digest == dgst {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := tags.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
