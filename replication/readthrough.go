package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/region/meta"
	"github.com/georeg/georeg/storage"
)

// FetchManifest copies repo's manifest ref (a tag or digest) from the first
// peer region that holds it, so that a pull never fails because replication
// has not delivered it yet. It returns an error wrapping storage.ErrNotFound
// when no reachable peer holds it.
func (r *Replicator) FetchManifest(ctx context.Context, repo, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	for _, peer := range r.peerRegions() {
		err := r.pullManifest(ctx, peer, repo, ref, true)
		if err == nil {
			r.m.ReadThrough.WithLabelValues("manifest").Inc()
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w: %s:%s in no peer region: %v", storage.ErrNotFound, repo, ref, errors.Join(errs...))
}

// FetchBlob copies blob dgst from the first peer region that holds it and
// links it into repo.
func (r *Replicator) FetchBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	size, err := r.cfg.Meta.Blob(dgst)
	if err == nil {
		if _, serr := r.cfg.Blobs.Stat(ctx, dgst); serr != nil {
			err = serr
		}
	}
	if err != nil {
		var errs []error
		ok := false
		for _, peer := range r.peerRegions() {
			if ferr := r.fetchBlob(ctx, peer, dgst, -1); ferr != nil {
				errs = append(errs, ferr)
				continue
			}
			ok = true
			break
		}
		if !ok {
			return fmt.Errorf("%w: blob %s in no peer region: %v", storage.ErrNotFound, dgst, errors.Join(errs...))
		}
		if size, err = r.cfg.Blobs.Stat(ctx, dgst); err != nil {
			return err
		}
	}
	r.m.ReadThrough.WithLabelValues("blob").Inc()
	return r.cfg.Meta.Apply(ctx, meta.Command{Op: meta.OpLinkBlob, Repo: repo, Digest: dgst, Size: size, Time: time.Now().UTC()})
}
