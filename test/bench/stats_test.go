package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"empty", nil, math.NaN()},
		{"one", []float64{7}, 7},
		{"odd unsorted", []float64{3, 1, 2}, 2},
		{"even takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"duplicates", []float64{5, 5, 1}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			got := median(in)
			if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("median modified its input: %v", in)
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n int) []time.Duration {
		// n..1 ms, reversed so the function has to sort.
		ds := make([]time.Duration, n)
		for i := range ds {
			ds[i] = time.Duration(n-i) * time.Millisecond
		}
		return ds
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", ms(1), 99, time.Millisecond},
		{"p50 of 500 is the 250th", ms(500), 50, 250 * time.Millisecond},
		{"p99 of 500 is the 495th", ms(500), 99, 495 * time.Millisecond},
		{"p100 is the maximum", ms(500), 100, 500 * time.Millisecond},
		{"tiny p is the minimum", ms(500), 0.01, time.Millisecond},
		{"p99 of 10 rounds up to the 10th", ms(10), 99, 10 * time.Millisecond},
		{"p50 of 4 is the 2nd, no interpolation", ms(4), 50, 2 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		a, b   float64
		higher bool
		want   float64
	}{
		{"throughput, a faster", 400, 200, true, 2},
		{"throughput, a slower", 100, 200, true, 0.5},
		{"time, a faster", 1, 2, false, 2},
		{"time, a slower", 4, 2, false, 0.5},
		{"equal", 3, 3, false, 1},
		{"a missing", nan, 2, true, nan},
		{"b missing", 2, nan, false, nan},
		{"zero", 0, 2, false, nan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ratio(tc.a, tc.b, tc.higher)
			if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("ratio(%v, %v, %v) = %v, want %v", tc.a, tc.b, tc.higher, got, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{1234.56, "1235"},
		{412.3, "412"},
		{38.14, "38.1"},
		{1.234, "1.23"},
		{0.0352, "0.0352"},
		{math.NaN(), "—"},
	} {
		if got := formatValue(tc.in); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := formatRatio(1.005); got != "1.00" && got != "1.01" {
		t.Errorf("formatRatio(1.005) = %q", got)
	}
	if got := formatRatio(math.NaN()); got != "—" {
		t.Errorf("formatRatio(NaN) = %q, want —", got)
	}
}

func TestTableMarkdown(t *testing.T) {
	for _, tc := range []struct {
		name string
		tab  table
		want string
	}{
		{
			name: "pads and aligns",
			tab: table{
				header: []string{"Measure", "a", "ratio"},
				align:  []byte("lrr"),
				rows:   [][]string{{"Push", "412", "1.08"}, {"Manifest p99", "—", "0.9"}},
			},
			want: "" +
				"| Measure      |   a | ratio |\n" +
				"| ------------ | --: | ----: |\n" +
				"| Push         | 412 |  1.08 |\n" +
				"| Manifest p99 |   — |   0.9 |\n",
		},
		{
			name: "header only",
			tab:  table{header: []string{"x"}, align: []byte("l")},
			want: "| x   |\n| --- |\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tab.markdown(); got != tc.want {
				t.Errorf("markdown() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestComparisonOrientsRatios(t *testing.T) {
	// georeg twice as fast as distribution on every row: every ratio must
	// read 2.00, whichever direction the row's unit runs.
	mk := func(scale time.Duration) measurement {
		return measurement{
			BigBytes: 256e6, BigPush: time.Second * scale, BigPull: time.Second * scale,
			SmallPush: 2 * time.Second * scale, SmallPull: time.Second * scale,
			ManifestGET: []time.Duration{time.Millisecond * scale, 2 * time.Millisecond * scale},
		}
	}
	cfg := config{SizeMiB: 256, Layers: 8, Runs: 3}
	w := &workload{layerSize: 32 << 20, layers: 8, small: 2, smallSize: 1024, parallel: 4, smallRepos: 1}
	sides := []*side{
		{name: "georeg", results: []measurement{mk(1), mk(1), mk(1)}},
		{name: "distribution", results: []measurement{mk(2), mk(2), mk(2)}},
	}
	c := newComparison(cfg, w, []string{"georeg", "distribution"}, sides, goalsFor(pair{"georeg", "distribution"}))
	if len(c.Rows) != 6 {
		t.Fatalf("got %d rows, want 6", len(c.Rows))
	}
	for _, r := range c.Rows {
		if r.Ratio == nil || math.Abs(*r.Ratio-2) > 1e-9 {
			t.Errorf("%s: ratio %v, want 2", r.Metric, r.Ratio)
		}
	}
	if b := c.below(); len(b) != 0 {
		t.Errorf("below() = %v, want none", b)
	}
	md := c.table().markdown()
	if !strings.Contains(md, "georeg vs distribution (≥ 1.0: georeg as good or better)") {
		t.Errorf("table lacks the ratio column label:\n%s", md)
	}

	// With one side missing (-only) there is no ratio.
	c = newComparison(cfg, w, []string{"georeg", "distribution"}, sides[:1], goalsFor(pair{"georeg", "distribution"}))
	for _, r := range c.Rows {
		if r.Ratio != nil {
			t.Errorf("%s: ratio %v with one side, want none", r.Metric, *r.Ratio)
		}
	}
}

func TestPairs(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    []pair
		wantErr bool
	}{
		{in: []string{"georeg:distribution"}, want: []pair{{"georeg", "distribution"}}},
		{in: []string{"georeg:distribution", "a:b"}, want: []pair{{"georeg", "distribution"}, {"a", "b"}}},
		{in: []string{"georeg"}, wantErr: true},
		{in: []string{":distribution"}, wantErr: true},
		{in: nil, wantErr: true},
	} {
		got, err := config{Compare: tc.in}.pairs()
		if (err != nil) != tc.wantErr {
			t.Errorf("pairs(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (len(got) != len(tc.want) || got[0] != tc.want[0]) {
			t.Errorf("pairs(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
