package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// Node is one zone node of a Mesh.
type Node struct {
	Region string `json:"region"`
	Zone   int    `json:"zone"`
	HTTP   string `json:"http"`
	// Data is the node's data directory (its blobs are under
	// Data/blobs/blobs/<algorithm>/<2 hex>/<hex>).
	Data string `json:"data"`
	Log  string `json:"log"`
}

// Name is the node as the chaos verbs spell it: "westus/1".
func (n Node) Name() string { return n.Region + "/" + strconv.Itoa(n.Zone) }

// URL is the node's base URL.
func (n Node) URL() string { return "http://" + n.HTTP }

// Mesh is a running local mesh started for one scenario.
type Mesh struct {
	*harness.Mesh
	// Home is the home region.
	Home string
	// Regions are the region names in the launcher's order, home first.
	Regions []string
	// Zones is the number of zone nodes per region.
	Zones int
	// Locations maps each client location to the base URL of the traffic
	// manager's listener for it.
	Locations map[string]string
	// Nodes lists every zone node, region by region.
	Nodes []Node
	// Trafficmgr is the base URL the traffic manager serves its own
	// /metrics and /_georeg/trafficmgr on (the home location's listener).
	Trafficmgr string

	t testing.TB
	c *ociclient.Client
}

// StartMesh starts regions (the first is home) with zones nodes each, the
// simulated WAN and the traffic manager, and waits until every region has
// a Raft leader, gossip spans every node and every location is served by
// its own region. nodeArgs are extra regiond arguments of every node.
// `mesh down` runs at the end of the test.
func StartMesh(t testing.TB, regions []string, zones int, nodeArgs ...string) *Mesh {
	t.Helper()
	start := time.Now()
	args := []string{"--regions", strings.Join(regions, ","), "--home", regions[0], "--zones", strconv.Itoa(zones)}
	for _, a := range nodeArgs {
		args = append(args, "--node-arg="+a)
	}
	hm := harness.StartMesh(t, args...)
	m := &Mesh{Mesh: hm, Zones: zones, Locations: map[string]string{}, t: t, c: ociclient.New(10 * time.Second)}
	mf, err := harness.ReadMeshFile(hm.Dir)
	harness.Must(t, err)
	m.Home = mf.Home
	for _, l := range mf.Locations {
		m.Locations[l.Name] = "http://" + l.Addr
	}
	for _, r := range mf.Regions {
		m.Regions = append(m.Regions, r.Name)
		for _, z := range r.Zones {
			m.Nodes = append(m.Nodes, Node{Region: r.Name, Zone: z.Zone, HTTP: z.HTTP, Data: z.Data, Log: z.Log})
		}
	}
	m.Trafficmgr = m.Locations[m.Home]
	if len(m.Nodes) != len(regions)*zones || len(m.Locations) != len(regions) {
		t.Fatalf("chaos: mesh.json lists %d nodes and %d locations, want %d and %d:\n%+v", len(m.Nodes), len(m.Locations), len(regions)*zones, len(regions), mf)
	}
	if err := m.WaitHealthy(context.Background(), 90*time.Second); err != nil {
		t.Fatalf("chaos: mesh not healthy after start: %v", err)
	}
	t.Logf("mesh: %d regions x %d zones, WAN and traffic manager up and settled in %v (%s)", len(regions), zones, time.Since(start).Round(time.Millisecond), hm.Dir)
	return m
}

// RegionNodes returns the nodes of region r.
func (m *Mesh) RegionNodes(r string) []Node {
	var out []Node
	for _, n := range m.Nodes {
		if n.Region == r {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node named "region/zone".
func (m *Mesh) Node(name string) (Node, bool) {
	for _, n := range m.Nodes {
		if n.Name() == name {
			return n, true
		}
	}
	return Node{}, false
}

// LocationNames returns the client locations in region order.
func (m *Mesh) LocationNames() []string {
	var out []string
	for _, r := range m.Regions {
		if _, ok := m.Locations[r]; ok {
			out = append(out, r)
		}
	}
	return out
}

// NodeStatus is the part of a node's GET /_georeg/status the suite reads.
type NodeStatus struct {
	ID     string `json:"id"`
	Region string `json:"region"`
	Zone   int    `json:"zone"`
	Raft   struct {
		State        string `json:"state"`
		Leader       string `json:"leader"`
		Term         uint64 `json:"term"`
		AppliedIndex uint64 `json:"appliedIndex"`
	} `json:"raft"`
	Members       []string `json:"members"`
	RepairBacklog int64    `json:"repairBacklog"`
	Uploads       int      `json:"uploads"`
	Peers         []struct {
		Region  string `json:"region"`
		Backlog uint64 `json:"backlog"`
	} `json:"peers"`
}

// Status reads a node's /_georeg/status.
func (m *Mesh) Status(ctx context.Context, n Node) (NodeStatus, error) {
	var st NodeStatus
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, body, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/status", nil, nil, http.StatusOK)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(body, &st)
}

// Leader waits until exactly one node of region r reports itself Raft
// leader and returns it.
func (m *Mesh) Leader(ctx context.Context, r string, timeout time.Duration) (Node, error) {
	var found Node
	err := ociclient.Poll(ctx, timeout, 100*time.Millisecond, func() (bool, error) {
		var leaders []Node
		for _, n := range m.RegionNodes(r) {
			if st, err := m.Status(ctx, n); err == nil && st.Raft.State == "Leader" {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) != 1 {
			return false, fmt.Errorf("region %s has leaders %v", r, leaders)
		}
		found = leaders[0]
		return true, nil
	})
	return found, err
}

// WaitHealthy waits until every node answers /_georeg/health, every region
// has one Raft leader, every node's gossip sees every node, and every
// location is served by its own region.
func (m *Mesh) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, r := range m.Regions {
		if _, err := m.Leader(ctx, r, time.Until(deadline)); err != nil {
			return err
		}
	}
	err := ociclient.Poll(ctx, time.Until(deadline), 100*time.Millisecond, func() (bool, error) {
		for _, n := range m.Nodes {
			if _, _, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/health", nil, nil, http.StatusOK); err != nil {
				return false, fmt.Errorf("%s: %w", n.Name(), err)
			}
			st, err := m.Status(ctx, n)
			if err != nil {
				return false, fmt.Errorf("%s: %w", n.Name(), err)
			}
			if len(st.Members) != len(m.Nodes) {
				return false, fmt.Errorf("%s sees members %v", n.Name(), st.Members)
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return ociclient.Poll(ctx, time.Until(deadline), 50*time.Millisecond, func() (bool, error) {
		for loc, base := range m.Locations {
			resp, _, err := m.c.Do(ctx, http.MethodGet, base, "/v2/", nil, nil, http.StatusOK)
			if err != nil {
				return false, fmt.Errorf("location %s: %w", loc, err)
			}
			if got := resp.Header.Get("Georeg-Region"); got != loc {
				return false, fmt.Errorf("location %s is served by %q", loc, got)
			}
		}
		return true, nil
	})
}

// Run runs bin/georeg with args and --dir, and returns its combined
// output.
func (m *Mesh) Run(ctx context.Context, args ...string) (string, error) {
	out, err := m.Georeg(ctx, append(slices.Clone(args), "--dir", m.Dir)...)
	return strings.TrimSpace(string(out)), err
}

// BlobFile returns the path of node n's copy of the blob with hex digest
// enc (sha256), as storage.FS lays it out.
func (n Node) BlobFile(enc string) string {
	return filepath.Join(n.Data, "blobs", "blobs", "sha256", enc[:2], enc)
}

// LogTail returns the last max bytes of the node's log.
func (n Node) LogTail(max int) string {
	b, _ := os.ReadFile(n.Log)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
