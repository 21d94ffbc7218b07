// Package testclock is a clock for end-to-end tests of what follows the
// time of day or long durations: a connected registry's sync windows
// (cron schedules, read in UTC on this clock) and the message TTL its
// parent keeps events for. It reads a chosen instant at a chosen real
// instant and runs a chosen number of times faster than real time from
// there, so that a day of windows or a TTL of days passes in seconds, and
// several processes given the same Clock agree on what time it is.
//
// Production never runs on it: regiond takes one only from the
// GEOREG_TEST_CLOCK environment variable, and refuses that variable
// unless GEOREG_TESTING=1 says the process runs under a test
// (docs/connected.md).
package testclock

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxSpeed bounds Clock.Speed: a day in under a tenth of a second is
// beyond what any timer of the processes could follow.
const MaxSpeed = 1e6

// Clock reads At at the real instant From and runs Speed times faster
// than real time. Its methods may be called from several goroutines at
// once.
type Clock struct {
	From  time.Time
	At    time.Time
	Speed float64
}

// Parse reads a Clock from a comma-separated list of KEY=VALUE:
//
//	at=RFC3339     the clock's reading at from (default: from)
//	from=RFC3339   the real instant the clock reads at (default: now)
//	speed=FLOAT    how many times faster than real time it runs, over 0
//	               and at most MaxSpeed (default 1)
//
// For example "at=2026-01-01T04:00:00Z,from=2026-12-05T05:50:00.25Z,speed=1200"
// reads 04:00 at 05:50:00.25 and runs an hour every 3 s; "speed=3600"
// starts at now and runs an hour a second. Instants may have fractions of
// a second (RFC 3339 with nanoseconds).
func Parse(spec string, now time.Time) (*Clock, error) {
	c := &Clock{From: now, Speed: 1}
	var atSet bool
	for kv := range strings.SplitSeq(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("test clock %q: %q is not KEY=VALUE (keys at, from, speed)", spec, kv)
		}
		var err error
		switch k {
		case "at":
			c.At, err = time.Parse(time.RFC3339Nano, v)
			atSet = true
		case "from":
			c.From, err = time.Parse(time.RFC3339Nano, v)
		case "speed":
			c.Speed, err = strconv.ParseFloat(v, 64)
			if err == nil && !(c.Speed > 0 && c.Speed <= MaxSpeed) {
				err = fmt.Errorf("want over 0 and at most %g", float64(MaxSpeed))
			}
		default:
			err = fmt.Errorf("unknown key (keys at, from, speed)")
		}
		if err != nil {
			return nil, fmt.Errorf("test clock %q: %s: %w", spec, k, err)
		}
	}
	if !atSet {
		c.At = c.From
	}
	return c, nil
}

// String is the Clock as Parse reads it.
func (c *Clock) String() string {
	return "at=" + c.At.UTC().Format(time.RFC3339Nano) + ",from=" + c.From.UTC().Format(time.RFC3339Nano) +
		",speed=" + strconv.FormatFloat(c.Speed, 'g', -1, 64)
}

// Reading is what the clock reads at the real instant t.
func (c *Clock) Reading(t time.Time) time.Time {
	return c.At.Add(time.Duration(float64(t.Sub(c.From)) * c.Speed))
}

// Real is the real instant at which the clock reads t: Reading's
// inverse.
func (c *Clock) Real(t time.Time) time.Time {
	return c.From.Add(time.Duration(float64(t.Sub(c.At)) / c.Speed))
}

// Now is what the clock reads now.
func (c *Clock) Now() time.Time { return c.Reading(time.Now()) }

// Since is how long ago, on the clock, the real instant t was: what a
// time stamped with the real time (a notice's) is old by on this clock.
func (c *Clock) Since(t time.Time) time.Duration {
	return time.Duration(float64(time.Since(t)) * c.Speed)
}

// SleepUntil returns true once the clock reads t, false if ctx ends
// first.
func (c *Clock) SleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(c.Real(t)))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
		// A timer may fire a little early, and the float conversions
		// round: wait for the clock itself to read t.
		d := time.Until(c.Real(t))
		if !c.Now().Before(t) {
			return true
		}
		timer.Reset(max(d, time.Millisecond))
	}
}
