package replication_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/replication/replicationtest"
)

// burstTags is the size of TestBurstReachesPeerByEvents (issue 14's
// acceptance size).
const burstTags = 3000

// TestBurstReachesPeerByEvents writes a burst of distinct images (each
// its own config blob, all sharing one layer) into three repositories at
// westus, as fast as a few writers can, and measures when eastus, 70 ms
// away, holds every tag after the last write. Anti-entropy does not run
// (replicationtest's default of one round an hour, taken at the start
// while the registry is empty), so the event path alone delivers.
func TestBurstReachesPeerByEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 3,000 images")
	}
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")
	m.SetLink(wan.Link{A: "westus", B: "eastus", RTT: wan.Duration(70 * time.Millisecond)})

	layer := replicationtest.RandomLayer(t, 4<<10)
	const writers = 4
	imgs := make([]replicationtest.Image, burstTags)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < burstTags; i += writers {
				imgs[i] = west.Push(t, fmt.Sprintf("burst/app%d", i%3), fmt.Sprintf("v%d", i), layer)
			}
		})
	}
	wg.Wait()
	lastWrite := time.Now()
	t.Logf("wrote %d images in %v (%.0f/s)", burstTags, lastWrite.Sub(start).Round(time.Millisecond),
		float64(burstTags)/lastWrite.Sub(start).Seconds())

	deadline := lastWrite.Add(replicationtest.WaitTimeout)
	next := 0
	for next < len(imgs) {
		if east.Has(imgs[next]) {
			next++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("eastus holds %d of %d images %v after the last write", next, burstTags, replicationtest.WaitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	after := time.Since(lastWrite)
	t.Logf("eastus holds all %d images %v after the last write (%.0f events/s from the first write)",
		burstTags, after.Round(time.Millisecond), float64(burstTags)/time.Since(start).Seconds())
	// Anti-entropy runs once when a region starts leading; when that round
	// meets the burst it may repair writes whose events are in flight
	// (harmless: the writes are idempotent). The events' delivery is what
	// the wait below checks: westus counts every event delivered.
	if fixes := east.AntiEntropyRepairs(); fixes != 0 {
		t.Logf("anti-entropy also repaired %d writes while their events were in flight", fixes)
	}
	replicationtest.WaitFor(t, "westus to count every event delivered", func() bool {
		return west.EventsSent("eastus") >= burstTags
	})
	// Issue 14's goal is at most 2 s; a timing on a shared machine is the
	// bench's to judge (make bench), so it is reported, not asserted.
	if after > 2*time.Second {
		t.Logf("OVER issue 14's 2 s goal: eastus held the burst %v after the last write", after.Round(time.Millisecond))
	}
}
