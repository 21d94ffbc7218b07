package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	const text = `# HELP georeg_replication_bytes_sent_total Blob bytes this node sent to peer regions.
# TYPE georeg_replication_bytes_sent_total counter
georeg_replication_bytes_sent_total{peer="eastus"} 1.6777216e+07
georeg_replication_bytes_sent_total{peer="westeurope"} 42
process_resident_memory_bytes 3.5e+07
go_gc_duration_seconds{quantile="0.5"} 0.000123
`
	got, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []sample{
		{"georeg_replication_bytes_sent_total", map[string]string{"peer": "eastus"}, 16777216},
		{"georeg_replication_bytes_sent_total", map[string]string{"peer": "westeurope"}, 42},
		{"process_resident_memory_bytes", map[string]string{}, 3.5e7},
		{"go_gc_duration_seconds", map[string]string{"quantile": "0.5"}, 0.000123},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d samples, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.value != w.value || len(g.labels) != len(w.labels) {
			t.Errorf("sample %d = %+v, want %+v", i, g, w)
		}
		for k, v := range w.labels {
			if g.labels[k] != v {
				t.Errorf("sample %d label %s = %q, want %q", i, k, g.labels[k], v)
			}
		}
	}

	for _, bad := range []string{"novalue", "name{a=\"b\"} notanumber"} {
		if _, err := parseMetrics(bad + "\n"); err == nil {
			t.Errorf("parseMetrics(%q): no error", bad)
		}
	}
}

func TestNextLink(t *testing.T) {
	for _, tc := range []struct {
		header, want string
	}{
		{"", ""},
		{`</v2/_catalog?last=scale%2Fr00999&n=1000>; rel="next"`, "/v2/_catalog?last=scale%2Fr00999&n=1000"},
		{`<http://127.0.0.1:5000/v2/_catalog?last=a&n=2>; rel="next"`, "/v2/_catalog?last=a&n=2"},
		{`</v2/x>; rel="prev", </v2/_catalog?last=b&n=1>; rel="next"`, "/v2/_catalog?last=b&n=1"},
		{`</v2/x>; rel="prev"`, ""},
	} {
		if got := nextLink(tc.header); got != tc.want {
			t.Errorf("nextLink(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567", -10000: "-10,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMemAndCPUOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	one, err := memOf([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if one.rss <= 0 || one.peak < one.rss || one.anon <= 0 || one.anon > one.rss {
		t.Errorf("memory of this process: %+v", one)
	}
	two, err := memOf([]int{os.Getpid(), os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if two.peak < 2*one.peak {
		t.Errorf("memory of this process counted twice: %+v, once: %+v", two, one)
	}
	before, err := cpuOf([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	after, err := cpuOf([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if after < before || after == 0 {
		t.Errorf("CPU time went from %v to %v while spinning", before, after)
	}
}

// geoFixture is a geo result with round numbers.
func geoFixture(failover time.Duration, failed int, sent float64) *geoResult {
	lat := func(ms ...int) []time.Duration {
		var ds []time.Duration
		for _, m := range ms {
			ds = append(ds, time.Duration(m)*time.Millisecond)
		}
		return ds
	}
	return &geoResult{
		Regions:      []string{"westus", "eastus", "westeurope"},
		RTT:          map[string]time.Duration{"eastus": 70 * time.Millisecond, "westeurope": 140 * time.Millisecond},
		SmallImages:  3,
		SmallLatency: map[string][]time.Duration{"eastus": lat(100, 120, 300), "westeurope": lat(200, 220, 400)},
		Big: bigReplication{Bytes: 200e6, Cap: 100e6, CapText: "100MB/s",
			Latency: map[string]time.Duration{"eastus": 4 * time.Second, "westeurope": 5 * time.Second},
			Bound:   map[string]time.Duration{"eastus": 2 * time.Second, "westeurope": 3 * time.Second}},
		Dedup: dedupResult{Images: 10, BaseBytes: 16 << 20, Unique: 1000, Referenced: 9000,
			Sent:     map[string]float64{"eastus": sent, "westeurope": 1000},
			Received: map[string]float64{"eastus": sent, "westeurope": 1000}},
		Endpoint: endpointLatency{Endpoint: lat(2, 2, 3), Direct: lat(1, 1, 1), ClientRTT: time.Millisecond},
		Failover: failoverResult{Workers: 2, Failover: failover, KillCmd: 50 * time.Millisecond, By: "eastus",
			Failback: 3 * time.Second, RestartCmd: 2 * time.Second, Pulls: 500, Failed: failed},
	}
}

func TestGeoRows(t *testing.T) {
	scale := []scaleResult{
		{Target: "georeg", Repos: 10000, Tags: 10, Load: 100 * time.Second, RSS: 100 << 20, PeakRSS: 200 << 20, RSSAnon: 40 << 20,
			CatalogPages: []time.Duration{time.Millisecond}, TagsList: []time.Duration{time.Millisecond}},
		{Target: "distribution", Repos: 10000, Tags: 10, Load: 200 * time.Second, RSS: 50 << 20, PeakRSS: 100 << 20, RSSAnon: 40 << 20,
			CatalogPages: []time.Duration{10 * time.Millisecond}, TagsList: []time.Duration{2 * time.Millisecond}},
	}
	for _, tc := range []struct {
		name  string
		geo   *geoResult
		scale []scaleResult
		want  map[string][]string // a row whose measure has the prefix → cells it must contain
		rows  int
	}{
		{
			name: "everything", geo: geoFixture(500*time.Millisecond, 0, 1000), scale: scale, rows: 17,
			want: map[string][]string{
				"Replication latency of a small image, westus → eastus (RTT 70 ms)":  {"120 / 300"},
				"Replication of a 190 MiB image at a 100 MB/s cap, westus → eastus":  {"4", "ideal 2 (size/cap)", "0.50"},
				"Dedup: bytes sent to eastus":                                        {"1.00", "9.00 without dedup"},
				"Failover":                                                           {"0.5", "≤ 2.00"},
				"Failed pulls":                                                       {"0 of 500"},
				"Traffic manager's added latency":                                    {"+1.000 / +2.000", "p50 ≤ 1"},
				"Resident memory per node with 10,000 repositories and 100,000 tags": {"100", "distribution 50", "0.50"},
				"Of which anonymous memory":                                          {"40", "distribution 40", "1.00"},
				"`_catalog` page latency":                                            {"1 / 1", "distribution 10 / 10", "10.00 / 10.00"},
				"Load 10,000 repositories and 100,000 tags":                          {"2.00"},
			},
		},
		{
			name: "goals missed", geo: geoFixture(3*time.Second, 2, 2000), rows: 10,
			want: map[string][]string{
				"Failover":                    {"≤ 2.00 missed"},
				"Failed pulls":                {"2 of 500", "0 missed"},
				"Dedup: bytes sent to eastus": {"2.00", "1.00 missed"},
			},
		},
		{
			name: "scale of georeg alone", scale: scale[:1], rows: 7,
			want: map[string][]string{"Resident memory per node": {"100"}},
		},
		{name: "nothing", rows: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := geoRows(tc.geo, tc.scale)
			if len(rows) != tc.rows {
				t.Errorf("%d rows, want %d: %+v", len(rows), tc.rows, rows)
			}
			for prefix, cells := range tc.want {
				var found *geoRow
				for i := range rows {
					if strings.HasPrefix(rows[i].Measure, prefix) {
						found = &rows[i]
						break
					}
				}
				if found == nil {
					t.Errorf("no row %q", prefix)
					continue
				}
				line := strings.Join([]string{found.Value, found.Ref, found.Ratio, found.Goal}, " | ")
				for _, c := range cells {
					if !strings.Contains(line, c) {
						t.Errorf("row %q is %q, want it to contain %q", found.Measure, line, c)
					}
				}
			}
			rep := report{Geo: tc.geo, Scale: tc.scale}
			md := rep.geoMarkdown()
			if (md == "") != (tc.rows == 0) {
				t.Errorf("markdown %q for %d rows", md, tc.rows)
			}
			if _, err := json.Marshal(rep); err != nil {
				t.Errorf("report does not encode: %v", err)
			}
		})
	}
}
