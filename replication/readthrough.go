package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/storage"
)

// askTimeout bounds how long read-through waits for the peer regions to
// say whether they hold some content. A region that has not answered by
// then (down, cut off, far too slow) is left out: "not found" stays a fast
// answer while a region is away, instead of a 503 or a hang.
const askTimeout = 500 * time.Millisecond

// NotFoundError says that no peer region that could be asked holds some
// content. It wraps storage.ErrNotFound; Unasked names the regions that
// could not be asked in time, for whom the answer does not speak.
type NotFoundError struct {
	What    string
	Unasked []string
}

func (e *NotFoundError) Error() string {
	if len(e.Unasked) == 0 {
		return fmt.Sprintf("%s: in no peer region", e.What)
	}
	return fmt.Sprintf("%s: in no peer region that could be asked (not asked: %s)", e.What, strings.Join(e.Unasked, ", "))
}

// Unwrap makes the error a storage.ErrNotFound.
func (e *NotFoundError) Unwrap() error { return storage.ErrNotFound }

// UnaskedRegions names the peer regions that could not be asked.
func (e *NotFoundError) UnaskedRegions() []string { return e.Unasked }

// FetchManifest copies repo's manifest ref (a tag or digest) from a peer
// region that holds it, so that a pull never fails because replication has
// not delivered it yet. It returns a *NotFoundError when no peer that could
// be asked within askTimeout holds it. A follower has its region's leader
// fetch (see Fetch), so that a region fetches each thing once.
func (r *Replicator) FetchManifest(ctx context.Context, repo, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !r.cfg.Meta.IsLeader() {
		return r.forwardFetch(ctx, repo, ref, false)
	}
	return r.readManifestThrough(ctx, repo, ref)
}

// readManifestThrough is FetchManifest at the leader.
func (r *Replicator) readManifestThrough(ctx context.Context, repo, ref string) error {
	what := fmt.Sprintf("manifest %s:%s", repo, ref)
	delClock, delOrigin, deleted := r.cfg.Meta.DeleteStamp(repo, ref)
	holders, unasked := askPeers(ctx, r.peerRegions(), askTimeout, func(ctx context.Context, peer string) (bool, error) {
		var found bool
		err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
			resp, err := c.GetManifest(ctx, &replicationpb.GetManifestRequest{Repo: repo, Reference: ref})
			if err == nil {
				found = resp.Found && (!deleted || newerThanDelete(resp, ref, delClock, delOrigin))
			}
			return err
		})
		return found, err
	})
	if deleted && len(holders) == 0 && len(unasked) > 0 {
		// The delete speaks for the regions that could not be asked: a
		// client told "not found" must not be sent on to one the delete
		// has not reached, which would show it the manifest again. Only
		// a write there after the delete, not yet replicated, is missed.
		return &NotFoundError{What: fmt.Sprintf("%s, deleted here (the delete speaks for %s, not asked)", what, strings.Join(unasked, ", "))}
	}
	var errs []error
	for _, peer := range holders {
		err := r.pullManifest(ctx, peer, repo, ref, true)
		if err == nil {
			r.m.ReadThrough.WithLabelValues("manifest").Inc()
			return nil
		}
		errs = append(errs, err)
	}
	return fetchError(what, holders, unasked, errs)
}

// newerThanDelete reports whether a peer's manifest, read by ref, is a
// write made after the local delete stamped (clock, origin): for a tag,
// the tag's write; for a digest, the manifest's push.
func newerThanDelete(resp *replicationpb.GetManifestResponse, ref string, clock uint64, origin string) bool {
	c, o := resp.GetClock(), resp.GetOrigin()
	if _, err := digest.Parse(ref); err != nil {
		c, o = resp.GetTagClock(), resp.GetTagOrigin()
	}
	return meta.NewerWrite(c, o, clock, origin)
}

// FetchBlob copies blob dgst of repo from a peer region that holds it in
// repo, and links it into repo here. The bytes come through the same
// single-flight transfer as replication's own, so a pull racing an offer
// does not fetch the blob twice, and bytes the region already holds are not
// fetched at all. A follower has its region's leader fetch (see Fetch).
func (r *Replicator) FetchBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if !r.cfg.Meta.IsLeader() {
		return r.forwardFetch(ctx, repo, dgst.String(), true)
	}
	return r.readBlobThrough(ctx, repo, dgst)
}

// readBlobThrough is FetchBlob at the leader.
func (r *Replicator) readBlobThrough(ctx context.Context, repo string, dgst digest.Digest) error {
	what := fmt.Sprintf("blob %s of %s", dgst, repo)
	if r.cfg.Meta.BlobUnlinked(repo, dgst) {
		return &NotFoundError{What: what + " (deleted here)"}
	}
	holders, unasked := askPeers(ctx, r.peerRegions(), askTimeout, func(ctx context.Context, peer string) (bool, error) {
		err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
			// Asking from past any real size transfers nothing but still
			// makes the peer check that the blob is repo's.
			s, err := c.GetBlob(ctx, &replicationpb.GetBlobRequest{Digest: dgst.String(), Offset: 1 << 62, Region: r.region, Repo: repo})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			if status.Code(err) == codes.OutOfRange {
				return nil // linked there; only the offset was refused
			}
			if err == nil {
				return errors.New("peer sent bytes from past the end of a blob")
			}
			return err
		})
		if isNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	var errs []error
	for _, peer := range holders {
		if err := r.ensureBlob(ctx, peer, dgst, -1); err != nil {
			errs = append(errs, err)
			continue
		}
		got, err := r.cfg.Blobs.Stat(ctx, dgst)
		if err != nil {
			return err
		}
		r.m.ReadThrough.WithLabelValues("blob").Inc()
		return r.cfg.Meta.Apply(ctx, meta.LinkBlob{Repo: repo, Digest: dgst, Size: got})
	}
	return fetchError(what, holders, unasked, errs)
}

// forwardFetch asks the region's leader to read content through, retrying
// while leadership moves, then catches up with the leader so that this
// node serves what it committed. It never fetches by itself: two zones of
// one region asked for the same layer would bring it over the WAN twice.
func (r *Replicator) forwardFetch(ctx context.Context, repo, ref string, blob bool) error {
	what := fmt.Sprintf("%s:%s", repo, ref)
	var lastErr error
	for backoff := 20 * time.Millisecond; ; backoff = min(backoff*2, 250*time.Millisecond) {
		resp, err := r.askLeaderToFetch(ctx, &replicationpb.FetchRequest{Repo: repo, Reference: ref, Blob: blob})
		switch {
		case err == nil && resp.Found:
			return r.cfg.Meta.Barrier(ctx)
		case err == nil:
			return &NotFoundError{What: what, Unasked: resp.Unasked}
		case status.Code(err) != codes.Unavailable:
			return fmt.Errorf("read-through of %s at the region's leader: %w", what, err)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: read-through of %s: no leader of this region answered: %v", storage.ErrUnavailable, what, lastErr)
		case <-time.After(backoff):
		}
		if r.cfg.Meta.IsLeader() {
			if blob {
				return r.FetchBlob(ctx, repo, digest.Digest(ref))
			}
			return r.FetchManifest(ctx, repo, ref)
		}
	}
}

// askLeaderToFetch sends a forwarded fetch to the region's leader; an
// error with code Unavailable is worth asking again.
func (r *Replicator) askLeaderToFetch(ctx context.Context, req *replicationpb.FetchRequest) (*replicationpb.FetchResponse, error) {
	l, ok := r.cfg.Meta.Leader()
	if !ok || l.ID == r.cfg.Members.Self().ID {
		return nil, status.Error(codes.Unavailable, "no leader known")
	}
	c, err := r.client(l.GRPC)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return c.Fetch(ctx, req)
}

// Fetch reads content through on a follower's behalf (see forwardFetch).
// A node that is not the leader answers Unavailable, and the follower asks
// the new leader: a request is never passed on twice.
func (r *Replicator) Fetch(ctx context.Context, req *replicationpb.FetchRequest) (*replicationpb.FetchResponse, error) {
	if req.Repo == "" || len(req.Repo) > 255 {
		return nil, status.Error(codes.InvalidArgument, "repository: want 1 to 255 characters")
	}
	if !r.cfg.Meta.IsLeader() {
		return nil, status.Error(codes.Unavailable, "this node does not lead its region")
	}
	var err error
	if req.Blob {
		dgst, perr := digest.Parse(req.Reference)
		if perr != nil {
			return nil, status.Errorf(codes.InvalidArgument, "digest: %v", perr)
		}
		err = r.readBlobThrough(ctx, req.Repo, dgst)
	} else {
		if req.Reference == "" || len(req.Reference) > 256 {
			return nil, status.Error(codes.InvalidArgument, "reference: want a tag or digest")
		}
		err = r.readManifestThrough(ctx, req.Repo, req.Reference)
	}
	var nf *NotFoundError
	switch {
	case err == nil:
		return &replicationpb.FetchResponse{Found: true}, nil
	case errors.As(err, &nf):
		return &replicationpb.FetchResponse{Unasked: nf.Unasked}, nil
	case errors.Is(err, storage.ErrNotFound):
		return &replicationpb.FetchResponse{}, nil
	case errors.Is(err, storage.ErrUnavailable):
		return nil, status.Error(codes.Unavailable, err.Error())
	default:
		return nil, status.Error(codes.Internal, err.Error())
	}
}

// askPeers asks every peer at once whether it holds something, and waits
// at most bound for the answers. It returns the peers that hold it, in the
// order given, and those that could not be asked: an error other than "not
// found", or no answer in time.
func askPeers(ctx context.Context, peers []string, bound time.Duration, ask func(context.Context, string) (bool, error)) (holders, unasked []string) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	type answer struct {
		found, asked bool
	}
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Go(func() {
			found, err := ask(ctx, peer)
			answers[i] = answer{found: found, asked: err == nil || isNotFound(err)}
		})
	}
	// The asks end with ctx; a peer still dialing then counts as unasked.
	wg.Wait()
	for i, a := range answers {
		switch {
		case a.found:
			holders = append(holders, peers[i])
		case !a.asked:
			unasked = append(unasked, peers[i])
		}
	}
	return holders, unasked
}

// fetchError says why content was read through from no peer: a
// *NotFoundError when no peer that answered holds it (naming those that
// could not be asked), or an error wrapping storage.ErrUnavailable when a
// peer that holds it failed to deliver, so that the client retries.
func fetchError(what string, holders, unasked []string, errs []error) error {
	if len(holders) == 0 {
		return &NotFoundError{What: what, Unasked: unasked}
	}
	return fmt.Errorf("%w: %s: held by %s, but the copy failed: %v", storage.ErrUnavailable, what, strings.Join(holders, ", "), errors.Join(errs...))
}

// isNotFound reports whether err is a peer's "I do not hold it".
func isNotFound(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || status.Code(errors.Unwrap(err)) == codes.NotFound || status.Code(err) == codes.NotFound
}

// WaitReplicated returns once n regions, this one included, hold manifest
// dgst of repo, or fails with an error wrapping storage.ErrUnavailable when
// ctx ends first. It is how a push asks for geo-durability: acknowledged
// only when losing a whole region cannot lose it.
func (r *Replicator) WaitReplicated(ctx context.Context, repo string, dgst digest.Digest, n int) error {
	have := map[string]bool{}
	for {
		for _, peer := range r.peerRegions() {
			if have[peer] {
				continue
			}
			err := r.withRegion(ctx, peer, func(c replicationpb.ReplicationClient) error {
				resp, err := c.GetManifest(ctx, &replicationpb.GetManifestRequest{Repo: repo, Reference: dgst.String()})
				if err == nil && resp.Found {
					have[peer] = true
				}
				return err
			})
			_ = err // a peer that cannot be asked simply does not count yet
		}
		if 1+len(have) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s@%s is in %d of the %d regions asked for", storage.ErrUnavailable, repo, dgst, 1+len(have), n)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
