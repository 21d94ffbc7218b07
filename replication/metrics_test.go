package replication_test

import (
	"testing"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestPeerStatusMeasures follows one peer through an outage and a slow
// link: the backlog and the age of its oldest event grow while it is cut
// off; batches and blob fetches show in flight while the link crawls; and
// once it has caught up, the rates and the delivery time show the work
// done and the lag is gone.
func TestPeerStatusMeasures(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")

	m.Cut("westus", "eastus")
	var imgs []replicationtest.Image
	for _, tag := range []string{"v1", "v2", "v3"} {
		imgs = append(imgs, west.Push(t, "app", tag, replicationtest.RandomLayer(t, 256<<10)))
	}
	replicationtest.WaitFor(t, "westus to show eastus 3 events behind, the oldest aging", func() bool {
		p := west.Peer("eastus")
		return p.Backlog == 3 && p.LagSeconds > 0 && p.LastError != ""
	})

	// 128 KiB/s: each 256 KiB layer takes eastus about 2 s.
	m.SetLink(wan.Link{A: "westus", B: "eastus", Bandwidth: 128 << 10})
	replicationtest.WaitFor(t, "a batch in flight to eastus and blob fetches running there", func() bool {
		return west.Peer("eastus").OffersInFlight > 0 && east.Peer("westus").TransfersInFlight > 0
	})

	m.Heal("westus", "eastus")
	replicationtest.WaitFor(t, "eastus to hold every image", func() bool {
		for _, img := range imgs {
			if !east.Has(img) {
				return false
			}
		}
		return true
	})
	replicationtest.WaitFor(t, "the measures of the delivery", func() bool {
		w, e := west.Peer("eastus"), east.Peer("westus")
		return w.Backlog == 0 && w.LagSeconds == 0 && w.OffersInFlight == 0 && w.EventsPerSecond > 0 && w.DeliverySeconds > 0 &&
			e.BlobBytesPerSecond > 0 && e.TransfersInFlight == 0
	})
	w, e := west.Peer("eastus"), east.Peer("westus")
	t.Logf("westus to eastus: %+v; eastus from westus: %+v", w, e)
}
