package replication_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/georeg/georeg/replication/replicationtest"
)

// TestOutboxBound keeps westeurope cut off while westus writes four times
// the outbox's bound: westus drops westeurope's events (counted, shown in
// its status) so its outbox stays within the bound, while eastus gets
// every write by events; once healed, westeurope re-syncs from summaries
// (anti-entropy), showing the progress of its rounds, and holds the same
// tags as westus, none lost.
func TestOutboxBound(t *testing.T) {
	const bound = 100
	m := replicationtest.New(t, replicationtest.Config{
		Regions:             []string{"westus", "eastus", "westeurope"},
		OutboxMaxEvents:     bound,
		AntiEntropyInterval: 500 * time.Millisecond,
	})
	west, east, europe := m.Region("westus"), m.Region("eastus"), m.Region("westeurope")

	m.Cut("westus", "westeurope")
	m.Cut("eastus", "westeurope")
	largest := 0
	var imgs []replicationtest.Image
	for i := range 4 * bound {
		imgs = append(imgs, west.Push(t, fmt.Sprintf("app%d", i%5), fmt.Sprintf("v%d", i), replicationtest.RandomLayer(t, 1<<10)))
		events, err := west.Meta.OutboxAfter(0, 10*bound)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, len(events))
	}
	replicationtest.WaitFor(t, "eastus to hold every image", func() bool {
		for _, img := range imgs {
			if !east.Has(img) {
				return false
			}
		}
		return true
	})
	replicationtest.WaitFor(t, "westus's outbox to be trimmed to what westeurope lacks, within the bound", func() bool {
		events, err := west.Meta.OutboxAfter(0, 10*bound)
		return err == nil && len(events) <= bound
	})
	t.Logf("westus's outbox held at most %d events while writing %d with a bound of %d", largest, len(imgs), bound)
	// The bound is checked every quarter second while the sender backs
	// off: the writes of a quarter second and one failed attempt may pass
	// it meanwhile.
	if largest > 2*bound {
		t.Errorf("westus's outbox held %d events, more than twice the bound of %d", largest, bound)
	}
	p := west.Peer("westeurope")
	if p.DroppedEvents == 0 || p.LastDrop.IsZero() || west.EventsDropped("westeurope") == 0 {
		t.Errorf("westus's status of westeurope shows %d dropped events (last %v), its metric %d: want the drop recorded",
			p.DroppedEvents, p.LastDrop, west.EventsDropped("westeurope"))
	}
	if d := west.Peer("eastus").DroppedEvents; d != 0 {
		t.Errorf("westus dropped %d events of eastus, which acknowledged them", d)
	}

	m.Heal("westus", "westeurope")
	m.Heal("eastus", "westeurope")
	replicationtest.WaitFor(t, "westeurope to hold every image", func() bool {
		for _, img := range imgs {
			if !europe.Has(img) {
				return false
			}
		}
		return true
	})
	replicationtest.WaitFor(t, "the summaries of westus and westeurope to agree", func() bool {
		sw, err1 := west.Meta.RepoSummaries()
		se, err2 := europe.Meta.RepoSummaries()
		return err1 == nil && err2 == nil && maps.Equal(sw, se)
	})
	replicationtest.WaitFor(t, "westeurope to show a finished catch-up round", func() bool {
		for _, from := range []string{"westus", "eastus"} {
			if p := europe.Peer(from); p.SyncRepos > 0 && p.SyncReposDone == p.SyncRepos && !p.SyncRunning && p.SyncETASeconds == 0 {
				return true
			}
		}
		return false
	})
	w, e := europe.Peer("westus"), europe.Peer("eastus")
	t.Logf("westus dropped %d events of westeurope; westeurope re-synced %d writes by anti-entropy "+
		"(from westus: %d/%d repositories, %d manifests; from eastus: %d/%d, %d)",
		west.Peer("westeurope").DroppedEvents, europe.AntiEntropyRepairs(),
		w.SyncReposDone, w.SyncRepos, w.SyncManifests, e.SyncReposDone, e.SyncRepos, e.SyncManifests)
}
