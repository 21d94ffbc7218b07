package region

import (
	"context"
	"errors"
	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
)

// Server serves the zone protocol to the other nodes of the region.
type Server struct {
	zonepb.UnimplementedZoneServer
	group *Group
	// local is the node's own store: blobs sent here are stored here only,
	// never forwarded again.
	local *storage.Checked
}

// NewServer returns the gRPC service of a zone node. local is the node's
// own store, the same one its Blobs writes to: it knows which copies
// match their digests.
func NewServer(group *Group, local *storage.Checked) *Server {
	return &Server{group: group, local: local}
}

// Apply proposes a forwarded command when this node leads.
func (s *Server) Apply(ctx context.Context, req *zonepb.ApplyRequest) (*zonepb.ApplyResponse, error) {
	resp := &zonepb.ApplyResponse{}
	if !s.group.IsLeader() {
		_, id := s.group.raft.LeaderWithID()
		resp.ErrorKind, resp.LeaderId, resp.ErrorMessage = kindNotLeader, string(id), "not the leader"
		return resp, nil
	}
	index, result, err := s.group.applyLocal(ctx, req.Command)
	if err != nil {
		resp.ErrorKind, resp.ErrorMessage = kindNoQuorum, err.Error()
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			resp.ErrorKind = kindNotLeader
		}
		return resp, nil
	}
	resp.Index = index
	encodeResult(resp, result)
	// The forwarding follower waits until it applied index.
	s.group.nudge(index)
	return resp, nil
}

// PutBlob stores a streamed blob in the local store. Zone nodes copy blobs
// to each other over the blob stream protocol (see BlobStreamMagic), which
// costs less CPU; PutBlob is the same operation for gRPC clients.
func (s *Server) PutBlob(stream zonepb.Zone_PutBlobServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	dgst, err := digest.Parse(first.Digest)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "digest: %v", err)
	}
	r := &chunkReader{pending: first.Data, recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}}
	n, err := s.putCopy(stream.Context(), dgst, first.Size, r, false)
	if err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch) {
			return status.Error(codes.DataLoss, err.Error())
		}
		return status.Error(codes.Internal, err.Error())
	}
	return stream.SendAndClose(&zonepb.PutBlobResponse{Size: n})
}

// putCopy stores a copy of a blob another zone node sends (over the blob
// stream protocol or PutBlob) in the local store, which trusts a copy it
// writes. vouched says the sender checked the bytes against the digest and
// the transfer checked them on the way (the blob stream protocol), so the
// store need not hash them again.
func (s *Server) putCopy(ctx context.Context, dgst digest.Digest, size int64, r io.Reader, vouched bool) (int64, error) {
	if vouched {
		return s.local.PutVouched(ctx, dgst, size, r)
	}
	return s.local.Put(ctx, dgst, size, r)
}

// GetBlob streams a locally held blob. It never fetches from another zone,
// so zones asking each other cannot loop.
func (s *Server) GetBlob(req *zonepb.GetBlobRequest, stream zonepb.Zone_GetBlobServer) error {
	dgst, err := digest.Parse(req.Digest)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "digest: %v", err)
	}
	ctx := stream.Context()
	size, err := s.local.Stat(ctx, dgst)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return status.Error(codes.NotFound, err.Error())
		}
		return status.Error(codes.Internal, err.Error())
	}
	rc, err := s.local.Open(ctx, dgst, req.Offset)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer rc.Close()
	// Verify whole-blob reads while sending: the receiver verifies too, but
	// a corrupt copy should be reported here, where it can be repaired.
	vr := io.Reader(rc)
	if req.Offset == 0 {
		vr = storage.VerifyingReader(rc, dgst, size)
	}
	rerr, serr := proto.SendChunks(vr, func(data []byte, first bool) error {
		msg := &zonepb.BlobChunk{Data: data}
		if first {
			msg.Digest, msg.Size = dgst.String(), size
		}
		return stream.Send(msg)
	})
	if serr != nil {
		return serr
	}
	if rerr != nil {
		return status.Error(codes.DataLoss, rerr.Error())
	}
	return nil
}

// HasBlobs reports which digests the local store holds a verified copy of.
// A copy that fails verification is removed (the sender then streams a good
// one), so a corrupt copy never counts towards a write's majority.
func (s *Server) HasBlobs(ctx context.Context, req *zonepb.HasBlobsRequest) (*zonepb.HasBlobsResponse, error) {
	resp := &zonepb.HasBlobsResponse{Present: make([]bool, len(req.Digests))}
	for i, d := range req.Digests {
		dgst, err := digest.Parse(d)
		if err != nil {
			continue
		}
		// Check removes a copy that does not match.
		resp.Present[i] = s.local.Check(ctx, dgst) == nil
	}
	return resp, nil
}

// Progress reports this node's applied index and, at the leader, its read
// index (see Group.ReadIndex) as CommitIndex: what a follower must apply
// before it serves a read. A leader still catching up with earlier terms
// answers as a non-leader, and the follower asks again.
func (s *Server) Progress(ctx context.Context, req *zonepb.ProgressRequest) (*zonepb.ProgressResponse, error) {
	resp := &zonepb.ProgressResponse{AppliedIndex: s.group.raft.AppliedIndex()}
	if index, err := s.group.ReadIndex(ctx); err == nil {
		resp.Leader, resp.CommitIndex = true, index
		if index > req.GetKnownCommit() {
			// The asking follower waits to apply index, and has not
			// heard it committed yet.
			s.group.nudge(index)
		}
	}
	return resp, nil
}

// Serve serves the zone protocol on ln until ln is closed: gRPC (srv, on
// which s and any other services are registered) and the blob stream
// protocol, told apart by the first bytes of each connection.
func Serve(ln net.Listener, srv *grpc.Server, s *Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := cmux.New(ln)
	// A connection that sends nothing is dropped after this long instead
	// of holding a goroutine.
	m.SetReadTimeout(streamIdle)
	blobLn := m.Match(cmux.PrefixMatcher(BlobStreamMagic))
	grpcLn := m.Match(cmux.Any())
	go srv.Serve(grpcLn)
	// The blob streams end with the listener, as gRPC's calls end with
	// its server: a node that stops takes no more copies.
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	stopped := false
	go func() {
		for {
			c, err := blobLn.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if stopped {
				mu.Unlock()
				c.Close()
				return
			}
			open[c] = struct{}{}
			mu.Unlock()
			go func() {
				s.serveBlobStream(c, log)
				mu.Lock()
				delete(open, c)
				mu.Unlock()
			}()
		}
	}()
	err := m.Serve()
	mu.Lock()
	stopped = true
	for c := range open {
		c.Close()
	}
	mu.Unlock()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
