package replication_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestBigImageFillsLink replicates an image of 8 layers of 8 MiB over a
// link of 140 ms capped at 100 MB/s, over one connection and over four,
// and logs the rate each reached (the simulated WAN carries 4 MiB per
// one-way delay and connection: 60 MB/s here).
func TestBigImageFillsLink(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 128 MiB")
	}
	for _, conns := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d connections", conns), func(t *testing.T) {
			m := replicationtest.New(t, replicationtest.Config{BlobConns: conns})
			m.SetLink(wan.Link{A: "westus", B: "eastus", RTT: wan.Duration(140 * time.Millisecond), Bandwidth: 100_000_000})
			west, east := m.Region("westus"), m.Region("eastus")
			var layers [][]byte
			for range 8 {
				layers = append(layers, replicationtest.RandomLayer(t, 8<<20))
			}
			img := west.Push(t, "big", "v1", layers...)
			start := time.Now()
			replicationtest.WaitFor(t, "eastus to hold the image", func() bool { return east.Has(img) })
			took := time.Since(start)
			t.Logf("%d connections: 64 MiB in %v, %.0f MB/s (cap 100 MB/s)", conns, took.Round(time.Millisecond), 64*1.048576/took.Seconds())
		})
	}
}
