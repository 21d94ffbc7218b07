// Package zonetest runs full zone nodes (zone.Node: the Distribution API,
// the region's Raft group and blobs, replication, the control plane) in the
// test's process, after hashicorp/raft's testing.go: a mesh of regions and
// zones on loopback that a test can stop, restart and talk to over HTTP,
// without building binaries. The end-to-end tests in test/ drive the built
// binaries; this is the level below, for tests of the node's wiring.
//
// Every node's logs go to one buffer, printed only when the test fails.
package zonetest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/internal/syncbuf"
	"github.com/georeg/georeg/region/control"
	"github.com/georeg/georeg/zone"
)

// Config configures a Mesh.
type Config struct {
	// Regions are the region names, the home region first (default
	// westus).
	Regions []string
	// Zones is the number of zone nodes per region (default 1).
	Zones int
	// Auth is every node's authentication setting.
	Auth control.AuthConfig
	// Connected, when set, starts one node as that connected registry's
	// site: the region named after it, authentication required (Regions,
	// Zones and Auth are ignored).
	Connected *connected.ConnectionString
}

// Mesh is a running set of in-process zone nodes.
type Mesh struct {
	t     testing.TB
	cfg   Config
	logs  *syncbuf.Buffer
	nodes []*Node
}

// Node is one zone node of a Mesh.
type Node struct {
	Region string
	Zone   int
	// URL is the base URL of the node's Distribution API.
	URL string
	cfg zone.Config

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

// String names the node as the chaos verbs do: "westus/1".
func (n *Node) String() string { return n.Region + "/" + strconv.Itoa(n.Zone) }

// Start starts every node of cfg and waits until each answers its health
// probe; the nodes stop when the test ends.
func Start(t testing.TB, cfg Config) *Mesh {
	t.Helper()
	if c := cfg.Connected; c != nil {
		cfg.Regions, cfg.Zones, cfg.Auth = []string{c.Name}, 1, control.AuthConfig{Required: true}
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = []string{"westus"}
	}
	if cfg.Zones <= 0 {
		cfg.Zones = 1
	}
	m := &Mesh{t: t, cfg: cfg, logs: &syncbuf.Buffer{}}
	// Cleanups run last first: the data directory is made before the
	// nodes' stop is registered, so that they stop before it is removed.
	dir := t.TempDir()
	t.Cleanup(func() {
		m.stopAll()
		if t.Failed() {
			t.Logf("logs of the mesh's nodes:\n%s", m.logs.String())
		}
	})
	n := len(cfg.Regions) * cfg.Zones
	// Gossip needs the same port free for TCP and UDP; the others TCP only.
	gossip := freeport.TCPAndUDP(t, n)
	base := freeport.Block(t, 3*n)
	var join []string
	for i := range n {
		join = append(join, "127.0.0.1:"+strconv.Itoa(gossip[i]))
	}
	i := 0
	for _, r := range cfg.Regions {
		for z := 1; z <= cfg.Zones; z++ {
			addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
			zc := zone.Config{
				Region: r, Zone: z, Zones: cfg.Zones, Home: cfg.Regions[0],
				HTTPAddr: addr(base + 3*i), GRPCAddr: addr(base + 3*i + 1), RaftAddr: addr(base + 3*i + 2),
				GossipAddr: join[i], Join: join,
				DataDir:        filepath.Join(dir, fmt.Sprintf("%s-%d", r, z)),
				Auth:           cfg.Auth,
				Connected:      cfg.Connected,
				RepairInterval: time.Second,
				Logger:         slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", fmt.Sprintf("%s/%d", r, z)),
			}
			m.nodes = append(m.nodes, &Node{Region: r, Zone: z, URL: "http://" + zc.HTTPAddr, cfg: zc})
			i++
		}
	}
	for _, node := range m.nodes {
		m.run(node)
	}
	m.WaitReady(60 * time.Second)
	return m
}

// run starts node in the background.
func (m *Mesh) run(n *Node) {
	m.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	zn, err := zone.NewNode(ctx, n.cfg)
	if err != nil {
		cancel()
		m.t.Fatalf("zonetest: start %s: %v", n, err)
	}
	done := make(chan error, 1)
	go func() { done <- zn.Run(ctx) }()
	n.mu.Lock()
	n.cancel, n.done = cancel, done
	n.mu.Unlock()
}

// Nodes returns every node, region by region, zone 1 first.
func (m *Mesh) Nodes() []*Node { return m.nodes }

// Node returns the node named like "westus/1".
func (m *Mesh) Node(name string) *Node {
	m.t.Helper()
	for _, n := range m.nodes {
		if n.String() == name {
			return n
		}
	}
	m.t.Fatalf("zonetest: no node %s", name)
	return nil
}

// Stop stops a node as a clean shutdown does and waits until it has
// released its stores and ports.
func (m *Mesh) Stop(n *Node) {
	m.t.Helper()
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel, n.done = nil, nil
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			m.t.Logf("zonetest: %s stopped: %v", n, err)
		}
	case <-time.After(30 * time.Second):
		m.t.Fatalf("zonetest: %s did not stop within 30 s", n)
	}
}

// Restart starts a stopped node again on its data and waits until it is
// ready.
func (m *Mesh) Restart(n *Node) {
	m.t.Helper()
	m.run(n)
	m.WaitReady(60 * time.Second)
}

func (m *Mesh) stopAll() {
	var wg sync.WaitGroup
	for _, n := range m.nodes {
		wg.Go(func() { m.Stop(n) })
	}
	wg.Wait()
}

// WaitReady waits until every running node answers its health probe with
// 200 (caught up with its region, serving clients).
func (m *Mesh) WaitReady(timeout time.Duration) {
	m.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range m.nodes {
		n.mu.Lock()
		running := n.cancel != nil
		n.mu.Unlock()
		if !running {
			continue
		}
		for {
			resp, err := http.Get(n.URL + "/_georeg/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				m.t.Fatalf("zonetest: %s not ready after %v (last: %v)", n, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
