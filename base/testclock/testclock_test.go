package testclock

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 12, 5, 5, 50, 0, 0, time.UTC)
	at := time.Date(2026, 1, 1, 4, 0, 0, 0, time.UTC)
	c, err := Parse("at=2026-01-01T04:00:00Z,from=2026-12-05T05:50:00.25Z,speed=1200", now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.At.Equal(at) || !c.From.Equal(now.Add(250*time.Millisecond)) || c.Speed != 1200 {
		t.Fatalf("parsed %+v", c)
	}
	if got := c.Reading(c.From.Add(3 * time.Second)); !got.Equal(at.Add(time.Hour)) {
		t.Errorf("3 s after from: %v, want an hour after at", got)
	}
	if got := c.Real(at.Add(2 * time.Hour)); !got.Equal(c.From.Add(6 * time.Second)) {
		t.Errorf("real instant of 06:00: %v, want 6 s after from", got)
	}
	back, err := Parse(c.String(), time.Time{})
	if err != nil || *back != *c {
		t.Errorf("Parse(String()) = %+v, %v; want %+v", back, err, c)
	}
	d, err := Parse("speed=3600", now)
	if err != nil || !d.At.Equal(now) || !d.From.Equal(now) || d.Speed != 3600 {
		t.Errorf("speed only: %+v, %v; want from now, at now", d, err)
	}
	for _, bad := range []string{"", "speed", "speed=0", "speed=-2", "speed=2e6", "speed=x", "at=yesterday", "from=12:00", "offset=1h"} {
		if _, err := Parse(bad, now); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		} else if !strings.Contains(err.Error(), "test clock") {
			t.Errorf("Parse(%q): %v, want an error naming the test clock", bad, err)
		}
	}
}

func TestRunsFaster(t *testing.T) {
	c := &Clock{From: time.Now(), At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Speed: 3600}
	stamp := time.Now()
	start := time.Now()
	if !c.SleepUntil(context.Background(), c.At.Add(time.Minute+100*time.Millisecond)) {
		t.Fatal("SleepUntil gave up")
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("a minute on a clock an hour a second: waited %v", waited)
	}
	if now := c.Now(); now.Before(c.At.Add(time.Minute + 100*time.Millisecond)) {
		t.Errorf("after SleepUntil the clock reads %v", now)
	}
	if age := c.Since(stamp); age < time.Minute {
		t.Errorf("a stamp taken before reads %v old on the clock, want over a minute", age)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c.SleepUntil(ctx, c.At.Add(24*time.Hour)) {
		t.Error("SleepUntil past a cancelled context returned true")
	}
}
