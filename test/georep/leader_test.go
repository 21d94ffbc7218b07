package georep

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestLeaderKillMidReplication kills a Raft leader while it is moving a
// 64 MiB layer between regions, once on each side of the transfer:
//
//   - receiver: the eastus leader is the node fetching the layer from
//     westus; it is killed and restarted;
//   - sender: the westus leader is the node serving the layer to eastus; it
//     is killed and restarted.
//
// Nothing may be lost (the image reaches every node with its digest), and
// no byte that already crossed crosses again beyond the piece in flight:
// the bytes that reach eastus stay under 1.1 x the image either way. When
// the sender dies, the receiver resumes from its partial copy. When the
// receiving leader dies, the new leader resumes from the segments its
// predecessor made durable on a majority of eastus's zones and recorded in
// eastus's Raft log. westeurope, which fetches the same layer from westus
// meanwhile, takes it once: under 1.05 x.
func TestLeaderKillMidReplication(t *testing.T) {
	m := startMesh(t, 3)
	ctx := context.Background()
	// A warm-up transfer shows which node of westus serves eastus and which
	// node of eastus fetches: the leader to kill must be the node doing the
	// work, or the kill would not cut the transfer.
	warm := ociclient.NewImage("warmup", ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(2000, 4*MiB)))
	beforeSent, beforeRecv, err := m.perNodeBytes(ctx, "westus", "eastus")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.c.PushImage(ctx, m.first("westus").URL(), "leader/warmup", "v1", warm); err != nil {
		t.Fatal(err)
	}
	if _, err := m.imageEverywhere(ctx, m.Nodes, "leader/warmup", "v1", warm, time.Now(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	afterSent, afterRecv, err := m.perNodeBytes(ctx, "westus", "eastus")
	if err != nil {
		t.Fatal(err)
	}
	server, fetcher := busiest(m.RegionNodes("westus"), beforeSent, afterSent), busiest(m.RegionNodes("eastus"), beforeRecv, afterRecv)
	t.Logf("leader kill: %s serves eastus, %s fetches from westus", server, fetcher)

	for i, tc := range []struct {
		name   string
		victim harness.Node
		limit  float64 // bytes into eastus over the image size
	}{
		{"receiver", fetcher, 1.1},
		{"sender", server, 1.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := m.makeLeader(t, ctx, tc.victim); err != nil {
				t.Fatalf("making %s the leader of %s: %v", tc.victim, tc.victim.Region, err)
			}
			repo := "leader/" + tc.name
			img := ociclient.NewImage(repo, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(2100+i), 64*MiB)))
			layer := img.Layers[0]
			for _, b := range img.Blobs() {
				if err := m.c.PushBlob(ctx, m.first("westus").URL(), repo, b); err != nil {
					t.Fatal(err)
				}
			}
			sent0, recv0, err := m.regionBytes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			east0, europe0 := m.receivedBy(ctx, "eastus"), m.receivedBy(ctx, "westeurope")
			if east0 == nil || europe0 == nil {
				t.Fatal("reading the received bytes of eastus and westeurope failed")
			}
			if err := m.c.PutManifest(ctx, m.first("westus").URL(), repo, "v1", img.Manifest); err != nil {
				t.Fatal(err)
			}
			acked := time.Now()
			// Kill the victim once a quarter of the layer has crossed.
			var moved float64
			metric := ociclient.Series("georeg_replication_bytes_received_total", "peer", "westus")
			base := recv0[tc.victim.String()]
			if tc.victim.Region == "westus" {
				metric = ociclient.Series("georeg_replication_bytes_sent_total", "peer", "eastus")
				base = sent0[tc.victim.String()]
			}
			err = ociclient.Poll(ctx, 2*time.Minute, 10*time.Millisecond, func() (bool, error) {
				ms, err := m.c.Metrics(ctx, tc.victim.URL())
				if err != nil {
					return false, err
				}
				moved = ms[metric] - base
				return moved >= float64(len(layer.Data))/4, fmt.Errorf("%s moved %.1f MiB", tc.victim, moved/MiB)
			})
			if err != nil {
				t.Fatalf("waiting for the transfer through %s: %v", tc.victim, err)
			}
			if moved >= float64(len(layer.Data)) {
				t.Fatalf("the layer crossed through %s completely before the kill could land", tc.victim)
			}
			m.Chaos(t, ctx, "kill-zone", tc.victim.String())
			killed := time.Since(acked)
			partial := partialBytes(tc.victim)
			t.Logf("leader kill: killed %s (leader of %s) %d ms after the push was acknowledged, %.1f MiB of the %.0f MiB layer through it (its partial file: %.1f MiB)",
				tc.victim, tc.victim.Region, killed.Milliseconds(), moved/MiB, float64(len(layer.Data))/MiB, float64(partial)/MiB)
			m.Restart(t, ctx, tc.victim.String())

			ready, err := m.imageEverywhere(ctx, m.Nodes, repo, "v1", img, acked, 3*time.Minute)
			if err != nil {
				t.Fatalf("after killing %s: %v", tc.victim, err)
			}
			var slowest time.Duration
			for _, d := range ready {
				slowest = max(slowest, d)
			}
			if err := m.quiet(ctx, 60*time.Second); err != nil {
				t.Fatal(err)
			}
			sent1, _, err := m.regionBytes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			east1, europe1 := m.receivedBy(ctx, "eastus"), m.receivedBy(ctx, "westeurope")
			if east1 == nil || europe1 == nil {
				t.Fatal("reading the received bytes of eastus and westeurope failed")
			}
			// A killed node's counters start again from zero: what it had
			// fetched before the kill is what its partial file held (it
			// started the transfer, so its file starts at the layer's first
			// byte); what it had sent is the last reading (a slight
			// undercount).
			var intoEast, intoEurope, fromWest float64
			for _, n := range m.RegionNodes("eastus") {
				d := east1[n.String()] - east0[n.String()]
				if n == tc.victim {
					d = east1[n.String()] + float64(partial)
				}
				intoEast += d
			}
			for _, n := range m.RegionNodes("westeurope") {
				intoEurope += europe1[n.String()] - europe0[n.String()]
			}
			for _, n := range m.RegionNodes("westus") {
				d := sent1[n.String()] - sent0[n.String()]
				if n == tc.victim {
					d = sent1[n.String()] + moved
				}
				fromWest += d
			}
			size := float64(img.Size())
			t.Logf("leader kill: %s: image (%.1f MiB) on every node %d ms after the push; eastus received %.1f MiB (%.3fx), westus sent %.1f MiB to eastus (%.3fx), westeurope received %.1f MiB (%.3fx)",
				tc.name, size/MiB, slowest.Milliseconds(), intoEast/MiB, intoEast/size, fromWest/MiB, fromWest/size, intoEurope/MiB, intoEurope/size)
			if intoEast > tc.limit*size {
				t.Errorf("eastus received %.1f MiB for a %.1f MiB image cut once (limit %.2fx = %.1f MiB); per node: %s",
					intoEast/MiB, size/MiB, tc.limit, tc.limit*size/MiB, m.perNode(ctx))
			}
			if limit := 1.05; intoEurope > limit*size {
				t.Errorf("westeurope received %.1f MiB for a %.1f MiB image (limit %.2fx = %.1f MiB); per node: %s",
					intoEurope/MiB, size/MiB, limit, limit*size/MiB, m.perNode(ctx))
			}
			for _, n := range m.RegionNodes("eastus") {
				for _, l := range logLines(n, "blob transfer", "blob fetched", layer.Digest.String()) {
					t.Logf("leader kill: %s: %s", n, l)
				}
			}
			var left []string
			for _, n := range m.Nodes {
				if b := partialBytes(n); b > 0 {
					left = append(left, fmt.Sprintf("%s %.1f MiB", n, float64(b)/MiB))
				}
			}
			if len(left) > 0 {
				t.Logf("leader kill: partial transfers left on disk after convergence: %s", strings.Join(left, ", "))
			}
			if d, err := m.c.PullImage(ctx, m.first("eastus").URL(), repo, "v1"); err != nil || d != img.Digest {
				t.Errorf("pull %s:v1 from eastus: %s, %v", repo, d, err)
			}
		})
	}
}

// perNodeBytes returns, per node, the blob bytes the nodes of from sent to
// region to and the bytes the nodes of to received from from.
func (m *geoMesh) perNodeBytes(ctx context.Context, from, to string) (sent, recv map[string]float64, err error) {
	sent, recv = map[string]float64{}, map[string]float64{}
	for _, n := range m.RegionNodes(from) {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			return nil, nil, err
		}
		sent[n.String()] = ms[ociclient.Series("georeg_replication_bytes_sent_total", "peer", to)]
	}
	for _, n := range m.RegionNodes(to) {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			return nil, nil, err
		}
		recv[n.String()] = ms[ociclient.Series("georeg_replication_bytes_received_total", "peer", from)]
	}
	return sent, recv, nil
}

// receivedBy returns, per node of region, the blob bytes it received from
// every peer region; nil when a node does not answer.
func (m *geoMesh) receivedBy(ctx context.Context, region string) map[string]float64 {
	out := map[string]float64{}
	for _, n := range m.RegionNodes(region) {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			return nil
		}
		for _, peer := range regions {
			out[n.String()] += ms[ociclient.Series("georeg_replication_bytes_received_total", "peer", peer)]
		}
	}
	return out
}

// regionBytes is perNodeBytes from westus to eastus.
func (m *geoMesh) regionBytes(ctx context.Context) (sent, recv map[string]float64, err error) {
	return m.perNodeBytes(ctx, "westus", "eastus")
}

// busiest returns the node of nodes whose counter grew most.
func busiest(nodes []harness.Node, before, after map[string]float64) harness.Node {
	best, most := nodes[0], -1.0
	for _, n := range nodes {
		if d := after[n.String()] - before[n.String()]; d > most {
			best, most = n, d
		}
	}
	return best
}

// partialBytes is the size of the partial blob transfers a node keeps on
// disk to resume them.
func partialBytes(n harness.Node) int64 {
	files, _ := filepath.Glob(filepath.Join(n.Data, "replication", "partial", "*"))
	var sum int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			sum += st.Size()
		}
	}
	return sum
}

// logLines returns the lines of n's log that mention want and any of
// kinds, shortened to their message and fields.
func logLines(n harness.Node, kind1, kind2, want string) []string {
	b, err := os.ReadFile(n.Log)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, want) && (strings.Contains(l, kind1) || strings.Contains(l, kind2)) {
			if i := strings.Index(l, `"msg"`); i >= 0 {
				l = l[i:]
			}
			out = append(out, l)
		}
	}
	return out
}

// makeLeader kills and restarts the leader of want's region until want
// leads it. Which survivor wins each election is up to Raft's randomised
// timeouts, and runs of eight losses in a row have been seen.
func (m *geoMesh) makeLeader(t testing.TB, ctx context.Context, want harness.Node) error {
	var tried []string
	for attempt := 0; ; attempt++ {
		l, err := m.Leader(ctx, want.Region, 30*time.Second)
		if err != nil {
			return err
		}
		if l == want {
			return nil
		}
		if attempt == 20 {
			break
		}
		tried = append(tried, l.String())
		m.Chaos(t, ctx, "kill-zone", l.String())
		err = ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
			nl, err := m.Leader(ctx, want.Region, 5*time.Second)
			return err == nil && nl != l, err
		})
		m.Restart(t, ctx, l.String())
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("still not the leader after moving leadership away from %s", strings.Join(tried, ", "))
}
