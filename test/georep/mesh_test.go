package georep

import (
	"context"
	"fmt"
	"maps"
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

// geoMesh is a running multi-region mesh: the harness's handle on it, with
// this package's checks as methods.
type geoMesh struct {
	*harness.Mesh
	c *client
}

// startMesh starts westus (home), eastus and westeurope with zones nodes
// each.
func startMesh(t testing.TB, zones int) *geoMesh {
	t.Helper()
	return startMeshOf(t, zones, regions...)
}

// startMeshOf starts a mesh of regs (the first is home) with zones nodes
// each, and waits for every region's leader and the gossip.
func startMeshOf(t testing.TB, zones int, regs ...string) *geoMesh {
	t.Helper()
	start := time.Now()
	hm := harness.StartMesh(t, "--regions", strings.Join(regs, ","), "--home", regs[0], "--zones", strconv.Itoa(zones))
	m := &geoMesh{Mesh: hm, c: newClient(hm)}
	if len(m.Nodes) != len(regs)*zones {
		t.Fatalf("mesh.json lists %d nodes, want %d: %v", len(m.Nodes), len(regs)*zones, m.Nodes)
	}
	m.settle(t)
	t.Logf("mesh: %s x %d zones up in %v (%s)", strings.Join(regs, ","), zones, time.Since(start).Round(time.Millisecond), m.Dir)
	return m
}

// settle waits until every region has a leader and every node sees all the
// others in gossip: replication needs both, and mesh up waits only for the
// first node to see a leader.
func (m *geoMesh) settle(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := m.WaitLeaders(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitGossip(ctx, 60*time.Second, false); err != nil {
		t.Fatalf("gossip: %v", err)
	}
}

// first returns the first node of region r.
func (m *geoMesh) first(r string) harness.Node { return m.RegionNodes(r)[0] }

// sumMetric adds up one series over nodes. A node that does not answer
// fails the call.
func (m *geoMesh) sumMetric(ctx context.Context, nodes []harness.Node, series string) (float64, error) {
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

// repoMap reads the full map a node serves: the catalog, every
// repository's tags and the digest of every tag.
func (m *geoMesh) repoMap(ctx context.Context, n harness.Node) (ociclient.RepoMap, error) {
	repos, err := m.c.List(ctx, n.URL(), "/v2/_catalog", "repositories")
	if err != nil {
		return nil, err
	}
	out := ociclient.RepoMap{}
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

// converged waits until every node in nodes serves the same RepoMap and
// returns it.
func (m *geoMesh) converged(ctx context.Context, nodes []harness.Node, timeout time.Duration) (ociclient.RepoMap, error) {
	var ref ociclient.RepoMap
	err := ociclient.Poll(ctx, timeout, 200*time.Millisecond, func() (bool, error) {
		maps := make([]ociclient.RepoMap, len(nodes))
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
func (m *geoMesh) readThroughs(ctx context.Context, nodes []harness.Node) (manifests, blobs float64, err error) {
	if manifests, err = m.sumMetric(ctx, nodes, ociclient.Series("georeg_replication_read_through_total", "kind", "manifest")); err != nil {
		return 0, 0, err
	}
	blobs, err = m.sumMetric(ctx, nodes, ociclient.Series("georeg_replication_read_through_total", "kind", "blob"))
	return manifests, blobs, err
}

// imageEverywhere waits until every node of nodes lists repo:tag, holds every
// blob of img (HEAD, which never reads through) and answers img's digest for
// the tag, and returns when each node first did, relative to since.
func (m *geoMesh) imageEverywhere(ctx context.Context, nodes []harness.Node, repo, tag string, img image, since time.Time, timeout time.Duration) (map[string]time.Duration, error) {
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
func (m *geoMesh) imageOn(ctx context.Context, n harness.Node, repo, tag string, img image) (bool, error) {
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
