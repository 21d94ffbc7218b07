package zone

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// corrupt flips n bytes in the middle of the file at path, in place: same
// size, new modification time.
func corrupt(t *testing.T, path string, n int) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Let the modification time move on even on coarse-grained clocks.
	time.Sleep(50 * time.Millisecond)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, n)
	off := before.Size()/2 - int64(n/2)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() {
		t.Fatalf("corrupting %s changed its size from %d to %d", path, before.Size(), after.Size())
	}
}

// waitFileIs waits until the file at path holds content with digest d and
// returns how long that took.
func waitFileIs(t *testing.T, path string, d digest.Digest, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		b, err := os.ReadFile(path)
		if err == nil && digest.FromBytes(b) == d {
			return time.Since(start)
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "content is " + digest.FromBytes(b).String()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s was not repaired within %v (want %s): %s", path, timeout, d, last)
	return 0
}

// TestCorruptBlobRepaired overwrites bytes of blob files on two zones: one
// copy is then read through its node, which must serve the right bytes and
// replace its copy; the other is never read and must be found and replaced
// by the repairer on its own.
func TestCorruptBlobRepaired(t *testing.T) {
	r := startRegion(t)
	ctx := context.Background()
	c := newClient(r.mesh, 20*time.Second)

	img := newImage("corrupt/app", "v1", 64<<10)
	if err := c.pushImage(ctx, r.base(1), img, false); err != nil {
		t.Fatalf("push through zone 1: %v", err)
	}
	r.waitConverged(30 * time.Second)

	// Zone 2: corrupt the layer, then read it through zone 2.
	layerFile := r.blobFile(2, img.Layers[0].Digest.Encoded())
	// Zone 3: corrupt the config and leave it to the repairer.
	configFile := r.blobFile(3, img.Config.Digest.Encoded())
	corrupt(t, layerFile, 32)
	corrupt(t, configFile, 8)
	corrupted := time.Now()
	if b, _ := os.ReadFile(layerFile); digest.FromBytes(b) == img.Layers[0].Digest {
		t.Fatal("the layer file still matches its digest after corrupting it")
	}

	got, err := c.GetBlob(ctx, r.base(2), img.Repo, img.Layers[0].Digest)
	if err != nil {
		t.Fatalf("GET of the corrupted layer from zone 2: %v\nzone 2 log:\n%s", err, r.logTail(2, 4000))
	}
	served := time.Since(corrupted)
	t.Logf("zone 2 served the corrupted layer's %d bytes correctly (%v)", len(got), served.Round(time.Millisecond))
	waitFileIs(t, layerFile, img.Layers[0].Digest, 30*time.Second)
	readRepair := time.Since(corrupted)
	waitFileIs(t, configFile, img.Config.Digest, 30*time.Second)
	bgRepair := time.Since(corrupted)
	converge := r.waitConverged(30 * time.Second)

	// Every node serves every blob right, and the on-disk copies agree.
	for z := 1; z <= 3; z++ {
		if err := c.pullImage(ctx, r.base(z), img, img.Tag); err != nil {
			t.Errorf("pull from zone %d after the repair: %v", z, err)
		}
	}
	for _, d := range []digest.Digest{img.Layers[0].Digest, img.Config.Digest} {
		for z := 1; z <= 3; z++ {
			b, err := os.ReadFile(r.blobFile(z, d.Encoded()))
			if err != nil || digest.FromBytes(b) != d {
				t.Errorf("zone %d's copy of %s is wrong after the repair (err %v)", z, d, err)
			}
		}
	}
	var repaired int64
	for z := 2; z <= 3; z++ {
		if st, err := r.nodeStatus(ctx, z); err == nil {
			repaired += st.Repaired
		}
	}
	t.Logf("repairer counters: %d copies repaired on zones 2 and 3", repaired)
	// Times are from the corruption.
	summary(t, "corrupt-blob: served-correctly=yes read-repair=%.2fs background-repair=%.2fs converge=%.2fs",
		readRepair.Seconds(), bgRepair.Seconds(), converge.Seconds())
}
