package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// geoRow is one row of the "Geo-replication and failover" table. Its cells
// are text because a row may hold a pair (p50 / p99) and a reference that is
// an ideal rather than another registry.
type geoRow struct {
	Measure string `json:"measure"`
	Value   string `json:"georeg"`
	Ref     string `json:"compared_with,omitempty"`
	Ratio   string `json:"ratio,omitempty"`
	Goal    string `json:"goal,omitempty"`
}

// pair formats two values as "a / b".
func pair2(a, b float64) string { return formatValue(a) + " / " + formatValue(b) }

// pctMs returns the p50 and p99 of ds in milliseconds.
func pctMs(ds []time.Duration) (p50, p99 float64) {
	return ms(percentile(ds, 50)), ms(percentile(ds, 99))
}

// mib formats bytes as MiB.
func mib(b int64) float64 { return float64(b) / (1 << 20) }

// geoRows returns the rows of the second table from what the geo and scale
// sections measured; either may be missing.
func geoRows(g *geoResult, scale []scaleResult) []geoRow {
	var rows []geoRow
	if g != nil {
		home, peers := g.Regions[0], g.Regions[1:]
		for _, p := range peers {
			p50, p99 := pctMs(g.SmallLatency[p])
			rows = append(rows, geoRow{
				Measure: fmt.Sprintf("Replication latency of a small image, %s → %s (RTT %s ms), p50 / p99 (ms)", home, p, formatValue(ms(g.RTT[p]))),
				Value:   pair2(p50, p99),
			})
		}
		for i, p := range peers {
			if g.PushersLatency[p] == nil {
				continue
			}
			p50, p99 := pctMs(g.PushersLatency[p])
			goal := ""
			if i == len(peers)-1 {
				// The farthest region: issue 14's goal.
				goal = "p99 ≤ 500"
				if p99 > 500 {
					goal += " missed"
				}
			}
			rows = append(rows, geoRow{
				Measure: fmt.Sprintf("Replication latency of a small image, %d pushers at once, %s → %s (RTT %s ms), p50 / p99 (ms)", g.Pushers, home, p, formatValue(ms(g.RTT[p]))),
				Value:   pair2(p50, p99),
				Goal:    goal,
			})
		}
		b := g.Big
		ideal := float64(b.Bytes) / float64(b.Cap)
		for _, p := range peers {
			lat := b.Latency[p].Seconds()
			rows = append(rows, geoRow{
				Measure: fmt.Sprintf("Replication of a %d MiB image at a %s cap, %s → %s (s)", b.Bytes>>20, formatRate(b.Cap), home, p),
				Value:   formatValue(lat),
				Ref:     fmt.Sprintf("ideal %s (size/cap); the simulated link allows %s", formatValue(ideal), formatValue(b.Bound[p].Seconds())),
				Ratio:   formatRatio(ratio(lat, ideal, false)),
			})
		}
		d := g.Dedup
		for _, p := range peers {
			r := d.Sent[p] / float64(d.Unique)
			goal := "1.00"
			if r > 1.005 {
				goal += " missed"
			}
			rows = append(rows, geoRow{
				Measure: fmt.Sprintf("Dedup: bytes sent to %s / unique bytes pushed (%d images sharing a %d MiB layer)", p, d.Images, d.BaseBytes>>20),
				Value:   fmt.Sprintf("%.2f", r),
				Ref:     fmt.Sprintf("%.2f without dedup", float64(d.Referenced)/float64(d.Unique)),
				Goal:    goal,
			})
		}
		f := g.Failover
		goal := "≤ 2.00"
		if f.Failover > 2*time.Second {
			goal += " missed"
		}
		rows = append(rows,
			geoRow{
				Measure: fmt.Sprintf("Failover: `chaos kill-region %s` to the first pull through %s's listener answered by another region (s)", home, home),
				Value:   formatValue(f.Failover.Seconds()),
				Ref:     fmt.Sprintf("the command took %s s; answered by %s", formatValue(f.KillCmd.Seconds()), f.By),
				Goal:    goal,
			},
			geoRow{
				Measure: "Failed pulls during failover and failback",
				Value:   fmt.Sprintf("%d of %d", f.Failed, f.Pulls),
				Goal:    map[bool]string{true: "0", false: "0 missed"}[f.Failed == 0],
			},
			geoRow{
				Measure: fmt.Sprintf("Failback: `chaos restart %s` to the first pull answered by %s again (s)", home, home),
				Value:   formatValue(f.Failback.Seconds()),
				Ref:     fmt.Sprintf("the command took %s s (start, catch up, answer)", formatValue(f.RestartCmd.Seconds())),
			})
		e := g.Endpoint
		ep50, ep99 := pctMs(e.Endpoint)
		dp50, dp99 := pctMs(e.Direct)
		goal = "p50 ≤ 1"
		if ep50-dp50 > 1 {
			goal += " missed"
		}
		rows = append(rows, geoRow{
			Measure: "Traffic manager's added latency, manifest GET by tag, p50 / p99 (ms)",
			Value:   fmt.Sprintf("%+.3f / %+.3f", ep50-dp50, ep99-dp99),
			Ref:     fmt.Sprintf("through it %s, direct at the node %s", pair2(ep50, ep99), pair2(dp50, dp99)),
			Goal:    goal,
		})
	}
	var gr, dr *scaleResult
	for i := range scale {
		switch scale[i].Target {
		case "georeg":
			gr = &scale[i]
		case "distribution":
			dr = &scale[i]
		}
	}
	if gr == nil {
		return rows
	}
	size := fmt.Sprintf("%s repositories and %s tags", thousands(gr.Repos), thousands(gr.Repos*gr.Tags))
	// scalar adds a row of one value per target, lower is better.
	scalar := func(measure string, v func(*scaleResult) float64) {
		r := geoRow{Measure: measure, Value: formatValue(v(gr))}
		if dr != nil {
			r.Ref = "distribution " + formatValue(v(dr))
			r.Ratio = formatRatio(ratio(v(gr), v(dr), false))
		}
		rows = append(rows, r)
	}
	// latencies adds a p50 / p99 row, lower is better.
	latencies := func(measure string, ds func(*scaleResult) []time.Duration) {
		g50, g99 := pctMs(ds(gr))
		r := geoRow{Measure: measure, Value: pair2(g50, g99)}
		if dr != nil {
			d50, d99 := pctMs(ds(dr))
			r.Ref = "distribution " + pair2(d50, d99)
			r.Ratio = formatRatio(ratio(g50, d50, false)) + " / " + formatRatio(ratio(g99, d99, false))
		}
		rows = append(rows, r)
	}
	scalar(fmt.Sprintf("Load %s (a mount of 2 blobs and %d manifest PUTs by tag per repository) (s)", size, gr.Tags),
		func(s *scaleResult) float64 { return s.Load.Seconds() })
	scalar("Server CPU time spent loading them (s)", func(s *scaleResult) float64 { return s.LoadCPU.Seconds() })
	scalar("Resident memory per node with "+size+" (MiB)", func(s *scaleResult) float64 { return mib(s.RSS) })
	scalar("Of which anonymous memory (heap, stacks; the rest is mapped files: the executable, bbolt databases) (MiB)", func(s *scaleResult) float64 { return mib(s.RSSAnon) })
	scalar("Peak resident memory while loading and listing (MiB)", func(s *scaleResult) float64 { return mib(s.PeakRSS) })
	latencies(fmt.Sprintf("`_catalog` page latency (n=%d), p50 / p99 (ms)", scalePage), func(s *scaleResult) []time.Duration { return s.CatalogPages })
	latencies("Tags list latency, p50 / p99 (ms)", func(s *scaleResult) []time.Duration { return s.TagsList })
	return rows
}

// geoTable renders rows as a table.
func geoTable(rows []geoRow) table {
	t := table{
		header: []string{"Measure", "georeg", "Compared with", "Ratio (≥ 1.0: georeg as good or better)", "Goal"},
		align:  []byte("lrlrr"),
	}
	for _, r := range rows {
		t.rows = append(t.rows, []string{r.Measure, r.Value, r.Ref, r.Ratio, r.Goal})
	}
	return t
}

// secondRows are the rows of the second table: geo, scale, sync and idle.
func (rep report) secondRows() []geoRow {
	return slices.Concat(geoRows(rep.Geo, rep.Scale), syncRows(rep.Sync), idleRows(rep.Idle))
}

// geoMarkdown renders the second table with what it measured and how.
func (rep report) geoMarkdown() string {
	rows := rep.secondRows()
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("### Geo-replication and failover\n\n")
	b.WriteString(geoTable(rows).markdown())
	b.WriteString("\n")
	if r := rep.Idle; r != nil {
		fmt.Fprintf(&b, "- Idle: `georeg mesh up --regions %s --zones 3` (make run's mesh) left alone for %v, then the user and system CPU time of its %d processes over %v, from /proc/PID/stat.\n",
			strings.Join(idleRegions, ","), r.Settle, len(r.Cores), r.Window.Round(time.Second))
	}
	if g := rep.Geo; g != nil {
		fmt.Fprintf(&b, "- Mesh: %s. Every push goes through %s's traffic manager listener; one zone per region keeps the run short (with three zones, a peer also copies what it receives to a second zone before committing it, which these rows leave out).\n", g.About, g.Regions[0])
		fmt.Fprintf(&b, "- Replication latency: %d small images (one 1 KiB layer, config, manifest) pushed one at a time; each is timed from its push's acknowledgement until the peer's node lists its tag (a tag list never reads through, and a tag is committed with its manifest, after its blobs), polled every %v.\n", g.SmallImages, replPoll)
		if g.Pushers > 0 {
			fmt.Fprintf(&b, "- Concurrent pushers: %d clients push %d small images each, back to back, all starting at once, to one repository under tags of their own; each image is timed from its push's acknowledgement until the peer's node lists its tag, seen by one poller per peer listing the repository's tags every %v.\n", g.Pushers, g.PusherImages, replPoll)
		}
		fmt.Fprintf(&b, "- Big image: `georeg chaos bandwidth %s <peer> %s` on both links, then the image pushed and timed as above. The ideal is its blob bytes (%d) at the cap; the simulated link also holds at most %d MiB in flight per one-way delay, which on a long link allows less than the cap.\n", g.Regions[0], g.Big.CapText, g.Big.Bytes, wanWindow>>20)
		fmt.Fprintf(&b, "- Dedup: %d images, each in its own repository, sharing a %d MiB layer and each with a 64 KiB layer and a config of its own, pushed back to back; bytes sent are the growth of `georeg_replication_bytes_sent_total{peer}` over every node (the peers' `_received_total` grew by %s), unique bytes are each distinct blob once (%d).\n",
			g.Dedup.Images, g.Dedup.BaseBytes>>20, formatReceived(g), g.Dedup.Unique)
		fmt.Fprintf(&b, "- Failover: %d clients pull small images (manifest by digest, then every blob, checked) through %s's listener every 10 ms each; a pull is answered by the region named in its manifest answer's Georeg-Region header.\n", g.Failover.Workers, g.Regions[0])
		fmt.Fprintf(&b, "- Traffic manager: %d manifest GETs by tag through %s's listener and as many directly at the node it routes to, interleaved, with the simulated client path (%v in the default WAN) set to 0 meanwhile.\n", len(g.Endpoint.Endpoint), g.Regions[0], g.Endpoint.ClientRTT)
		for _, f := range g.Failover.Failures {
			fmt.Fprintf(&b, "- Failed pull: %s\n", f)
		}
	}
	for _, s := range rep.Scale {
		fmt.Fprintf(&b, "- Scale, %s: %s, data in %s; resident memory %.0f MiB after start and one push, %.0f MiB at the end.\n", s.Target, s.About, s.DataDir, mib(s.RSSEmpty), mib(s.RSS))
	}
	if len(rep.Scale) > 0 {
		s := rep.Scale[0]
		fmt.Fprintf(&b, "- Scale: one small image pushed once, then mounted into each of %s repositories and its manifest PUT under %d tags in each, by %d concurrent clients; resident memory is VmRSS of the server process after the listings (anonymous: RssAnon; peak: VmHWM). `_catalog` walked %d times in pages of %d; the tags of 500 repositories listed one at a time. Measured on a single-region mesh; the sync rows measure replicating such a registry.\n",
			thousands(s.Repos), s.Tags, rep.Config.ScaleConc, 3, scalePage)
	}
	if s := rep.Sync; s != nil {
		fmt.Fprintf(&b, "- Sync: `mesh up --regions %s --zones 1`, then %s repositories of %d tags written at %s's node by 32 clients (a 1 MiB layer and a config mounted into each repository, and a manifest of its own per tag), then `replication create --region %s`, timed to Ready and checked by listing every tag there. Then %s is killed (`chaos kill-region`), as many repositories again written (their own layer), and `chaos restart` timed until %s lists every tag. Bytes sent are the growth of %s's `georeg_replication_bytes_sent_total{peer=\"%s\"}`; unique bytes are the load's two blobs.\n",
			syncRegions[0], thousands(s.Repos), s.Tags, syncRegions[0], syncRegions[1], syncRegions[1], syncRegions[1], syncRegions[0], syncRegions[1])
		fmt.Fprintf(&b, "- Sync progress `replication create` printed:\n\n```\n%s```\n", s.Progress)
	}
	return b.String()
}

func formatReceived(g *geoResult) string {
	var parts []string
	for _, p := range g.Regions[1:] {
		parts = append(parts, fmt.Sprintf("%s %.0f", p, g.Dedup.Received[p]))
	}
	return strings.Join(parts, ", ")
}

// formatRate prints a rate in bytes per second as MB/s.
func formatRate(bps int64) string {
	return formatValue(float64(bps)/1e6) + " MB/s"
}

// thousands prints n with commas between groups of three digits.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
