package connected

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Sync window and message TTL bounds, after ACR's.
const (
	MinSyncWindow     = time.Hour
	MaxSyncWindow     = 7 * 24 * time.Hour
	MinMessageTTL     = 24 * time.Hour
	MaxMessageTTL     = 90 * 24 * time.Hour
	DefaultMessageTTL = 2 * 24 * time.Hour
)

// Schedule is when a connected registry may talk to its parent: always
// (the zero Schedule, continuous sync), or during windows that open at
// each time of a cron schedule (UTC) and last Window.
type Schedule struct {
	cron   cron.Schedule
	Window time.Duration
}

// ParseSchedule parses a cron expression (five fields: minute, hour, day
// of month, month, day of week; or a descriptor such as @daily), read in
// UTC, and an ISO 8601 window of MinSyncWindow to MaxSyncWindow. Both
// empty is continuous sync; one without the other is refused.
func ParseSchedule(expr, window string) (Schedule, error) {
	switch {
	case expr == "" && window == "":
		return Schedule{}, nil
	case expr == "":
		return Schedule{}, fmt.Errorf("%w: a sync window (%s) needs a sync schedule (--sync-schedule CRON)", ErrInvalid, window)
	case window == "":
		return Schedule{}, fmt.Errorf("%w: a sync schedule (%s) needs a sync window (--sync-window DURATION, PT1H to P7D)", ErrInvalid, expr)
	}
	c, err := cron.ParseStandard(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w: sync schedule %q: %v: want a cron expression of five fields (minute hour day-of-month month day-of-week, in UTC), as in \"0 */6 * * *\"", ErrInvalid, expr, err)
	}
	if spec, ok := c.(*cron.SpecSchedule); ok {
		spec.Location = time.UTC
	}
	w, err := ParseDuration(window)
	if err != nil {
		return Schedule{}, fmt.Errorf("sync window: %w", err)
	}
	if w < MinSyncWindow || w > MaxSyncWindow {
		return Schedule{}, fmt.Errorf("%w: sync window %s: want PT1H to P7D", ErrInvalid, window)
	}
	if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Schedule{}, fmt.Errorf("%w: sync schedule %q never fires", ErrInvalid, expr)
	}
	return Schedule{cron: c, Window: w}, nil
}

// Continuous reports whether the schedule is continuous sync.
func (s Schedule) Continuous() bool { return s.cron == nil }

// At returns the window at now: whether now is inside one, and that
// window's start and end, or the next window's when outside. Windows that
// overlap are one. A continuous schedule is always inside, with no end.
func (s Schedule) At(now time.Time) (start, end time.Time, in bool) {
	if s.cron == nil {
		return now, time.Time{}, true
	}
	t := s.cron.Next(now.Add(-s.Window))
	if t.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	start, end = t, t.Add(s.Window)
	// Join the windows that open before this one closes (bounded: a
	// window longer than its period is open for good).
	for range 10000 {
		n := s.cron.Next(t)
		if n.IsZero() || n.After(end) {
			break
		}
		t, end = n, n.Add(s.Window)
	}
	return start, end, !start.After(now)
}

// ParseMessageTTL parses an ISO 8601 message TTL of MinMessageTTL to
// MaxMessageTTL; "" is DefaultMessageTTL.
func ParseMessageTTL(s string) (time.Duration, error) {
	if s == "" {
		return DefaultMessageTTL, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("sync message TTL: %w", err)
	}
	if d < MinMessageTTL || d > MaxMessageTTL {
		return 0, fmt.Errorf("%w: sync message TTL %s: want P1D to P90D", ErrInvalid, s)
	}
	return d, nil
}
