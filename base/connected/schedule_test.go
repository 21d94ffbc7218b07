package connected

import (
	"errors"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	cases := []struct {
		expr, window string
		ok           bool
	}{
		{"", "", true},
		{"0 */6 * * *", "PT1H", true},
		{"@daily", "P7D", true},
		{"0 0 * * 1", "PT3H", true},
		{"0 */6 * * *", "", false},
		{"", "PT1H", false},
		{"0 */6 * *", "PT1H", false},
		{"61 * * * *", "PT1H", false},
		{"every six hours", "PT1H", false},
		{"0 */6 * * *", "PT59M", false},
		{"0 */6 * * *", "P7DT1S", false},
		{"0 */6 * * *", "P8D", false},
		{"0 */6 * * *", "3h", false},
		{"0 0 30 2 *", "PT1H", false}, // never fires
	}
	for _, tc := range cases {
		_, err := ParseSchedule(tc.expr, tc.window)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSchedule(%q, %q) = %v, want ok=%v", tc.expr, tc.window, err, tc.ok)
		}
	}
}

func TestScheduleAt(t *testing.T) {
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	s, err := ParseSchedule("0 */6 * * *", "PT1H")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		now        time.Time
		start, end time.Time
		in         bool
	}{
		{at(0, 0), at(0, 0), at(1, 0), true},
		{at(0, 30), at(0, 0), at(1, 0), true},
		{at(1, 0), at(6, 0), at(7, 0), false},
		{at(5, 59), at(6, 0), at(7, 0), false},
		{at(6, 59), at(6, 0), at(7, 0), true},
		{at(23, 0), at(24, 0), at(25, 0), false},
	}
	for _, tc := range cases {
		start, end, in := s.At(tc.now)
		if !start.Equal(tc.start) || !end.Equal(tc.end) || in != tc.in {
			t.Errorf("At(%v) = %v, %v, %v; want %v, %v, %v", tc.now.Format("15:04"), start, end, in, tc.start, tc.end, tc.in)
		}
	}
	// Overlapping windows are one.
	o, _ := ParseSchedule("0 * * * *", "PT2H")
	if start, end, in := o.At(at(3, 30)); !in || !start.Before(at(3, 30)) || end.Sub(at(3, 30)) < 24*time.Hour {
		t.Errorf("hourly windows of 2 h at 03:30: %v %v %v, want open for long", start, end, in)
	}
	if _, end, in := (Schedule{}).At(at(3, 0)); !in || !end.IsZero() {
		t.Errorf("continuous: %v %v", end, in)
	}
}

func TestParseMessageTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 48 * time.Hour, "P1D": 24 * time.Hour, "P90D": 90 * 24 * time.Hour, "P2W": 14 * 24 * time.Hour} {
		if d, err := ParseMessageTTL(in); err != nil || d != want {
			t.Errorf("ParseMessageTTL(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{"PT23H", "P91D", "P1Y", "2d"} {
		if _, err := ParseMessageTTL(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseMessageTTL(%q) = %v, want ErrInvalid", in, err)
		}
	}
}
