package replication

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
			return status.Errorf(codes.NotFound, "%s is not a blob of %s here", dgst, req.Repo)
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
	resp := &replicationpb.GetManifestResponse{}
	dgst := digest.Digest(req.Reference)
	if !isDigest(req.Reference) {
		t, err := r.cfg.Meta.Tag(req.Repo, req.Reference)
		if err != nil {
			return resp, nil
		}
		dgst, resp.TagClock, resp.TagOrigin = t.Digest, t.Clock, t.Origin
	}
	m, err := r.cfg.Meta.Manifest(req.Repo, dgst)
	if err != nil {
		return resp, nil
	}
	resp.Found, resp.Digest, resp.MediaType, resp.Content = true, m.Digest.String(), m.MediaType, m.Content
	resp.Clock, resp.Origin = m.Clock, m.Origin
	return resp, nil
}

// Summary returns the per-repository summaries of this region.
func (r *Replicator) Summary(ctx context.Context, _ *replicationpb.SummaryRequest) (*replicationpb.SummaryResponse, error) {
	sums, err := r.cfg.Meta.RepoSummaries()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &replicationpb.SummaryResponse{Repos: make(map[string]string, len(sums))}
	for repo, d := range sums {
		resp.Repos[repo] = d.String()
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
