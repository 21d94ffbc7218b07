package replication_test

import (
	"testing"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestSlowPeerDoesNotHoldUpFastPeer slows the link to one peer to a crawl:
// the other peer still gets every push, and the slow one catches up once
// its link is fast again.
func TestSlowPeerDoesNotHoldUpFastPeer(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{Regions: []string{"westus", "eastus", "westeurope"}})
	west, east, europe := m.Region("westus"), m.Region("eastus"), m.Region("westeurope")

	// 1 KiB/s: the three 1 MiB layers take eastus almost an hour.
	m.SetLink(wan.Link{A: "westus", B: "eastus", Bandwidth: 1 << 10})
	var imgs []replicationtest.Image
	for _, tag := range []string{"v1", "v2", "v3"} {
		imgs = append(imgs, west.Push(t, "app", tag, replicationtest.RandomLayer(t, 1<<20)))
	}
	replicationtest.WaitFor(t, "westeurope to hold every image", func() bool {
		for _, img := range imgs {
			if !europe.Has(img) {
				return false
			}
		}
		return true
	})
	if east.Has(imgs[0]) {
		t.Fatal("eastus holds a 1 MiB layer sent at 1 KiB/s already: the link was not slow")
	}

	m.Heal("westus", "eastus")
	replicationtest.WaitFor(t, "eastus to hold every image", func() bool {
		for _, img := range imgs {
			if !east.Has(img) {
				return false
			}
		}
		return true
	})
}

// TestPeerCutFromTheStartMissesNothing cuts one peer off before it ever
// acknowledged an event while another peer acknowledges them: the outbox
// keeps the events for the cut peer, which gets them by offers once healed
// (anti-entropy does not run in this test).
func TestPeerCutFromTheStartMissesNothing(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{Regions: []string{"westus", "eastus", "westeurope"}})
	west, east, europe := m.Region("westus"), m.Region("eastus"), m.Region("westeurope")

	m.Cut("westus", "eastus")
	img := west.Push(t, "app", "v1", replicationtest.RandomLayer(t, 64<<10))
	seq := west.Meta.LastSeq()
	replicationtest.WaitFor(t, "westeurope to acknowledge the push", func() bool {
		return europe.Has(img) && west.Meta.Cursors()["westeurope"] >= seq
	})
	if events, err := west.Meta.OutboxAfter(0, 10); err != nil || len(events) != 1 {
		t.Fatalf("the outbox holds %d events (%v) while eastus lacks one, want 1", len(events), err)
	}

	m.Heal("westus", "eastus")
	replicationtest.WaitFor(t, "eastus to hold the image", func() bool { return east.Has(img) })
}
