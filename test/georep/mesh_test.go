package georep

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// regions are the regions of every mesh, in the launcher's order; westus is
// home.
var regions = []string{"westus", "eastus", "westeurope"}

// node is one zone node of a mesh.
type node struct {
	Region string `json:"-"`
	Zone   int    `json:"zone"`
	HTTP   string `json:"http"`
	Data   string `json:"data"`
	Log    string `json:"log"`
}

func (n node) String() string { return fmt.Sprintf("%s/%d", n.Region, n.Zone) }

// URL is the node's base URL.
func (n node) URL() string { return "http://" + n.HTTP }

// geoMesh is a running multi-region mesh.
type geoMesh struct {
	*harness.Mesh
	nodes []node
	c     *client
}

// startMesh starts westus (home), eastus and westeurope with zones nodes
// each.
func startMesh(t testing.TB, zones int) *geoMesh {
	t.Helper()
	start := time.Now()
	m := &geoMesh{
		Mesh: harness.StartMesh(t, "--regions", strings.Join(regions, ","), "--home", "westus", "--zones", strconv.Itoa(zones)),
		c:    newClient(),
	}
	out, err := m.Georeg(context.Background(), "mesh", "status", "--dir", m.Dir, "--json")
	if err != nil {
		t.Fatalf("mesh status: %v\n%s", err, out)
	}
	var st struct {
		Regions []struct {
			Name  string `json:"name"`
			Zones []node `json:"zones"`
		} `json:"regions"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("mesh status: %v\n%s", err, out)
	}
	for _, r := range st.Regions {
		for _, n := range r.Zones {
			n.Region = r.Name
			m.nodes = append(m.nodes, n)
		}
	}
	if len(m.nodes) != len(regions)*zones {
		t.Fatalf("mesh status shows %d nodes, want %d:\n%s", len(m.nodes), len(regions)*zones, out)
	}
	// Replication needs every region's leader and the gossip across
	// regions; mesh up waits only for the first node to see a leader.
	ctx := context.Background()
	for _, r := range regions {
		if _, err := m.leader(ctx, r, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	err = ociclient.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
		for _, n := range m.nodes {
			st, err := m.status(ctx, n)
			if err != nil {
				return false, err
			}
			if len(st.Members) != len(m.nodes) {
				return false, fmt.Errorf("%s sees members %v", n, st.Members)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("gossip: %v", err)
	}
	t.Logf("mesh: %d regions x %d zones up in %v (%s)", len(regions), zones, time.Since(start).Round(time.Millisecond), m.Dir)
	return m
}

// region returns the nodes of region r.
func (m *geoMesh) region(r string) []node {
	var out []node
	for _, n := range m.nodes {
		if n.Region == r {
			out = append(out, n)
		}
	}
	return out
}

// first returns the first node of region r.
func (m *geoMesh) first(r string) node { return m.region(r)[0] }

// nodeStatus is the part of a node's GET /_georeg/status the tests read.
type nodeStatus struct {
	ID   string `json:"id"`
	Raft struct {
		State        string `json:"state"`
		Leader       string `json:"leader"`
		AppliedIndex uint64 `json:"appliedIndex"`
	} `json:"raft"`
	Members []string `json:"members"`
	Peers   []struct {
		Region     string  `json:"region"`
		Backlog    uint64  `json:"backlog"`
		LagSeconds float64 `json:"lagSeconds"`
		LastError  string  `json:"lastError"`
	} `json:"peers"`
	Synced map[string]time.Time `json:"synced"`
}

func (m *geoMesh) status(ctx context.Context, n node) (nodeStatus, error) {
	var st nodeStatus
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, body, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/status", nil, nil, http.StatusOK)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(body, &st)
}

// leader waits until one node of region r reports itself Raft leader and
// the others that answer agree, and returns it.
func (m *geoMesh) leader(ctx context.Context, r string, timeout time.Duration) (node, error) {
	var found node
	err := ociclient.Poll(ctx, timeout, 100*time.Millisecond, func() (bool, error) {
		var leaders []node
		for _, n := range m.region(r) {
			st, err := m.status(ctx, n)
			if err != nil {
				continue
			}
			if st.Raft.State == "Leader" {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) != 1 {
			return false, fmt.Errorf("region %s has leaders %v", r, leaders)
		}
		found = leaders[0]
		return true, nil
	})
	if err != nil {
		return node{}, err
	}
	return found, nil
}

// chaos runs `georeg chaos VERB TARGET` on the mesh.
func (m *geoMesh) chaos(t testing.TB, ctx context.Context, verb, target string) {
	t.Helper()
	out, err := m.Georeg(ctx, "chaos", verb, target, "--dir", m.Dir)
	if err != nil {
		t.Fatalf("georeg chaos %s %s: %v\n%s", verb, target, err, out)
	}
}

// restart runs `georeg chaos restart TARGET`. A node killed a moment ago
// may still hold its port while the kernel tears the process down; restart
// then answers "port in use", and is tried again for a few seconds.
func (m *geoMesh) restart(t testing.TB, ctx context.Context, target string) {
	t.Helper()
	start := time.Now()
	for tries := 1; ; tries++ {
		out, err := m.Georeg(ctx, "chaos", "restart", target, "--dir", m.Dir)
		if err == nil {
			if tries > 1 {
				t.Logf("chaos restart %s: succeeded on try %d, %v after the first (port still in use after kill-zone returned)", target, tries, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if !strings.Contains(string(out), "port in use") || time.Since(start) > 10*time.Second {
			t.Fatalf("georeg chaos restart %s: %v\n%s", target, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sumMetric adds up one series over nodes. A node that does not answer
// fails the call.
func (m *geoMesh) sumMetric(ctx context.Context, nodes []node, series string) (float64, error) {
	var sum float64
	for _, n := range nodes {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", n, err)
		}
		sum += ms[series]
	}
	return sum, nil
}

// repoMap is what one node serves: repository -> tag -> manifest digest.
type repoMap map[string]map[string]digest.Digest

func (r repoMap) String() string {
	var b strings.Builder
	for _, repo := range slices.Sorted(maps.Keys(r)) {
		fmt.Fprintf(&b, "%s:", repo)
		for _, tag := range slices.Sorted(maps.Keys(r[repo])) {
			fmt.Fprintf(&b, " %s=%.19s", tag, r[repo][tag])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// repoMap reads the full map a node serves: the catalog, every
// repository's tags and the digest of every tag.
func (m *geoMesh) repoMap(ctx context.Context, n node) (repoMap, error) {
	repos, err := m.c.List(ctx, n.URL(), "/v2/_catalog", "repositories")
	if err != nil {
		return nil, err
	}
	out := repoMap{}
	for _, repo := range repos {
		tags, err := m.c.Tags(ctx, n.URL(), repo)
		if err != nil {
			return nil, err
		}
		out[repo] = map[string]digest.Digest{}
		for _, tag := range tags {
			d, _, err := m.c.GetManifest(ctx, n.URL(), repo, tag)
			if err != nil {
				return nil, fmt.Errorf("%s lists %s:%s: %w", n, repo, tag, err)
			}
			out[repo][tag] = d
		}
	}
	return out, nil
}

// converged waits until every node in nodes serves the same repoMap and
// returns it.
func (m *geoMesh) converged(ctx context.Context, nodes []node, timeout time.Duration) (repoMap, error) {
	var ref repoMap
	err := ociclient.Poll(ctx, timeout, 200*time.Millisecond, func() (bool, error) {
		maps := make([]repoMap, len(nodes))
		for i, n := range nodes {
			rm, err := m.repoMap(ctx, n)
			if err != nil {
				return false, fmt.Errorf("%s: %w", n, err)
			}
			maps[i] = rm
		}
		for i := 1; i < len(nodes); i++ {
			if maps[i].String() != maps[0].String() {
				return false, fmt.Errorf("%s serves\n%s\nbut %s serves\n%s", nodes[0], maps[0], nodes[i], maps[i])
			}
		}
		ref = maps[0]
		return true, nil
	})
	return ref, err
}

// readThroughs sums georeg_replication_read_through_total over nodes, per
// kind.
func (m *geoMesh) readThroughs(ctx context.Context, nodes []node) (manifests, blobs float64, err error) {
	if manifests, err = m.sumMetric(ctx, nodes, ociclient.Series("georeg_replication_read_through_total", "kind", "manifest")); err != nil {
		return 0, 0, err
	}
	blobs, err = m.sumMetric(ctx, nodes, ociclient.Series("georeg_replication_read_through_total", "kind", "blob"))
	return manifests, blobs, err
}

// imageEverywhere waits until every node of nodes lists repo:tag, holds every
// blob of img (HEAD, which never reads through) and answers img's digest for
// the tag, and returns when each node first did, relative to since.
func (m *geoMesh) imageEverywhere(ctx context.Context, nodes []node, repo, tag string, img image, since time.Time, timeout time.Duration) (map[string]time.Duration, error) {
	var mu sync.Mutex
	ready := map[string]time.Duration{}
	err := ociclient.Poll(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		for i, n := range nodes {
			mu.Lock()
			_, done := ready[n.String()]
			mu.Unlock()
			if done {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := m.imageOn(ctx, n, repo, tag, img)
				if err != nil || !ok {
					errs[i] = fmt.Errorf("%s: not yet (%v)", n, err)
					return
				}
				mu.Lock()
				ready[n.String()] = time.Since(since)
				mu.Unlock()
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return false, err
			}
		}
		return true, nil
	})
	return ready, err
}

// imageOn reports whether node n holds repo:tag = img without reading
// through: the tag is listed and every blob answers HEAD; then the tag must
// resolve to img's digest.
func (m *geoMesh) imageOn(ctx context.Context, n node, repo, tag string, img image) (bool, error) {
	ok, err := m.c.HasTag(ctx, n.URL(), repo, tag)
	if !ok || err != nil {
		return false, err
	}
	for _, b := range img.Blobs() {
		if ok, err := m.c.HasBlob(ctx, n.URL(), repo, b.Digest); !ok || err != nil {
			return false, err
		}
	}
	d, _, err := m.c.GetManifest(ctx, n.URL(), repo, tag)
	if err != nil {
		return false, err
	}
	if d != img.Digest {
		return false, fmt.Errorf("%s:%s is %s, want %s", repo, tag, d, img.Digest)
	}
	return true, nil
}

// durations formats per-node durations sorted by node name.
func durations(d map[string]time.Duration) string {
	keys := slices.Collect(maps.Keys(d))
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %dms", k, d[k].Milliseconds()))
	}
	return strings.Join(parts, ", ")
}
