package control

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/region/webhook"
	"github.com/georeg/georeg/replication"
)

// Metadata is what the control plane needs of the region's metadata.
// *region.Group implements it.
type Metadata interface {
	Apply(ctx context.Context, cmd meta.Command) error
	Replications() ([]meta.Replication, error)
	AccessState() (meta.AccessState, error)
	AccessVersion() (uint64, error)
	ConnectedRegistries() ([]connected.Registry, error)
	IsLeader() bool
}

// Membership is the gossip view. *members.List implements it.
type Membership interface {
	Self() members.Member
	Alive() []members.Member
	Region(region string) []members.Member
}

// ReplicationView is this node's replication state. *replication.Replicator
// implements it.
type ReplicationView interface {
	Peers() []replication.PeerStatus
	Synced() map[string]time.Time
}

// Config configures a Plane.
type Config struct {
	// Home is the home region.
	Home        string
	Meta        Metadata
	Members     Membership
	Replication ReplicationView
	Webhooks    WebhookStore
	// Auth is how the registry authenticates clients.
	Auth AuthConfig
	// WebhookAllowPrivate accepts webhooks whose target is a loopback,
	// private, link-local or other address webhook.Refused names (the
	// regiond flag --webhook-allow-private); pings may reach them too.
	WebhookAllowPrivate bool
	// Resolver looks webhook hosts up when they are created; nil uses
	// net.DefaultResolver.
	Resolver webhook.Resolver
	// Dir keeps the copy of the control state (control.json).
	Dir    string
	Logger *slog.Logger
	// Dial, when set, makes the connections to other regions (the local
	// mesh's simulated WAN); nil dials directly.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, is the mutual TLS client configuration of the
	// connections to other nodes; nil connects in plaintext.
	TLS *tls.Config
}

// State is the control-plane state every region copies.
type State struct {
	Home         string             `json:"home"`
	Replications []meta.Replication `json:"replications"`
	Webhooks     []meta.Webhook     `json:"webhooks"`
	// Access is the access state, as last fetched.
	Access  *meta.AccessState `json:"access,omitempty"`
	Fetched time.Time         `json:"fetched"`
}

// Plane serves the control plane on one node.
type Plane struct {
	controlpb.UnimplementedControlServer
	cfg  Config
	self string
	log  *slog.Logger

	pool *proto.Pool // connections to the nodes this plane asks

	mu   sync.Mutex
	copy State

	// access is this node's view of the access state, read on every
	// client request.
	access atomic.Pointer[accessView]
	admins access.Verifier // the admin credential of management calls
	syncs  access.Verifier // connected registries' sync tokens

	reportsMu sync.Mutex
	reports   map[string]reported // connected registry -> its last recorded report

	webhookClient *http.Client // sends pings (webhook.NewClient)
}

// New returns the control plane of a node, loading its last copy of the
// state.
func New(cfg Config) *Plane {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	p := &Plane{cfg: cfg, self: cfg.Members.Self().Region, log: lg, pool: proto.NewPool(proto.PoolConfig{Dial: cfg.Dial, TLS: cfg.TLS}),
		webhookClient: webhook.NewClient(webhook.ClientConfig{AllowPrivate: cfg.WebhookAllowPrivate})}
	if b, err := os.ReadFile(p.copyPath()); err == nil {
		json.Unmarshal(b, &p.copy)
	}
	if p.copy.Access != nil && !p.isHome() {
		// A region that restarts while the home region is down keeps
		// authenticating clients with its last copy.
		p.access.Store(newAccessView(*p.copy.Access))
	}
	return p
}

// Register adds the control service to a gRPC server.
func (p *Plane) Register(s *grpc.Server) { controlpb.RegisterControlServer(s, p) }

func (p *Plane) copyPath() string { return filepath.Join(p.cfg.Dir, "control.json") }

func (p *Plane) isHome() bool { return p.self == p.cfg.Home }

// Replications returns the replications this node knows: from the home
// region's Raft state in the home region, from the last copy elsewhere.
func (p *Plane) Replications() []meta.Replication {
	if p.isHome() {
		reps, err := p.cfg.Meta.Replications()
		if err == nil {
			return reps
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]meta.Replication(nil), p.copy.Replications...)
}

// EndpointsEnabled returns the region-endpoint-enabled flag of every
// replication this node knows, and when that knowledge was fetched from the
// home region (now, in the home region).
func (p *Plane) EndpointsEnabled() (map[string]bool, time.Time) {
	flags := map[string]bool{}
	for _, r := range p.Replications() {
		if !r.Deleted {
			flags[r.Region] = r.RegionEndpointEnabled
		}
	}
	if p.isHome() {
		return flags, time.Now().UTC()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return flags, p.copy.Fetched
}

// Deleted reports whether region's replication was deleted: replication
// stops sending to it.
func (p *Plane) Deleted(region string) bool {
	for _, r := range p.Replications() {
		if r.Region == region {
			return r.Deleted
		}
	}
	return false
}

// Run registers regions that join the gossip (home leader) and refreshes
// the copy of the control state (other regions), until ctx ends.
func (p *Plane) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if p.isHome() {
			p.loadAccess()
			if p.cfg.Meta.IsLeader() {
				p.register(ctx)
				p.bootstrapAccess(ctx)
			}
		} else {
			p.refresh(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// register records every region seen in gossip that has no replication yet
// (the regions a mesh starts with) and marks created ones as seen.
func (p *Plane) register(ctx context.Context) {
	reps, err := p.cfg.Meta.Replications()
	if err != nil {
		return
	}
	known := map[string]meta.Replication{}
	for _, r := range reps {
		known[r.Region] = r
	}
	for _, m := range p.cfg.Members.Alive() {
		r, ok := known[m.Region]
		if ok && (r.Seen || r.Deleted) {
			continue
		}
		if !ok {
			r = meta.Replication{Region: m.Region, RegionEndpointEnabled: true, Created: time.Now().UTC()}
		}
		r.Seen = true
		known[m.Region] = r
		if err := p.cfg.Meta.Apply(ctx, meta.PutReplication{Replication: r}); err != nil {
			p.log.Warn("registering a replication", "region", m.Region, "err", err)
		}
	}
}

// refresh copies the control state from the home region.
func (p *Plane) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, n := range p.cfg.Members.Region(p.cfg.Home) {
		conn, err := p.pool.Get(n.GRPC)
		if err != nil {
			continue
		}
		var have uint64
		if v := p.access.Load(); v != nil {
			have = v.version
		}
		resp, err := controlpb.NewControlClient(conn).State(ctx, &controlpb.StateRequest{AccessVersion: have})
		if err != nil {
			continue
		}
		st := stateFromProto(resp)
		st.Fetched = time.Now().UTC()
		p.mu.Lock()
		st.Access = p.copy.Access
		if resp.GetAccess() != nil {
			a := accessFromProto(resp.GetAccess())
			st.Access = &a
			p.access.Store(newAccessView(a))
		}
		p.copy = st
		p.mu.Unlock()
		if b, err := json.Marshal(st); err == nil {
			tmp := p.copyPath() + ".tmp"
			// 0600: the copy holds password hashes and signing keys.
			if os.WriteFile(tmp, b, 0o600) == nil {
				os.Rename(tmp, p.copyPath())
			}
		}
		return
	}
}

// Close releases connections.
func (p *Plane) Close() { p.pool.Close() }

func (p *Plane) management() error {
	if !p.isHome() {
		return status.Errorf(codes.FailedPrecondition, "management calls go to the home region %s; this node is in %s", p.cfg.Home, p.self)
	}
	// Register regions gossip already shows, so that a call made right after
	// a mesh starts sees every region (the background loop runs each second).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.register(ctx)
	return nil
}

// State returns the control state for other regions' copies.
func (p *Plane) State(ctx context.Context, req *controlpb.StateRequest) (*controlpb.ControlState, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	reps, err := p.cfg.Meta.Replications()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := stateToProto(State{Home: p.cfg.Home, Replications: reps, Webhooks: p.Webhooks()})
	// The access state is sent only when the caller's copy is older: with
	// thousands of tokens it is the bulk of the state.
	if ver, err := p.cfg.Meta.AccessVersion(); err == nil && ver != req.GetAccessVersion() {
		st, err := p.cfg.Meta.AccessState()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		out.Access = accessToProto(st)
	}
	return out, nil
}

// RegionStatus returns this node's view of replication from its region.
func (p *Plane) RegionStatus(ctx context.Context, _ *controlpb.RegionStatusRequest) (*controlpb.RegionStatusResponse, error) {
	return &controlpb.RegionStatusResponse{
		Region: p.self, Leader: p.cfg.Meta.IsLeader(),
		Peers: peersToProto(p.cfg.Replication.Peers()), Synced: syncedToProto(p.cfg.Replication.Synced()),
	}, nil
}

// regionLeaderView asks the nodes of region for their replication view and
// returns the leader's.
func (p *Plane) regionLeaderView(ctx context.Context, region string) (peers []replication.PeerStatus, synced map[string]time.Time, ok bool) {
	for _, n := range p.cfg.Members.Region(region) {
		conn, err := p.pool.Get(n.GRPC)
		if err != nil {
			continue
		}
		resp, err := controlpb.NewControlClient(conn).RegionStatus(ctx, &controlpb.RegionStatusRequest{})
		if err != nil || !resp.Leader {
			continue
		}
		return peersFromProto(resp.Peers), syncedFromProto(resp.Synced), true
	}
	return nil, nil, false
}

// ListReplications reports every replication with its status and lag.
func (p *Plane) ListReplications(ctx context.Context, _ *controlpb.ListReplicationsRequest) (*controlpb.ListReplicationsResponse, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	reps, err := p.cfg.Meta.Replications()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	type view struct {
		peers  []replication.PeerStatus
		synced map[string]time.Time
		ok     bool
	}
	views := map[string]view{}
	var live []string
	for _, r := range reps {
		if r.Deleted {
			continue
		}
		live = append(live, r.Region)
		ps, sy, ok := p.regionLeaderView(ctx, r.Region)
		views[r.Region] = view{ps, sy, ok}
	}
	resp := &controlpb.ListReplicationsResponse{}
	for _, r := range reps {
		if r.Deleted {
			continue
		}
		info := &controlpb.ReplicationInfo{
			Region: r.Region, Home: r.Region == p.cfg.Home, RegionEndpointEnabled: r.RegionEndpointEnabled,
			Created: proto.Timestamp(r.Created), NodesUp: int32(len(p.cfg.Members.Region(r.Region))),
		}
		v := views[r.Region]
		for _, src := range live {
			if src == r.Region {
				continue
			}
			in := replication.PeerStatus{Region: src}
			for _, ps := range views[src].peers {
				if ps.Region == r.Region {
					info.LagEvents = max(info.LagEvents, ps.Backlog)
					info.LagSeconds = max(info.LagSeconds, ps.LagSeconds)
					in = ps
					in.Region = src
				}
			}
			// The fetching side is the receiving region's own view.
			in.BlobBytesPerSecond, in.TransfersInFlight = 0, 0
			in.SyncRepos, in.SyncReposDone, in.SyncManifests, in.SyncRunning, in.SyncETASeconds = 0, 0, 0, false, 0
			in.SyncTags, in.SyncTagsDone, in.SyncBytes, in.SyncBytesDone = 0, 0, 0, 0
			for _, ps := range v.peers {
				if ps.Region == src {
					in.BlobBytesPerSecond, in.TransfersInFlight = ps.BlobBytesPerSecond, ps.TransfersInFlight
					in.SyncRepos, in.SyncReposDone, in.SyncManifests = ps.SyncRepos, ps.SyncReposDone, ps.SyncManifests
					in.SyncRunning, in.SyncETASeconds = ps.SyncRunning, ps.SyncETASeconds
					in.SyncTags, in.SyncTagsDone, in.SyncBytes, in.SyncBytesDone = ps.SyncTags, ps.SyncTagsDone, ps.SyncBytes, ps.SyncBytesDone
				}
			}
			info.Inbound = append(info.Inbound, peersToProto([]replication.PeerStatus{in})...)
		}
		inStep := v.ok
		var last time.Time
		for _, other := range live {
			if other == r.Region || len(p.cfg.Members.Region(other)) == 0 {
				continue
			}
			t, ok := v.synced[other]
			if !ok {
				inStep = false
				continue
			}
			if last.IsZero() || t.Before(last) {
				last = t
			}
		}
		info.LastSync = proto.Timestamp(last)
		switch {
		case info.NodesUp == 0 && !r.Seen:
			info.Status = "Provisioning"
		case info.NodesUp == 0 || !v.ok:
			info.Status = "Unavailable"
		case !inStep || info.LagEvents > 0:
			info.Status = "Syncing"
		default:
			info.Status = "Ready"
		}
		resp.Replications = append(resp.Replications, info)
	}
	return resp, nil
}

var regionName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func (p *Plane) find(region string) (meta.Replication, bool, error) {
	reps, err := p.cfg.Meta.Replications()
	if err != nil {
		return meta.Replication{}, false, err
	}
	for _, r := range reps {
		if r.Region == region && !r.Deleted {
			return r, true, nil
		}
	}
	return meta.Replication{}, false, nil
}

func (p *Plane) info(ctx context.Context, region string) (*controlpb.ReplicationInfo, error) {
	list, err := p.ListReplications(ctx, &controlpb.ListReplicationsRequest{})
	if err != nil {
		return nil, err
	}
	for _, r := range list.Replications {
		if r.Region == region {
			return r, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no replication in region %s", region)
}

// CreateReplication adds a region. Its nodes are started by the caller
// (the launcher); until they are up it is Provisioning.
func (p *Plane) CreateReplication(ctx context.Context, req *controlpb.CreateReplicationRequest) (*controlpb.ReplicationInfo, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	if !regionName.MatchString(req.Region) {
		return nil, status.Errorf(codes.InvalidArgument, "region name %q: use lower-case letters, digits and '-'", req.Region)
	}
	if _, ok, err := p.find(req.Region); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if ok {
		return nil, status.Errorf(codes.AlreadyExists, "the registry already has a replication in %s", req.Region)
	}
	r := meta.Replication{Region: req.Region, RegionEndpointEnabled: true, Created: time.Now().UTC()}
	if err := p.apply(ctx, meta.PutReplication{Replication: r}); err != nil {
		return nil, err
	}
	return p.info(ctx, req.Region)
}

// UpdateReplication changes a replication's endpoint flag.
func (p *Plane) UpdateReplication(ctx context.Context, req *controlpb.UpdateReplicationRequest) (*controlpb.ReplicationInfo, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	r, ok, err := p.find(req.Region)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no replication in region %s", req.Region)
	}
	r.RegionEndpointEnabled = req.RegionEndpointEnabled
	if err := p.apply(ctx, meta.PutReplication{Replication: r}); err != nil {
		return nil, err
	}
	return p.info(ctx, req.Region)
}

// DeleteReplication removes a region (not the home region).
func (p *Plane) DeleteReplication(ctx context.Context, req *controlpb.DeleteReplicationRequest) (*controlpb.ReplicationInfo, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	if req.Region == p.cfg.Home {
		return nil, status.Errorf(codes.FailedPrecondition, "%s is the home region: it holds the control plane and cannot be deleted", req.Region)
	}
	r, ok, err := p.find(req.Region)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no replication in region %s", req.Region)
	}
	if err := p.apply(ctx, meta.DeleteReplication{Region: r.Region}); err != nil {
		return nil, err
	}
	return &controlpb.ReplicationInfo{Region: r.Region, Status: "Deleted"}, nil
}

func (p *Plane) apply(ctx context.Context, cmd meta.Command) error {
	if err := p.cfg.Meta.Apply(ctx, cmd); err != nil {
		// The command's own refusal, from whichever zone led: not a
		// reason to retry.
		if errors.Is(err, meta.ErrReplicationUnknown) || errors.Is(err, meta.ErrWebhookUnknown) {
			return status.Error(codes.NotFound, err.Error())
		}
		return status.Errorf(codes.Unavailable, "home region %s: %v", p.cfg.Home, err)
	}
	return nil
}

// ImageStatus reports whether each region holds repo:reference yet,
// without reading through (it asks each region what it holds itself).
func (p *Plane) ImageStatus(ctx context.Context, req *controlpb.ImageStatusRequest) (*controlpb.ImageStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp := &controlpb.ImageStatusResponse{}
	for _, r := range p.Replications() {
		if r.Deleted {
			continue
		}
		pr := &controlpb.ImagePresence{Region: r.Region}
		pr.Error = fmt.Sprintf("no node of %s answers", r.Region)
		for _, n := range p.cfg.Members.Region(r.Region) {
			conn, err := p.pool.Get(n.GRPC)
			if err != nil {
				continue
			}
			m, err := replicationpb.NewReplicationClient(conn).GetManifest(ctx, &replicationpb.GetManifestRequest{Repo: req.Repo, Reference: req.Reference})
			if err != nil {
				pr.Error = err.Error()
				continue
			}
			pr.Error, pr.Present, pr.Digest = "", m.Found, m.Digest
			break
		}
		resp.Regions = append(resp.Regions, pr)
	}
	return resp, nil
}
