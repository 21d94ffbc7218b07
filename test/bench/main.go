package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/georeg/georeg/base/wan"
)

// config is the benchmark's settings, from flags.
type config struct {
	SizeMiB    int      `json:"size_mib"`
	Layers     int      `json:"layers"`
	Small      int      `json:"small"`
	Runs       int      `json:"runs"`
	Parallel   int      `json:"parallel"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Only       string   `json:"only"`
	Compare    []string `json:"compare"`
	GeoregMode string   `json:"georeg_mode"`
	// Sections are the parts of the benchmark to run (see sectionNames).
	Sections    []string      `json:"sections"`
	GeoSmall    int           `json:"geo_small"`
	GeoPushers  int           `json:"geo_pushers"`
	DedupImages int           `json:"dedup_images"`
	Cap         string        `json:"geo_cap"`
	ScaleRepos  int           `json:"scale_repos"`
	ScaleTags   int           `json:"scale_tags_per_repo"`
	SyncRepos   int           `json:"sync_repos"`
	IdleSettle  time.Duration `json:"idle_settle_ns"`
	IdleWindow  time.Duration `json:"idle_window_ns"`
	ScaleConc   int           `json:"scale_clients"`
	ScaleDir    string        `json:"scale_dir"`
	BinDir      string        `json:"-"`
	OutDir      string        `json:"-"`
	Keep        bool          `json:"-"`
	Timeout     time.Duration `json:"-"`
}

// pair is one comparison: a against b, the ratio saying how a fares.
type pair struct{ a, b string }

// pairs parses -compare: comma-separated a:b pairs.
func (c config) pairs() ([]pair, error) {
	var ps []pair
	for _, s := range c.Compare {
		a, b, ok := strings.Cut(s, ":")
		if !ok || a == "" || b == "" {
			return nil, fmt.Errorf("-compare %q: want target:target, for example georeg:distribution", s)
		}
		ps = append(ps, pair{a, b})
	}
	if len(ps) == 0 {
		return nil, errors.New("-compare: no comparison")
	}
	return ps, nil
}

func (c config) validate() error {
	switch {
	case c.SizeMiB <= 0 || c.Layers <= 0:
		return errors.New("-size-mb and -layers must be positive")
	case c.SizeMiB<<20%c.Layers != 0:
		return fmt.Errorf("-size-mb %d MiB does not split into %d equal layers", c.SizeMiB, c.Layers)
	case c.SizeMiB<<20/c.Layers < 64:
		return errors.New("layers of the big image must be at least 64 bytes")
	case c.Small <= 0 || c.Runs <= 0 || c.Parallel <= 0 || c.GOMAXPROCS <= 0:
		return errors.New("-small, -runs, -parallel and -gomaxprocs must be positive")
	case c.GeoSmall <= 0 || c.GeoPushers <= 0 || c.DedupImages <= 0 || c.ScaleRepos <= 0 || c.ScaleTags <= 0 || c.ScaleConc <= 0:
		return errors.New("-geo-small, -geo-pushers, -dedup-images, -scale-repos, -scale-tags and -scale-clients must be positive")
	case c.IdleSettle < 0 || c.IdleWindow <= 0:
		return errors.New("-idle-settle must not be negative and -idle-window must be positive")
	}
	for _, s := range c.Sections {
		if !slices.Contains(sectionNames, s) {
			return fmt.Errorf("-only-section %q: want some of %s", s, strings.Join(sectionNames, ","))
		}
	}
	if _, err := wan.ParseRate(c.Cap); err != nil {
		return fmt.Errorf("-cap: %w", err)
	}
	_, err := c.pairs()
	return err
}

// sectionNames are the parts of the benchmark: the comparisons of -compare
// (compare), the geo-replication and failover figures on a 3-region mesh
// (geo), memory and listings at many repositories and tags (scale), a new
// region's initial sync (sync), and the CPU of an idle make-run mesh
// (idle).
var sectionNames = []string{"compare", "geo", "scale", "sync", "idle"}

func (c config) section(name string) bool { return slices.Contains(c.Sections, name) }

func main() {
	root := repoRoot()
	cfg := config{}
	flag.IntVar(&cfg.SizeMiB, "size-mb", 256, "size of the big image in MiB")
	flag.IntVar(&cfg.Layers, "layers", 8, "layers of the big image")
	flag.IntVar(&cfg.Small, "small", 500, "number of small images")
	flag.IntVar(&cfg.Runs, "runs", 3, "timed runs per target; the table shows medians")
	flag.IntVar(&cfg.Parallel, "parallel", 4, "concurrent uploads and downloads, the same for every target")
	flag.IntVar(&cfg.GOMAXPROCS, "gomaxprocs", runtime.NumCPU(), "GOMAXPROCS of every server")
	flag.StringVar(&cfg.Only, "only", "both", "measure only the target with this name (for example georeg or distribution), or both")
	compare := flag.String("compare", "georeg:distribution,georeg-3zones:georeg,georeg-endpoint:georeg,georeg-mesh:distribution", "comma-separated comparisons a:b; targets: "+targetNames)
	flag.StringVar(&cfg.GeoregMode, "georeg", "auto", "how to start georeg: mesh (bin/georeg mesh up), regiond (bin/regiond directly), auto (mesh when bin/georeg exists)")
	flag.StringVar(&cfg.BinDir, "bin", filepath.Join(root, "bin"), "directory of georeg's binaries, with the tools in bin/tools")
	flag.StringVar(&cfg.OutDir, "out", filepath.Join(root, "bench-results"), "directory for the Markdown and JSON results")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the servers' data and logs")
	sections := flag.String("only-section", strings.Join(sectionNames, ","), "comma-separated parts to run: compare (the -compare tables), geo (replication, dedup, traffic manager, failover on a 3-region mesh), scale (memory and listings with -scale-repos x -scale-tags), sync (a new region and one back from an outage copying -sync-repos x -scale-tags), idle (the CPU of make run's mesh left alone, -idle-window after -idle-settle)")
	flag.IntVar(&cfg.GeoSmall, "geo-small", 50, "small images whose replication latency the geo section times")
	flag.IntVar(&cfg.GeoPushers, "geo-pushers", 50, "concurrent pushers whose small images' replication latency the geo section times, each pushing its own tags at once")
	flag.IntVar(&cfg.DedupImages, "dedup-images", 10, "images sharing a base layer that the geo section's dedup step pushes")
	flag.StringVar(&cfg.Cap, "cap", "100MB/s", "bandwidth cap on the links from westus while the geo section replicates the big image")
	flag.IntVar(&cfg.ScaleRepos, "scale-repos", 10000, "repositories the scale section creates")
	flag.IntVar(&cfg.ScaleTags, "scale-tags", 10, "tags per repository in the scale and sync sections")
	flag.IntVar(&cfg.SyncRepos, "sync-repos", 10000, "repositories the sync section copies to a new region and to one back from an outage")
	flag.DurationVar(&cfg.IdleSettle, "idle-settle", 15*time.Second, "how long the idle section leaves make run's mesh alone after mesh up before measuring")
	flag.DurationVar(&cfg.IdleWindow, "idle-window", 60*time.Second, "how long the idle section measures the mesh's CPU")
	flag.IntVar(&cfg.ScaleConc, "scale-clients", 32, "concurrent clients loading the scale section's repositories")
	flag.StringVar(&cfg.ScaleDir, "scale-dir", defaultScaleDir(), "directory for the scale section's servers' data (default: /dev/shm when it is a tmpfs, else the system's temporary directory)")
	flag.DurationVar(&cfg.Timeout, "timeout", 40*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "log debug detail")
	flag.Parse()
	cfg.Compare = strings.Split(*compare, ",")
	cfg.Sections = strings.Split(*sections, ",")

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, os.Stdout); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// run measures every comparison, prints the tables to out and writes the
// results to cfg.OutDir.
func run(ctx context.Context, cfg config, log *slog.Logger, out io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	work, err := os.MkdirTemp("", "georeg-bench-")
	if err != nil {
		return err
	}
	if cfg.Keep {
		log.Info("keeping data and logs", "dir", work)
	} else {
		defer func() {
			// Each comparison's servers leave their data here; on a
			// slow disk removing it takes a while, hence the log.
			start := time.Now()
			log.Info("removing the servers' data", "dir", work)
			os.RemoveAll(work)
			log.Info("removed the servers' data", "took", time.Since(start).Round(time.Second))
		}()
	}
	env := targetEnv{binDir: cfg.BinDir, workDir: work, gomaxprocs: cfg.GOMAXPROCS, georegMode: cfg.GeoregMode, log: log}

	start := time.Now()
	w := newWorkload(cfg.SizeMiB<<20/cfg.Layers, cfg.Layers, cfg.Small, cfg.Parallel)
	log.Info("generated big image content", "bytes", len(w.big), "took", time.Since(start).Round(time.Millisecond))

	hc := &http.Client{Transport: newTransport()}
	rep := report{Date: time.Now().UTC(), Machine: describeMachine(), Config: cfg, WorkDir: os.TempDir(), LoadBefore: loadAvg()}
	pairs, _ := cfg.pairs()
	if !cfg.section("compare") {
		pairs = nil
	} else if cfg.Only != "both" {
		pairs = slices.DeleteFunc(pairs, func(p pair) bool { return p.a != cfg.Only && p.b != cfg.Only })
		if len(pairs) == 0 {
			return fmt.Errorf("-only %q names no target of -compare %s", cfg.Only, strings.Join(cfg.Compare, ","))
		}
	}
	for _, p := range pairs {
		cmp, err := runComparison(ctx, cfg, env, w, hc, p, log)
		if err != nil {
			return fmt.Errorf("%s vs %s: %w", p.a, p.b, err)
		}
		rep.Comparisons = append(rep.Comparisons, cmp)
	}
	if cfg.section("geo") && (cfg.Only == "both" || cfg.Only == "georeg") {
		if rep.Geo, err = runGeo(ctx, cfg, env, w, hc, log); err != nil {
			return err
		}
	}
	if cfg.section("scale") {
		if rep.Scale, err = runScale(ctx, cfg, env, w, hc, log); err != nil {
			return err
		}
	}
	if cfg.section("sync") && (cfg.Only == "both" || cfg.Only == "georeg") {
		if rep.Sync, err = runSync(ctx, cfg, env, hc, log); err != nil {
			return err
		}
	}
	if cfg.section("idle") && (cfg.Only == "both" || cfg.Only == "georeg") {
		if rep.Idle, err = runIdle(ctx, env, cfg.IdleSettle, cfg.IdleWindow, log); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	rep.GeoRows = rep.secondRows()
	rep.Elapsed = time.Since(start).Round(time.Second).String()
	rep.LoadAfter = loadAvg()

	md := rep.markdown()
	fmt.Fprint(out, md)
	paths, err := rep.write(cfg.OutDir, md)
	if err != nil {
		return err
	}
	log.Info("wrote results", "files", paths, "took", rep.Elapsed)
	return nil
}

// side is one target of a comparison while it runs.
type side struct {
	target  Target
	name    string
	about   string
	client  *client
	nodes   int // nodes of the target, each a valid endpoint
	stop    func()
	results []measurement
}

// settle waits, untimed, until a target of several nodes has finished the
// background work of what was just measured, so that the next measurement,
// of either target, does not share the machine with it.
func (s *side) settle(ctx context.Context) error {
	if s.nodes < 2 && len(s.client.regions) == 0 {
		return nil
	}
	return s.client.settle(ctx)
}

// runComparison starts the targets of p, warms each up, runs the workload
// cfg.Runs times on each (alternating which goes first, so a drift of the
// machine does not favour one) and stops them.
func runComparison(ctx context.Context, cfg config, env targetEnv, w *workload, hc *http.Client, p pair, log *slog.Logger) (comparison, error) {
	names := []string{p.a, p.b}
	if p.a == p.b {
		// Comparing a target with itself measures the benchmark's noise.
		names = []string{p.a + " (a)", p.b + " (b)"}
	}
	var sides []*side
	for i, n := range []string{p.a, p.b} {
		if cfg.Only != "both" && cfg.Only != n {
			continue
		}
		t, err := newTarget(n, env)
		if err != nil {
			return comparison{}, err
		}
		sides = append(sides, &side{target: t, name: names[i], about: n})
	}
	if len(sides) == 0 {
		return comparison{}, fmt.Errorf("-only %q names neither target", cfg.Only)
	}
	defer func() {
		for _, s := range sides {
			if s.stop != nil {
				s.stop()
			}
		}
	}()

	for _, s := range sides {
		base, stop, err := s.target.Start(ctx)
		if err != nil {
			return comparison{}, fmt.Errorf("start %s: %w", s.name, err)
		}
		s.stop = stop
		var nodes []string
		if mn, ok := s.target.(multiNode); ok {
			nodes = mn.Nodes()
		}
		thc := hc
		if sc, ok := s.target.(secured); ok && sc.TLSConfig() != nil {
			c := *hc
			tr := hc.Transport.(*http.Transport).Clone()
			tr.TLSClientConfig = sc.TLSConfig()
			c.Transport = tr
			thc = &c
		}
		if a, ok := s.target.(authenticated); ok {
			c := *thc
			c.Transport = a.Transport(thc.Transport)
			thc = &c
		}
		if s.client, err = newClient(thc, base, nodes...); err != nil {
			return comparison{}, err
		}
		s.nodes = len(s.client.nodes)
		if mr, ok := s.target.(multiRegion); ok {
			s.client.regions = mr.Regions()
		}
		if d, ok := s.target.(describer); ok {
			s.about = d.Describe(ctx)
		}
		log.Info("started", "target", s.name, "url", base, "nodes", s.nodes, "about", s.about)
	}
	// A pull spread over the nodes is measured on both sides as soon as one
	// has several, so that it has something to be compared with.
	spread := slices.ContainsFunc(sides, func(s *side) bool { return s.nodes > 1 })
	for _, s := range sides {
		start := time.Now()
		if err := warmUp(ctx, s.client, w, spread); err != nil {
			return comparison{}, fmt.Errorf("warm up %s: %w", s.name, err)
		}
		if err := s.settle(ctx); err != nil {
			return comparison{}, fmt.Errorf("warm up %s: %w", s.name, err)
		}
		log.Info("warmed up", "target", s.name, "took", time.Since(start).Round(time.Millisecond))
	}

	var disk []float64
	for r := 1; r <= cfg.Runs; r++ {
		// The disk's own bandwidth is measured in every run, next to the
		// pushes it bounds, so that both see the same machine.
		syscall.Sync()
		d, err := diskWrite(env.workDir, w.big)
		if err != nil {
			return comparison{}, err
		}
		disk = append(disk, mbps(int64(len(w.big)), d))
		log.Info("disk", "run", r, "fsynced_write_MBps", fmt.Sprintf("%.1f", disk[len(disk)-1]))

		big, err := w.bigImage(r)
		if err != nil {
			return comparison{}, err
		}
		small, err := w.smallImages(r, w.small)
		if err != nil {
			return comparison{}, err
		}
		// Each phase runs on every target before the next phase starts, and
		// the order of the targets alternates between runs, so a change in
		// the machine's load (other work, write-back of the previous phase's
		// files) lands on both sides instead of on one.
		order := slices.Clone(sides)
		if r%2 == 0 {
			slices.Reverse(order)
		}
		ms := make([]measurement, len(order))
		for _, ph := range phases(spread) {
			for i, s := range order {
				syscall.Sync()
				if err := ph.run(ctx, s.client, w, big, small, &ms[i]); err != nil {
					return comparison{}, fmt.Errorf("%s run %d: %s: %w", s.name, r, ph.name, err)
				}
				if err := s.settle(ctx); err != nil {
					return comparison{}, fmt.Errorf("%s run %d: after %s: %w", s.name, r, ph.name, err)
				}
			}
		}
		for i, s := range order {
			m := ms[i]
			s.results = append(s.results, m)
			log.Info("run", "target", s.name, "run", r,
				"big_push_MBps", fmt.Sprintf("%.1f", mbps(m.BigBytes, m.BigPush)),
				"big_pull_MBps", fmt.Sprintf("%.1f", mbps(m.BigBytes, m.BigPull)),
				"small_push", m.SmallPush.Round(time.Millisecond),
				"small_pull", m.SmallPull.Round(time.Millisecond),
				"manifest_p50", percentile(m.ManifestGET, 50).Round(time.Microsecond),
				"manifest_p99", percentile(m.ManifestGET, 99).Round(time.Microsecond))
			if spread {
				log.Info("run", "target", s.name, "run", r, "big_pull_spread_MBps", fmt.Sprintf("%.1f", mbps(m.BigBytes, m.BigPullSpread)))
			}
		}
	}
	c := newComparison(cfg, w, names, sides, goalsFor(p))
	c.Disk, c.DiskBytes, c.DiskWhere = disk, int64(len(w.big)), env.workDir
	if fs := filesystemOf(env.workDir); fs != "" {
		c.DiskWhere += " (" + fs + ")"
	}
	return c, nil
}

// repoRoot returns the georeg checkout the benchmark runs in, or the
// working directory when it is run from elsewhere.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/georeg/georeg\n") {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}
