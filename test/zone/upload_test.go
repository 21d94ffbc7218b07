package zone

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/georeg/georeg/test/ociclient"
)

// TestUploadSessionZoneDies checks the documented fate of an upload session
// whose node dies: sessions are node-local, so another node answers 404
// BLOB_UPLOAD_UNKNOWN for it, and a fresh upload there succeeds.
func TestUploadSessionZoneDies(t *testing.T) {
	r := startRegion(t)
	ctx := context.Background()
	c := newClient(r.mesh, 30*time.Second)
	img := newImage("upload/app", "v1", 32<<10)
	half := len(img.Layers[0].Data) / 2

	loc, err := c.StartUpload(ctx, r.base(2), img.Repo)
	if err != nil {
		t.Fatalf("POST upload on zone 2: %v", err)
	}
	if loc, err = c.PatchUpload(ctx, r.base(2), loc, img.Layers[0].Data[:half], 0); err != nil {
		t.Fatalf("PATCH on zone 2: %v", err)
	}
	r.kill(2)

	// The session's URL, sent to zone 1 instead.
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("upload location %q: %v", loc, err)
	}
	path := u.RequestURI()
	_, patchErr := c.PatchUpload(ctx, r.base(1), path, img.Layers[0].Data[half:], half)
	putErr := c.FinishUpload(ctx, r.base(1), path, img.Layers[0].Digest, img.Layers[0].Data[half:])
	for _, e := range []struct {
		what string
		err  error
	}{{"PATCH", patchErr}, {"PUT", putErr}} {
		var re *ociclient.Error
		if !errors.As(e.err, &re) || re.Status != http.StatusNotFound || !re.Has("BLOB_UPLOAD_UNKNOWN") {
			t.Errorf("%s of zone 2's session %s on zone 1: %v; want 404 BLOB_UPLOAD_UNKNOWN", e.what, path, e.err)
		}
	}

	// A fresh upload of the same blob on zone 1 succeeds, and so does the
	// rest of the push (while zone 2, maybe the leader, is still down).
	start := time.Now()
	if err := c.UploadChunked(ctx, r.base(1), img.Repo, img.Layers[0].Data, 2); err != nil {
		t.Fatalf("fresh chunked upload on zone 1 with zone 2 down: %v", err)
	}
	if err := c.PushBlob(ctx, r.base(1), img.Repo, img.Config); err != nil {
		t.Fatalf("config upload on zone 1: %v", err)
	}
	if err := c.PutManifest(ctx, r.base(1), img.Repo, img.Tag, img.Manifest); err != nil {
		t.Fatalf("manifest PUT on zone 1: %v", err)
	}
	pushed := time.Since(start)
	for _, z := range []int{1, 3} {
		if err := waitPull(ctx, c, r.base(z), img); err != nil {
			t.Errorf("pull from zone %d: %v", z, err)
		}
	}

	// Zone 2 comes back with the same content and without the dead session
	// leaking into the region's state.
	r.restart(2)
	r.waitCaughtUp(2, 30*time.Second)
	converge := r.waitConverged(30 * time.Second)
	if err := c.pullImage(ctx, r.base(2), img, img.Tag); err != nil {
		t.Errorf("pull from the restarted zone 2: %v", err)
	}
	summary(t, "upload-session-zone-dies: other node PATCH/PUT -> 404 BLOB_UPLOAD_UNKNOWN; fresh push on zone 1 %.2fs; zone 2 back, converge=%.2fs",
		pushed.Seconds(), converge.Seconds())
}
