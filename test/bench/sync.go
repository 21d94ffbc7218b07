package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/chaos"
)

// syncResult is what the sync section measured: a registry of many small
// images in westus copied to a region created after them, and to a region
// down while as many more were written.
type syncResult struct {
	Repos int `json:"repos"`
	Tags  int `json:"tags_per_repo"`
	// LayerBytes is the size of the one layer every image of a load
	// shares (each load has its own).
	LayerBytes int `json:"layer_bytes"`
	// Load is the time to write the first set of repositories at westus's
	// node; LoadAgain the second, with eastus down.
	Load      time.Duration `json:"load_ns"`
	LoadAgain time.Duration `json:"load_again_ns"`
	// Create is from `replication create --region eastus` to its Ready;
	// CatchUp from `chaos restart eastus` until eastus lists every tag of
	// the second set.
	Create  time.Duration `json:"create_ns"`
	CatchUp time.Duration `json:"catch_up_ns"`
	// Sent and Unique are the blob bytes westus sent eastus during each
	// step and the distinct blob bytes of the content it copied.
	CreateSent    int64 `json:"create_sent_bytes"`
	CreateUnique  int64 `json:"create_unique_bytes"`
	CatchUpSent   int64 `json:"catch_up_sent_bytes"`
	CatchUpUnique int64 `json:"catch_up_unique_bytes"`
	// Dropped is how many of eastus's events westus dropped while it was
	// down (the outbox's bound).
	Dropped float64 `json:"dropped_events"`
	// Progress is what `replication create` printed while it waited.
	Progress string        `json:"progress"`
	RTT      time.Duration `json:"rtt_ns"`
}

// syncRegions are the regions of the sync section: the home region, and
// the one it creates (70 ms away on the default WAN).
var syncRegions = []string{"westus", "eastus"}

// runSync fills westus with cfg.SyncRepos repositories of cfg.ScaleTags
// distinct small manifests sharing one layer, creates eastus and times its
// initial sync, then kills eastus, writes as many again and times its
// catch-up after `chaos restart`.
func runSync(ctx context.Context, cfg config, env targetEnv, hc *http.Client, log *slog.Logger) (*syncResult, error) {
	start := time.Now()
	g, err := startGeoMesh(ctx, env, syncRegions[:1], 1)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	home, peer := syncRegions[0], syncRegions[1]
	log.Info("sync: mesh up", "dir", g.dir, "took", time.Since(start).Round(time.Millisecond))
	res := &syncResult{Repos: cfg.SyncRepos, Tags: cfg.ScaleTags, LayerBytes: 1 << 20}
	c, err := newClient(hc, g.node[home])
	if err != nil {
		return nil, err
	}

	t := time.Now()
	unique, err := syncLoad(ctx, c, "sync/a", res, 1)
	if err != nil {
		return nil, err
	}
	res.Load = time.Since(t)
	res.CreateUnique = unique
	log.Info("sync: loaded", "repos", res.Repos, "tags", res.Repos*res.Tags, "took", res.Load.Round(time.Millisecond))

	sent := func() (float64, error) {
		ms, err := scrape(ctx, c, g.node[home])
		n := 0.0
		for _, m := range ms {
			if m.name == "georeg_replication_bytes_sent_total" && m.labels["peer"] == peer {
				n += m.value
			}
		}
		return n, err
	}
	before, err := sent()
	if err != nil {
		return nil, err
	}
	t = time.Now()
	out, err := g.georegFor(ctx, 15*time.Minute, "replication", "create", "--region", peer, "--wait", "15m")
	res.Create = time.Since(t)
	res.Progress = string(out)
	if err != nil {
		return nil, fmt.Errorf("replication create --region %s: %w\n%s%s", peer, err, out, meshLogs(g.dir))
	}
	log.Info("sync: created", "region", peer, "ready after", res.Create.Round(time.Millisecond), "output", strings.TrimSpace(string(out)))
	if err := g.reload(); err != nil {
		return nil, err
	}
	if res.RTT, err = g.rtt(home, peer); err != nil {
		return nil, err
	}
	pc, err := newClient(hc, g.node[peer])
	if err != nil {
		return nil, err
	}
	if n, err := countTags(ctx, pc, "sync/a", res.Repos); err != nil || n != res.Repos*res.Tags {
		return nil, fmt.Errorf("%s Ready, listing %d tags of %d: %v", peer, n, res.Repos*res.Tags, err)
	}
	after, err := sent()
	if err != nil {
		return nil, err
	}
	res.CreateSent = int64(after - before)

	if err := g.chaos(ctx, "kill-region", peer); err != nil {
		return nil, err
	}
	t = time.Now()
	if res.CatchUpUnique, err = syncLoad(ctx, c, "sync/b", res, 2); err != nil {
		return nil, err
	}
	res.LoadAgain = time.Since(t)
	log.Info("sync: loaded again with the peer down", "region", peer, "took", res.LoadAgain.Round(time.Millisecond))
	before, err = sent()
	if err != nil {
		return nil, err
	}
	t = time.Now()
	if out, err := g.georegFor(ctx, 5*time.Minute, "chaos", "restart", peer); err != nil {
		return nil, fmt.Errorf("chaos restart %s: %w\n%s", peer, err, out)
	}
	for {
		n, err := countTags(ctx, pc, "sync/b", res.Repos)
		if err == nil && n == res.Repos*res.Tags {
			break
		}
		if time.Since(t) > 15*time.Minute {
			return nil, fmt.Errorf("%s lists %d tags of %d 15 minutes after its restart: %v", peer, n, res.Repos*res.Tags, err)
		}
		time.Sleep(time.Second)
	}
	res.CatchUp = time.Since(t)
	after, err = sent()
	if err != nil {
		return nil, err
	}
	res.CatchUpSent = int64(after - before)
	ms, err := scrape(ctx, c, g.node[home])
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.name == "georeg_replication_events_dropped_total" && m.labels["peer"] == peer {
			res.Dropped += m.value
		}
	}
	log.Info("sync: caught up", "region", peer, "after restart", res.CatchUp.Round(time.Millisecond), "dropped events", res.Dropped)
	return res, nil
}

// georegFor runs the CLI on the mesh with a timeout of its own.
func (g *geoMesh) georegFor(ctx context.Context, d time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()
	return g.georeg(context.WithoutCancel(ctx), args...)
}

// syncLoad writes res.Repos repositories named prefix%05d, each with
// res.Tags distinct manifests (an annotation tells them apart) sharing one
// config and one layer of res.LayerBytes, mounted from prefix-base. It
// returns the distinct blob bytes written.
func syncLoad(ctx context.Context, c *client, prefix string, res *syncResult, seed uint64) (int64, error) {
	layer := make([]byte, res.LayerBytes)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(layer)
	img, err := newImage(prefix+"-base", "v0", []blob{newBlob(nil, layer)})
	if err != nil {
		return 0, err
	}
	if err := c.pushImage(ctx, img, 1); err != nil {
		return 0, err
	}
	err = forEach(ctx, res.Repos, 32, func(ctx context.Context, i int) error {
		repo := fmt.Sprintf("%s%05d", prefix, i)
		for _, b := range []blob{img.config, img.layers[0]} {
			if err := c.mountBlob(ctx, repo, img.repo, b); err != nil {
				return err
			}
		}
		for j := range res.Tags {
			m, err := annotated(img, repo+":"+strconv.Itoa(j))
			if err != nil {
				return err
			}
			if err := c.pushManifest(ctx, repo, "v"+strconv.Itoa(j), m); err != nil {
				return fmt.Errorf("%s:v%d: %w", repo, j, err)
			}
		}
		return nil
	})
	return img.config.size() + img.layers[0].size(), err
}

// annotated returns img's manifest with an annotation of value n, so that
// every tag of the load names a manifest of its own.
func annotated(img image, n string) (blob, error) {
	m := struct {
		imageManifest
		Annotations map[string]string `json:"annotations"`
	}{Annotations: map[string]string{"n": n}}
	m.SchemaVersion, m.MediaType = 2, mediaTypeManifest
	m.Config = descriptor{MediaType: mediaTypeConfig, Digest: img.config.digest, Size: img.config.size()}
	for _, l := range img.layers {
		m.Layers = append(m.Layers, descriptor{MediaType: mediaTypeLayer, Digest: l.digest, Size: l.size()})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return blob{}, err
	}
	return newBlob(nil, b), nil
}

// countTags counts the tags a node lists in the repositories prefix%05d.
func countTags(ctx context.Context, c *client, prefix string, repos int) (int, error) {
	n := 0
	for i := range repos {
		tags, err := c.tagsList(ctx, fmt.Sprintf("%s%05d", prefix, i))
		if err != nil {
			return n, err
		}
		n += len(tags)
	}
	return n, nil
}

// reload reads the nodes of regions added since the mesh started.
func (g *geoMesh) reload() error {
	mf, err := chaos.LoadMesh(g.dir)
	if err != nil {
		return err
	}
	for _, r := range mf.Regions {
		if len(r.Zones) > 0 {
			g.node[r.Name] = "http://" + r.Zones[0].HTTP
		}
	}
	return nil
}

// syncRows are the sync section's rows of the geo table.
func syncRows(s *syncResult) []geoRow {
	if s == nil {
		return nil
	}
	home, peer := syncRegions[0], syncRegions[1]
	tags := s.Repos * s.Tags
	size := fmt.Sprintf("%s repositories and %s tags", thousands(s.Repos), thousands(tags))
	goal := func(d time.Duration) string {
		if d > 5*time.Minute {
			return "≤ 300 missed"
		}
		return "≤ 300"
	}
	ratio := func(sent, unique int64) string {
		r := float64(sent) / float64(unique)
		if r > 1.05 {
			return fmt.Sprintf("%.2f (goal ≤ 1.05 missed)", r)
		}
		return fmt.Sprintf("%.2f", r)
	}
	return []geoRow{
		{
			Measure: fmt.Sprintf("Load %s at %s (small distinct manifests sharing a %d KiB layer, 32 clients at the node) (s)", size, home, s.LayerBytes>>10),
			Value:   formatValue(s.Load.Seconds()),
		},
		{
			Measure: fmt.Sprintf("Initial sync: `replication create --region %s` (RTT %s ms) to Ready holding them (s)", peer, formatValue(ms(s.RTT))),
			Value:   formatValue(s.Create.Seconds()),
			Ref:     fmt.Sprintf("%s tags/s; blob bytes sent / unique %s", formatValue(float64(tags)/s.Create.Seconds()), ratio(s.CreateSent, s.CreateUnique)),
			Goal:    goal(s.Create),
		},
		{
			Measure: fmt.Sprintf("Catch-up: %s down while as many more were written (%s s), `chaos restart` until it lists them all (s)", peer, formatValue(s.LoadAgain.Seconds())),
			Value:   formatValue(s.CatchUp.Seconds()),
			Ref: fmt.Sprintf("%s tags/s; blob bytes sent / unique %s; %s of its events dropped by the outbox's bound", formatValue(float64(tags)/s.CatchUp.Seconds()),
				ratio(s.CatchUpSent, s.CatchUpUnique), thousands(int(s.Dropped))),
			Goal: goal(s.CatchUp),
		},
	}
}
