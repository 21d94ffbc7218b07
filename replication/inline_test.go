package replication_test

import (
	"context"
	"testing"

	"github.com/georeg/georeg/replication/replicationtest"
)

// TestSmallBlobsTravelInline pushes at westus an image of a config, a
// 1 KiB layer, a 64 KiB layer (the largest inlined) and a 1 MiB layer:
// eastus receives the small blobs with the push's event and fetches only
// the big layer. A second image sharing the small layers finds them held
// (the sender inlines a blob to a peer once), and a third, whose small
// layer eastus got by other means, replicates whole too.
func TestSmallBlobsTravelInline(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")

	small, edge, big := replicationtest.RandomLayer(t, 1<<10), replicationtest.RandomLayer(t, 64<<10), replicationtest.RandomLayer(t, 1<<20)
	img := west.Push(t, "app", "v1", small, edge, big)
	replicationtest.WaitFor(t, "eastus to hold app:v1", func() bool { return east.Has(img) })
	for i, d := range append(img.Layers[:2:2], img.Config) {
		if n := west.BlobRequests(d); n != 0 {
			t.Errorf("eastus fetched small blob %d (%s) %d times; want it inline", i, d, n)
		}
	}
	if n := west.BlobRequests(img.Layers[2]); n == 0 {
		t.Error("eastus never fetched the 1 MiB layer: only small blobs travel inline")
	}
	// Inline bytes count as received, as fetched ones do.
	if got, want := east.BytesReceived("westus"), int64(len(small)+len(edge)+len(big)); got < want {
		t.Errorf("eastus received %d blob bytes from westus; want at least the %d of the layers", got, want)
	}

	img2 := west.Push(t, "app", "v2", small, edge)
	replicationtest.WaitFor(t, "eastus to hold app:v2", func() bool { return east.Has(img2) })
	for _, d := range img2.Layers {
		if n := west.BlobRequests(d); n != 0 {
			t.Errorf("eastus fetched layer %s, which it held, %d times", d, n)
		}
	}

	// A layer eastus holds that westus never inlined to it: sent inline
	// anyway (the sender cannot know), and stored once.
	other := replicationtest.RandomLayer(t, 2<<10)
	east.PutBlob(t, "elsewhere", other)
	img3 := west.Push(t, "app", "v3", other)
	replicationtest.WaitFor(t, "eastus to hold app:v3", func() bool { return east.Has(img3) })
	if n := west.BlobRequests(img3.Layers[0]); n != 0 {
		t.Errorf("eastus fetched layer %s, which it held, %d times", img3.Layers[0], n)
	}
	if _, err := east.Blobs.Stat(context.Background(), img3.Config); err != nil {
		t.Errorf("eastus lacks app:v3's config: %v", err)
	}
}
