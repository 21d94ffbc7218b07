package storage

import (
	"context"
	"errors"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Verified remembers which stored copies are known to match their digest:
// each verified copy's stamp (see Stamper). A copy whose stamp is unchanged
// since it was written from hashed bytes, or last hashed, is trusted without
// reading it again; a changed stamp means the copy must be hashed before it
// is trusted. One Verified is shared by everything on a node that writes or
// checks copies (uploads, zone copies, repairs, reads), so no copy is hashed
// twice. It is safe for concurrent use.
type Verified struct {
	mu     sync.Mutex
	stamps map[digest.Digest]string
}

// NewVerified returns an empty record.
func NewVerified() *Verified { return &Verified{stamps: map[digest.Digest]string{}} }

// Mark records that the copy of dgst in store was just written from bytes
// that hashed to dgst. Stores without stamps record nothing.
func (v *Verified) Mark(ctx context.Context, store BlobStore, dgst digest.Digest) {
	st, ok := store.(Stamper)
	if !ok {
		return
	}
	if stamp, err := st.Stamp(ctx, dgst); err == nil {
		v.mu.Lock()
		v.stamps[dgst] = stamp
		v.mu.Unlock()
	}
}

// Forget drops what is known of dgst (its copy was removed).
func (v *Verified) Forget(dgst digest.Digest) {
	v.mu.Lock()
	delete(v.stamps, dgst)
	v.mu.Unlock()
}

// Trusted reports whether the copy of dgst in store is known to match its
// digest without reading it: it was verified and its stamp has not changed.
// It returns the store's error (ErrNotFound, ...) when the stamp cannot be
// read, and false for stores without stamps.
func (v *Verified) Trusted(ctx context.Context, store BlobStore, dgst digest.Digest) (bool, error) {
	st, ok := store.(Stamper)
	if !ok {
		_, err := store.Stat(ctx, dgst)
		return false, err
	}
	stamp, err := st.Stamp(ctx, dgst)
	if err != nil {
		return false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stamps[dgst] == stamp, nil
}

// Check hashes the copy of dgst unless it is trusted, and records it when it
// matches. It returns an error wrapping ErrDigestMismatch or ErrSizeMismatch
// for a corrupt copy (which it does not remove: the caller decides).
func (v *Verified) Check(ctx context.Context, store BlobStore, dgst digest.Digest) error {
	trusted, err := v.Trusted(ctx, store, dgst)
	if err != nil || trusted {
		return err
	}
	var stamp string
	st, hasStamp := store.(Stamper)
	if hasStamp {
		// Stamp before hashing: a change during the hash makes the recorded
		// stamp stale, so the next check hashes again.
		if stamp, err = st.Stamp(ctx, dgst); err != nil {
			return err
		}
	}
	if err := Verify(ctx, store, dgst); err != nil {
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
			v.Forget(dgst)
		}
		return err
	}
	if hasStamp {
		v.mu.Lock()
		v.stamps[dgst] = stamp
		v.mu.Unlock()
	}
	return nil
}
