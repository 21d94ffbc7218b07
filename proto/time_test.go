package proto

import (
	"testing"
	"time"
)

func TestTimeRoundTrip(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		in    time.Time
		want  time.Time
		unset bool // converts to no timestamp
	}{
		{name: "zero", in: time.Time{}, want: time.Time{}, unset: true},
		{name: "utc with nanoseconds", in: time.Date(2026, 12, 4, 17, 0, 1, 123456789, time.UTC), want: time.Date(2026, 12, 4, 17, 0, 1, 123456789, time.UTC)},
		{name: "unix epoch is a time", in: time.Unix(0, 0).UTC(), want: time.Unix(0, 0).UTC()},
		{name: "other zone comes back in utc", in: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 2*3600)), want: time.Date(2026, 1, 2, 1, 4, 5, 6, time.UTC)},
		{name: "now, whose monotonic reading stays behind", in: now, want: now.Round(0).UTC()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := Timestamp(tt.in)
			if (ts == nil) != tt.unset {
				t.Fatalf("Timestamp(%v) = %v; want unset %v", tt.in, ts, tt.unset)
			}
			got := Time(ts)
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("Time(Timestamp(%v)) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}
