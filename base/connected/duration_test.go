package connected

import (
	"errors"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const h, d = time.Hour, 24 * time.Hour
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT1H", h, true},
		{"PT3H", 3 * h, true},
		{"P2D", 2 * d, true},
		{"P7D", 7 * d, true},
		{"P1W", 7 * d, true},
		{"P90D", 90 * d, true},
		{"P1DT12H", 36 * h, true},
		{"PT90M", 90 * time.Minute, true},
		{"P.001D", 0, false},
		{"PT0.5S", 0, false},
		{"PT1.5M", 90 * time.Second, true},
		{"PT1H30M15S", h + 30*time.Minute + 15*time.Second, true},
		{"P0D", 0, true},
		{"", 0, false},
		{"P", 0, false},
		{"PT", 0, false},
		{"P1DT", 0, false},
		{"1D", 0, false},
		{"PT1D", 0, false},
		{"P1H", 0, false},
		{"P1Y", 0, false},
		{"P1M", 0, false},
		{"PT1.5H", 90 * time.Minute, true},
		{"P-1D", 0, false},
		{"P1W1D", 8 * d, true},
		{"-P1D", 0, false},
		{"P1D2", 0, false},
		{"P1..5D", 0, false},
		{"P9999999999D", 0, false},
		{"P99999D", 0, false},
		{"pt1h", 0, false},
		{"PT1H ", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseDuration(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if !tc.ok && (err == nil || !errors.Is(err, ErrInvalid)) {
			t.Errorf("ParseDuration(%q) = %v, %v; want an ErrInvalid", tc.in, got, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for _, d := range []time.Duration{time.Hour, 3 * time.Hour, 48 * time.Hour, 36*time.Hour + 90*time.Second, 0} {
		s := FormatDuration(d)
		back, err := ParseDuration(s)
		if err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q, parsed back %v, %v", d, s, back, err)
		}
	}
}

// FuzzParseDuration: no input panics, every accepted one is in range,
// and formats back to the same length.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"PT1H", "P2D", "P1W", "P1DT12H30M5S", "P1Y", "PT", "P-1D", "P99999999D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 || d > maxDuration {
			t.Fatalf("ParseDuration(%q) = %v, out of range", s, d)
		}
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v; formatted %q parses to %v, %v", s, d, FormatDuration(d), back, err)
		}
	})
}
