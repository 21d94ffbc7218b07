package wan

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
	"time"
)

// TestBandwidthCapLiftedLive lifts a crawling bandwidth cap while data
// waits for it: the data that waited goes at once, as the package promises
// for open connections, instead of sleeping out a wait reserved under the
// old cap (a 64 KiB chunk at 1 KiB/s: a minute).
func TestBandwidthCapLiftedLive(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", Bandwidth: 1 << 10})
	addr := w.serve("eastus", echo)
	c := w.dial("westus", addr)

	data := make([]byte, 4*chunkSize)
	rand.Read(data)
	go c.Write(data)
	got := make([]byte, len(data))
	// The first chunk rides on the bucket's burst; the next ones wait.
	if _, err := io.ReadFull(c, got[:chunkSize]); err != nil {
		t.Fatal(err)
	}
	w.update(func(cfg *Config) { cfg.SetLink(Link{A: "westus", B: "eastus"}) })

	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(c, got[chunkSize:])
		done <- err
	}()
	// Generous: with the cap lifted this takes milliseconds; under the
	// old cap, minutes.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("data still held back 30 s after the bandwidth cap was lifted")
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data came back changed")
	}
}
