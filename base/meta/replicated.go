package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketLog  = []byte("log")
	keyApplied = []byte("applied")
)

// ApplyAt executes cmd as entry index of a replicated log, in one
// transaction that also records index as applied. An entry at or below the
// recorded index was applied before (a log replayed after a restart) and is
// skipped with a nil error, so replay never applies a command twice on a
// state that already has it. The error is the command's own result.
func (s *Store) ApplyAt(index uint64, cmd Command) error {
	defer s.changed.notify()
	var result error
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketLog)
		if err != nil {
			return err
		}
		if v := b.Get(keyApplied); len(v) == 8 && binary.BigEndian.Uint64(v) >= index {
			return nil
		}
		var idx [8]byte
		binary.BigEndian.PutUint64(idx[:], index)
		if err := b.Put(keyApplied, idx[:]); err != nil {
			return err
		}
		// A refused command (unknown manifest, missing content) still
		// consumes its index: commands check before they write, so a refused
		// one has written nothing. Any other error rolls back.
		result = cmd.apply(tx)
		var undo *refusal
		if errors.As(result, &undo) {
			// A refusal that wrote before refusing: roll it back, then
			// record the index in a transaction of its own below.
			return result
		}
		if result != nil && !isRefusal(result) {
			return result
		}
		return nil
	})
	var undo *refusal
	if errors.As(err, &undo) {
		err = s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketLog)
			if err != nil {
				return err
			}
			return b.Put(keyApplied, seqKey(index))
		})
		if err == nil {
			return undo.err
		}
	}
	if err != nil {
		return fmt.Errorf("meta: apply entry %d: %w", index, err)
	}
	return result
}

// AppliedIndex returns the last log index recorded by ApplyAt or Restore.
func (r *Reader) AppliedIndex() uint64 {
	var idx uint64
	r.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketLog); b != nil {
			if v := b.Get(keyApplied); len(v) == 8 {
				idx = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	return idx
}

// Snapshot writes a consistent copy of the whole store to w. It runs
// concurrently with writes.
func (s *Store) Snapshot(w io.Writer) error {
	return s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// Restore replaces the store's contents with a copy written by Snapshot, in
// one transaction: readers see the old state or the new one.
func (s *Store) Restore(r io.Reader) error {
	defer s.changed.notify()
	tmp, err := os.CreateTemp(filepath.Dir(s.db.Path()), "restore-*.db")
	if err != nil {
		return fmt.Errorf("meta: restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("meta: restore: %w", err)
	}
	src, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("meta: restore: %w", err)
	}
	defer src.Close()
	return src.View(func(stx *bolt.Tx) error {
		return s.db.Update(func(tx *bolt.Tx) error {
			var names [][]byte
			tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				names = append(names, append([]byte(nil), name...))
				return nil
			})
			for _, name := range names {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
			return stx.ForEach(func(name []byte, b *bolt.Bucket) error {
				dst, err := tx.CreateBucket(name)
				if err != nil {
					return err
				}
				return copyBucket(dst, b)
			})
		})
	})
}

func copyBucket(dst, src *bolt.Bucket) error {
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(k, v)
		}
		child, err := dst.CreateBucket(k)
		if err != nil {
			return err
		}
		return copyBucket(child, src.Bucket(k))
	})
}

// WalkBlobs calls fn for every blob in the blob index.
func (r *Reader) WalkBlobs(ctx context.Context, fn func(dgst digest.Digest, size int64) error) error {
	// Collect first so fn may take its time without holding a read
	// transaction open (which would stop bbolt from reusing pages).
	type entry struct {
		d    digest.Digest
		size int64
	}
	var all []entry
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlobIndex).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				all = append(all, entry{digest.Digest(k), int64(binary.BigEndian.Uint64(v))})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, e := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e.d, e.size); err != nil {
			return err
		}
	}
	return nil
}

// Digest returns a digest of the registry state (every repository, tag,
// manifest, link, referrer and the blob index), leaving out bookkeeping such
// as the applied index. Replicas that converged have equal digests.
func (r *Reader) Digest() (digest.Digest, error) {
	d, _, err := r.DigestAt()
	return d, err
}

// DigestAt is Digest with the applied index of the state it hashed, read
// in the same transaction: the state, and so its digest, changes only when
// that index does, which lets a caller keep the digest until then.
func (r *Reader) DigestAt() (digest.Digest, uint64, error) {
	d := digest.Canonical.Digester()
	var idx uint64
	err := r.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketLog); b != nil {
			if v := b.Get(keyApplied); len(v) == 8 {
				idx = binary.BigEndian.Uint64(v)
			}
		}
		for _, name := range [][]byte{bucketRepos, bucketBlobIndex} {
			if err := hashBucket(d.Hash(), name, tx.Bucket(name)); err != nil {
				return err
			}
		}
		return nil
	})
	return d.Digest(), idx, err
}

func hashBucket(h io.Writer, name []byte, b *bolt.Bucket) error {
	fmt.Fprintf(h, "bucket %q\n", name)
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return hashBucket(h, k, b.Bucket(k))
		}
		fmt.Fprintf(h, "%q=%q\n", k, v)
		return nil
	})
}

// isRefusal reports whether err is a command's refusal (a result for the
// client) rather than a failure of the store.
func isRefusal(err error) bool {
	var missing *MissingContentError
	return errors.Is(err, ErrManifestUnknown) || errors.Is(err, ErrBlobUnknown) ||
		errors.Is(err, ErrRepositoryUnknown) || errors.As(err, &missing) || errors.Is(err, ErrUnknownCommand) ||
		errors.Is(err, ErrReplicationUnknown) || errors.Is(err, ErrWebhookUnknown)
}
