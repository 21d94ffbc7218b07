package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// metric is one row of the table: a number derived from one run's
// measurement and which direction is better. key names it for goals; value
// is NaN when the run did not measure it, and a row no run measured is left
// out.
type metric struct {
	key            string
	name           string
	unit           string
	higherIsBetter bool
	value          func(measurement) float64
}

// metrics returns the rows of the table, in order.
func metrics(cfg config, w *workload) []metric {
	big := fmt.Sprintf("%d MiB image (%d × %d MiB layers)", cfg.SizeMiB, w.layers, w.layerSize>>20)
	if w.layerSize%(1<<20) != 0 {
		big = fmt.Sprintf("%d MiB image (%d layers)", cfg.SizeMiB, w.layers)
	}
	return []metric{
		{"big_push", "Push " + big, "MB/s", true, func(m measurement) float64 { return mbps(m.BigBytes, m.BigPush) }},
		{"big_push_all", "Push " + big + " until every node holds it", "MB/s", true, func(m measurement) float64 { return mbps(m.BigBytes, m.BigPushAll) }},
		{"big_pull", "Pull " + big, "MB/s", true, func(m measurement) float64 { return mbps(m.BigBytes, m.BigPull) }},
		{"big_pull_spread", "Pull " + big + ", blobs round-robin over every node", "MB/s", true, func(m measurement) float64 { return mbps(m.BigBytes, m.BigPullSpread) }},
		{"small_push", fmt.Sprintf("Push %d small images, total", w.small), "s", false, func(m measurement) float64 { return m.SmallPush.Seconds() }},
		{"small_pull", fmt.Sprintf("Pull %d small images, total", w.small), "s", false, func(m measurement) float64 { return m.SmallPull.Seconds() }},
		{"manifest_p50", "Manifest GET by tag, p50", "ms", false, func(m measurement) float64 { return ms(percentile(m.ManifestGET, 50)) }},
		{"manifest_p99", "Manifest GET by tag, p99", "ms", false, func(m measurement) float64 { return ms(percentile(m.ManifestGET, 99)) }},
	}
}

// goalsFor returns the ratios comparison p is expected to reach, by metric
// key, with "*" for every row without a goal of its own. Against another
// registry georeg must be at least as good on every row. A 3-zone region
// (issue 3) must pull at least as fast as one node and push at least half as
// fast: on one machine its zones share one disk, and a majority write
// stores two copies on it. Its other rows have no goal.
func goalsFor(p pair) map[string]float64 {
	if p == (pair{"georeg-3zones", "georeg"}) {
		return map[string]float64{"big_push": 0.5, "big_pull": 1, "big_pull_spread": 1}
	}
	if p == (pair{"georeg-endpoint", "georeg"}) {
		// The traffic manager (issue 5) may cost a tenth of the pull
		// throughput; its added manifest latency is reported in ms.
		return map[string]float64{"big_pull": 0.9}
	}
	return map[string]float64{"*": 1}
}

// mbps is a throughput in MB (10^6 bytes) per second.
func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return math.NaN()
	}
	return float64(n) / 1e6 / d.Seconds()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report is everything one invocation measured, as written to JSON.
type report struct {
	Date        time.Time    `json:"date"`
	Elapsed     string       `json:"elapsed"`
	Machine     machine      `json:"machine"`
	Config      config       `json:"config"`
	WorkDir     string       `json:"tmp_dir"`
	LoadBefore  string       `json:"loadavg_before"`
	LoadAfter   string       `json:"loadavg_after"`
	Comparisons []comparison `json:"comparisons"`
	// Geo and Scale are the second table's measurements, absent when their
	// section did not run; GeoRows is that table.
	Geo     *geoResult    `json:"geo,omitempty"`
	Scale   []scaleResult `json:"scale,omitempty"`
	Sync    *syncResult   `json:"sync,omitempty"`
	Idle    *idleResult   `json:"idle,omitempty"`
	GeoRows []geoRow      `json:"geo_table,omitempty"`
}

// comparison is the result of one target against another. Names has both
// targets even when -only ran one of them.
type comparison struct {
	Names   []string                 `json:"targets"`
	About   map[string]string        `json:"about"`
	Nodes   map[string]int           `json:"nodes"`
	Rows    []row                    `json:"rows"`
	Raw     map[string][]measurement `json:"raw"`
	Runs    int                      `json:"runs"`
	Summary string                   `json:"workload"`
	// Disk is the fsync'd write bandwidth of the filesystem the targets
	// store their data on, in MB/s, measured once per run.
	Disk      []float64 `json:"disk_write_mbps"`
	DiskBytes int64     `json:"disk_write_bytes"`
	DiskWhere string    `json:"disk_where"`
}

// row is one metric of a comparison. Values holds each target's value per
// run, Median their medians, Ratio how the first target fares against the
// second (1.0 or more: at least as good), absent when a side did not run,
// and Goal the ratio the first target should reach, absent when none.
type row struct {
	Key            string               `json:"key"`
	Metric         string               `json:"metric"`
	Unit           string               `json:"unit"`
	HigherIsBetter bool                 `json:"higher_is_better"`
	Values         map[string][]float64 `json:"values"`
	Median         map[string]float64   `json:"median"`
	Ratio          *float64             `json:"ratio,omitempty"`
	Goal           *float64             `json:"goal,omitempty"`
}

// newComparison computes the rows of a comparison from its sides' runs.
// goals are the ratios to reach by metric key (see goalsFor).
func newComparison(cfg config, w *workload, names []string, sides []*side, goals map[string]float64) comparison {
	c := comparison{
		Names:   names,
		About:   map[string]string{},
		Nodes:   map[string]int{},
		Raw:     map[string][]measurement{},
		Runs:    cfg.Runs,
		Summary: w.describe(),
	}
	for _, s := range sides {
		c.About[s.name] = s.about
		c.Nodes[s.name] = s.nodes
		c.Raw[s.name] = s.results
	}
	for _, m := range metrics(cfg, w) {
		r := row{Key: m.key, Metric: m.name, Unit: m.unit, HigherIsBetter: m.higherIsBetter, Values: map[string][]float64{}, Median: map[string]float64{}}
		for _, s := range sides {
			for _, res := range s.results {
				if v := m.value(res); !math.IsNaN(v) {
					r.Values[s.name] = append(r.Values[s.name], v)
				}
			}
			if vs := r.Values[s.name]; len(vs) > 0 {
				r.Median[s.name] = median(vs)
			}
		}
		if len(r.Median) == 0 {
			continue
		}
		if q := ratio(r.median(names[0]), r.median(names[1]), m.higherIsBetter); !math.IsNaN(q) {
			r.Ratio = &q
		}
		if g, ok := goals[m.key]; ok {
			r.Goal = &g
		} else if g, ok := goals["*"]; ok {
			r.Goal = &g
		}
		c.Rows = append(c.Rows, r)
	}
	return c
}

// median returns the median of target name, or NaN when it did not run.
func (r row) median(name string) float64 {
	if v, ok := r.Median[name]; ok {
		return v
	}
	return math.NaN()
}

// table returns the comparison as a table.
func (c comparison) table() table {
	a, b := c.Names[0], c.Names[1]
	t := table{
		header: []string{"Measure", a, b, fmt.Sprintf("%s vs %s (≥ 1.0: %s as good or better)", a, b, a), "Goal"},
		align:  []byte("lrrrr"),
	}
	for _, r := range c.Rows {
		q, goal := math.NaN(), ""
		if r.Ratio != nil {
			q = *r.Ratio
		}
		if r.Goal != nil {
			goal = "≥ " + formatRatio(*r.Goal)
			if r.Ratio != nil && *r.Ratio < *r.Goal {
				goal += " missed"
			}
		}
		t.rows = append(t.rows, []string{
			fmt.Sprintf("%s (%s)", r.Metric, r.Unit),
			formatValue(r.median(a)), formatValue(r.median(b)), formatRatio(q), goal,
		})
	}
	return t
}

// below lists the rows where the first target falls short of the row's goal.
func (c comparison) below() []string {
	var out []string
	for _, r := range c.Rows {
		if r.Ratio != nil && r.Goal != nil && *r.Ratio < *r.Goal {
			out = append(out, fmt.Sprintf("%s (%.2f, goal %.2f)", r.Metric, *r.Ratio, *r.Goal))
		}
	}
	return out
}

// spread returns the largest max/min ratio of one target's runs over the
// rows, with the row and target it belongs to: how much the runs disagree,
// to judge how far a ratio near 1.0 can be trusted.
func (c comparison) spread() (worst float64, metric, target string) {
	worst = 1
	for _, r := range c.Rows {
		for _, n := range c.Names {
			vs := r.Values[n]
			if len(vs) < 2 {
				continue
			}
			lo, hi := slices.Min(vs), slices.Max(vs)
			if lo > 0 && hi/lo > worst {
				worst, metric, target = hi/lo, r.Metric, n
			}
		}
	}
	return worst, metric, target
}

// markdown renders the report for people: tables first, then what was
// measured and where.
func (rep report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## georeg benchmark, %s\n\n", rep.Date.Format("2006-01-02 15:04 MST"))
	for _, c := range rep.Comparisons {
		a, o := c.Names[0], c.Names[1]
		if len(rep.Comparisons) > 1 {
			fmt.Fprintf(&b, "### %s vs %s\n\n", a, o)
		}
		b.WriteString(c.table().markdown())
		fmt.Fprintf(&b, "\nMedians of %d runs after a warm-up. The last column is %s/%s for throughput and %s/%s for times and latencies, so 1.0 or more means %s is at least as good.\n", c.Runs, a, o, o, a, a)
		b.WriteString(c.addedLatency())
		if below := c.below(); len(below) > 0 {
			fmt.Fprintf(&b, "Short of the goal: %s.\n", strings.Join(below, "; "))
		}
		if worst, metric, target := c.spread(); metric != "" {
			fmt.Fprintf(&b, "Largest run-to-run spread (slowest/fastest run of one target): %.2f× (%s, %s).\n", worst, metric, target)
		}
		b.WriteString(c.diskNotes())
		b.WriteString("\n")
		for _, n := range c.Names {
			if about, ok := c.About[n]; ok {
				fmt.Fprintf(&b, "- %s: %s\n", n, about)
			}
		}
		fmt.Fprintf(&b, "- Workload: %s\n\n", c.Summary)
	}
	b.WriteString(rep.geoMarkdown())
	m := rep.Machine
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %.1f GiB RAM, %s, Linux %s; %s; every server ran with GOMAXPROCS=%d (georeg's traffic manager with 1, `mesh up`'s default); data under %s; load average %s before, %s after; took %s.\n\n",
		m.NumCPU, m.CPUModel, float64(m.MemTotalKiB)/(1<<20), m.Platform, m.Kernel, m.GoVersion, rep.Config.GOMAXPROCS, rep.WorkDir, rep.LoadBefore, rep.LoadAfter, rep.Elapsed)
	return b.String()
}

// describe says what the workload does, for the report.
func (w *workload) describe() string {
	return fmt.Sprintf("big image of %d random layers of %d MiB pushed monolithically (POST, then PUT ?digest= with the whole layer), "+
		"%d layers at a time, then config and manifest; pulled %d blobs at a time, every byte read and checked against its digest. "+
		"%d small images (a unique %d-byte layer, config, manifest) over %d repositories pushed and pulled by %d concurrent clients; "+
		"manifest GET latency is one request at a time over all of them. Every run uses content new to both registries. MB = 10^6 bytes.",
		w.layers, w.layerSize>>20, w.parallel, w.parallel, w.small, w.smallSize, w.smallRepos, w.parallel)
}

// write saves the Markdown and the JSON of rep under dir, both with a
// timestamped name and as latest.*, and returns the paths written.
func (rep report) write(dir, md string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	stamp := rep.Date.Format("20060102-150405")
	var paths []string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"bench-" + stamp + ".md", []byte(md)},
		{"bench-" + stamp + ".json", js},
		{"latest.md", []byte(md)},
		{"latest.json", js},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// machine describes where the benchmark ran.
type machine struct {
	NumCPU      int    `json:"nproc"`
	CPUModel    string `json:"cpu_model"`
	MemTotalKiB int64  `json:"mem_total_kib"`
	Kernel      string `json:"kernel"`
	Platform    string `json:"platform"`
	GoVersion   string `json:"go_version"`
}

func describeMachine() machine {
	m := machine{
		NumCPU:    runtime.NumCPU(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		GoVersion: runtime.Version(),
		CPUModel:  "unknown CPU",
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		kib, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		m.MemTotalKiB = kib
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPUModel = v
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = string(bytes.TrimSpace(b))
	}
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages, which say whether
// other work shared the machine with the benchmark.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], "/")
}

// procField returns the value of the first "key: value" line of a /proc
// file with that key.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// diskNotes relates the big image's push to the disk's own fsync'd write
// bandwidth: every target fsyncs each blob before acknowledging it, so the
// disk bounds the push, and a region whose zones share the disk writes each
// byte once per copy.
func (c comparison) diskNotes() string {
	disk := median(c.Disk)
	if math.IsNaN(disk) || disk <= 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Disk: %s MB/s fsync'd write bandwidth (one %d MiB file written 1 MiB at a time, then fsync'd, in the targets' filesystem, %s, at the start of every run; runs: %s).",
		formatValue(disk), c.DiskBytes>>20, c.DiskWhere, formatValues(c.Disk))
	push, all := c.row("big_push"), c.row("big_push_all")
	if push == nil {
		b.WriteString("\n")
		return b.String()
	}
	var fr []string
	for _, n := range c.Names {
		if v := push.median(n); !math.IsNaN(v) {
			fr = append(fr, fmt.Sprintf("%s %.2f", n, v/disk))
		}
	}
	fmt.Fprintf(&b, " Big-image push as a fraction of it: %s.\n", strings.Join(fr, ", "))
	for _, n := range c.Names {
		zones := c.Nodes[n]
		v := push.median(n)
		if zones < 2 || math.IsNaN(v) {
			continue
		}
		majority := zones/2 + 1
		fmt.Fprintf(&b, "%d-zone push as a fraction of the disk's fsync'd write bandwidth: %.2f (%s). "+
			"An upload is acknowledged once %d of its %d zones hold it fsync'd, and here they share one disk, so by the acknowledgement the disk had written at least %d × %.2f = %.2f of its bandwidth",
			zones, v/disk, n, majority, zones, majority, v/disk, float64(majority)*v/disk)
		if all != nil {
			if va := all.median(n); !math.IsNaN(va) {
				fmt.Fprintf(&b, "; until all %d zones held the image, %d × %.2f = %.2f", zones, zones, va/disk, float64(zones)*va/disk)
			}
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// row returns the row with the metric key, or nil.
func (c comparison) row(key string) *row {
	for i := range c.Rows {
		if c.Rows[i].Key == key {
			return &c.Rows[i]
		}
	}
	return nil
}

// formatValues prints the values of the runs in order.
func formatValues(vs []float64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = formatValue(v)
	}
	return strings.Join(s, ", ")
}

// addedLatency says, for a comparison of the endpoint with a node, how many
// milliseconds the traffic manager adds to a manifest GET (goal: at most 1
// ms at p50).
func (c comparison) addedLatency() string {
	if c.Names[0] != "georeg-endpoint" {
		return ""
	}
	var parts []string
	for _, r := range c.Rows {
		if r.Key != "manifest_p50" && r.Key != "manifest_p99" {
			continue
		}
		a, b := r.median(c.Names[0]), r.median(c.Names[1])
		if math.IsNaN(a) || math.IsNaN(b) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %+.3f ms", strings.TrimPrefix(r.Key, "manifest_"), a-b))
		if r.Key == "manifest_p50" && a-b > 1 {
			parts[len(parts)-1] += " (goal ≤ 1 ms missed)"
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "Latency the traffic manager adds to a manifest GET: " + strings.Join(parts, ", ") + " (goal: p50 at most 1 ms).\n"
}
