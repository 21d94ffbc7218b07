package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/chaos"
)

// geoRegions are the regions of the geo section's mesh, the home region
// (where every push goes in) first.
var geoRegions = []string{"westus", "eastus", "westeurope"}

// wanWindow is how much base/wan queues per direction of a connection
// (its doc: "up to 4 MiB per one-way delay"), which bounds one connection's
// throughput on a long link below a bandwidth cap.
const wanWindow = 4 << 20

// replPoll is how often the benchmark asks a region's node whether a pushed
// tag has arrived: a tag list is one bbolt read, so polling this often costs
// little and times replication to within a few milliseconds.
const replPoll = 5 * time.Millisecond

// geoResult is what the geo section measured on one 3-region mesh.
type geoResult struct {
	About   string                   `json:"about"`
	Regions []string                 `json:"regions"`
	RTT     map[string]time.Duration `json:"rtt_ns"` // from the home region to each peer, the default WAN

	// SmallLatency is, per peer region, the time from the acknowledgement
	// of each small image's push through the home location until the
	// peer's node lists its tag.
	SmallLatency map[string][]time.Duration `json:"small_latency_ns"`
	SmallImages  int                        `json:"small_images"`
	// PushersLatency is the same with Pushers clients pushing at once,
	// PusherImages each, back to back.
	PushersLatency map[string][]time.Duration `json:"pushers_latency_ns"`
	Pushers        int                        `json:"pushers"`
	PusherImages   int                        `json:"pusher_images"`

	Big      bigReplication  `json:"big"`
	Dedup    dedupResult     `json:"dedup"`
	Endpoint endpointLatency `json:"endpoint"`
	Failover failoverResult  `json:"failover"`
}

// bigReplication is the replication of one big image over capped links.
type bigReplication struct {
	Bytes int64 `json:"bytes"` // blob bytes (layers and config) a peer fetches
	Cap   int64 `json:"cap_bytes_per_second"`
	// CapText is the cap as given to `georeg chaos bandwidth`.
	CapText string `json:"cap"`
	// Latency is, per peer, the time from the push's acknowledgement until
	// the peer lists the tag (its manifest is committed after its blobs).
	Latency map[string]time.Duration `json:"latency_ns"`
	// Bound is, per peer, the time the simulated link allows at best:
	// the bytes at the lower of the cap and one window per one-way delay.
	Bound map[string]time.Duration `json:"bound_ns"`
	Push  time.Duration            `json:"push_ns"`
}

// dedupResult is what replicating images that share a base layer sent.
type dedupResult struct {
	Images     int   `json:"images"`
	BaseBytes  int64 `json:"base_bytes"`
	Unique     int64 `json:"unique_blob_bytes"`     // each distinct blob once
	Referenced int64 `json:"referenced_blob_bytes"` // every image's blobs, shared ones counted per image
	// Sent is, per peer, the growth of georeg_replication_bytes_sent_total
	// {peer} summed over every node; Received is the growth of the peer's
	// nodes' georeg_replication_bytes_received_total.
	Sent     map[string]float64 `json:"sent"`
	Received map[string]float64 `json:"received"`
}

// endpointLatency is manifest GETs through the traffic manager's home
// listener and directly at the node it routes them to, interleaved.
type endpointLatency struct {
	Endpoint []time.Duration `json:"endpoint_ns"`
	Direct   []time.Duration `json:"direct_ns"`
	// ClientRTT is the simulated client path the default WAN has, set to
	// zero while measuring and restored afterwards.
	ClientRTT time.Duration `json:"client_rtt_ns"`
}

// failoverResult is a pull loop through the home location while its region
// is killed and restarted.
type failoverResult struct {
	Workers int `json:"workers"`
	// Failover is from the start of `chaos kill-region` until a pull is
	// answered by another region; KillCmd is how long the command took.
	Failover time.Duration `json:"failover_ns"`
	KillCmd  time.Duration `json:"kill_cmd_ns"`
	By       string        `json:"failover_to"`
	// Failback is from the start of `chaos restart` until the restarted
	// region answers a pull again; RestartCmd is how long the command took
	// (it returns once the node answers).
	Failback   time.Duration `json:"failback_ns"`
	RestartCmd time.Duration `json:"restart_cmd_ns"`
	Pulls      int           `json:"pulls"`
	Failed     int           `json:"failed"`
	Failures   []string      `json:"failures,omitempty"`
}

// geoMesh is a mesh started through the launcher for the geo section: one
// zone node per region, the traffic manager and the default simulated WAN.
type geoMesh struct {
	env    targetEnv
	bin    string
	dir    string
	wan    string
	listen map[string]string // location → base URL of its traffic manager listener
	node   map[string]string // region → base URL of its node
}

// startGeoMesh runs `georeg mesh up` for regions with zones zone nodes each
// and the default WAN, and returns once every location is routed to its own
// region.
func startGeoMesh(ctx context.Context, env targetEnv, regions []string, zones int) (*geoMesh, error) {
	bin, err := env.binary("georeg", "`make build`")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(env.workDir, "geo-")
	if err != nil {
		return nil, err
	}
	port, err := freePortBlock(40)
	if err != nil {
		return nil, err
	}
	g := &geoMesh{env: env, bin: bin, dir: dir, listen: map[string]string{}, node: map[string]string{}}
	up := []string{"mesh", "up", "--port", strconv.Itoa(port), "--regions", strings.Join(regions, ","), "--home", regions[0], "--zones", strconv.Itoa(zones)}
	if out, err := g.georeg(ctx, up...); err != nil {
		g.stop()
		return nil, fmt.Errorf("georeg %s: %w\n%s%s", strings.Join(up, " "), err, out, meshLogs(dir))
	}
	mf, err := chaos.LoadMesh(dir)
	if err != nil {
		g.stop()
		return nil, err
	}
	for _, l := range mf.Locations {
		g.listen[l.Name] = "http://" + l.Addr
	}
	for _, r := range mf.Regions {
		if len(r.Zones) > 0 {
			g.node[r.Name] = "http://" + r.Zones[0].HTTP
		}
	}
	g.wan = mf.WAN
	for _, r := range regions {
		if g.listen[r] == "" || g.node[r] == "" || g.wan == "" {
			g.stop()
			return nil, fmt.Errorf("%s/mesh.json: want a listener and a node for %s and a WAN file", dir, r)
		}
	}
	for _, r := range regions {
		if err := g.waitRouted(ctx, r, r, 30*time.Second); err != nil {
			g.stop()
			return nil, err
		}
	}
	return g, nil
}

// georeg runs the CLI on the mesh.
func (g *geoMesh) georeg(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, append(slices.Clone(args), "--dir", g.dir)...)
	cmd.Env = g.env.childEnv()
	return cmd.CombinedOutput()
}

// chaos runs a `georeg chaos` verb and logs what it printed.
func (g *geoMesh) chaos(ctx context.Context, args ...string) error {
	out, err := g.georeg(ctx, append([]string{"chaos"}, args...)...)
	if err != nil {
		return fmt.Errorf("georeg chaos %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	g.env.log.Debug("chaos", "args", args, "output", strings.TrimSpace(string(out)))
	return nil
}

func (g *geoMesh) stop() {
	if out, err := g.georeg(context.Background(), "mesh", "down"); err != nil {
		g.env.log.Warn("georeg mesh down failed", "dir", g.dir, "err", err, "output", string(out))
	}
}

// rtt returns the simulated round trip between two locations.
func (g *geoMesh) rtt(a, b string) (time.Duration, error) {
	cfg, err := wan.Load(g.wan)
	if err != nil {
		return 0, err
	}
	return cfg.Link(a, b).RTT.D(), nil
}

// waitRouted polls GET /v2/ at location's listener until region answers.
func (g *geoMesh) waitRouted(ctx context.Context, location, region string, timeout time.Duration) error {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.listen[location]+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			last = resp.Header.Get("Georeg-Region")
			if resp.StatusCode == http.StatusOK && last == region {
				return nil
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("location %s is not served by %s after %v (last: %s)", location, region, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// hasTag reports whether the node at base lists tag in repo. A tag list
// never reads through to other regions, so it says what the node's region
// holds: a tag is committed with its manifest, after the manifest's blobs.
func hasTag(ctx context.Context, c *client, base, repo, tag string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/tags/list", nil)
	if err != nil {
		return false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return false, nil
	case http.StatusOK:
	default:
		return false, fmt.Errorf("GET %s tags: %s", base, resp.Status)
	}
	var tl struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
		return false, fmt.Errorf("GET %s tags of %s: %w", base, repo, err)
	}
	return slices.Contains(tl.Tags, tag), nil
}

// waitTags waits until the node of every region in regions lists repo:tag
// and returns, per region, when it was first seen.
func (g *geoMesh) waitTags(ctx context.Context, c *client, regions []string, repo, tag string, timeout time.Duration) (map[string]time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seen := make([]time.Time, len(regions))
	err := forEach(ctx, len(regions), len(regions), func(ctx context.Context, i int) error {
		for {
			ok, err := hasTag(ctx, c, g.node[regions[i]], repo, tag)
			if ok {
				seen[i] = time.Now()
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s has no %s:%s after %v (last error: %v)", regions[i], repo, tag, timeout, err)
			case <-time.After(replPoll):
			}
		}
	})
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for i, r := range regions {
		out[r] = seen[i]
	}
	return out, nil
}

// runGeo starts the geo section's mesh, measures it and stops it.
func runGeo(ctx context.Context, cfg config, env targetEnv, w *workload, hc *http.Client, log *slog.Logger) (*geoResult, error) {
	start := time.Now()
	g, err := startGeoMesh(ctx, env, geoRegions, 1)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	home, peers := geoRegions[0], geoRegions[1:]
	log.Info("geo: mesh up", "regions", geoRegions, "dir", g.dir, "took", time.Since(start).Round(time.Millisecond))

	res := &geoResult{Regions: geoRegions, RTT: map[string]time.Duration{}}
	if bin, err := env.binary("regiond", "`make build`"); err == nil {
		res.About = versionOf(ctx, bin)
	}
	res.About += fmt.Sprintf(" (georeg mesh up --regions %s --zones 1: one zone node per region, the traffic manager and the default simulated WAN)", strings.Join(geoRegions, ","))
	for _, p := range peers {
		if res.RTT[p], err = g.rtt(home, p); err != nil {
			return nil, err
		}
	}
	c, err := newClient(hc, g.listen[home])
	if err != nil {
		return nil, err
	}

	// A first image, untimed, opens the replication streams and the
	// connections the timed ones use.
	warm, err := w.smallImages(900, 1)
	if err != nil {
		return nil, err
	}
	warm[0].repo = "geo/warmup"
	if err := c.pushImage(ctx, warm[0], 1); err != nil {
		return nil, fmt.Errorf("geo: warm-up push: %w", err)
	}
	if _, err := g.waitTags(ctx, c, peers, warm[0].repo, warm[0].tag, time.Minute); err != nil {
		return nil, fmt.Errorf("geo: warm-up: %w", err)
	}

	steps := []struct {
		name string
		run  func() error
	}{
		{"small-image replication latency", func() error { return geoSmall(ctx, g, c, w, cfg.GeoSmall, res) }},
		{"small-image replication latency with concurrent pushers", func() error { return geoPushers(ctx, g, c, w, cfg.GeoPushers, res) }},
		{"dedup", func() error { return geoDedup(ctx, g, c, w, cfg.DedupImages, res) }},
		{"traffic manager latency", func() error { return geoEndpoint(ctx, g, c, res) }},
		{"big image at a bandwidth cap", func() error { return geoBig(ctx, g, c, w, cfg.Cap, res) }},
		{"failover", func() error { return geoFailover(ctx, g, c, w, res) }},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.run(); err != nil {
			return nil, fmt.Errorf("geo: %s: %w%s", s.name, err, meshLogs(g.dir))
		}
		log.Info("geo: measured", "step", s.name, "took", time.Since(t).Round(time.Millisecond))
	}
	return res, nil
}

// geoSmall pushes n small images one at a time through the home location
// and times each until every peer lists it.
func geoSmall(ctx context.Context, g *geoMesh, c *client, w *workload, n int, res *geoResult) error {
	imgs, err := w.smallImages(901, n)
	if err != nil {
		return err
	}
	peers := res.Regions[1:]
	res.SmallImages = n
	res.SmallLatency = map[string][]time.Duration{}
	for _, img := range imgs {
		img.repo = "geo/small"
		if err := c.pushImage(ctx, img, 1); err != nil {
			return err
		}
		acked := time.Now()
		seen, err := g.waitTags(ctx, c, peers, img.repo, img.tag, time.Minute)
		if err != nil {
			return err
		}
		for _, p := range peers {
			res.SmallLatency[p] = append(res.SmallLatency[p], seen[p].Sub(acked))
		}
	}
	return nil
}

// pusherImages is how many small images each concurrent pusher pushes,
// back to back, in the concurrent-pushers step.
const pusherImages = 3

// geoPushers has n clients push small images at once through the home
// location, pusherImages each under tags of their own, and times each
// image from its push's acknowledgement until each peer's node lists its
// tag. One poller per peer lists the repository's tags every replPoll and
// records when each tag first appears: n pollers per image would load the
// node they measure.
func geoPushers(ctx context.Context, g *geoMesh, c *client, w *workload, n int, res *geoResult) error {
	imgs, err := w.smallImages(903, n*pusherImages)
	if err != nil {
		return err
	}
	const repo = "geo/pushers"
	want := map[string]bool{}
	for i := range imgs {
		imgs[i].repo = repo
		want[imgs[i].tag] = true
	}
	peers := res.Regions[1:]
	pctx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	seen := make([]map[string]time.Time, len(peers))
	polled := make(chan error, len(peers))
	for i, p := range peers {
		seen[i] = map[string]time.Time{}
		go func() { polled <- pollTags(pctx, c, g.node[p], repo, want, seen[i]) }()
	}
	acked := make([]time.Time, len(imgs))
	start := make(chan struct{})
	pushed := make(chan error, n)
	for k := range n {
		go func() {
			<-start
			for j := range pusherImages {
				i := k*pusherImages + j
				if err := c.pushImage(ctx, imgs[i], 1); err != nil {
					pushed <- err
					return
				}
				acked[i] = time.Now()
			}
			pushed <- nil
		}()
	}
	close(start)
	var errs []error
	for range n {
		errs = append(errs, <-pushed)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	timeout := time.AfterFunc(2*time.Minute, stopPolls)
	defer timeout.Stop()
	for range peers {
		errs = append(errs, <-polled)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	res.Pushers, res.PusherImages = n, pusherImages
	res.PushersLatency = map[string][]time.Duration{}
	for i, p := range peers {
		for k, img := range imgs {
			// A peer may list a tag before the client has read the
			// push's answer: that is no latency at all.
			res.PushersLatency[p] = append(res.PushersLatency[p], max(0, seen[i][img.tag].Sub(acked[k])))
		}
	}
	return nil
}

// pollTags lists repo's tags at the node at base every replPoll, following
// pages, and records in seen when each tag of want first appears, until
// every one has or ctx ends.
func pollTags(ctx context.Context, c *client, base, repo string, want map[string]bool, seen map[string]time.Time) error {
	for {
		tags, err := listTags(ctx, c, base, repo)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			return err
		}
		for _, t := range tags {
			if _, ok := seen[t]; !ok && want[t] {
				seen[t] = now
			}
		}
		if len(seen) == len(want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s lists %d of the %d tags of %s (last error: %v)", base, len(seen), len(want), repo, err)
		case <-time.After(replPoll):
		}
	}
}

// listTags lists every tag of repo at the node at base, page by page; a
// repository the node does not know has none.
func listTags(ctx context.Context, c *client, base, repo string) ([]string, error) {
	var all []string
	next := base + "/v2/" + repo + "/tags/list?n=1000"
	for next != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err
		}
		var tl struct {
			Tags []string `json:"tags"`
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			drain(resp)
			return nil, nil
		case http.StatusOK:
			err = json.NewDecoder(resp.Body).Decode(&tl)
		default:
			err = fmt.Errorf("GET %s: %s", next, resp.Status)
		}
		link := resp.Header.Get("Link")
		drain(resp)
		if err != nil {
			return nil, err
		}
		all = append(all, tl.Tags...)
		next = ""
		if l, _, ok := strings.Cut(strings.TrimPrefix(link, "<"), ">"); ok && l != "" && len(tl.Tags) > 0 {
			next = base + l
		}
	}
	return all, nil
}

// dedupImage returns image i of the dedup step: the shared base layer, a
// layer of its own and its config.
func dedupImage(w *workload, base blob, i int) (image, error) {
	own := make([]byte, 64<<10)
	rand.NewChaCha8(w.key(902, uint64(i))).Read(own)
	return newImage(fmt.Sprintf("geo/dedup-%d", i), "v1", []blob{base, newBlob(nil, own)})
}

// geoDedup pushes n images that share a base layer, each to its own
// repository, and compares the bytes replication sent each peer with the
// distinct bytes pushed.
func geoDedup(ctx context.Context, g *geoMesh, c *client, w *workload, n int, res *geoResult) error {
	baseBytes := make([]byte, 16<<20)
	rand.NewChaCha8(w.key(902, 1<<32)).Read(baseBytes)
	base := newBlob(nil, baseBytes)
	d := dedupResult{Images: n, BaseBytes: base.size()}
	seen := map[string]bool{}
	var imgs []image
	for i := range n {
		img, err := dedupImage(w, base, i)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
		for _, b := range append([]blob{img.config}, img.layers...) {
			d.Referenced += b.size()
			if !seen[b.digest] {
				seen[b.digest] = true
				d.Unique += b.size()
			}
		}
	}
	before, err := g.replicationBytes(ctx, c)
	if err != nil {
		return err
	}
	// Pushed back to back, so that peers may be offered an image while the
	// base layer of the one before is still on its way.
	for _, img := range imgs {
		if err := c.pushImage(ctx, img, 2); err != nil {
			return err
		}
	}
	for _, img := range imgs {
		if _, err := g.waitTags(ctx, c, res.Regions[1:], img.repo, img.tag, 2*time.Minute); err != nil {
			return err
		}
	}
	after, err := g.replicationBytes(ctx, c)
	if err != nil {
		return err
	}
	d.Sent, d.Received = map[string]float64{}, map[string]float64{}
	for _, p := range res.Regions[1:] {
		d.Sent[p] = after.sent[p] - before.sent[p]
		d.Received[p] = after.received[p] - before.received[p]
	}
	res.Dedup = d
	return nil
}

// replicationCounters are, per region, the bytes every node sent to it and
// the bytes its nodes received.
type replicationCounters struct {
	sent, received map[string]float64
}

func (g *geoMesh) replicationBytes(ctx context.Context, c *client) (replicationCounters, error) {
	rc := replicationCounters{sent: map[string]float64{}, received: map[string]float64{}}
	for region, node := range g.node {
		ms, err := scrape(ctx, c, node)
		if err != nil {
			return rc, err
		}
		for _, m := range ms {
			switch m.name {
			case "georeg_replication_bytes_sent_total":
				rc.sent[m.labels["peer"]] += m.value
			case "georeg_replication_bytes_received_total":
				rc.received[region] += m.value
			}
		}
	}
	return rc, nil
}

// sample is one line of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads the node's /metrics.
func scrape(ctx context.Context, c *client, base string) ([]sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b))
}

// parseMetrics parses the Prometheus text format as client_golang writes
// it: comments, then `name{label="value",...} number` lines. Label values
// with escaped quotes or commas are not needed here and not supported.
func parseMetrics(text string) ([]sample, error) {
	var out []sample
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		series, val, ok := cutLast(line, " ")
		if !ok {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s := sample{name: series, labels: map[string]string{}, value: v}
		if name, rest, ok := strings.Cut(series, "{"); ok {
			s.name = name
			for kv := range strings.SplitSeq(strings.TrimSuffix(rest, "}"), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					s.labels[k] = strings.Trim(v, `"`)
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// geoEndpoint times manifest GETs by tag through the home location's
// listener and directly at the node it routes to, alternating which goes
// first. The simulated client path (1 ms in the default WAN) is set to zero
// meanwhile, so the difference is the traffic manager's own cost.
func geoEndpoint(ctx context.Context, g *geoMesh, c *client, res *geoResult) error {
	home := res.Regions[0]
	rtt, err := g.rtt(home, home)
	if err != nil {
		return err
	}
	if err := g.chaos(ctx, "latency", home, home, "0s"); err != nil {
		return err
	}
	restore := func() error { return g.chaos(context.WithoutCancel(ctx), "latency", home, home, rtt.String()) }
	e := endpointLatency{ClientRTT: rtt}
	err = func() error {
		// Every process reloads the WAN file within 200 ms.
		time.Sleep(time.Second)
		tags := make([]string, res.SmallImages)
		for i := range tags {
			tags[i] = fmt.Sprintf("img%d", i)
		}
		get := func(base, tag string) (time.Duration, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/geo/small/manifests/"+tag, nil)
			if err != nil {
				return 0, err
			}
			req.Header.Set("Accept", mediaTypeManifest)
			start := time.Now()
			resp, err := c.do(req, http.StatusOK)
			if err != nil {
				return 0, err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			if r := resp.Header.Get("Georeg-Region"); err == nil && r != home {
				err = fmt.Errorf("manifest GET through %s's listener served by %q", home, r)
			}
			return d, err
		}
		const warmup, n = 50, 500
		for i := range warmup + n {
			tag := tags[i%len(tags)]
			bases := []string{g.listen[home], g.node[home]}
			if i%2 == 1 {
				slices.Reverse(bases)
			}
			var ds [2]time.Duration
			for j, b := range bases {
				d, err := get(b, tag)
				if err != nil {
					return err
				}
				ds[j] = d
			}
			if i%2 == 1 {
				ds[0], ds[1] = ds[1], ds[0]
			}
			if i >= warmup {
				e.Endpoint = append(e.Endpoint, ds[0])
				e.Direct = append(e.Direct, ds[1])
			}
		}
		return nil
	}()
	if rerr := restore(); err == nil {
		err = rerr
	}
	res.Endpoint = e
	return err
}

// geoBig caps the home region's links to every peer, pushes the big image
// through the home location and times it until every peer lists it.
func geoBig(ctx context.Context, g *geoMesh, c *client, w *workload, capRate string, res *geoResult) error {
	rate, err := wan.ParseRate(capRate)
	if err != nil {
		return err
	}
	home, peers := res.Regions[0], res.Regions[1:]
	big, err := w.bigImage(903)
	if err != nil {
		return err
	}
	big.repo = "geo/big"
	b := bigReplication{Cap: rate, CapText: capRate, Latency: map[string]time.Duration{}, Bound: map[string]time.Duration{}}
	for _, d := range append([]blob{big.config}, big.layers...) {
		b.Bytes += d.size()
	}
	for _, p := range peers {
		if err := g.chaos(ctx, "bandwidth", home, p, capRate); err != nil {
			return err
		}
	}
	err = func() error {
		time.Sleep(time.Second) // the WAN file's reload
		start := time.Now()
		if err := c.pushImage(ctx, big, w.parallel); err != nil {
			return err
		}
		acked := time.Now()
		b.Push = acked.Sub(start)
		seen, err := g.waitTags(ctx, c, peers, big.repo, big.tag, 10*time.Minute)
		if err != nil {
			return err
		}
		for _, p := range peers {
			b.Latency[p] = seen[p].Sub(acked)
			rate := float64(rate)
			if rtt := res.RTT[p]; rtt > 0 {
				rate = min(rate, wanWindow/(rtt/2).Seconds())
			}
			b.Bound[p] = time.Duration(float64(b.Bytes) / rate * float64(time.Second))
		}
		return nil
	}()
	for _, p := range peers {
		if uerr := g.chaos(context.WithoutCancel(ctx), "bandwidth", home, p, "off"); err == nil {
			err = uerr
		}
	}
	res.Big = b
	return err
}

// served is one pull's manifest answer in the failover loop.
type served struct {
	at     time.Time
	region string
}

// pullLog records what a pull loop saw, for any number of workers.
type pullLog struct {
	mu       sync.Mutex
	served   []served
	pulls    int
	failures []string
}

// first returns the first answer after t from a region match accepts.
func (p *pullLog) first(t time.Time, match func(string) bool) (served, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.served {
		if s.at.After(t) && match(s.region) {
			return s, true
		}
	}
	return served{}, false
}

// waitFirst polls p until an answer after t comes from a region match
// accepts.
func (p *pullLog) waitFirst(ctx context.Context, t time.Time, match func(string) bool, timeout time.Duration) (served, error) {
	deadline := time.Now().Add(timeout)
	for {
		if s, ok := p.first(t, match); ok {
			return s, nil
		}
		if time.Now().After(deadline) {
			return served{}, errors.New("no such answer in time")
		}
		select {
		case <-ctx.Done():
			return served{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pullLoop pulls imgs round-robin through c from workers goroutines, with a
// pause between pulls, until stop is closed.
func pullLoop(ctx context.Context, c *client, imgs []image, workers int, p *pullLog, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i += workers {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				img := imgs[i%len(imgs)]
				region, at, err := pullServed(ctx, c, img)
				p.mu.Lock()
				p.pulls++
				if err != nil {
					p.failures = append(p.failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
				} else {
					p.served = append(p.served, served{at: at, region: region})
				}
				p.mu.Unlock()
			}
		})
	}
	return &wg
}

// pullServed pulls img by digest and returns the region that answered its
// manifest GET and when the answer came.
func pullServed(ctx context.Context, c *client, img image) (string, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"+img.repo+"/manifests/"+img.manifest.digest), nil)
	if err != nil {
		return "", time.Time{}, err
	}
	req.Header.Set("Accept", mediaTypeManifest)
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return "", time.Time{}, err
	}
	at := time.Now()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && newBlob(nil, b).digest != img.manifest.digest {
		err = fmt.Errorf("manifest: %w", errDigestMismatch)
	}
	for _, d := range append([]blob{img.config}, img.layers...) {
		if err != nil {
			break
		}
		err = c.getBlob(ctx, c.base, img.repo, descriptor{Digest: d.digest, Size: d.size()})
	}
	return resp.Header.Get("Georeg-Region"), at, err
}

// geoFailover pulls through the home location while the home region is
// killed and restarted.
func geoFailover(ctx context.Context, g *geoMesh, c *client, w *workload, res *geoResult) error {
	home := res.Regions[0]
	imgs, err := w.smallImages(904, 6)
	if err != nil {
		return err
	}
	for i := range imgs {
		imgs[i].repo = "geo/failover"
		if err := c.pushImage(ctx, imgs[i], 1); err != nil {
			return err
		}
	}
	for _, img := range imgs {
		if _, err := g.waitTags(ctx, c, res.Regions, img.repo, img.tag, time.Minute); err != nil {
			return err
		}
	}
	f := failoverResult{Workers: 2}
	var p pullLog
	stop := make(chan struct{})
	wg := pullLoop(ctx, c, imgs, f.Workers, &p, stop)
	err = func() error {
		time.Sleep(time.Second)
		killStart := time.Now()
		if err := g.chaos(ctx, "kill-region", home); err != nil {
			return err
		}
		f.KillCmd = time.Since(killStart)
		s, err := p.waitFirst(ctx, killStart, func(r string) bool { return r != home && r != "" }, 30*time.Second)
		if err != nil {
			return fmt.Errorf("no pull through %s's listener answered by another region within 30 s of the kill", home)
		}
		f.Failover, f.By = s.at.Sub(killStart), s.region
		time.Sleep(2 * time.Second)
		restartStart := time.Now()
		if err := g.chaos(ctx, "restart", home); err != nil {
			return err
		}
		f.RestartCmd = time.Since(restartStart)
		s, err = p.waitFirst(ctx, restartStart, func(r string) bool { return r == home }, time.Minute)
		if err != nil {
			return fmt.Errorf("pulls through %s's listener did not come back to %s within a minute of its restart", home, home)
		}
		f.Failback = s.at.Sub(restartStart)
		time.Sleep(time.Second)
		return nil
	}()
	close(stop)
	wg.Wait()
	f.Pulls, f.Failed = p.pulls, len(p.failures)
	f.Failures = p.failures[:min(len(p.failures), 5)]
	res.Failover = f
	return err
}
