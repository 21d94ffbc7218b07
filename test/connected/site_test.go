package connected

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestSite runs a ReadOnly connected registry at a site of a 2-region mesh
// (`mesh add-site`, 70 ms from westus) and checks, from outside, what a
// site's users and the cloud's operator see: images of the synced
// repositories pullable there with crane and raw HTTP soon after they are
// pushed in the cloud, nothing else there, pushes and deletes refused,
// only the listed client tokens let in, every local pull answered while
// the link is cut, and the cloud showing the site Offline, then Online
// with what was pushed meanwhile.
func TestSite(t *testing.T) {
	crane := harness.Tool(t, "crane")
	m := harness.StartMesh(t, "--regions", "westus,eastus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	scanner := m.CreateToken(t, "scanner1", "--scope-map", "_repositories_pull")
	outsider := m.CreateToken(t, "outsider1", "--scope-map", "_repositories_pull")
	must("connected-registry", "create", "--name", "factory1", "--repository", "samples/*", "--client-tokens", scanner.User,
		"--notifications", "samples/app:*:*")
	// A webhook of the home region hears the site's events its patterns
	// cover (samples/app, not samples/hello).
	hooks := newHookReceiver(t)
	must("webhook", "create", "--name", "sitehook", "--uri", hooks.url, "--actions", "push,delete")

	cloud := m.Client(time.Minute)
	// unique is the blob bytes of the synced repositories, each digest
	// once: what the site should receive.
	unique := map[string]int64{}
	synced := func(repo string, img ociclient.Image) {
		if strings.HasPrefix(repo, "samples/") {
			for _, b := range img.Blobs() {
				unique[b.Digest.String()] = int64(len(b.Data))
			}
		}
	}
	push := func(repo, tag string, seed uint64) ociclient.Image {
		t.Helper()
		img := ociclient.NewImage(repo+":"+tag, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 64<<10)))
		if err := cloud.PushImage(ctx, m.URL(), repo, tag, img); err != nil {
			t.Fatal(err)
		}
		synced(repo, img)
		return img
	}
	v1 := push("samples/app", "v1", 21)
	push("other/x", "v1", 22)
	hello := runnableImage(t, "factory1")
	if err := cloud.PushImage(ctx, m.URL(), "samples/hello", "v1", hello); err != nil {
		t.Fatal(err)
	}
	synced("samples/hello", hello)

	start := time.Now()
	must("mesh", "add-site", "--name", "factory1")
	m.Reload()
	site, ok := m.Sites["factory1"]
	if !ok {
		t.Fatalf("mesh.json lists no site factory1: %v", m.Sites)
	}
	siteURL := site.URL()
	local := ociclient.NewWithCredential(30*time.Second, scanner)
	manifest := func(c *ociclient.Client, repo, ref string) error {
		_, _, err := c.Do(ctx, http.MethodGet, siteURL, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {ociclient.MediaManifest}}, nil, http.StatusOK)
		return err
	}
	if err := ociclient.Poll(ctx, 60*time.Second, 50*time.Millisecond, func() (bool, error) {
		err := manifest(local, "samples/app", "v1")
		return err == nil, err
	}); err != nil {
		t.Fatalf("samples/app:v1 at the site: %v\n%s", err, site.LogTail(4000))
	}
	t.Logf("site up and holding samples/app:v1 %v after add-site started", time.Since(start).Round(time.Millisecond))
	if _, err := local.PullImage(ctx, siteURL, "samples/app", v1.Digest.String()); err != nil {
		t.Errorf("pulling samples/app by digest at the site: %v", err)
	}
	if err := manifest(local, "other/x", "v1"); !ociclient.IsStatus(err, http.StatusNotFound) {
		t.Errorf("other/x at the site: %v, want 404 (outside its repositories)", err)
	}

	// crane, with the client token in its Docker configuration.
	home := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(scanner.User + ":" + scanner.Password))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{site.HTTP: map[string]string{"auth": auth}}})
	harness.Must(t, os.MkdirAll(filepath.Join(home, ".docker"), 0o700))
	harness.Must(t, os.WriteFile(filepath.Join(home, ".docker", "config.json"), cfg, 0o600))
	craneRun := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, crane, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := craneRun("digest", "--insecure", site.HTTP+"/samples/app:v1"); err != nil || strings.TrimSpace(out) != v1.Digest.String() {
		t.Errorf("crane digest at the site: %v %s, want %s", err, out, v1.Digest)
	}
	if out, err := craneRun("pull", "--insecure", site.HTTP+"/samples/app:v1", filepath.Join(home, "app.tar")); err != nil {
		t.Errorf("crane pull at the site: %v\n%s", err, out)
	}

	// docker, logged in with the client token, through the machine's
	// engine (127.0.0.0/8 is an insecure registry for it).
	if err := ociclient.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		err := manifest(local, "samples/hello", "v1")
		return err == nil, err
	}); err != nil {
		t.Fatalf("samples/hello:v1 at the site: %v", err)
	}
	dockerPull(t, site.HTTP, scanner, site.HTTP+"/samples/hello:v1", hello.Digest)

	// A push in the cloud reaches the site through the events.
	var lags []time.Duration
	for i := range 5 {
		tag := "r" + string(rune('0'+i))
		pushed := time.Now()
		push("samples/app", tag, uint64(100+i))
		if err := ociclient.Poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
			err := manifest(local, "samples/app", tag)
			return err == nil, err
		}); err != nil {
			t.Fatalf("samples/app:%s at the site: %v", tag, err)
		}
		lags = append(lags, time.Since(pushed))
	}
	slices.Sort(lags)
	t.Logf("push in the cloud to pullable at the site: %v (max %v)", lags, lags[len(lags)-1])

	// Notifications: the site's events reach the cloud's webhook, those
	// of samples/app only; a delete in the cloud is a delete at the site.
	if _, _, err := admin(m).Do(ctx, http.MethodDelete, m.URL(), "/v2/samples/app/manifests/r0", nil, nil, http.StatusAccepted); err != nil {
		t.Fatalf("deleting samples/app:r0 in the cloud: %v", err)
	}
	if err := ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		return hooks.has("factory1", "delete", "samples/app", "r0") && hooks.has("factory1", "push", "samples/app", "r4"), nil
	}); err != nil {
		t.Errorf("the site's push of samples/app:r4 and delete of samples/app:r0 did not reach the webhook: %v", hooks.all())
	}
	if hooks.has("factory1", "push", "samples/hello", "v1") {
		t.Errorf("the site notified samples/hello, outside its patterns")
	}
	t.Logf("the webhook got %d events of the site (push in the cloud to the site's notification: %v)", hooks.count("factory1"), hooks.lag("samples/app", "r4"))

	// ReadOnly: nothing written; an unlisted token is not let in.
	admin := admin(m)
	if _, _, err := local.Do(ctx, http.MethodPost, siteURL, "/v2/samples/app/blobs/uploads/", nil, nil, http.StatusAccepted); err == nil {
		t.Errorf("a push at a ReadOnly site was let through")
	}
	if _, _, err := admin.Do(ctx, http.MethodDelete, siteURL, "/v2/samples/app/manifests/"+v1.Digest.String(), nil, nil, http.StatusAccepted); err == nil {
		t.Errorf("a delete at a ReadOnly site was let through")
	}
	if err := manifest(local, "samples/app", v1.Digest.String()); err != nil {
		t.Errorf("samples/app@%s after the refused delete: %v", v1.Digest, err)
	}
	if err := manifest(ociclient.NewWithCredential(30*time.Second, outsider), "samples/app", "v1"); !ociclient.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("a token that is not a client token of the site: %v, want 401", err)
	}

	state := func() string {
		var r struct {
			State string `json:"connectionState"`
		}
		json.Unmarshal([]byte(must("connected-registry", "show", "--name", "factory1", "--json")), &r)
		return r.State
	}
	if err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		s := state()
		return s == "Online", nil
	}); err != nil {
		t.Errorf("the cloud shows factory1 %s, want Online", state())
	}

	// Cut the site off for 5 minutes (issue 17's acceptance): local
	// pulls go on, the cloud sees it Offline within 30 s and Online within
	// 30 s of heal, and what was pushed meanwhile arrives.
	const cutFor = 5 * time.Minute
	must("chaos", "partition", "factory1", "westus")
	must("chaos", "partition", "factory1", "eastus")
	cut := time.Now()
	var (
		mu       sync.Mutex
		pulls    int
		failures []error
	)
	// Whole image pulls (manifest and blobs) by a local client, spread
	// over the cut: at least 1,000, none may fail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(cutFor / 1400)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_, err := local.PullImage(ctx, siteURL, "samples/app", "v1")
			mu.Lock()
			pulls++
			if err != nil {
				failures = append(failures, err)
			}
			mu.Unlock()
		}
	})
	// Pushed in the cloud during the cut, early and halfway.
	during := []ociclient.Image{push("samples/app", "during-cut", 300)}
	if err := ociclient.Poll(ctx, 30*time.Second, 500*time.Millisecond, func() (bool, error) {
		return state() == "Offline", nil
	}); err != nil {
		t.Errorf("the cloud still shows factory1 %s 30 s after the cut, want Offline", state())
	}
	t.Logf("the cloud showed factory1 Offline %v after the cut", time.Since(cut).Round(time.Millisecond))
	time.Sleep(time.Until(cut.Add(cutFor / 2)))
	during = append(during, push("samples/app", "during-cut2", 301))
	time.Sleep(time.Until(cut.Add(cutFor)))
	if s := state(); s != "Offline" {
		t.Errorf("the cloud shows factory1 %s at the end of the cut, want Offline", s)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d local image pulls during the %v cut, %d failed", pulls, time.Since(cut).Round(time.Second), len(failures))
	if len(failures) > 0 {
		t.Errorf("local pulls failed while the site was cut off: %v", failures[:min(3, len(failures))])
	}
	if pulls < 1000 {
		t.Errorf("%d local pulls during the cut, want at least 1,000", pulls)
	}
	healed := time.Now()
	must("chaos", "heal")
	if err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		return state() == "Online", nil
	}); err != nil {
		t.Errorf("the cloud shows factory1 %s 30 s after heal, want Online", state())
	}
	t.Logf("Online again %v after heal", time.Since(healed).Round(time.Millisecond))
	for i, img := range during {
		tag := []string{"during-cut", "during-cut2"}[i]
		if err := ociclient.Poll(ctx, 45*time.Second, 100*time.Millisecond, func() (bool, error) {
			err := manifest(local, "samples/app", tag)
			return err == nil, err
		}); err != nil {
			t.Errorf("samples/app:%s, pushed during the cut, at the site after heal: %v", tag, err)
		}
		t.Logf("samples/app:%s (%s), pushed during the cut, at the site %v after heal", tag, img.Digest, time.Since(healed).Round(time.Millisecond))
	}

	// The home region killed: the site keeps serving, follows what is
	// pushed in the other region, and is there when the home region is
	// back.
	must("chaos", "kill-region", "westus")
	killed := time.Now()
	eastus := m.Locations["eastus"]
	img := ociclient.NewImage("samples/app:home-down", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(400, 64<<10)))
	if err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		err := cloud.PushImage(ctx, eastus, "samples/app", "home-down", img)
		return err == nil, err
	}); err != nil {
		t.Fatalf("pushing in eastus with the home region down: %v", err)
	}
	synced("samples/app", img)
	if err := ociclient.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
		err := manifest(local, "samples/app", "home-down")
		return err == nil, err
	}); err != nil {
		t.Errorf("an image pushed in eastus with the home region down, at the site: %v\n%s", err, site.LogTail(3000))
	} else {
		t.Logf("with the home region down, an image pushed in eastus reached the site %v after the kill", time.Since(killed).Round(time.Millisecond))
	}
	if err := manifest(local, "samples/app", "v1"); err != nil {
		t.Errorf("samples/app:v1 at the site with the home region down: %v", err)
	}
	// Deduplicated: the site received each blob of its repositories once.
	var st struct {
		Site struct {
			Stats struct {
				BytesFetched int64 `json:"bytesFetched"`
			} `json:"stats"`
		} `json:"site"`
	}
	if _, body, err := local.Do(ctx, http.MethodGet, siteURL, "/_georeg/status", nil, nil, http.StatusOK); err != nil || json.Unmarshal(body, &st) != nil {
		t.Errorf("the site's status: %v", err)
	} else {
		var want int64
		for _, n := range unique {
			want += n
		}
		ratio := float64(st.Site.Stats.BytesFetched) / float64(want)
		t.Logf("the site received %d blob bytes for %d unique bytes of its repositories: %.3fx", st.Site.Stats.BytesFetched, want, ratio)
		if ratio > 1.05 || ratio < 1 {
			t.Errorf("bytes received / unique bytes = %.3f, want 1 to 1.05", ratio)
		}
	}
	m.Restart(t, ctx, "westus")
	if err := ociclient.Poll(ctx, 60*time.Second, 500*time.Millisecond, func() (bool, error) {
		return state() == "Online", nil
	}); err != nil {
		t.Errorf("the cloud shows factory1 %s after the home region came back, want Online", state())
	}

	// A second instance with the same connection string is refused while
	// the first is Active.
	second := startInstance(t, filepath.Join(m.Dir, "sites", "factory1.connection"))
	if err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		return strings.Contains(second.LogTail(20000), "georeg connected-registry deactivate"), nil
	}); err != nil {
		t.Errorf("a second instance with the same connection string was not refused naming deactivate:\n%s", second.LogTail(3000))
	}
	if err := manifest(local, "samples/app", "v1"); err != nil {
		t.Errorf("the first instance after a second one was refused: %v", err)
	}
	// The refused instance keeps asking; with the first one gone and the
	// connected registry deactivated, it starts and serves.
	must("chaos", "kill-zone", "factory1/1")
	deactivated := time.Now()
	must("connected-registry", "deactivate", "--name", "factory1")
	if err := ociclient.Poll(ctx, 60*time.Second, 200*time.Millisecond, func() (bool, error) {
		_, _, err := local.Do(ctx, http.MethodGet, second.URL(), "/v2/samples/app/manifests/home-down", http.Header{"Accept": {ociclient.MediaManifest}}, nil, http.StatusOK)
		return err == nil, err
	}); err != nil {
		t.Errorf("the second instance after deactivate: %v\n%s", err, second.LogTail(3000))
	} else {
		t.Logf("the second instance served samples/app:home-down %v after deactivate", time.Since(deactivated).Round(time.Millisecond))
	}
	if err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		return state() == "Online", nil
	}); err != nil {
		t.Errorf("the cloud shows factory1 %s with the second instance active, want Online", state())
	}
}

// startInstance starts another site node with the connection string in
// file, on ports and data of its own, for the life of t.
func startInstance(t *testing.T, file string) harness.Node {
	t.Helper()
	p := freeport.Block(t, 4)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p+i) }
	n := harness.Node{Region: "factory1", Zone: 1, HTTP: addr(0), Data: t.TempDir(), Log: filepath.Join(t.TempDir(), "second.log")}
	harness.Start(t, n.Log, harness.Bin(t, "regiond"), "--region", "factory1", "--zone", "1", "--zones", "1", "--home", "factory1",
		"--http", addr(0), "--grpc", addr(1), "--raft", addr(2), "--gossip", addr(3), "--data", n.Data, "--connection-string-file", file)
	return n
}

func admin(m *harness.Mesh) *ociclient.Client {
	return ociclient.NewWithCredential(30*time.Second, m.Cred)
}

// hookReceiver is a webhook receiver that keeps what it is sent.
type hookReceiver struct {
	url string
	mu  sync.Mutex
	got []hookEvent
}

type hookEvent struct {
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	} `json:"target"`
	ConnectedRegistry string `json:"connectedRegistry"`
	received          time.Time
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e hookEvent
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&e); err == nil {
			e.received = time.Now()
			h.mu.Lock()
			h.got = append(h.got, e)
			h.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/hook"
	return h
}

func (h *hookReceiver) find(site, action, repo, tag string) (hookEvent, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.got {
		if e.ConnectedRegistry == site && e.Action == action && e.Target.Repository == repo && e.Target.Tag == tag {
			return e, true
		}
	}
	return hookEvent{}, false
}

func (h *hookReceiver) has(site, action, repo, tag string) bool {
	_, ok := h.find(site, action, repo, tag)
	return ok
}

// lag is how long after the cloud's own push event of repo:tag the
// site's came.
func (h *hookReceiver) lag(repo, tag string) time.Duration {
	c, ok1 := h.find("", "push", repo, tag)
	s, ok2 := h.find("factory1", "push", repo, tag)
	if !ok1 || !ok2 {
		return 0
	}
	return s.received.Sub(c.received)
}

func (h *hookReceiver) count(site string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.got {
		if e.ConnectedRegistry == site {
			n++
		}
	}
	return n
}

func (h *hookReceiver) all() []hookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}
