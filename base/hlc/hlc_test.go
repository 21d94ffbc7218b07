package hlc

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	wall := time.Unix(1000, 0)
	c := New(func() time.Time { return wall })
	a := c.Now()
	b := c.Now()
	if b <= a {
		t.Fatalf("not monotonic with a stopped wall clock: %d then %d", a, b)
	}
	wall = wall.Add(-time.Hour) // the wall clock jumps back
	if d := c.Now(); d <= b {
		t.Fatalf("went backwards with the wall clock: %d after %d", d, b)
	}
	remote := uint64(time.Unix(5000, 0).UnixMilli()) << logicalBits
	c.Observe(remote)
	if e := c.Now(); e <= remote {
		t.Fatalf("timestamp %d not after observed %d", e, remote)
	}
	if got := Time(remote); !got.Equal(time.Unix(5000, 0)) {
		t.Fatalf("Time = %v", got)
	}
}
