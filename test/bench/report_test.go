package main

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/chaos"
)

// regionRuns returns runs of a region of nodes against one node: the region
// pushes at pushFactor of the node's speed and pulls as fast.
func regionRuns(pushFactor float64, spread bool) []*side {
	mk := func(push time.Duration, nodes int) measurement {
		m := measurement{
			BigBytes: 200e6, BigPush: push, BigPull: time.Second / 2,
			SmallPush: time.Second, SmallPull: time.Second,
			ManifestGET: []time.Duration{time.Millisecond},
		}
		if spread {
			m.BigPushAll = push + push/time.Duration(nodes)
			m.BigPullSpread = time.Second / 2
		}
		return m
	}
	regionPush := time.Duration(float64(time.Second) / pushFactor)
	return []*side{
		{name: "georeg-3zones", nodes: 3, results: []measurement{mk(regionPush, 3), mk(regionPush, 3), mk(regionPush, 3)}},
		{name: "georeg", nodes: 1, results: []measurement{mk(time.Second, 1), mk(time.Second, 1), mk(time.Second, 1)}},
	}
}

func TestRegionComparisonGoals(t *testing.T) {
	cfg := config{SizeMiB: 256, Layers: 8, Runs: 3}
	w := &workload{layerSize: 32 << 20, layers: 8, small: 2, smallSize: 1024, parallel: 4, smallRepos: 1}
	names := []string{"georeg-3zones", "georeg"}
	for _, tc := range []struct {
		name       string
		pushFactor float64
		spread     bool
		wantKeys   []string
		wantBelow  []string // metric keys short of their goal
	}{
		{
			name: "push at a third misses its goal", pushFactor: 1.0 / 3, spread: true,
			wantKeys:  []string{"big_push", "big_push_all", "big_pull", "big_pull_spread", "small_push", "small_pull", "manifest_p50", "manifest_p99"},
			wantBelow: []string{"big_push"},
		},
		{
			name: "push at half meets its goal", pushFactor: 0.5, spread: true,
			wantKeys: []string{"big_push", "big_push_all", "big_pull", "big_pull_spread", "small_push", "small_pull", "manifest_p50", "manifest_p99"},
		},
		{
			name: "rows nobody measured are left out", pushFactor: 0.5, spread: false,
			wantKeys: []string{"big_push", "big_pull", "small_push", "small_pull", "manifest_p50", "manifest_p99"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newComparison(cfg, w, names, regionRuns(tc.pushFactor, tc.spread), goalsFor(pair{"georeg-3zones", "georeg"}))
			var keys, below []string
			for _, r := range c.Rows {
				keys = append(keys, r.Key)
				if r.Ratio != nil && r.Goal != nil && *r.Ratio < *r.Goal {
					below = append(below, r.Key)
				}
			}
			if !slices.Equal(keys, tc.wantKeys) {
				t.Errorf("rows %v, want %v", keys, tc.wantKeys)
			}
			if !slices.Equal(below, tc.wantBelow) {
				t.Errorf("short of goal: %v, want %v", below, tc.wantBelow)
			}
			if got := len(c.below()); got != len(tc.wantBelow) {
				t.Errorf("below() has %d entries, want %d", got, len(tc.wantBelow))
			}
			if r := c.row("small_push"); r == nil || r.Goal != nil {
				t.Errorf("small push row %+v: want one without a goal", r)
			}
			if _, err := json.Marshal(c); err != nil {
				t.Errorf("comparison does not encode as JSON: %v", err)
			}
		})
	}
}

func TestDiskNotes(t *testing.T) {
	cfg := config{SizeMiB: 256, Layers: 8, Runs: 3}
	w := &workload{layerSize: 32 << 20, layers: 8, small: 2, smallSize: 1024, parallel: 4, smallRepos: 1}
	// The node pushes 200 MB/s, the region a quarter of that, the disk
	// 500 MB/s.
	c := newComparison(cfg, w, []string{"georeg-3zones", "georeg"}, regionRuns(0.25, true), goalsFor(pair{"georeg-3zones", "georeg"}))
	c.Disk, c.DiskBytes, c.DiskWhere = []float64{400, 500, 600}, 256<<20, "/tmp (ext4 on /dev/vda)"
	got := c.diskNotes()
	for _, want := range []string{
		"Disk: 500 MB/s fsync'd write bandwidth (one 256 MiB file",
		"runs: 400, 500, 600",
		"Big-image push as a fraction of it: georeg-3zones 0.10, georeg 0.40.",
		"3-zone push as a fraction of the disk's fsync'd write bandwidth: 0.10 (georeg-3zones)",
		"2 × 0.10 = 0.20",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("disk notes lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "1-zone") {
		t.Errorf("disk notes speak of copies for a single node:\n%s", got)
	}

	c.Disk = nil
	if got := c.diskNotes(); got != "" {
		t.Errorf("disk notes without a disk measurement = %q, want none", got)
	}
	if v := median(nil); !math.IsNaN(v) {
		t.Errorf("median(nil) = %v", v)
	}
}

func TestHomeNodes(t *testing.T) {
	const status = `{
	  "endpoint": "127.0.0.1:5001",
	  "regions": [
	    {"name": "eastus", "home": false, "zones": [{"zone": 1, "http": "127.0.0.1:6001"}]},
	    {"name": "westus", "home": true, "zones": [
	      {"zone": 3, "http": "127.0.0.1:5003"},
	      {"zone": 1, "http": "127.0.0.1:5001"},
	      {"zone": 2, "http": "127.0.0.1:5002"}
	    ]}
	  ]
	}`
	var st chaos.Status
	if err := json.Unmarshal([]byte(status), &st); err != nil {
		t.Fatal(err)
	}
	want := []string{"http://127.0.0.1:5001", "http://127.0.0.1:5002", "http://127.0.0.1:5003"}
	if got := homeNodes(st, "http"); !slices.Equal(got, want) {
		t.Errorf("homeNodes = %v, want %v", got, want)
	}
}

func TestNewClientNodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		base    string
		nodes   []string
		want    []string
		wantErr bool
	}{
		{"one node", "http://a:1", nil, []string{"http://a:1"}, false},
		{"base listed again", "http://a:1/", []string{"http://a:1", "http://b:2"}, []string{"http://a:1", "http://b:2"}, false},
		{"base first", "http://b:2", []string{"http://a:1", "http://b:2"}, []string{"http://b:2", "http://a:1"}, false},
		{"not a URL", "a:1", nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newClient(nil, tc.base, tc.nodes...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (!slices.Equal(c.nodes, tc.want) || c.base != tc.want[0]) {
				t.Errorf("nodes %v base %s, want %v", c.nodes, c.base, tc.want)
			}
		})
	}
}
