package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	gproto "google.golang.org/protobuf/proto"

	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/storage"
)

// GetBlob streams a blob this region holds to a peer region.
func (r *Replicator) GetBlob(req *replicationpb.GetBlobRequest, stream replicationpb.Replication_GetBlobServer) error {
	dgst, err := digest.Parse(req.Digest)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "digest: %v", err)
	}
	ctx := stream.Context()
	if req.Repo != "" {
		if err := r.cfg.Meta.Barrier(ctx); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		if _, err := r.cfg.Meta.BlobLink(req.Repo, dgst); err != nil {
			return r.notHeld(fmt.Sprintf("%s is not a blob of %s here", dgst, req.Repo))
		}
	}
	size, err := r.cfg.Blobs.Stat(ctx, dgst)
	if errors.Is(err, storage.ErrNotFound) {
		return status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if req.Offset > size {
		return status.Errorf(codes.OutOfRange, "offset %d beyond %d bytes", req.Offset, size)
	}
	rc, err := r.cfg.Blobs.Open(ctx, dgst, req.Offset)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer rc.Close()
	sent := r.m.BytesSent.WithLabelValues(req.Region)
	rerr, serr := proto.SendChunks(rc, func(data []byte, first bool) error {
		msg := &replicationpb.BlobChunk{Data: data}
		if first {
			msg.Digest, msg.Size = dgst.String(), size
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
		sent.Add(float64(len(data)))
		return nil
	})
	if serr != nil {
		return serr
	}
	if rerr != nil {
		return status.Error(codes.Internal, rerr.Error())
	}
	return nil
}

// GetManifest returns a manifest this region holds (never reading through
// to other regions, so regions asking each other cannot loop).
func (r *Replicator) GetManifest(ctx context.Context, req *replicationpb.GetManifestRequest) (*replicationpb.GetManifestResponse, error) {
	// A peer asking is owed every write this region acknowledged, as a
	// client is: a follower that has not applied the newest push would
	// answer "not found" for it.
	if err := r.cfg.Meta.Barrier(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := r.localManifest(req.Repo, req.Reference)
	if !resp.Found {
		if err := r.notHeld(fmt.Sprintf("no manifest %s:%s here", req.Repo, req.Reference)); status.Code(err) != codes.NotFound {
			return nil, err
		}
	}
	return resp, nil
}

// notHeld is the answer to a peer that asked for content this node's
// replica lacks: NOT_FOUND, which speaks for the whole region, only when
// the node knows its region's leader. Without one, Barrier served the
// node's own replica (a region that lost its leader acknowledges no new
// write), and that replica may still lack a write the leader and another
// zone acknowledged just before the leader went: a rolling restart showed
// a peer's read-through take such a "not found" for the region's answer
// and answer a client 404 for an image it had just pushed. The node says
// UNAVAILABLE then, and the asking region counts it as not asked.
func (r *Replicator) notHeld(msg string) error {
	if _, ok := r.cfg.Meta.Leader(); !ok {
		return status.Errorf(codes.Unavailable, "%s, and this node knows no leader of its region to tell whether the region holds it", msg)
	}
	return status.Error(codes.NotFound, msg)
}

// localManifest reads a manifest by tag or digest from this node's
// replica; Found is false when it does not hold it.
func (r *Replicator) localManifest(repo, ref string) *replicationpb.GetManifestResponse {
	resp := &replicationpb.GetManifestResponse{}
	dgst := digest.Digest(ref)
	if !isDigest(ref) {
		t, err := r.cfg.Meta.Tag(repo, ref)
		if err != nil {
			return resp
		}
		dgst, resp.TagClock, resp.TagOrigin = t.Digest, t.Clock, t.Origin
	}
	m, err := r.cfg.Meta.Manifest(repo, dgst)
	if err != nil {
		return resp
	}
	resp.Found, resp.Digest, resp.MediaType, resp.Content = true, m.Digest.String(), m.MediaType, m.Content
	resp.Clock, resp.Origin = m.Clock, m.Origin
	return resp
}

// Summary returns the per-repository summaries of this region.
func (r *Replicator) Summary(ctx context.Context, _ *replicationpb.SummaryRequest) (*replicationpb.SummaryResponse, error) {
	sums, err := r.cfg.Meta.RepoSizes()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &replicationpb.SummaryResponse{
		Repos: make(map[string]string, len(sums)),
		Sizes: make(map[string]*replicationpb.RepoSize, len(sums)),
	}
	for repo, s := range sums {
		resp.Repos[repo] = s.Digest.String()
		resp.Sizes[repo] = &replicationpb.RepoSize{Tags: int64(s.Tags), Bytes: s.Bytes}
	}
	return resp, nil
}

const (
	// maxPage bounds the repositories of a RepoStates request and the
	// references of a GetManifests request.
	maxPage = 1000
	// maxPageBytes is about the most a RepoStates or GetManifests answer
	// carries: past it, the answer stops (with at least one item) and the
	// caller asks for the rest.
	maxPageBytes = 8 << 20
)

// RepoStates returns the states of several repositories: a page of a
// catch-up in one round trip.
func (r *Replicator) RepoStates(ctx context.Context, req *replicationpb.RepoStatesRequest) (*replicationpb.RepoStatesResponse, error) {
	if len(req.Repos) > maxPage {
		return nil, status.Errorf(codes.InvalidArgument, "%d repositories asked, at most %d", len(req.Repos), maxPage)
	}
	resp := &replicationpb.RepoStatesResponse{}
	size := 0
	for _, repo := range req.Repos {
		if size >= maxPageBytes || ctx.Err() != nil {
			break
		}
		st, err := r.cfg.Meta.RepoState(repo)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		p := repoStateToProto(st)
		p.Repo = repo
		size += gproto.Size(p)
		resp.Repos = append(resp.Repos, p)
	}
	return resp, nil
}

// GetManifests returns several manifests: the content of a page of a
// catch-up in one round trip. As GetManifest, it never reads through.
func (r *Replicator) GetManifests(ctx context.Context, req *replicationpb.GetManifestsRequest) (*replicationpb.GetManifestsResponse, error) {
	if len(req.Refs) > maxPage {
		return nil, status.Errorf(codes.InvalidArgument, "%d references asked, at most %d", len(req.Refs), maxPage)
	}
	if err := r.cfg.Meta.Barrier(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &replicationpb.GetManifestsResponse{}
	size := 0
	for _, ref := range req.Refs {
		if size >= maxPageBytes || ctx.Err() != nil {
			break
		}
		m := r.localManifest(ref.Repo, ref.Reference)
		size += len(m.Content) + 256
		resp.Manifests = append(resp.Manifests, m)
	}
	return resp, nil
}

// RepoState returns one repository's replicated state.
func (r *Replicator) RepoState(ctx context.Context, req *replicationpb.RepoStateRequest) (*replicationpb.RepoStateResponse, error) {
	st, err := r.cfg.Meta.RepoState(req.Repo)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return repoStateToProto(st), nil
}
