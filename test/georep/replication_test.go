package georep

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestReplication runs the checks that share one mesh of three regions with
// three zones each, one repository per check, one after the other (the
// dedup check reads byte counters other checks must not disturb).
func TestReplication(t *testing.T) {
	m := startMesh(t, 3)
	t.Run("PullableEverywhere", func(t *testing.T) { testPullableEverywhere(t, m) })
	t.Run("ReadThrough", func(t *testing.T) { testReadThrough(t, m) })
	t.Run("LastWriterWins", func(t *testing.T) { testLastWriterWins(t, m) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, m) })
}

// testPullableEverywhere pushes an image to a westus node and waits until
// every node of every region holds it (tag listed, blobs answering HEAD,
// neither of which reads through), then pulls it from each region.
func testPullableEverywhere(t *testing.T, m *geoMesh) {
	ctx := context.Background()
	const repo, tag = "pullable/app", "v1"
	img := ociclient.NewImage("pullable", ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(1, 2*MiB)), ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(2, 256<<10)))
	push := m.RegionNodes("westus")[1]
	if err := m.c.PushImage(ctx, push.URL(), repo, tag, img); err != nil {
		t.Fatalf("push to %s: %v", push, err)
	}
	acked := time.Now()
	var others []harness.Node
	for _, n := range m.Nodes {
		if n.Region != "westus" {
			others = append(others, n)
		}
	}
	rtManifests, rtBlobs, err := m.readThroughs(ctx, others)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := m.imageEverywhere(ctx, m.Nodes, repo, tag, img, acked, 60*time.Second)
	if err != nil {
		t.Fatalf("%s:%s (%s) did not reach every node: %v", repo, tag, img.Digest, err)
	}
	var slowest time.Duration
	for _, d := range ready {
		slowest = max(slowest, d)
	}
	t.Logf("replication: acknowledged -> pullable everywhere in %d ms (%d nodes; image %.1f MiB, pushed to %s)", slowest.Milliseconds(), len(m.Nodes), float64(img.Size())/MiB, push)
	t.Logf("replication: per node: %s", durations(ready))
	for _, r := range regions {
		for _, n := range m.RegionNodes(r) {
			d, err := m.c.PullImage(ctx, n.URL(), repo, tag)
			if err != nil {
				t.Fatalf("pull %s:%s from %s: %v", repo, tag, n, err)
			}
			if d != img.Digest {
				t.Errorf("%s serves %s:%s as %s, want %s", n, repo, tag, d, img.Digest)
			}
		}
	}
	rm, rb, err := m.readThroughs(ctx, others)
	if err != nil {
		t.Fatal(err)
	}
	if rm != rtManifests || rb != rtBlobs {
		t.Errorf("eastus and westeurope read through %v manifests and %v blobs: the image should have arrived by replication", rm-rtManifests, rb-rtBlobs)
	}
}

// testReadThrough pulls an image from westeurope right after westus
// acknowledged it, and a blob from eastus before its manifest: both must
// succeed with no error, whether read-through or replication delivered them.
func testReadThrough(t *testing.T, m *geoMesh) {
	ctx := context.Background()
	push := m.first("westus")
	cases := []struct {
		name, repo string
		pull       harness.Node
		blobFirst  bool
	}{
		{"manifest first", "readthrough/manifest", m.RegionNodes("westeurope")[2], false},
		{"blob first", "readthrough/blob", m.RegionNodes("eastus")[1], true},
	}
	imgs := make([]image, len(cases))
	for i, tc := range cases {
		img := ociclient.NewImage("readthrough-"+tc.repo, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(100+i), 8*MiB)))
		imgs[i] = img
		beforeM, beforeB, err := m.readThroughs(ctx, m.RegionNodes(tc.pull.Region))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.c.PushImage(ctx, push.URL(), tc.repo, "v1", img); err != nil {
			t.Fatalf("push to %s: %v", push, err)
		}
		acked := time.Now()
		if tc.blobFirst {
			if _, err := m.c.GetBlob(ctx, tc.pull.URL(), tc.repo, img.Layers[0].Digest); err != nil {
				t.Errorf("%s: GET the layer from %s right after the push: %v", tc.name, tc.pull, err)
			}
		}
		d, err := m.c.PullImage(ctx, tc.pull.URL(), tc.repo, "v1")
		took := time.Since(acked)
		if err != nil {
			t.Errorf("%s: pull %s:v1 from %s right after the push: %v", tc.name, tc.repo, tc.pull, err)
			continue
		}
		if d != img.Digest {
			t.Errorf("%s: %s serves %s:v1 as %s, want %s", tc.name, tc.pull, tc.repo, d, img.Digest)
		}
		afterM, afterB, err := m.readThroughs(ctx, m.RegionNodes(tc.pull.Region))
		if err != nil {
			t.Fatal(err)
		}
		how := "replication had delivered it first (no read-through)"
		if afterM > beforeM || afterB > beforeB {
			how = fmt.Sprintf("read-through (%v manifest, %v blob fetches in %s)", afterM-beforeM, afterB-beforeB, tc.pull.Region)
		}
		t.Logf("read-through: %s: pulled %s:v1 (%.0f MiB) from %s %d ms after westus acknowledged it, via %s", tc.name, tc.repo, float64(img.Size())/MiB, tc.pull, took.Milliseconds(), how)
	}
	// Read-through and replication of the same image must agree: every
	// node ends with the image.
	for i, tc := range cases {
		if _, err := m.imageEverywhere(ctx, m.Nodes, tc.repo, "v1", imgs[i], time.Now(), 60*time.Second); err != nil {
			t.Errorf("%s: %v", tc.repo, err)
		}
	}
}

// testLastWriterWins pushes one tag with different content in westus and
// eastus at the same moment, a few times: every node must end with the same
// digest for each tag, and both manifests must stay pullable by digest in
// every region.
func testLastWriterWins(t *testing.T, m *geoMesh) {
	ctx := context.Background()
	const repo = "lww/app"
	west, east := m.first("westus"), m.first("eastus")
	conflictsBefore, err := m.sumMetric(ctx, m.Nodes, "georeg_replication_conflicts_total")
	if err != nil {
		t.Fatal(err)
	}
	type race struct {
		tag        string
		west, east image
	}
	var races []race
	for i := range 3 {
		tag := fmt.Sprintf("race%d", i)
		r := race{tag: tag,
			west: ociclient.NewImage("lww-westus-"+tag, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(200+i), 64<<10))),
			east: ociclient.NewImage("lww-eastus-"+tag, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(300+i), 64<<10))),
		}
		// Blobs first, so that the two manifest PUTs leave at the same moment.
		for _, b := range r.west.Blobs() {
			if err := m.c.PushBlob(ctx, west.URL(), repo, b); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range r.east.Blobs() {
			if err := m.c.PushBlob(ctx, east.URL(), repo, b); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 2)
		for j, p := range []struct {
			n   harness.Node
			img image
		}{{west, r.west}, {east, r.east}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[j] = m.c.PutManifest(ctx, p.n.URL(), repo, tag, p.img.Manifest)
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("concurrent push of %s:%s: %v", repo, tag, err)
			}
		}
		races = append(races, r)
	}
	pushed := time.Now()
	for _, r := range races {
		var winner digest.Digest
		err := ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
			seen := map[digest.Digest][]string{}
			for _, n := range m.Nodes {
				d, _, err := m.c.GetManifest(ctx, n.URL(), repo, r.tag)
				if err != nil {
					return false, fmt.Errorf("%s: %v", n, err)
				}
				seen[d] = append(seen[d], n.String())
			}
			if len(seen) != 1 {
				return false, fmt.Errorf("nodes disagree: %v", seen)
			}
			for d := range seen {
				winner = d
			}
			return true, nil
		})
		if err != nil {
			t.Errorf("%s:%s did not converge: %v", repo, r.tag, err)
			continue
		}
		side := "westus"
		switch winner {
		case r.east.Digest:
			side = "eastus"
		case r.west.Digest:
		default:
			t.Errorf("%s:%s converged on %s, which neither region pushed", repo, r.tag, winner)
		}
		t.Logf("last-writer-wins: %s:%s converged on %s's %.19s on all %d nodes within %d ms", repo, r.tag, side, winner, len(m.Nodes), time.Since(pushed).Milliseconds())
		for _, img := range []image{r.west, r.east} {
			for _, n := range m.Nodes {
				d, err := m.c.PullImage(ctx, n.URL(), repo, img.Digest.String())
				if err != nil {
					t.Errorf("pull %s@%s from %s: %v", repo, img.Digest, n, err)
				} else if d != img.Digest {
					t.Errorf("%s serves %s@%s as %s", n, repo, img.Digest, d)
				}
			}
		}
	}
	conflicts, err := m.sumMetric(ctx, m.Nodes, "georeg_replication_conflicts_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last-writer-wins: georeg_replication_conflicts_total rose by %v over the mesh for %d concurrent tag writes", conflicts-conflictsBefore, len(races))
}

// testDedup pushes ten images that share a 50 MiB base layer, each with its
// own 1 MiB layer, to westus in ten repositories (the base mounted from the
// first), and reads from /metrics how many blob bytes crossed into each peer
// region: the base must cross once.
func testDedup(t *testing.T, m *geoMesh) {
	ctx := context.Background()
	if err := m.quiet(ctx, 60*time.Second); err != nil {
		t.Fatalf("replication of earlier checks still running: %v", err)
	}
	sentBefore, recvBefore, err := m.transferred(ctx)
	if err != nil {
		t.Fatal(err)
	}
	push := m.first("westus")
	base := ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(500, 50*MiB))
	var imgs []image
	var total int64 = int64(len(base.Data))
	start := time.Now()
	for i := range 10 {
		repo := fmt.Sprintf("dedup/img%d", i)
		img := ociclient.NewImage(repo, base, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(600+i), MiB)))
		imgs = append(imgs, img)
		if i == 0 {
			if err := m.c.PushBlob(ctx, push.URL(), repo, base); err != nil {
				t.Fatal(err)
			}
		} else if err := m.c.MountBlob(ctx, push.URL(), repo, "dedup/img0", base.Digest); err != nil {
			t.Fatal(err)
		}
		for _, b := range []blob{img.Config, img.Layers[1]} {
			total += int64(len(b.Data))
			if err := m.c.PushBlob(ctx, push.URL(), repo, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.c.PutManifest(ctx, push.URL(), repo, "v1", img.Manifest); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("dedup: pushed 10 images (%.2f MiB of distinct blobs) to %s in %v", float64(total)/MiB, push, time.Since(start).Round(time.Millisecond))
	for i, img := range imgs {
		if _, err := m.imageEverywhere(ctx, m.Nodes, fmt.Sprintf("dedup/img%d", i), "v1", img, start, 3*time.Minute); err != nil {
			t.Fatalf("dedup/img%d: %v", i, err)
		}
	}
	t.Logf("dedup: all 10 images on every node %v after the first push started", time.Since(start).Round(time.Millisecond))
	if err := m.quiet(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	sent, recv, err := m.transferred(ctx)
	if err != nil {
		t.Fatal(err)
	}
	limit := 1.05 * 60 * MiB
	for _, peer := range []string{"eastus", "westeurope"} {
		fromWest := sent[[2]string{"westus", peer}] - sentBefore[[2]string{"westus", peer}]
		var into float64
		for _, from := range regions {
			into += sent[[2]string{from, peer}] - sentBefore[[2]string{from, peer}]
		}
		got := recv[peer] - recvBefore[peer]
		t.Logf("dedup: westus sent %.2f MiB to %s; all regions sent %.2f MiB into it; it received %.2f MiB (limit %.2f MiB, distinct blobs %.2f MiB)",
			fromWest/MiB, peer, into/MiB, got/MiB, limit/MiB, float64(total)/MiB)
		if into > limit {
			t.Errorf("%.2f MiB of blob bytes crossed into %s for 10 images sharing one base layer; want at most %.2f MiB; per node: %s", into/MiB, peer, limit/MiB, m.perNode(ctx))
		}
		if into < float64(total) && got < float64(total) {
			t.Errorf("%s holds all 10 images but only %.2f MiB crossed into it (%.2f MiB received): the byte counters miss transfers", peer, into/MiB, got/MiB)
		}
	}
	deduped, err := m.sumMetric(ctx, m.Nodes, "georeg_replication_bytes_deduplicated_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dedup: georeg_replication_bytes_deduplicated_total over the mesh: %.2f MiB", deduped/MiB)
}

// perNode formats each node's blob byte counters, to show which node sent
// or fetched what.
func (m *geoMesh) perNode(ctx context.Context) string {
	var b strings.Builder
	for _, n := range m.Nodes {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: %v", n, err)
			continue
		}
		role := "?"
		if st, err := m.NodeStatus(ctx, n); err == nil {
			role = strings.ToLower(st.Raft.State)
		}
		fmt.Fprintf(&b, "\n  %s (%s): anti-entropy repairs %v; read-through %v manifests, %v blobs;", n, role,
			ms["georeg_replication_anti_entropy_repairs_total"],
			ms[ociclient.Series("georeg_replication_read_through_total", "kind", "manifest")],
			ms[ociclient.Series("georeg_replication_read_through_total", "kind", "blob")])
		for _, peer := range regions {
			if v := ms[ociclient.Series("georeg_replication_bytes_sent_total", "peer", peer)]; v > 0 {
				fmt.Fprintf(&b, " sent to %s %.2f MiB;", peer, v/MiB)
			}
			if v := ms[ociclient.Series("georeg_replication_bytes_received_total", "peer", peer)]; v > 0 {
				fmt.Fprintf(&b, " received from %s %.2f MiB;", peer, v/MiB)
			}
		}
	}
	return b.String()
}

// quiet waits until every node that reports replication to a peer shows no
// backlog for it.
func (m *geoMesh) quiet(ctx context.Context, timeout time.Duration) error {
	return ociclient.Poll(ctx, timeout, 200*time.Millisecond, func() (bool, error) {
		for _, r := range regions {
			l, err := m.Leader(ctx, r, 10*time.Second)
			if err != nil {
				return false, err
			}
			st, err := m.NodeStatus(ctx, l)
			if err != nil {
				return false, err
			}
			for _, p := range st.Peers {
				if p.Backlog > 0 {
					return false, fmt.Errorf("%s: backlog %d to %s (%s)", l, p.Backlog, p.Region, p.LastError)
				}
			}
		}
		return true, nil
	})
}

// transferred reads the blob byte counters of every node: bytes sent from
// region to peer ({from, to}) and bytes each region received.
func (m *geoMesh) transferred(ctx context.Context) (map[[2]string]float64, map[string]float64, error) {
	sent := map[[2]string]float64{}
	recv := map[string]float64{}
	for _, n := range m.Nodes {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", n, err)
		}
		for _, peer := range regions {
			sent[[2]string{n.Region, peer}] += ms[ociclient.Series("georeg_replication_bytes_sent_total", "peer", peer)]
			recv[n.Region] += ms[ociclient.Series("georeg_replication_bytes_received_total", "peer", peer)]
		}
	}
	return sent, recv, nil
}
