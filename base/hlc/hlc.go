package hlc

import (
	"sync"
	"time"
)

const logicalBits = 16

// Clock issues timestamps. The zero value is not usable; use New.
type Clock struct {
	now  func() time.Time
	mu   sync.Mutex
	last uint64
}

// New returns a clock reading wall time from now (time.Now when nil).
func New(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a timestamp greater than every one issued or observed before.
func (c *Clock) Now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := uint64(c.now().UnixMilli()) << logicalBits
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return c.last
}

// Observe makes every later timestamp greater than ts, a timestamp received
// from another node.
func (c *Clock) Observe(ts uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last, ts)
}

// Time returns the wall time part of ts.
func Time(ts uint64) time.Time { return time.UnixMilli(int64(ts >> logicalBits)) }
