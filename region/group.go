package region

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/hlc"
	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
)

// GroupConfig configures a Group.
type GroupConfig struct {
	// RaftAddr is the Raft transport address of this node; it must stay the
	// same across restarts.
	RaftAddr string
	// Dir holds the Raft log, stable store and snapshots.
	Dir string
	// MetaPath is the bbolt file of the region's metadata, the state
	// machine. The group opens it, is its only writer, and closes it in
	// Close.
	MetaPath string
	// Zones is the number of zones in the region: the Raft group is
	// bootstrapped once gossip shows this many members of the region.
	Zones int
	// Members is the gossip view; it names the peers and their addresses.
	Members Membership
	// ApplyTimeout bounds a metadata write, including waiting for a leader.
	// Zero means 5 s.
	ApplyTimeout time.Duration
	// HeartbeatTimeout is how long a follower waits to hear from its leader
	// before it stands for election; the leader steps down after half of
	// it without a majority (its read lease), and a read waits four times
	// it for a leader. Zero means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// Clock stamps local writes for cross-region last-writer-wins; nil
	// means a clock of the group's own.
	Clock *hlc.Clock
	// TLS, when set, makes the Raft transport mutual TLS (only holders of
	// a node certificate of the cluster take part) and the links to the
	// other zones' gRPC TLS. Nil is plaintext: anyone who reaches the
	// ports takes part.
	TLS    *tlsconf.Config
	Logger *slog.Logger
}

// Group is this node's member of the region's Raft group. It implements the
// metadata interfaces of the API, replication, the control plane and the
// webhooks: reads from the local replica (the embedded *meta.Reader), writes
// through the leader (Apply). Nothing else writes the replica: the group
// holds the only *meta.Store.
type Group struct {
	*meta.Reader
	store  *meta.Store
	cfg    GroupConfig
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	logs   *raftboltdb.BoltStore
	peers  *proto.Pool
	cancel context.CancelFunc

	// readyTerm is the term in which this node, as leader, last applied
	// everything of earlier terms; termBarrier runs that once per term.
	readyTerm   atomic.Uint64
	termBarrier singleflight.Group
	// readMu guards the follower's read-index batches.
	readMu      sync.Mutex
	readRunning bool
	readNext    *readBatch
	// nudgeMu guards the leader's nudges (nudge.go).
	nudgeMu  sync.Mutex
	nudging  bool
	nudgeFor uint64 // the highest index a follower waits to learn committed
	nudged   uint64 // the highest index an append after its commit went out for
}

// DefaultHeartbeatTimeout elects a new leader of a region within about a
// second on one machine: half of hashicorp/raft's default, for failover
// within 2 s.
const DefaultHeartbeatTimeout = 500 * time.Millisecond

// NewGroup starts the Raft node. It bootstraps the group in the background
// when it has no state yet.
func NewGroup(ctx context.Context, cfg GroupConfig) (*Group, error) {
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = hlc.New(nil)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	store, err := meta.Open(meta.Config{Path: cfg.MetaPath, Logger: lg})
	if err != nil {
		return nil, err
	}
	g, err := newGroup(ctx, cfg, store, lg)
	if err != nil {
		store.Close()
		return nil, err
	}
	return g, nil
}

// newGroup starts the Raft node of NewGroup on store.
func newGroup(ctx context.Context, cfg GroupConfig, store *meta.Store, lg *slog.Logger) (*Group, error) {
	self := cfg.Members.Self()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(self.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	// Followers learn an entry is committed with the next append. When
	// one waits for that (a write it forwarded, a read index), the leader
	// sends one at once (nudge.go); the commit timeout only bounds how
	// stale an idle follower's replica gets, and every append it sends
	// on an idle region costs CPU on both ends.
	rc.CommitTimeout = idleCommitTimeout
	rc.SnapshotThreshold = 4096
	rc.TrailingLogs = 4096
	rc.Logger = hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: slogWriter{lg},
	})

	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("zone: raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStore(cfg.Dir, 2, slogWriter{lg})
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("zone: snapshots: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("zone: raft address: %w", err)
	}
	var trans raft.Transport
	if cfg.TLS != nil {
		var layer *tlsStreamLayer
		if layer, err = newTLSStreamLayer(cfg.RaftAddr, cfg.TLS, lg); err == nil {
			trans = raft.NewNetworkTransport(layer, 3, 5*time.Second, slogWriter{lg})
		}
	} else {
		trans, err = raft.NewTCPTransport(cfg.RaftAddr, addr, 3, 5*time.Second, slogWriter{lg})
	}
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("zone: raft transport: %w", err)
	}
	f := newFSM(store, lg)
	r, err := raft.NewRaft(rc, f, logs, logs, snaps, trans)
	if err != nil {
		trans.(io.Closer).Close()
		logs.Close()
		return nil, fmt.Errorf("zone: raft: %w", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g := &Group{Reader: store.ReadOnly(), store: store, cfg: cfg, log: lg, raft: r, fsm: f, logs: logs, peers: proto.NewPool(proto.PoolConfig{TLS: clientTLS(cfg.TLS)}), cancel: cancel}
	go g.bootstrap(ctx, logs, snaps)
	return g, nil
}

// bootstrap forms the group once gossip shows every zone of the region. All
// zones compute the same configuration from the same member set, which is
// what Raft requires of nodes that bootstrap independently.
func (g *Group) bootstrap(ctx context.Context, logs *raftboltdb.BoltStore, snaps raft.SnapshotStore) {
	self := g.cfg.Members.Self()
	for {
		if has, err := raft.HasExistingState(logs, logs, snaps); err != nil || has {
			return
		}
		peers := g.cfg.Members.Region(self.Region)
		if len(peers) >= g.cfg.Zones {
			sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
			var conf raft.Configuration
			for _, p := range peers[:g.cfg.Zones] {
				conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Raft)})
			}
			err := g.raft.BootstrapCluster(conf).Error()
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				g.log.Error("raft bootstrap failed", "err", err)
			} else {
				g.log.Info("raft group bootstrapped", "servers", len(conf.Servers))
			}
			return
		}
		g.log.Info("waiting for the region's zones to bootstrap raft", "seen", len(peers), "want", g.cfg.Zones)
		select {
		case <-ctx.Done():
			return
		case <-g.cfg.Members.Changed():
		case <-time.After(2 * time.Second):
		}
	}
}

// Apply makes cmd durable through the region's Raft log and returns once
// this node has applied it (read-your-writes). A local write ordered across
// regions (meta.Stamped) without a stamp is stamped with this region's
// clock; a replicated one advances the clock past its own. Apply returns
// the command's own refusal (meta.ErrManifestUnknown, ...) or an error
// wrapping storage.ErrUnavailable when no leader with a quorum answers in
// time.
func (g *Group) Apply(ctx context.Context, cmd meta.Command) error {
	b, err := meta.Encode(meta.StampFor(cmd, g.cfg.Clock, g.cfg.Members.Self().Region))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.applyTimeout(len(b)))
	defer cancel()
	var lastErr error
	for backoff := 20 * time.Millisecond; ; backoff = min(backoff*2, 250*time.Millisecond) {
		index, result, err := g.applyOnce(ctx, b)
		if err == nil {
			// The entry is committed: durable on a majority. Waiting until
			// this node applied it gives the client read-your-writes here; a
			// node that lags (Raft backs off replicating to a zone that was
			// down) does not turn a committed write into an error.
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			if werr := g.waitApplied(wctx, index); werr != nil {
				g.log.Warn("write committed but not applied here yet", "index", index)
			}
			wcancel()
			return result
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: metadata write: no raft leader with a quorum (%v)", storage.ErrUnavailable, lastErr)
		case <-time.After(backoff):
		}
	}
}

// applyTimeout is ApplyTimeout for a command of size bytes, plus two
// seconds for every MiB past the first: a large manifest (up to 4 MiB, more as
// JSON) is forwarded, logged, fsynced and sent to every zone, which on a
// loaded machine takes seconds that a tag move does not.
func (g *Group) applyTimeout(size int) time.Duration {
	return g.cfg.ApplyTimeout + 2*time.Duration(max(size-(1<<20), 0))*time.Second/(1<<20)
}

// applyOnce tries one proposal, locally when leader or at the leader. err is
// a transport or leadership failure worth retrying; result is the command's
// outcome.
func (g *Group) applyOnce(ctx context.Context, b []byte) (index uint64, result, err error) {
	if g.raft.State() == raft.Leader {
		return g.applyLocal(ctx, b)
	}
	_, leaderID := g.raft.LeaderWithID()
	if leaderID == "" {
		return 0, nil, errors.New("no leader")
	}
	leader, ok := g.cfg.Members.Get(string(leaderID))
	if !ok {
		return 0, nil, fmt.Errorf("leader %s not in gossip", leaderID)
	}
	c, err := zoneClient(g.peers, leader.GRPC)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Apply(ctx, &zonepb.ApplyRequest{Command: b})
	if code := status.Code(err); code == codes.ResourceExhausted || code == codes.InvalidArgument {
		// Retrying cannot help a command the leader will never take.
		return 0, fmt.Errorf("zone: forward to %s: %w", leaderID, err), nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("forward to %s: %w", leaderID, err)
	}
	if resp.ErrorKind == kindNotLeader || resp.ErrorKind == kindNoQuorum {
		return 0, nil, fmt.Errorf("%s: %s", leaderID, resp.ErrorMessage)
	}
	return resp.Index, decodeResult(resp), nil
}

func (g *Group) applyLocal(ctx context.Context, b []byte) (uint64, error, error) {
	timeout := g.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	// A leader that lost its followers still believes it leads for up to
	// the lease timeout; an entry it appended then could commit later, after
	// the client was told 503. Checking with a majority first closes most
	// of that window: a refused write is then almost never applied later.
	if err := g.raft.VerifyLeader().Error(); err != nil {
		return 0, nil, err
	}
	f := g.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return 0, nil, err
	}
	result, _ := f.Response().(error)
	return f.Index(), result, nil
}

func (g *Group) waitApplied(ctx context.Context, index uint64) error {
	for {
		applied, next := g.fsm.appliedIndex()
		if applied >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next:
		}
	}
}

// CaughtUp reports whether this node has applied everything the leader had
// committed when asked: a restarted zone serves clients only once it has, so
// that it never answers from a stale replica. The leader is always caught up.
func (g *Group) CaughtUp(ctx context.Context) bool {
	if g.IsLeader() {
		return true
	}
	index, err := g.askReadIndex(ctx)
	return err == nil && g.raft.AppliedIndex() >= index
}

// readBarrierTimeout bounds one follower's wait for a read index: long
// enough to ride out a leader election (about two heartbeat timeouts),
// short enough that a client is told 503 rather than kept waiting: 2 s
// with the default heartbeat timeout.
func (g *Group) readBarrierTimeout() time.Duration { return 4 * g.cfg.HeartbeatTimeout }

// Barrier waits until this node has applied every write its region
// acknowledged before the call, whichever zone took it: a read that follows
// sees the caller's own writes and never an older state than an earlier
// read (read-your-writes and monotonic reads, at any zone). It is Raft's
// ReadIndex: a follower asks the leader for its commit index and waits to
// apply up to it; concurrent reads share one round trip to the leader. The
// leader passes at once, once it has applied everything of earlier terms.
// The leader's word counts without a heartbeat round to a majority because
// it steps down after LeaderLeaseTimeout without one, well before the
// ElectionTimeout after which another zone could be elected: a lease, sound
// where the zones' clocks advance at the same rate. An error wraps
// storage.ErrUnavailable: no leader answered in time.
func (g *Group) Barrier(ctx context.Context) error {
	var index uint64
	var err error
	switch {
	case g.IsLeader():
		index, err = g.ReadIndex(ctx)
	case g.leaderless():
		// The region lost its majority: no write can be acknowledged
		// until it is back, so this node's replica, caught up with
		// every commit it heard of, is as new as the region gets.
		index = g.lastCommand(g.raft.CommitIndex())
	default:
		index, err = g.followerReadIndex(ctx)
	}
	if err != nil {
		return err
	}
	if err := g.waitApplied(ctx, index); err != nil {
		return fmt.Errorf("%w: applying up to the leader's index %d: %v", storage.ErrUnavailable, index, err)
	}
	return nil
}

// leaderless reports whether this follower has known no leader for longer
// than an election takes (its region lost its majority): reads then serve
// the local replica instead of waiting for a leader that cannot be elected,
// so that content the zone holds stays pullable.
func (g *Group) leaderless() bool {
	if _, id := g.raft.LeaderWithID(); id != "" {
		return false
	}
	return time.Since(g.raft.LastContact()) > g.readBarrierTimeout()
}

// ReadIndex returns, at the leader, an index covering every write the
// region acknowledged before the call: its commit index, after it has
// applied everything committed in earlier terms (a new leader's commit
// index may lag its predecessor's until an entry of its own term commits).
// Elsewhere it fails with storage.ErrUnavailable.
func (g *Group) ReadIndex(ctx context.Context) (uint64, error) {
	if !g.IsLeader() {
		return 0, fmt.Errorf("%w: not the leader", storage.ErrUnavailable)
	}
	term := g.raft.CurrentTerm()
	if g.readyTerm.Load() != term {
		_, err, _ := g.termBarrier.Do(strconv.FormatUint(term, 10), func() (any, error) {
			timeout := g.readBarrierTimeout()
			if dl, ok := ctx.Deadline(); ok {
				timeout = min(timeout, time.Until(dl))
			}
			if err := g.raft.Barrier(timeout).Error(); err != nil {
				return nil, err
			}
			g.readyTerm.Store(term)
			return nil, nil
		})
		if err != nil {
			return 0, fmt.Errorf("%w: new leader catching up: %v", storage.ErrUnavailable, err)
		}
	}
	return g.lastCommand(g.raft.CommitIndex()), nil
}

// lastCommand returns the index of the last command entry at or before
// index: what a state machine must apply to be as new as index. Raft's
// barrier, no-op and configuration entries never reach the state machine,
// so waiting for one of their indexes would wait for the next write. At
// most a few such entries follow the last command; past 64 (or a log
// compacted away) this node's own applied index stands in, which the
// term's barrier already brought up to date.
func (g *Group) lastCommand(index uint64) uint64 {
	applied, _ := g.fsm.appliedIndex()
	var entry raft.Log
	for i := index; i > applied && index-i < 64; i-- {
		if err := g.logs.GetLog(i, &entry); err != nil {
			break
		}
		if entry.Type == raft.LogCommand {
			return i
		}
	}
	return applied
}

// readBatch is one round trip to the leader for a read index, shared by
// every read that arrived before it started.
type readBatch struct {
	done  chan struct{}
	index uint64
	err   error
}

// followerReadIndex returns the leader's read index through a round trip
// that starts after the call: joining one already on its way could return
// an index older than a write acknowledged just before this read.
func (g *Group) followerReadIndex(ctx context.Context) (uint64, error) {
	g.readMu.Lock()
	if g.readNext == nil {
		g.readNext = &readBatch{done: make(chan struct{})}
	}
	b := g.readNext
	if !g.readRunning {
		g.readRunning = true
		g.readNext = nil
		go g.runReadBatches(b)
	}
	g.readMu.Unlock()
	select {
	case <-b.done:
		return b.index, b.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: waiting for the leader's read index: %v", storage.ErrUnavailable, ctx.Err())
	}
}

// runReadBatches asks the leader for b's index, then for the batch that
// gathered meanwhile, until none is waiting.
func (g *Group) runReadBatches(b *readBatch) {
	for b != nil {
		ctx, cancel := context.WithTimeout(context.Background(), g.readBarrierTimeout())
		b.index, b.err = g.askReadIndexRetrying(ctx)
		cancel()
		close(b.done)
		g.readMu.Lock()
		b, g.readNext = g.readNext, nil
		if b == nil {
			g.readRunning = false
		}
		g.readMu.Unlock()
	}
}

// askReadIndexRetrying asks until a leader answers or ctx ends, so that a
// read during an election waits for the new leader instead of failing.
func (g *Group) askReadIndexRetrying(ctx context.Context) (uint64, error) {
	for backoff := 10 * time.Millisecond; ; backoff = min(backoff*2, 100*time.Millisecond) {
		index, err := g.askReadIndex(ctx)
		if err == nil {
			return index, nil
		}
		if g.IsLeader() {
			// Elected meanwhile: this node's own index serves.
			return g.ReadIndex(ctx)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: no leader gave a read index: %v", storage.ErrUnavailable, err)
		case <-time.After(backoff):
		}
	}
}

// askReadIndex asks the node this one takes for the leader for its read
// index.
func (g *Group) askReadIndex(ctx context.Context) (uint64, error) {
	_, leaderID := g.raft.LeaderWithID()
	leader, ok := g.cfg.Members.Get(string(leaderID))
	if leaderID == "" || !ok {
		return 0, fmt.Errorf("%w: no known leader", storage.ErrUnavailable)
	}
	c, err := zoneClient(g.peers, leader.GRPC)
	if err != nil {
		return 0, err
	}
	p, err := c.Progress(ctx, &zonepb.ProgressRequest{KnownCommit: g.raft.CommitIndex()})
	if err != nil {
		return 0, fmt.Errorf("%w: asking %s for its read index: %v", storage.ErrUnavailable, leaderID, err)
	}
	if !p.Leader {
		return 0, fmt.Errorf("%w: %s no longer leads", storage.ErrUnavailable, leaderID)
	}
	return p.CommitIndex, nil
}

// Status is a node's view of its Raft group.
type Status struct {
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"appliedIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
	LastIndex    uint64 `json:"lastIndex"`
	Voters       int    `json:"voters"`
}

// Role returns the node's Raft state ("Leader", "Follower", "Candidate",
// ...) without the rest of Status, which gathers Raft's whole stats map:
// the health endpoint answers it several times a second.
func (g *Group) Role() string { return g.raft.State().String() }

// Status returns the node's Raft state.
func (g *Group) Status() Status {
	_, leader := g.raft.LeaderWithID()
	st := g.raft.Stats()
	s := Status{
		State:        g.raft.State().String(),
		Leader:       string(leader),
		AppliedIndex: g.raft.AppliedIndex(),
		LastIndex:    g.raft.LastIndex(),
	}
	fmt.Sscan(st["term"], &s.Term)
	fmt.Sscan(st["commit_index"], &s.CommitIndex)
	if cf := g.raft.GetConfiguration(); cf.Error() == nil {
		s.Voters = len(cf.Configuration().Servers)
	}
	return s
}

// Leader returns the gossip record of the group's current leader.
func (g *Group) Leader() (members.Member, bool) {
	_, id := g.raft.LeaderWithID()
	if id == "" {
		return members.Member{}, false
	}
	return g.cfg.Members.Get(string(id))
}

// IsLeader reports whether this node leads the group.
func (g *Group) IsLeader() bool { return g.raft.State() == raft.Leader }

// Close stops the Raft node and closes the metadata store.
func (g *Group) Close() error {
	g.cancel()
	err := g.raft.Shutdown().Error()
	g.peers.Close()
	g.logs.Close()
	if serr := g.store.Close(); err == nil {
		err = serr
	}
	return err
}

// Result kinds carried in zonepb.ApplyResponse.ErrorKind.
const (
	kindNotLeader       = "not_leader"
	kindNoQuorum        = "no_quorum"
	kindManifestUnknown = "manifest_unknown"
	kindBlobUnknown     = "blob_unknown"
	kindRepoUnknown     = "repository_unknown"
	kindMissingContent  = "missing_content"
	kindReplUnknown     = "replication_unknown"
	kindWebhookUnknown  = "webhook_unknown"
	kindUnknownCommand  = "unknown_command"
	kindInternal        = "internal"
)

// refusals are the control plane's refusals a leader hands back to the
// follower that forwarded the command, by kind, so that the caller on the
// follower can branch on them as on the leader.
var refusals = []struct {
	kind string
	err  error
}{
	{"access_invalid", access.ErrInvalid},
	{"access_limit", access.ErrLimit},
	{"access_conflict", meta.ErrAccessConflict},
	{"access_unknown", meta.ErrAccessUnknown},
	{"connected_unknown", meta.ErrConnectedUnknown},
	{"connected_conflict", meta.ErrConnectedConflict},
	{"connected_parent", connected.ErrParent},
}

// remoteRefusal is a refusal decoded from a leader's answer: the leader's
// message, and the sentinel error it wrapped.
type remoteRefusal struct {
	msg string
	err error
}

func (e *remoteRefusal) Error() string { return e.msg }
func (e *remoteRefusal) Unwrap() error { return e.err }

func encodeResult(resp *zonepb.ApplyResponse, result error) {
	if result == nil {
		return
	}
	resp.ErrorMessage = result.Error()
	var missing *meta.MissingContentError
	switch {
	case errors.Is(result, meta.ErrManifestUnknown):
		resp.ErrorKind = kindManifestUnknown
	case errors.Is(result, meta.ErrBlobUnknown):
		resp.ErrorKind = kindBlobUnknown
	case errors.Is(result, meta.ErrRepositoryUnknown):
		resp.ErrorKind = kindRepoUnknown
	case errors.Is(result, meta.ErrReplicationUnknown):
		resp.ErrorKind = kindReplUnknown
	case errors.Is(result, meta.ErrWebhookUnknown):
		resp.ErrorKind = kindWebhookUnknown
	case errors.Is(result, meta.ErrUnknownCommand):
		resp.ErrorKind = kindUnknownCommand
	case errors.As(result, &missing):
		resp.ErrorKind = kindMissingContent
		for _, d := range missing.Digests {
			resp.Missing = append(resp.Missing, d.String())
		}
	default:
		resp.ErrorKind = kindInternal
		for _, r := range refusals {
			if errors.Is(result, r.err) {
				resp.ErrorKind = r.kind
				break
			}
		}
	}
}

func decodeResult(resp *zonepb.ApplyResponse) error {
	switch resp.ErrorKind {
	case "":
		return nil
	case kindManifestUnknown:
		return meta.ErrManifestUnknown
	case kindBlobUnknown:
		return meta.ErrBlobUnknown
	case kindRepoUnknown:
		return meta.ErrRepositoryUnknown
	case kindReplUnknown:
		return meta.ErrReplicationUnknown
	case kindWebhookUnknown:
		return meta.ErrWebhookUnknown
	case kindUnknownCommand:
		return fmt.Errorf("%w: %s", meta.ErrUnknownCommand, resp.ErrorMessage)
	case kindMissingContent:
		e := &meta.MissingContentError{}
		for _, d := range resp.Missing {
			e.Digests = append(e.Digests, digest.Digest(d))
		}
		return e
	default:
		for _, r := range refusals {
			if r.kind == resp.ErrorKind {
				return &remoteRefusal{msg: resp.ErrorMessage, err: r.err}
			}
		}
		return fmt.Errorf("zone: leader: %s", resp.ErrorMessage)
	}
}

// slogWriter turns the line-oriented logs of raft's transport and snapshot
// store into slog records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(string(trimNewline(p)), "component", "raft")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}

// clientTLS returns the client configuration of cfg, or nil without one.
func clientTLS(cfg *tlsconf.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	return cfg.Client
}
