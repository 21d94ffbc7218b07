package endpoint

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

var regions = []string{"westus", "eastus", "westeurope"}

// mesh is a running mesh with its traffic manager.
type mesh struct {
	*harness.Mesh
	t *testing.T
	c *ociclient.Client
	// nodes maps a region to its zone nodes' base URLs, zone 1 first.
	nodes map[string][]string
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	start := time.Now()
	hm := harness.StartMesh(t)
	m := &mesh{Mesh: hm, t: t, c: hm.Client(time.Minute), nodes: map[string][]string{}}
	for _, n := range m.Nodes {
		m.nodes[n.Region] = append(m.nodes[n.Region], n.URL())
	}
	if len(m.Locations) != 3 || len(m.nodes) != 3 || m.Locations["westus"] != "http://"+m.Endpoint {
		t.Fatalf("mesh up with no flags: want 3 locations and 3 regions with westus on the endpoint, got %v and %v", m.Locations, m.Nodes)
	}
	t.Logf("mesh: 3 regions x 3 zones and the traffic manager up in %v (%s)", time.Since(start).Round(time.Millisecond), m.Dir)
	return m
}

// servedBy asks base for GET /v2/ and returns the region that answered.
func (m *mesh) servedBy(ctx context.Context, base string) (string, error) {
	resp, _, err := m.c.Do(ctx, http.MethodGet, base, "/v2/", nil, nil, http.StatusOK)
	if err != nil {
		return "", err
	}
	return resp.Header.Get("Georeg-Region"), nil
}

// waitServedBy polls base until want serves it and returns how long that
// took.
func (m *mesh) waitServedBy(ctx context.Context, base, want string, timeout time.Duration) time.Duration {
	m.t.Helper()
	start := time.Now()
	var last string
	err := ociclient.Poll(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		got, err := m.servedBy(ctx, base)
		last = got
		return err == nil && got == want, err
	})
	if err != nil {
		m.t.Fatalf("%s is served by %q, want %s after %v: %v\n%s", base, last, want, timeout, err, m.routing(ctx))
	}
	return time.Since(start)
}

func (m *mesh) georeg(ctx context.Context, args ...string) string {
	m.t.Helper()
	args = append(args, "--dir", m.Dir)
	out, err := m.Georeg(ctx, args...)
	if err != nil {
		m.t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// routing returns `georeg mesh status` for failure messages.
func (m *mesh) routing(ctx context.Context) string {
	out, _ := m.Georeg(ctx, "mesh", "status", "--dir", m.Dir)
	return string(out)
}

// image returns a small image unique to name.
func image(name string, seed uint64) ociclient.Image {
	return ociclient.NewImage(name,
		ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 64<<10)),
		ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed+1<<32, 8<<10)))
}

// waitReplicated waits until every region holds img's manifest (checked
// directly at a node, with HEAD, which never reads through).
func (m *mesh) waitReplicated(ctx context.Context, repo string, img ociclient.Image) {
	m.t.Helper()
	err := ociclient.Poll(ctx, 60*time.Second, 50*time.Millisecond, func() (bool, error) {
		for _, r := range regions {
			for _, b := range img.Blobs() {
				ok, err := m.c.HasBlob(ctx, m.nodes[r][0], repo, b.Digest)
				if err != nil || !ok {
					return false, fmt.Errorf("%s lacks %s: %v", r, b.Digest, err)
				}
			}
			if _, _, err := m.c.Do(ctx, http.MethodHead, m.nodes[r][0], "/v2/"+repo+"/manifests/"+img.Digest.String(), nil, nil, http.StatusOK); err != nil {
				return false, fmt.Errorf("%s lacks the manifest: %w", r, err)
			}
		}
		return true, nil
	})
	harness.Must(m.t, err)
}

func TestEndpoint(t *testing.T) {
	m := startMesh(t)
	ctx := context.Background()
	t.Run("routing by location", func(t *testing.T) { m.t = t; testRouting(ctx, m) })
	t.Run("latency moves a location", func(t *testing.T) { m.t = t; testLatency(ctx, m) })
	t.Run("push split across regions", func(t *testing.T) { m.t = t; testSplitPush(ctx, m) })
	t.Run("endpoint toggle", func(t *testing.T) { m.t = t; testToggle(ctx, m) })
	t.Run("region failover", func(t *testing.T) { m.t = t; testFailover(ctx, m) })
	t.Run("zone killed under pushes", func(t *testing.T) { m.t = t; testZoneKill(ctx, m) })
	t.Run("status and metrics", func(t *testing.T) { m.t = t; testObservability(ctx, m) })
	t.Run("data endpoints", func(t *testing.T) { m.t = t; testDataEndpoints(ctx, m) })
	t.Run("redirected download failover", func(t *testing.T) { m.t = t; testRedirectedFailover(ctx, m) })
	t.Run("rolling restart under pulls", func(t *testing.T) { m.t = t; testRollingRestart(ctx, m) })
}

func testRouting(ctx context.Context, m *mesh) {
	for _, loc := range regions {
		took := m.waitServedBy(ctx, m.Locations[loc], loc, 15*time.Second)
		m.t.Logf("clients in %s (%s) are served by %s (settled after %v)", loc, m.Locations[loc], loc, took.Round(time.Millisecond))
	}
}

func testLatency(ctx context.Context, m *mesh) {
	// westus clients to westus: 400 ms; eastus is 70 ms away, westeurope 140.
	out := m.georeg(ctx, "chaos", "latency", "westus", "westus", "400ms")
	m.t.Logf("georeg chaos latency westus westus 400ms: %s", out)
	took := m.waitServedBy(ctx, m.Locations["westus"], "eastus", 15*time.Second)
	m.t.Logf("westus clients moved to eastus %v after their path to westus became slow", took.Round(time.Millisecond))
	out = m.georeg(ctx, "chaos", "latency", "westus", "westus", "1ms")
	m.t.Logf("georeg chaos latency westus westus 1ms: %s", out)
	took = m.waitServedBy(ctx, m.Locations["westus"], "westus", 15*time.Second)
	m.t.Logf("westus clients moved back to westus %v after the latency went down", took.Round(time.Millisecond))
}

func testSplitPush(ctx context.Context, m *mesh) {
	img := image("split", 100)
	repo := "endpoint/split"
	// Blobs through westus clients' listener, chunked (POST, PATCH, PUT:
	// the session is pinned to its node), the manifest through
	// westeurope's.
	for _, b := range img.Blobs() {
		harness.Must(m.t, m.c.UploadChunked(ctx, m.Locations["westus"], repo, b.Data, 3))
	}
	resp, _, err := m.c.Do(ctx, http.MethodPut, m.Locations["westeurope"], "/v2/"+repo+"/manifests/v1",
		http.Header{"Content-Type": {ociclient.MediaManifest}}, img.Manifest, http.StatusCreated)
	if err != nil {
		m.t.Fatalf("manifest through westeurope after blobs through westus: %v", err)
	}
	m.t.Logf("blobs through westus, manifest through westeurope: %s %s (served by %s)", resp.Status, resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Georeg-Region"))
	for _, loc := range regions {
		d, err := m.c.PullImage(ctx, m.Locations[loc], repo, "v1")
		if err != nil || d != img.Digest {
			m.t.Fatalf("pull through %s: %s, %v", loc, d, err)
		}
	}
}

func testToggle(ctx context.Context, m *mesh) {
	out := m.georeg(ctx, "replication", "update", "--region", "westus", "--region-endpoint-enabled=false")
	m.t.Logf("replication update --region westus --region-endpoint-enabled=false:\n%s", out)
	start := time.Now()
	var got string
	err := ociclient.Poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		r, err := m.servedBy(ctx, m.Locations["westus"])
		got = r
		return err == nil && r != "westus", err
	})
	took := time.Since(start)
	if err != nil {
		m.t.Fatalf("westus still serves clients 10 s after its endpoint was disabled: %v\n%s", err, m.routing(ctx))
	}
	m.t.Logf("endpoint disabled: westus clients served by %s after %v", got, took.Round(time.Millisecond))
	if took > 2*time.Second {
		m.t.Errorf("client traffic left westus %v after its endpoint was disabled, want within 2 s", took)
	}
	// No client request reaches westus now, from any location.
	for i := 0; i < 20; i++ {
		for _, loc := range regions {
			if r, err := m.servedBy(ctx, m.Locations[loc]); err != nil || r == "westus" {
				m.t.Fatalf("clients in %s served by %q with westus disabled: %v", loc, r, err)
			}
		}
	}
	// westus keeps receiving replication while disabled.
	img := image("while-disabled", 200)
	repo := "endpoint/toggle"
	harness.Must(m.t, m.c.PushImage(ctx, m.Locations["eastus"], repo, "v1", img))
	m.waitReplicated(ctx, repo, img)
	m.t.Logf("an image pushed through eastus reached westus's node %s directly while westus was disabled", m.nodes["westus"][0])

	m.georeg(ctx, "replication", "update", "--region", "westus", "--region-endpoint-enabled=true")
	took = m.waitServedBy(ctx, m.Locations["westus"], "westus", 10*time.Second)
	m.t.Logf("endpoint enabled again: westus clients back on westus after %v", took.Round(time.Millisecond))
}

// pullLoop pulls imgs through base from several goroutines until stop is
// closed, recording every failure and which region served each pull.
type pullLoop struct {
	mu       sync.Mutex
	failures []string
	pulls    atomic.Int64
	// firstOther is when a region other than home first served a pull
	// that started after since.
	served []servedAt
}

type servedAt struct {
	at     time.Time
	region string
}

func (p *pullLoop) run(ctx context.Context, m *mesh, base, repo string, imgs []ociclient.Image, workers int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				img := imgs[i%len(imgs)]
				start := time.Now()
				resp, body, err := m.c.Do(ctx, http.MethodGet, base, "/v2/"+repo+"/manifests/"+img.Digest.String(),
					http.Header{"Accept": {ociclient.MediaManifest}}, nil, http.StatusOK)
				if err == nil && digest.FromBytes(body) != img.Digest {
					err = fmt.Errorf("%w: manifest", ociclient.ErrWrongBytes)
				}
				for _, b := range img.Blobs() {
					if err != nil {
						break
					}
					_, err = m.c.GetBlob(ctx, base, repo, b.Digest)
				}
				p.pulls.Add(1)
				p.mu.Lock()
				if err != nil {
					p.failures = append(p.failures, fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
				} else {
					p.served = append(p.served, servedAt{at: start, region: resp.Header.Get("Georeg-Region")})
				}
				p.mu.Unlock()
			}
		})
	}
	return &wg
}

// firstServedBy returns the start of the first pull after t served by a
// region other than (or equal to, when same) region.
func (p *pullLoop) firstAfter(t time.Time, match func(string) bool) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.served {
		if s.at.After(t) && match(s.region) {
			return s.at, true
		}
	}
	return time.Time{}, false
}

func testFailover(ctx context.Context, m *mesh) {
	repo := "endpoint/failover"
	var imgs []ociclient.Image
	for i := range 6 {
		img := image(fmt.Sprintf("failover-%d", i), uint64(300+i))
		harness.Must(m.t, m.c.PushImage(ctx, m.Locations["westus"], repo, fmt.Sprintf("v%d", i), img))
		imgs = append(imgs, img)
	}
	for _, img := range imgs {
		m.waitReplicated(ctx, repo, img)
	}
	m.waitServedBy(ctx, m.Locations["westus"], "westus", 10*time.Second)

	var p pullLoop
	stop := make(chan struct{})
	wg := p.run(ctx, m, m.Locations["westus"], repo, imgs, 4, stop)
	time.Sleep(time.Second)
	killStart := time.Now()
	out := m.georeg(ctx, "chaos", "kill-region", "westus")
	killed := time.Now()
	m.t.Logf("georeg chaos kill-region westus (%v):\n%s", killed.Sub(killStart).Round(time.Millisecond), out)
	var other time.Time
	err := ociclient.Poll(ctx, 15*time.Second, 20*time.Millisecond, func() (bool, error) {
		at, ok := p.firstAfter(killed, func(r string) bool { return r != "westus" && r != "" })
		other = at
		return ok, nil
	})
	if err != nil {
		close(stop)
		wg.Wait()
		m.t.Fatalf("no pull served by another region within 15 s of killing westus\n%s", m.routing(ctx))
	}
	m.t.Logf("failover: pulls served by another region %v after westus was killed", other.Sub(killed).Round(time.Millisecond))
	if d := other.Sub(killed); d > 2*time.Second {
		m.t.Errorf("failover took %v, want at most 2 s", d)
	}
	time.Sleep(2 * time.Second)
	out = m.georeg(ctx, "chaos", "restart", "westus")
	restarted := time.Now()
	m.t.Logf("georeg chaos restart westus:\n%s", out)
	err = ociclient.Poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, ok := p.firstAfter(restarted, func(r string) bool { return r == "westus" })
		return ok, nil
	})
	close(stop)
	wg.Wait()
	if err != nil {
		m.t.Fatalf("pulls did not fail back to westus within 30 s of its restart\n%s", m.routing(ctx))
	}
	back, _ := p.firstAfter(restarted, func(r string) bool { return r == "westus" })
	m.t.Logf("failback: pulls served by westus again %v after `chaos restart` returned", back.Sub(restarted).Round(time.Millisecond))
	m.t.Logf("%d pulls through the endpoint during failover and failback, %d failed", p.pulls.Load(), len(p.failures))
	if len(p.failures) > 0 {
		m.t.Errorf("client-visible failed pulls during failover: %d, first: %s", len(p.failures), strings.Join(p.failures[:min(5, len(p.failures))], "\n"))
	}
}

func testZoneKill(ctx context.Context, m *mesh) {
	m.waitServedBy(ctx, m.Locations["westus"], "westus", 30*time.Second)
	repo := "endpoint/zonekill"
	type acked struct {
		tag string
		img ociclient.Image
	}
	var (
		mu      sync.Mutex
		ok      []acked
		retried int
		failed  []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := seq.Add(1)
				tag := fmt.Sprintf("w%d-%d", w, i)
				img := image(tag, uint64(1000+i*7))
				push := func() error {
					if i%2 == 0 {
						return m.c.PushImage(ctx, m.Locations["westus"], repo, tag, img)
					}
					// Chunked: the upload session is pinned to one node.
					for _, b := range img.Blobs() {
						if err := m.c.UploadChunked(ctx, m.Locations["westus"], repo, b.Data, 2); err != nil {
							return err
						}
					}
					return m.c.PutManifest(ctx, m.Locations["westus"], repo, tag, img.Manifest)
				}
				err := push()
				mu.Lock()
				if err != nil {
					// The client's own standard retry: push the image again.
					retried++
					mu.Unlock()
					err = push()
					mu.Lock()
				}
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", tag, err))
				} else {
					ok = append(ok, acked{tag, img})
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	out := m.georeg(ctx, "chaos", "kill-zone", "westus/2")
	m.t.Logf("georeg chaos kill-zone westus/2 under pushes: %s", out)
	time.Sleep(3 * time.Second)
	out = m.georeg(ctx, "chaos", "restart", "westus/2")
	m.t.Logf("georeg chaos restart westus/2: %s", out)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	m.t.Logf("%d pushes acknowledged through the endpoint, %d needed the client's retry, %d failed after it", len(ok), retried, len(failed))
	if len(failed) > 0 {
		m.t.Errorf("pushes failed even after a retry: %s", strings.Join(failed[:min(5, len(failed))], "\n"))
	}
	// Nothing acknowledged is lost: every image is pullable by digest
	// from every location and directly from every region.
	lost := 0
	for _, a := range ok {
		for _, loc := range regions {
			if d, err := m.c.PullImage(ctx, m.Locations[loc], repo, a.img.Digest.String()); err != nil || d != a.img.Digest {
				lost++
				m.t.Errorf("acknowledged %s not pullable through %s: %v", a.tag, loc, err)
			}
		}
	}
	for _, a := range ok {
		m.waitReplicated(ctx, repo, a.img)
	}
	m.t.Logf("all %d acknowledged images pullable by digest through every location and held by every region (%d lost)", len(ok), lost)
}

func testObservability(ctx context.Context, m *mesh) {
	out := m.georeg(ctx, "mesh", "status")
	m.t.Logf("georeg mesh status:\n%s", out)
	for _, want := range []string{"LOCATION", "SERVED BY", "FAILOVERS", "traffic manager"} {
		if !strings.Contains(out, want) {
			m.t.Errorf("mesh status lacks %q", want)
		}
	}
	mt, err := m.c.Metrics(ctx, m.Locations["westus"])
	harness.Must(m.t, err)
	var failovers float64
	for k, v := range mt {
		if strings.HasPrefix(k, "georeg_trafficmgr_route_changes_total") && strings.Contains(k, `reason="failover"`) {
			failovers += v
		}
	}
	if failovers < 1 {
		m.t.Errorf("traffic manager /metrics count %v failovers after a region kill, want at least 1", failovers)
	}
}

func testRollingRestart(ctx context.Context, m *mesh) {
	repo := "endpoint/rolling"
	var imgs []ociclient.Image
	for i := range 4 {
		img := image(fmt.Sprintf("rolling-%d", i), uint64(5000+i))
		harness.Must(m.t, m.c.PushImage(ctx, m.Locations["westus"], repo, fmt.Sprintf("v%d", i), img))
		imgs = append(imgs, img)
	}
	for _, img := range imgs {
		m.waitReplicated(ctx, repo, img)
	}
	stop := make(chan struct{})
	var loops []*pullLoop
	var wgs []*sync.WaitGroup
	for _, loc := range regions {
		p := &pullLoop{}
		loops = append(loops, p)
		wgs = append(wgs, p.run(ctx, m, m.Locations[loc], repo, imgs, 2, stop))
	}
	start := time.Now()
	out := m.georeg(ctx, "chaos", "rolling-restart")
	took := time.Since(start)
	close(stop)
	for _, wg := range wgs {
		wg.Wait()
	}
	m.t.Logf("georeg chaos rolling-restart (%v):\n%s", took.Round(time.Millisecond), out)
	var pulls int64
	var failures []string
	for _, p := range loops {
		pulls += p.pulls.Load()
		failures = append(failures, p.failures...)
	}
	m.t.Logf("%d pulls through the three listeners during the rolling restart of 9 nodes and the traffic manager, %d failed", pulls, len(failures))
	if len(failures) > 0 {
		m.t.Errorf("client-visible failed pulls during the rolling restart: %d, first: %s", len(failures), strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	if !strings.Contains(out, "restarted trafficmgr") {
		m.t.Errorf("rolling-restart did not restart the traffic manager:\n%s", out)
	}
	// The new traffic manager runs on one thread, as mesh up started the
	// first (--trafficmgr-procs).
	cm, err := chaos.LoadMesh(m.Dir)
	if err != nil {
		m.t.Fatal(err)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cm.TrafficManager.PID))
	if err != nil {
		m.t.Fatalf("the restarted traffic manager's environment: %v", err)
	}
	if vars := strings.Split(string(env), "\x00"); !slices.Contains(vars, "GOMAXPROCS=1") {
		m.t.Errorf("the restarted traffic manager runs without GOMAXPROCS=1: %q", vars)
	}
}
