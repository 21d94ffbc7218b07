package connected

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestMultiZoneSite runs a ReadWrite connected registry at a site of three
// zones (`mesh add-site --zones 3`) and kills the site's Raft leader under
// a loop of local pushes spread over the zones: every push the site
// acknowledged must stay pullable at every zone of the site and reach the
// cloud, bytes checked; a zone that was never leader takes pushes (it
// enforces the mode the leader learnt); the new leader syncs up as the same
// instance (no second-instance refusal), and the cloud shows the site
// Online with nothing pending. Then a nested registry whose parent
// endpoint is a follower zone of the site comes Online (the follower
// passes its relayed calls on to the leader) and holds every push.
func TestMultiZoneSite(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	pusher := m.CreateToken(t, "pusher1", "--scope-map", "_repositories_push")
	must("connected-registry", "create", "--name", "factory1", "--mode", "ReadWrite", "--repository", "samples/*", "--client-tokens", pusher.User)
	must("connected-registry", "create", "--name", "line1", "--parent", "factory1", "--repository", "samples/*", "--client-tokens", pusher.User)
	start := time.Now()
	must("mesh", "add-site", "--name", "factory1", "--zones", "3")
	t.Logf("a 3-zone site up in %v", time.Since(start).Round(time.Millisecond))
	m.Reload()
	zones := m.RegionNodes("factory1")
	if len(zones) != 3 {
		t.Fatalf("the site has %d zones, want 3", len(zones))
	}
	local := ociclient.NewWithCredential(15*time.Second, pusher)
	cloud := m.Client(30 * time.Second)
	westus := m.RegionNodes("westus")[0].URL()
	logs := func() string {
		var s string
		for _, z := range zones {
			s += "--- " + z.String() + "\n" + z.LogTail(1500) + "\n"
		}
		return s
	}
	image := func(tag string, seed uint64) ociclient.Image {
		return ociclient.NewImage("samples/app:"+tag, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 8<<10)))
	}

	// Pushes through every zone once the site activated (it learns its
	// mode from the cloud; a follower knows it through the site's Raft
	// log).
	for i, z := range zones {
		img := image(fmt.Sprintf("first%d", i), uint64(10+i))
		if err := ociclient.Poll(ctx, 60*time.Second, 250*time.Millisecond, func() (bool, error) {
			err := local.PushImage(ctx, z.URL(), "samples/app", fmt.Sprintf("first%d", i), img)
			return err == nil, err
		}); err != nil {
			t.Fatalf("pushing at %s: %v\n%s", z, err, logs())
		}
	}
	leader, err := m.Leader(ctx, "factory1", 30*time.Second)
	if err != nil {
		t.Fatalf("the site's leader: %v\n%s", err, logs())
	}

	// The loop: pushes round-robin over the zones that answer, while
	// the leader is killed and restarted.
	var (
		mu    sync.Mutex
		acked = map[string]ociclient.Image{}
		fails int
		gap   time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tag := fmt.Sprintf("loop%d", i)
			img := image(tag, uint64(100+i))
			z := zones[i%len(zones)]
			if err := local.PushImage(ctx, z.URL(), "samples/app", tag, img); err != nil {
				mu.Lock()
				fails++
				mu.Unlock()
				continue
			}
			mu.Lock()
			acked[tag] = img
			gap = max(gap, time.Since(last))
			mu.Unlock()
			last = time.Now()
		}
	})
	time.Sleep(2 * time.Second)
	killed := time.Now()
	must("chaos", "kill-zone", leader.String())
	time.Sleep(6 * time.Second)
	must("chaos", "restart", leader.String())
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("leader %s killed and restarted %v later: %d pushes acknowledged, %d failed (pushes to the killed zone while it was down), longest gap between acknowledgements %v",
		leader, time.Since(killed).Round(time.Millisecond), len(acked), fails, gap.Round(time.Millisecond))
	if len(acked) < 10 {
		t.Fatalf("only %d pushes acknowledged\n%s", len(acked), logs())
	}

	// Every acknowledged push: at every zone of the site, and in the
	// cloud, bytes checked.
	check := func(where, url string, c *ociclient.Client) {
		t.Helper()
		from := time.Now()
		lost := 0
		for tag, img := range acked {
			err := ociclient.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
				d, _, err := c.GetManifest(ctx, url, "samples/app", tag)
				return err == nil && d == img.Digest, nil
			})
			if err != nil {
				lost++
				continue
			}
			for _, b := range img.Blobs() {
				if data, err := c.GetBlob(ctx, url, "samples/app", b.Digest); err != nil || digest.FromBytes(data) != b.Digest {
					t.Errorf("%s: blob %s of samples/app:%s: %v", where, b.Digest, tag, err)
				}
			}
		}
		t.Logf("%s: %d of %d acknowledged pushes there within %v", where, len(acked)-lost, len(acked), time.Since(from).Round(time.Millisecond))
		if lost > 0 {
			t.Errorf("%s: %d acknowledged pushes lost\n%s", where, lost, logs())
		}
	}
	for _, z := range zones {
		check("site zone "+z.String(), z.URL(), local)
	}
	check("westus", westus, cloud)

	var shown struct {
		State   string `json:"connectionState"`
		Pending int64  `json:"pendingWrites"`
		Error   string `json:"lastError"`
	}
	if err := ociclient.Poll(ctx, 30*time.Second, 250*time.Millisecond, func() (bool, error) {
		shown.State, shown.Pending, shown.Error = "", 0, "" // omitted when zero
		json.Unmarshal([]byte(must("connected-registry", "show", "--name", "factory1", "--json")), &shown)
		return shown.State == "Online" && shown.Pending == 0, nil
	}); err != nil {
		for _, z := range zones {
			if st, err := m.NodeStatus(ctx, z); err == nil && st.Site != nil {
				t.Logf("%s (raft %s): site status %+v, cursors %v", z, st.Raft.State, st.Site.Status, st.Peers)
			}
		}
		t.Errorf("the cloud shows factory1 %+v, want Online with nothing pending\n%s", shown, logs())
	}

	// A nested registry whose connection string names a zone of the
	// site that does not lead it (mesh add-site names the first zone):
	// the follower passes its activation and status reports on to the
	// leading zone, the only one that syncs with the cloud.
	if leader, err = m.Leader(ctx, "factory1", 30*time.Second); err != nil {
		t.Fatalf("the site's leader: %v\n%s", err, logs())
	}
	if leader.String() == zones[0].String() {
		must("chaos", "kill-zone", leader.String())
		if _, err := m.Leader(ctx, "factory1", 30*time.Second); err != nil {
			t.Fatalf("a new leader after killing %s: %v\n%s", leader, err, logs())
		}
		must("chaos", "restart", leader.String())
	}
	if st, err := m.NodeStatus(ctx, zones[0]); err != nil || st.Raft.State != "Follower" {
		t.Fatalf("%s: raft state %q (%v), want Follower\n%s", zones[0], st.Raft.State, err, logs())
	}
	must("mesh", "add-site", "--name", "line1")
	m.Reload()
	if err := ociclient.Poll(ctx, 60*time.Second, 250*time.Millisecond, func() (bool, error) {
		shown.State, shown.Error = "", ""
		json.Unmarshal([]byte(must("connected-registry", "show", "--name", "line1", "--json")), &shown)
		return shown.State == "Online", nil
	}); err != nil {
		t.Fatalf("the cloud shows line1, under the follower zone %s, %+v; want Online\n%s\n--- line1\n%s", zones[0], shown, logs(), m.Sites["line1"].LogTail(1500))
	}
	check("line1, under the follower zone "+zones[0].String(), m.Sites["line1"].URL(), local)
}
