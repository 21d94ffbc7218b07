package region_test

import (
	"bytes"
	"context"
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/region/regiontest"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
)

// runRepairer runs a region.Repairer for zone n until the returned function is
// called.
func runRepairer(t *testing.T, r *region.Repairer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func newRepairer(n *regiontest.Node, interval time.Duration) *region.Repairer {
	return region.NewRepairer(region.RepairerConfig{Index: n.Group, Blobs: n.Blobs, Interval: interval, Members: n.Members, Logger: n.Logger()})
}

// waitPass waits until r completes a pass that started after this call.
func waitPass(t *testing.T, r *region.Repairer) {
	t.Helper()
	// The pass running now may have started before; the one after it
	// has not.
	target := r.Passes() + 2
	regiontest.WaitFor(t, "a repair pass", func() bool { return r.Passes() >= target })
}

// storeBlob writes a blob through zone 1 and links it in the metadata, as
// a finished upload does.
func storeBlob(t *testing.T, c *regiontest.Cluster, size int) ([]byte, digest.Digest) {
	t.Helper()
	data, dgst := randomBlob(t, size)
	via := c.Running()[0]
	if _, err := via.Blobs.Put(t.Context(), dgst, int64(size), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := via.Group.Apply(t.Context(), linkBlob("repair", dgst, int64(size))); err != nil {
		t.Fatal(err)
	}
	return data, dgst
}

func TestRepairer(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	n := c.Node(3)

	damages := []struct {
		name   string
		damage func(t *testing.T, path string, data []byte)
	}{
		{"missing", func(t *testing.T, path string, data []byte) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt", func(t *testing.T, path string, data []byte) {
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 0x01
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, path string, data []byte) {
			if err := os.Truncate(path, int64(len(data)/2)); err != nil {
				t.Fatal(err)
			}
		}},
		{"grown", func(t *testing.T, path string, data []byte) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("tail"))
			f.Close()
		}},
	}
	type blob struct {
		data []byte
		dgst digest.Digest
	}
	var blobs []blob
	for range damages {
		data, dgst := storeBlob(t, c, 64<<10)
		blobs = append(blobs, blob{data, dgst})
	}
	intact, intactDgst := storeBlob(t, c, 1000)
	c.WaitConverged()
	for _, b := range append(blobs, blob{intact, intactDgst}) {
		regiontest.WaitFor(t, "every zone to hold every blob", func() bool { return len(c.Holders(b.dgst)) == 3 })
	}

	r := newRepairer(n, 50*time.Millisecond)
	stop := runRepairer(t, r)
	waitPass(t, r)
	if r.Repaired() != 0 || r.Backlog() != 0 {
		t.Fatalf("nothing to repair, yet repaired %d, backlog %d", r.Repaired(), r.Backlog())
	}
	// Damage while the repairer is stopped, so that it meets every damage
	// whole; the copies were verified in the passes above, so it must
	// notice the changes.
	stop()
	for i, d := range damages {
		d.damage(t, n.BlobPath(blobs[i].dgst), blobs[i].data)
	}
	runRepairer(t, r)
	waitPass(t, r)
	if got, want := r.Repaired(), int64(len(damages)); got != want || r.Backlog() != 0 {
		t.Fatalf("repaired %d, backlog %d; want %d, 0", got, r.Backlog(), want)
	}
	for i, d := range damages {
		if err := storage.Verify(t.Context(), n.Local, blobs[i].dgst); err != nil {
			t.Errorf("%s copy not repaired: %v", d.name, err)
		}
	}
	if err := storage.Verify(t.Context(), n.Local, intactDgst); err != nil {
		t.Errorf("intact copy: %v", err)
	}

	t.Run("backlog until some zone holds the blob", func(t *testing.T) {
		// Linked but held nowhere: a blob whose writer died before any
		// other zone had it.
		data, dgst := randomBlob(t, 3000)
		if err := c.Node(1).Group.Apply(t.Context(), linkBlob("repair", dgst, int64(len(data)))); err != nil {
			t.Fatal(err)
		}
		repaired := r.Repaired()
		regiontest.WaitFor(t, "a backlog of 1", func() bool { return r.Backlog() == 1 })
		c.Node(1).PutLocal(t, data)
		regiontest.WaitFor(t, "the backlog to clear", func() bool { return r.Backlog() == 0 && r.Repaired() == repaired+1 })
		if err := storage.Verify(t.Context(), n.Local, dgst); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRepairerAfterZoneDown writes while a zone is down; after its restart
// its repairer fetches everything it missed.
func TestRepairerAfterZoneDown(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	n := c.Node(3)
	n.Stop()
	// Write only once every zone left knows zone 3 is gone: a write that
	// still counted on it would plan a background copy to it, which lands
	// when it comes back and leaves the repairer one blob fewer to repair.
	c.WaitGossip()
	var missed []digest.Digest
	for range 5 {
		_, dgst := storeBlob(t, c, 100<<10)
		missed = append(missed, dgst)
	}
	n.Start()
	c.WaitGossip()
	c.WaitConverged()
	// A long interval: the pass at start and the passes on membership
	// changes are the ones that count.
	r := newRepairer(n, time.Hour)
	runRepairer(t, r)
	regiontest.WaitFor(t, "the first pass", func() bool { return r.Passes() >= 1 })
	if r.Repaired() != int64(len(missed)) || r.Backlog() != 0 {
		t.Fatalf("repaired %d, backlog %d; want %d, 0", r.Repaired(), r.Backlog(), len(missed))
	}
	for _, d := range missed {
		if err := storage.Verify(t.Context(), n.Local, d); err != nil {
			t.Errorf("missed blob %s: %v", d, err)
		}
	}

	passes := r.Passes()
	c.Node(2).Stop()
	regiontest.WaitFor(t, "a pass on a zone leaving", func() bool { return r.Passes() > passes })
	passes = r.Passes()
	c.Node(2).Start()
	regiontest.WaitFor(t, "a pass on a zone coming back", func() bool { return r.Passes() > passes })
}
