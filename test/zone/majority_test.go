package zone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// wantUnavailable checks that err is a 503 with the spec's error envelope
// carrying UNAVAILABLE.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var re *ociclient.Error
	switch {
	case err == nil:
		t.Errorf("%s with two zones of three down succeeded; want 503 UNAVAILABLE", what)
	case !errors.As(err, &re):
		t.Errorf("%s with two zones of three down: %v; want a 503 UNAVAILABLE answer", what, err)
	case re.Status != http.StatusServiceUnavailable || !re.Has("UNAVAILABLE"):
		t.Errorf("%s with two zones of three down: %v; want 503 with {\"errors\":[{\"code\":\"UNAVAILABLE\",...}]}", what, err)
	}
}

// timed runs fn and returns its error and how long it took, failing the
// test when that is beyond the sanity bound for a refusal.
func timed(t *testing.T, what string, fn func() error) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	err := fn()
	took := time.Since(start)
	t.Logf("%s answered in %v: %v", what, took.Round(time.Millisecond), err)
	if took > 15*time.Second {
		t.Errorf("%s took %v to answer; a refused write must fail within a bounded time", what, took)
	}
	return took, err
}

// waitPull pulls img from base, giving the node a few seconds to apply the
// push made through another node.
func waitPull(ctx context.Context, c *client, base string, img *image) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.pullImage(ctx, base, img, img.Tag)
		var re *ociclient.Error
		if err == nil || !errors.As(err, &re) || re.Status != http.StatusNotFound || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMajority checks that a region of three zones writes with two of them
// and refuses writes with one, without acknowledging or keeping anything.
func TestMajority(t *testing.T) {
	r := startRegion(t)
	ctx := context.Background()
	c := newClient(r.mesh, 30*time.Second)

	before := newImage("majority/app", "before", 8<<10)
	if err := c.pushImage(ctx, r.base(1), before, true); err != nil {
		t.Fatalf("push with all zones up: %v", err)
	}
	r.waitConverged(30 * time.Second)

	// One zone down: a follower, so that the leader (and the survivor of
	// the second kill below) stays.
	leader := r.waitLeader(10*time.Second, 1, 2, 3)
	first := r.follower(leader, 1, 2, 3)
	r.kill(first)
	t.Logf("killed %s/%d (leader is %s/%d)", regionName, first, regionName, leader)
	alive := without([]int{1, 2, 3}, first)
	for _, z := range alive {
		img := newImage("majority/app", fmt.Sprintf("one-down-via-%d", z), 8<<10)
		if err := c.pushImage(ctx, r.base(z), img, z%2 == 0); err != nil {
			t.Fatalf("push through zone %d with one zone of three down: %v", z, err)
		}
		for _, pz := range alive {
			if err := waitPull(ctx, c, r.base(pz), img); err != nil {
				t.Errorf("pull of %s from zone %d with one zone down: %v", img.Tag, pz, err)
			}
			if err := c.pullImage(ctx, r.base(pz), before, before.Tag); err != nil {
				t.Errorf("pull of %s from zone %d with one zone down: %v", before.Tag, pz, err)
			}
		}
	}

	// Two zones down: only the leader is left, and it has no majority.
	second := r.follower(leader, alive...)
	r.kill(second)
	survivor := leader
	base := r.base(survivor)
	t.Logf("killed %s/%d too; %s/%d is alone", regionName, second, regionName, survivor)

	refused := newImage("majority/app", "two-down", 8<<10)
	// A manifest whose blobs the region holds: only the metadata write can
	// fail it.
	refusedManifest := ociclient.Manifest(before.Config, before.Layers,
		map[string]string{"test": "written with two zones down"})
	manifestTook, err := timed(t, "manifest PUT", func() error {
		return c.PutManifest(ctx, base, refused.Repo, refused.Tag, refusedManifest)
	})
	wantUnavailable(t, "manifest PUT", err)
	monoTook, err := timed(t, "monolithic blob upload", func() error {
		return c.PushBlob(ctx, base, refused.Repo, refused.Layers[0])
	})
	wantUnavailable(t, "monolithic blob upload", err)
	chunkTook, err := timed(t, "chunked blob upload", func() error {
		return c.UploadChunked(ctx, base, refused.Repo, refused.Config.Data, 2)
	})
	wantUnavailable(t, "chunked blob upload", err)
	for _, d := range []digest.Digest{refused.Layers[0].Digest, refused.Config.Digest} {
		if code, err := c.HeadBlob(ctx, base, refused.Repo, d); err != nil || code != http.StatusNotFound {
			t.Errorf("HEAD of refused blob %s on the survivor: %d %v; want 404", d, code, err)
		}
	}
	if err := c.pullImage(ctx, base, before, before.Tag); err != nil {
		t.Errorf("pull of content pushed before, from the survivor with two zones down: %v", err)
	}
	if err := c.pullImage(ctx, base, before, before.Digest.String()); err != nil {
		t.Errorf("pull by digest from the survivor with two zones down: %v", err)
	}

	// Both back: the region writes again and nothing of the refused push is
	// visible anywhere.
	back := time.Now()
	r.restart(first)
	r.restart(second)
	r.waitLeader(30*time.Second, 1, 2, 3)
	r.waitCaughtUp(first, 30*time.Second)
	r.waitCaughtUp(second, 30*time.Second)
	recovered := time.Since(back)
	after := newImage("majority/app", "after", 8<<10)
	if err := c.pushImage(ctx, r.base(second), after, true); err != nil {
		t.Fatalf("push after both zones came back: %v", err)
	}
	converge := r.waitConverged(30 * time.Second)
	refusedDigest := digest.FromBytes(refusedManifest)
	for z := 1; z <= 3; z++ {
		if err := c.pullImage(ctx, r.base(z), after, after.Tag); err != nil {
			t.Errorf("pull of the push after recovery from zone %d: %v", z, err)
		}
		var re *ociclient.Error
		if d, _, err := c.GetManifest(ctx, r.base(z), refused.Repo, refused.Tag); !errors.As(err, &re) || re.Status != http.StatusNotFound {
			t.Errorf("zone %d after recovery: tag %s of the refused manifest PUT: got %s, err %v; want 404 (a refused write must leave nothing behind)", z, refused.Tag, d, err)
		}
		if _, _, err := c.GetManifest(ctx, r.base(z), refused.Repo, refusedDigest.String()); !errors.As(err, &re) || re.Status != http.StatusNotFound {
			t.Errorf("zone %d after recovery: refused manifest %s: err %v; want 404", z, refusedDigest, err)
		}
		for _, d := range []digest.Digest{refused.Layers[0].Digest, refused.Config.Digest} {
			if code, err := c.HeadBlob(ctx, r.base(z), refused.Repo, d); err != nil || code != http.StatusNotFound {
				t.Errorf("zone %d after recovery: HEAD of refused blob %s: %d %v; want 404", z, d, code, err)
			}
		}
	}
	if st, err := r.nodeState(ctx, 1); err == nil {
		for _, d := range []digest.Digest{refused.Layers[0].Digest, refused.Config.Digest} {
			for _, b := range st.Blobs {
				if b == d.String() {
					t.Errorf("a copy of refused blob %s is in the zones' stores after recovery", d)
				}
			}
		}
	}
	summary(t, "majority: one-down push+pull ok; two-down 503 UNAVAILABLE after manifest=%.2fs blob=%.2fs chunked=%.2fs; all caught up %.2fs after the restarts began, converge=%.2fs",
		manifestTook.Seconds(), monoTook.Seconds(), chunkTook.Seconds(), recovered.Seconds(), converge.Seconds())
}
