package chaos

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// Mesh is a running local mesh started for one scenario: the harness's
// handle on it, with the suite's checks (checker.go, sampler.go) as
// methods.
type Mesh struct {
	*harness.Mesh
	// Trafficmgr is the base URL the traffic manager serves its own
	// /metrics and /_georeg/trafficmgr on (the home location's listener).
	Trafficmgr string

	c *ociclient.Client
	// sites are the connected registries StartSites started, in order.
	sites []*siteHandle
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
	if os.Getenv("GEOREG_CHAOS_TLS") != "" {
		// `make chaos TLS=1`: the endpoint and the nodes' HTTP serve HTTPS.
		args = append(args, "--tls")
	}
	hm := harness.StartMesh(t, args...)
	m := &Mesh{Mesh: hm, Trafficmgr: hm.Locations[hm.Home], c: hm.Client(10 * time.Second)}
	if len(m.Nodes) != len(regions)*zones || len(m.Locations) != len(regions) {
		t.Fatalf("chaos: mesh.json lists %d nodes and %d locations, want %d and %d:\n%v\n%v", len(m.Nodes), len(m.Locations), len(regions)*zones, len(regions), m.Nodes, m.Locations)
	}
	if err := m.WaitHealthy(context.Background(), 90*time.Second); err != nil {
		t.Fatalf("chaos: mesh not healthy after start: %v", err)
	}
	t.Logf("mesh: %d regions x %d zones, WAN and traffic manager up and settled in %v (%s)", len(regions), zones, time.Since(start).Round(time.Millisecond), hm.Dir)
	return m
}
