// Package regiontest runs the zone nodes of a region in one process, for
// tests of the region and of what is built on it (the control plane,
// webhooks).
//
// # Basics
//
// [New] starts Config.Zones nodes, each with real gossip (members), Raft
// over TCP (region.Group), bbolt (base/meta), a storage.FS blob store,
// region.Blobs and a gRPC server on loopback, wired as regiond wires them,
// and waits until they gossip with each other and agree on a leader. A node
// can be stopped (everything closed at once, as in a crash) and started
// again on the same directory and addresses ([Node.Stop], [Node.Start]);
// [Cluster.Leader] waits for a leader every running node knows and
// [Cluster.WaitConverged] for every running node to hold the same
// metadata. Config.Services adds services of a higher layer to each node's
// gRPC server, and Config.Join makes several clusters (regions) one gossip
// mesh.
//
// The logs of every node go to a buffer that is printed only when the test
// fails.
//
// # Caveats
//
// Raft and gossip keep their ports across a restart, so they are picked
// at the start (internal/freeport), free a moment before: another process
// could take one meanwhile. Gossip has no way to vanish without a word: a
// stopped node leaves the gossip, so the others drop it at once.
package regiontest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/internal/syncbuf"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/storage"
)

// WaitTimeout bounds every wait for the cluster to reach a state. Elections
// and failure detection take about a second on loopback; the margin is for
// a loaded machine running the race detector.
const WaitTimeout = 30 * time.Second

// Config configures a Cluster.
type Config struct {
	// Region names the region (default westus).
	Region string
	// Zones is the number of zone nodes (default 3).
	Zones int
	// Join are gossip addresses of nodes of other clusters of the test
	// (Cluster.GossipAddrs), to make them one mesh of regions.
	Join []string
	// ApplyTimeout is region.GroupConfig.ApplyTimeout; zero keeps the
	// default.
	ApplyTimeout time.Duration
	// ServerOptions returns extra options for the gRPC server of a zone
	// (interceptors that count or hold calls).
	ServerOptions func(zone int) []grpc.ServerOption
	// CopyStore, when set, wraps the store in which a zone's server keeps
	// the copies other zones send it. The server then checks copies on
	// its own (its storage.Checked is not the zone's Blobs').
	CopyStore func(zone int, s storage.BlobStore) storage.BlobStore
	// Services, when set, is called at every start of a node, once its
	// parts run and before its gRPC server serves, to register services of
	// a higher layer on it. The function it returns, if any, is called when
	// the node stops, before the node's own parts close.
	Services func(n *Node, s *grpc.Server) (stop func())
}

// Cluster is the zone nodes of one region of a test. It stops when the test
// ends.
type Cluster struct {
	t     testing.TB
	cfg   Config
	logs  *logBuffer
	nodes []*Node // nodes[i] is zone i+1
}

// Node is one zone node. Its addresses and directory stay the same across
// restarts; the parts are set while it runs and must not be used after it
// stops.
type Node struct {
	Zone       int
	ID         string
	Region     string
	Dir        string
	GossipAddr string
	RaftAddr   string
	GRPCAddr   string

	Members *members.List
	Group   *region.Group
	Local   *storage.FS
	Blobs   *region.Blobs
	Server  *grpc.Server

	c        *Cluster
	log      *slog.Logger
	running  bool
	cancel   context.CancelFunc
	ln       net.Listener
	services func()
}

// New starts cfg.Zones nodes and waits until they gossip with each other
// and agree on a Raft leader.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Region == "" {
		cfg.Region = "westus"
	}
	if cfg.Zones == 0 {
		cfg.Zones = 3
	}
	c := &Cluster{t: t, cfg: cfg, logs: newLogBuffer(t, cfg.Region)}
	root := t.TempDir()
	ports := freeport.TCPAndUDP(t, 2*cfg.Zones)
	for z := 1; z <= cfg.Zones; z++ {
		c.nodes = append(c.nodes, &Node{
			c:          c,
			Zone:       z,
			ID:         members.NodeID(cfg.Region, z),
			Region:     cfg.Region,
			Dir:        filepath.Join(root, "zone"+strconv.Itoa(z)),
			GossipAddr: loopback(ports[2*(z-1)]),
			RaftAddr:   loopback(ports[2*(z-1)+1]),
			GRPCAddr:   "127.0.0.1:0", // chosen at the first start, kept after
		})
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.running {
				n.Stop()
			}
		}
	})
	for _, n := range c.nodes {
		n.Start()
	}
	c.WaitGossip()
	c.Leader()
	return c
}

// Node returns the node of zone (1-based).
func (c *Cluster) Node(zone int) *Node { return c.nodes[zone-1] }

// Nodes returns every node, running or not.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// GossipAddrs returns the gossip address of every node, for Config.Join.
func (c *Cluster) GossipAddrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.GossipAddr)
	}
	return out
}

// Running reports whether the node runs.
func (n *Node) Running() bool { return n.running }

// Start starts the node; it fails the test if it cannot.
func (n *Node) Start() {
	n.c.t.Helper()
	if err := n.TryStart(); err != nil {
		n.c.t.Fatalf("start %s: %v", n.ID, err)
	}
}

// TryStart starts the node and returns why it could not.
func (n *Node) TryStart() (err error) {
	if n.running {
		return fmt.Errorf("%s is running", n.ID)
	}
	cfg := n.c.cfg
	ctx, cancel := context.WithCancel(context.Background())
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			cancel()
		}
	}()
	lg := n.c.logs.Logger(n.ID)
	n.log = lg
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}

	// Listen first: the gossip record carries the gRPC address.
	ln, err := net.Listen("tcp", n.GRPCAddr)
	if err != nil {
		return err
	}
	undo = append(undo, func() { ln.Close() })
	n.GRPCAddr = ln.Addr().String()

	join := append([]string(nil), cfg.Join...)
	for _, o := range n.c.nodes {
		if o != n {
			join = append(join, o.GossipAddr)
		}
	}
	self := members.Member{ID: n.ID, Region: cfg.Region, Zone: n.Zone, GRPC: n.GRPCAddr, Raft: n.RaftAddr}
	list, err := members.Start(ctx, members.Config{Self: self, BindAddr: n.GossipAddr, Join: join, Logger: lg})
	if err != nil {
		return err
	}
	undo = append(undo, func() { list.Leave(100 * time.Millisecond) })

	group, err := region.NewGroup(ctx, region.GroupConfig{
		RaftAddr:     n.RaftAddr,
		Dir:          filepath.Join(n.Dir, "raft"),
		MetaPath:     filepath.Join(n.Dir, "meta.db"),
		Zones:        cfg.Zones,
		Members:      list,
		ApplyTimeout: cfg.ApplyTimeout,
		Logger:       lg,
	})
	if err != nil {
		return err
	}
	undo = append(undo, func() { group.Close() })

	local, err := storage.NewFS(storage.FSConfig{Root: filepath.Join(n.Dir, "blobs"), Logger: lg})
	if err != nil {
		return err
	}
	// One checked store, as zone.Node builds it: Blobs and the zone
	// server write and verify through it.
	checked := storage.NewChecked(storage.CheckedConfig{Store: local, Logger: lg})
	blobs := region.NewBlobs(region.BlobsConfig{Local: checked, Zones: cfg.Zones, Members: list, Logger: lg})
	undo = append(undo, blobs.Close)

	opts := proto.ServerOptions()
	if cfg.ServerOptions != nil {
		opts = append(opts, cfg.ServerOptions(n.Zone)...)
	}
	srv := grpc.NewServer(opts...)
	copies := checked
	if cfg.CopyStore != nil {
		copies = storage.NewChecked(storage.CheckedConfig{Store: cfg.CopyStore(n.Zone, local), Logger: lg})
	}
	zs := region.NewServer(group, copies)
	zonepb.RegisterZoneServer(srv, zs)

	n.running, n.cancel, n.ln = true, cancel, ln
	n.Members, n.Group, n.Local, n.Blobs, n.Server = list, group, local, blobs, srv
	n.services = nil
	if cfg.Services != nil {
		n.services = cfg.Services(n, srv)
	}
	go region.Serve(ln, srv, zs, lg)
	return nil
}

// Stop closes everything the node runs at once, as a crash would; its
// directory stays for a restart.
func (n *Node) Stop() {
	n.c.t.Helper()
	if !n.running {
		n.c.t.Fatalf("stop %s: not running", n.ID)
	}
	n.running = false
	n.Server.Stop()
	n.ln.Close()
	if n.services != nil {
		n.services()
	}
	n.Blobs.Close()
	if err := n.Group.Close(); err != nil {
		n.c.t.Errorf("stop %s: raft shutdown or metadata store: %v", n.ID, err)
	}
	// members.List has no way to vanish without a word; a leave is the
	// closest, and the others drop the node at once instead of after a
	// probe timeout.
	n.Members.Leave(100 * time.Millisecond)
	n.cancel()
}

// Running returns the nodes that run.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n.running {
			out = append(out, n)
		}
	}
	return out
}

// WaitGossip waits until every running node sees exactly the running nodes
// of its region.
func (c *Cluster) WaitGossip() {
	c.t.Helper()
	up := c.Running()
	WaitFor(c.t, "gossip to show every running zone", func() bool {
		for _, n := range up {
			alive := n.Members.Region(c.cfg.Region)
			if len(alive) != len(up) {
				return false
			}
			for i, m := range alive {
				if m.ID != up[i].ID || m.GRPC != up[i].GRPCAddr {
					return false
				}
			}
		}
		return true
	})
}

// Leader waits until exactly one running node leads and every running node
// names it as leader, and returns it.
func (c *Cluster) Leader() *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, "one raft leader that every running zone knows", func() bool {
		leader = nil
		up := c.Running()
		for _, n := range up {
			if n.Group.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range up {
			if n.Group.Status().Leader != leader.ID {
				return false
			}
		}
		return true
	})
	return leader
}

// Followers returns the running nodes that do not lead.
func (c *Cluster) Followers() []*Node {
	c.t.Helper()
	leader := c.Leader()
	var out []*Node
	for _, n := range c.Running() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// WaitConverged waits until every running node has applied the same log
// prefix and holds the same metadata, and returns that metadata's digest.
func (c *Cluster) WaitConverged() digest.Digest {
	c.t.Helper()
	var state digest.Digest
	WaitFor(c.t, "the metadata of every running zone to converge", func() bool {
		up := c.Running()
		first, err := up[0].Group.Digest()
		if err != nil {
			return false
		}
		applied := up[0].Group.AppliedIndex()
		for _, n := range up[1:] {
			d, err := n.Group.Digest()
			if err != nil || d != first || n.Group.AppliedIndex() != applied {
				return false
			}
		}
		state = first
		return true
	})
	return state
}

// Holders returns the zones whose local store holds dgst.
func (c *Cluster) Holders(dgst digest.Digest) []int {
	var out []int
	for _, n := range c.Running() {
		if _, err := n.Local.Stat(context.Background(), dgst); err == nil {
			out = append(out, n.Zone)
		}
	}
	return out
}

// Logs returns everything the nodes logged so far.
func (c *Cluster) Logs() string { return c.logs.String() }

// Logger returns a logger whose lines join the cluster's logs, for a part
// a test adds to a node.
func (c *Cluster) Logger(who string) *slog.Logger { return c.logs.Logger(who) }

// CountLogs returns how many lines of the cluster's logs contain every one
// of parts.
func (c *Cluster) CountLogs(parts ...string) int {
	return c.logs.CountLines(parts...)
}

// Logger returns the node's logger, for a part a test adds to the node
// (Config.Services).
func (n *Node) Logger() *slog.Logger { return n.log }

// BlobPath is where storage.FS keeps a blob under the node's store.
func (n *Node) BlobPath(dgst digest.Digest) string {
	enc := dgst.Encoded()
	return filepath.Join(n.Dir, "blobs", "blobs", string(dgst.Algorithm()), enc[:2], enc)
}

// PutLocal stores a blob in the node's own store only.
func (n *Node) PutLocal(t testing.TB, data []byte) {
	t.Helper()
	dgst := digest.FromBytes(data)
	if _, err := n.Local.Put(context.Background(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("%s: local put: %v", n.ID, err)
	}
}

// WaitFor polls cond until it holds, failing the test after WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loopback returns 127.0.0.1:port.
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// logBuffer keeps the logs of a cluster's nodes and prints them only when
// the test fails.
type logBuffer struct{ syncbuf.Buffer }

func newLogBuffer(t testing.TB, region string) *logBuffer {
	l := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of region %s:\n%s", region, l.String())
		}
	})
	return l
}

func (l *logBuffer) Logger(who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})).With("self", who)
}
