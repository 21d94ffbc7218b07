package region

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
)

// This file is the test cluster: Z zone nodes of one region in this process,
// each with real gossip, Raft over TCP, bbolt and a gRPC server on loopback,
// as regiond wires them. A node can be stopped (everything closed at once,
// as in a crash) and started again on the same directory and addresses.

// waitTimeout bounds every wait for the cluster to reach a state. Elections
// and failure detection take about a second on loopback; the margin is for a
// loaded machine running the race detector.
const waitTimeout = 30 * time.Second

const testRegion = "westus"

type clusterConfig struct {
	zones int
	// applyTimeout is GroupConfig.ApplyTimeout; zero keeps the default.
	applyTimeout time.Duration
	// serverOptions returns extra options for the gRPC server of a zone
	// (interceptors that count or hold calls).
	serverOptions func(zone int) []grpc.ServerOption
	// copyStore, when set, wraps the store in which a zone's server keeps
	// the copies other zones send it. The server then checks copies on
	// its own (its storage.Checked is not the zone's Blobs').
	copyStore func(zone int, s storage.BlobStore) storage.BlobStore
}

type testCluster struct {
	t     *testing.T
	cfg   clusterConfig
	logs  *testLogs
	nodes []*testNode // nodes[i] is zone i+1
}

// testNode is one zone node. Its addresses and directory stay the same
// across restarts; the rest is set while it runs.
type testNode struct {
	c          *testCluster
	zone       int
	id         string
	dir        string
	gossipAddr string
	raftAddr   string
	grpcAddr   string

	running bool
	cancel  context.CancelFunc
	list    *members.List
	store   *meta.Store
	group   *Group
	local   *storage.FS
	blobs   *Blobs
	srv     *grpc.Server
	ln      net.Listener
}

// newTestCluster starts cfg.zones nodes and waits until they gossip with
// each other and agree on a Raft leader. The cluster stops when the test
// ends.
func newTestCluster(t *testing.T, cfg clusterConfig) *testCluster {
	t.Helper()
	c := &testCluster{t: t, cfg: cfg, logs: newTestLogs(t)}
	root := t.TempDir()
	ports := freePorts(t, 2*cfg.zones)
	for z := 1; z <= cfg.zones; z++ {
		c.nodes = append(c.nodes, &testNode{
			c:          c,
			zone:       z,
			id:         members.NodeID(testRegion, z),
			dir:        filepath.Join(root, "zone"+strconv.Itoa(z)),
			gossipAddr: loopback(ports[2*(z-1)]),
			raftAddr:   loopback(ports[2*(z-1)+1]),
			grpcAddr:   "127.0.0.1:0", // chosen at the first start, kept after
		})
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.running {
				n.stop()
			}
		}
	})
	for _, n := range c.nodes {
		n.start()
	}
	c.waitGossip()
	c.leader()
	return c
}

func (c *testCluster) node(zone int) *testNode { return c.nodes[zone-1] }

// start starts the node; it fails the test if it cannot.
func (n *testNode) start() {
	n.c.t.Helper()
	if err := n.tryStart(); err != nil {
		n.c.t.Fatalf("start %s: %v", n.id, err)
	}
}

func (n *testNode) tryStart() (err error) {
	if n.running {
		return fmt.Errorf("%s is running", n.id)
	}
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
	lg := n.c.logs.logger(n.id)
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}

	// Listen first: the gossip record carries the gRPC address.
	ln, err := net.Listen("tcp", n.grpcAddr)
	if err != nil {
		return err
	}
	undo = append(undo, func() { ln.Close() })
	n.grpcAddr = ln.Addr().String()

	var join []string
	for _, o := range n.c.nodes {
		if o != n {
			join = append(join, o.gossipAddr)
		}
	}
	self := members.Member{ID: n.id, Region: testRegion, Zone: n.zone, GRPC: n.grpcAddr, Raft: n.raftAddr}
	list, err := members.Start(ctx, members.Config{Self: self, BindAddr: n.gossipAddr, Join: join, Logger: lg})
	if err != nil {
		return err
	}
	undo = append(undo, func() { list.Leave(100 * time.Millisecond) })

	store, err := meta.Open(meta.Config{Path: filepath.Join(n.dir, "meta.db"), Logger: lg})
	if err != nil {
		return err
	}
	undo = append(undo, func() { store.Close() })

	group, err := NewGroup(ctx, GroupConfig{
		RaftAddr:     n.raftAddr,
		Dir:          filepath.Join(n.dir, "raft"),
		Store:        store,
		Zones:        n.c.cfg.zones,
		Members:      list,
		ApplyTimeout: n.c.cfg.applyTimeout,
		Logger:       lg,
	})
	if err != nil {
		return err
	}
	undo = append(undo, func() { group.Close() })

	local, err := storage.NewFS(storage.FSConfig{Root: filepath.Join(n.dir, "blobs"), Logger: lg})
	if err != nil {
		return err
	}
	checked := storage.NewChecked(storage.CheckedConfig{Store: local, Logger: lg})
	blobs := NewBlobs(BlobsConfig{Local: checked, Zones: n.c.cfg.zones, Members: list, Logger: lg})

	var opts []grpc.ServerOption
	if n.c.cfg.serverOptions != nil {
		opts = n.c.cfg.serverOptions(n.zone)
	}
	srv := grpc.NewServer(opts...)
	copies := checked
	if n.c.cfg.copyStore != nil {
		copies = storage.NewChecked(storage.CheckedConfig{Store: n.c.cfg.copyStore(n.zone, local), Logger: lg})
	}
	zs := NewServer(group, copies)
	zonepb.RegisterZoneServer(srv, zs)
	go Serve(ln, srv, zs, lg)
	n.ln = ln

	n.running, n.cancel = true, cancel
	n.list, n.store, n.group, n.local, n.blobs, n.srv = list, store, group, local, blobs, srv
	return nil
}

// stop closes everything the node runs at once, as a crash would; its
// directory stays for a restart.
func (n *testNode) stop() {
	n.c.t.Helper()
	if !n.running {
		n.c.t.Fatalf("stop %s: not running", n.id)
	}
	n.running = false
	n.srv.Stop()
	n.ln.Close()
	n.blobs.Close()
	if err := n.group.Close(); err != nil {
		n.c.t.Errorf("stop %s: raft shutdown: %v", n.id, err)
	}
	// members.List has no way to vanish without a word; a leave is the
	// closest, and the others drop the node at once instead of after a
	// probe timeout.
	n.list.Leave(100 * time.Millisecond)
	if err := n.store.Close(); err != nil {
		n.c.t.Errorf("stop %s: metadata store: %v", n.id, err)
	}
	n.cancel()
}

// running returns the nodes that run.
func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if n.running {
			out = append(out, n)
		}
	}
	return out
}

// waitGossip waits until every running node sees exactly the running nodes.
func (c *testCluster) waitGossip() {
	c.t.Helper()
	up := c.running()
	waitFor(c.t, "gossip to show every running zone", func() bool {
		for _, n := range up {
			alive := n.list.Region(testRegion)
			if len(alive) != len(up) {
				return false
			}
			for i, m := range alive {
				if m.ID != up[i].id || m.GRPC != up[i].grpcAddr {
					return false
				}
			}
		}
		return true
	})
}

// leader waits until exactly one running node leads and every running node
// names it as leader, and returns it.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var leader *testNode
	waitFor(c.t, "one raft leader that every running zone knows", func() bool {
		leader = nil
		up := c.running()
		for _, n := range up {
			if n.group.IsLeader() {
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
			if n.group.Status().Leader != leader.id {
				return false
			}
		}
		return true
	})
	return leader
}

// followers returns the running nodes that do not lead.
func (c *testCluster) followers() []*testNode {
	c.t.Helper()
	leader := c.leader()
	var out []*testNode
	for _, n := range c.running() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// waitConverged waits until every running node has applied the same log
// prefix and holds the same metadata, and returns that metadata's digest.
func (c *testCluster) waitConverged() digest.Digest {
	c.t.Helper()
	var state digest.Digest
	waitFor(c.t, "the metadata of every running zone to converge", func() bool {
		up := c.running()
		first, err := up[0].store.Digest()
		if err != nil {
			return false
		}
		applied := up[0].store.AppliedIndex()
		for _, n := range up[1:] {
			d, err := n.store.Digest()
			if err != nil || d != first || n.store.AppliedIndex() != applied {
				return false
			}
		}
		state = first
		return true
	})
	return state
}

// holders returns the zones whose local store holds dgst.
func (c *testCluster) holders(dgst digest.Digest) []int {
	var out []int
	for _, n := range c.running() {
		if _, err := n.local.Stat(context.Background(), dgst); err == nil {
			out = append(out, n.zone)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePorts returns n distinct ports on 127.0.0.1, free for both TCP and UDP
// (gossip binds both) a moment ago. Raft and gossip keep their port across a
// restart, so they cannot take an ephemeral one; these come from
// 10000-32000, below Linux's ephemeral range, so that no outgoing connection
// takes one in the meantime.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	seen := map[int]bool{}
	for try := 0; len(ports) < n; try++ {
		if try > 1000 {
			t.Fatalf("no %d free ports in 10000-32000", n)
		}
		p := 10000 + mrand.IntN(22000)
		if seen[p] {
			continue
		}
		seen[p] = true
		tl, err := net.Listen("tcp", loopback(p))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", loopback(p))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		ports = append(ports, p)
	}
	return ports
}

// testLogs keeps the logs of every node of a test and prints them only when
// the test fails.
type testLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newTestLogs(t *testing.T) *testLogs {
	l := &testLogs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the cluster:\n%s", l.String())
		}
	})
	return l
}

func (l *testLogs) logger(node string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})).With("self", node)
}

func (l *testLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count returns how many log lines contain every one of parts.
func (l *testLogs) count(parts ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// linkBlob returns the command that links a blob into repo.
func linkBlob(repo string, dgst digest.Digest, size int64) meta.Command {
	return meta.Command{Op: meta.OpLinkBlob, Repo: repo, Digest: dgst, Size: size, Time: time.Now().UTC()}
}

// randomBlob returns size random bytes and their digest.
func randomBlob(t *testing.T, size int) ([]byte, digest.Digest) {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, digest.FromBytes(b)
}

// blobPath is where storage.FS keeps a blob under a node's store.
func (n *testNode) blobPath(dgst digest.Digest) string {
	enc := dgst.Encoded()
	return filepath.Join(n.dir, "blobs", "blobs", string(dgst.Algorithm()), enc[:2], enc)
}

// putLocal stores a blob in the node's own store only.
func (n *testNode) putLocal(t *testing.T, data []byte) {
	t.Helper()
	dgst := digest.FromBytes(data)
	if _, err := n.local.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("%s: local put: %v", n.id, err)
	}
}
