package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// median returns the median of xs (the mean of the two middle values when
// len(xs) is even), or NaN when xs is empty. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method: the smallest value that at least p% of the samples do
// not exceed. Nearest rank never interpolates, so p99 of 500 samples is the
// 495th smallest, a latency a request actually had. It returns 0 for no
// samples. ds is not modified.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// ratio returns how much better a is than b as a factor where 1.0 or more
// means a is at least as good: a/b when higher values are better
// (throughput), b/a when lower values are better (times, latencies). It
// returns NaN when either value is missing or the division is meaningless.
func ratio(a, b float64, higherIsBetter bool) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || a <= 0 || b <= 0 {
		return math.NaN()
	}
	if higherIsBetter {
		return a / b
	}
	return b / a
}

// formatValue prints a measurement with about three significant digits,
// without switching to exponent notation for large throughputs.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// formatRatio prints a ratio with two decimals, or a dash when there is none.
func formatRatio(r float64) string {
	if math.IsNaN(r) {
		return "—"
	}
	return fmt.Sprintf("%.2f", r)
}

// table is a Markdown table: a header row, a column alignment per column
// ('l' or 'r') and body rows of the same width.
type table struct {
	header []string
	align  []byte
	rows   [][]string
}

// markdown renders t as a GitHub-flavoured Markdown table with columns padded
// to equal width, so it also reads well in a terminal.
func (t table) markdown() string {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)), 3)
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if t.align[i] == 'r' {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			} else {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			}
		}
		b.WriteString("\n")
	}
	line(t.header)
	b.WriteString("|")
	for i := range t.header {
		dashes := strings.Repeat("-", width[i])
		if t.align[i] == 'r' {
			dashes = dashes[1:] + ":"
		}
		fmt.Fprintf(&b, " %s |", dashes)
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}
