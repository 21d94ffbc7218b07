package georep

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/test/ociclient"
)

// TestGeoDurability pushes manifests to westus with the
// Georeg-Geo-Durability header: a push asking for N regions must be
// acknowledged only once N regions hold the manifest and its blobs, checked
// right after the 201 with `replication status` and HEAD (neither reads
// through); with westeurope down, 2 regions still acknowledge, and a push
// asking for 3 waits until westeurope is back. The 503 a push gets when the
// regions never come is not tested: the wait lasts two minutes and no flag
// shortens it.
func TestGeoDurability(t *testing.T) {
	m := startMesh(t, 1)
	ctx := context.Background()
	west := m.first("westus")
	const repo = "geo/app"
	imgs := make([]image, 5)
	for i := range imgs {
		imgs[i] = ociclient.NewImage(fmt.Sprintf("geo-%d", i), ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(5000+i), 8*MiB)), ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(5100+i), 64<<10)))
		for _, b := range imgs[i].Blobs() {
			if err := m.c.PushBlob(ctx, west.URL(), repo, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	put := func(i int, tag, n string) (time.Duration, error) {
		var hdr http.Header
		if n != "" {
			hdr = http.Header{"Georeg-Geo-Durability": {n}}
		}
		start := time.Now()
		_, _, err := m.c.putManifestWith(ctx, west.URL(), repo, tag, imgs[i], hdr)
		return time.Since(start), err
	}
	// holders says, right now, which regions hold image i: `replication
	// status` for the manifest, HEAD for the blobs.
	holders := func(i int, regs []string) (map[string]string, error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		out := map[string]string{}
		for _, r := range regs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				why := "holds it"
				for _, b := range imgs[i].Blobs() {
					if ok, err := m.c.HasBlob(ctx, m.first(r).URL(), repo, b.Digest); !ok || err != nil {
						why = fmt.Sprintf("lacks blob %.19s (%v)", b.Digest, err)
						break
					}
				}
				mu.Lock()
				out[r] = why
				mu.Unlock()
			}()
		}
		ps, err := m.imageStatus(t, ctx, repo+"@"+imgs[i].Digest.String())
		wg.Wait()
		if err != nil {
			return nil, err
		}
		// A region that could not be asked is not a region that lacks the
		// image: right after a region returns, the home region's cached
		// connection to it may still be in reconnect backoff. Ask again,
		// and say so.
		for start, first := time.Now(), ""; ; {
			var unknown []string
			for _, r := range regs {
				if ps[r].Error != "" {
					unknown = append(unknown, r+": "+ps[r].Error)
				}
			}
			if len(unknown) == 0 {
				if first != "" {
					t.Logf("geo-durability: replication status could not ask a region for %d ms: %s", time.Since(start).Milliseconds(), first)
				}
				break
			}
			if first == "" {
				first = strings.Join(unknown, "; ")
			}
			if time.Since(start) > 10*time.Second {
				break
			}
			time.Sleep(200 * time.Millisecond)
			if ps, err = m.imageStatus(t, ctx, repo+"@"+imgs[i].Digest.String()); err != nil {
				return nil, err
			}
		}
		for _, r := range regs {
			if p := ps[r]; !p.Present || p.Error != "" || p.Digest != imgs[i].Digest.String() {
				out[r] = fmt.Sprintf("replication status: present=%v digest=%.19s error=%q; HEAD: %s", p.Present, p.Digest, p.Error, out[r])
			}
		}
		return out, nil
	}
	others := []string{"eastus", "westeurope"}

	// No header: the registry's default (1 region), acknowledged at once.
	took, err := put(0, "v0", "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := holders(0, others)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("geo-durability: default (1 region): PUT acknowledged in %d ms; right after: eastus %s, westeurope %s", took.Milliseconds(), h["eastus"], h["westeurope"])

	// 3 regions: acknowledged only when all three hold the image.
	took, err = put(1, "v1", "3")
	if err != nil {
		t.Fatalf("PUT with Georeg-Geo-Durability: 3: %v", err)
	}
	h, err = holders(1, regions)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		if h[r] != "holds it" {
			t.Errorf("right after the 201 to a push asking for 3 regions, %s: %s", r, h[r])
		}
	}
	t.Logf("geo-durability: 3 regions: PUT acknowledged in %d ms (8 MiB image); right after, every region holds the manifest and its blobs", took.Milliseconds())

	// Malformed values are refused, and a refused push leaves nothing.
	for _, v := range []string{"0", "three"} {
		if _, err := put(4, "malformed", v); !ociclient.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "MANIFEST_INVALID") {
			t.Errorf("PUT with Georeg-Geo-Durability: %s: %v, want 400 MANIFEST_INVALID", v, errOrOK(err))
		}
	}
	if has, err := m.c.HasTag(ctx, west.URL(), repo, "malformed"); has || err != nil {
		t.Errorf("after PUT %s:malformed was refused with 400 (bad Georeg-Geo-Durability), westus lists the tag (%v): the manifest was committed before the header was checked", repo, err)
	}

	// westeurope down: two regions still acknowledge.
	m.Chaos(t, ctx, "kill-region", "westeurope")
	down := time.Now()
	took, err = put(2, "v2", "2")
	if err != nil {
		t.Fatalf("PUT with Georeg-Geo-Durability: 2 while westeurope is down: %v", err)
	}
	h, err = holders(2, []string{"westus", "eastus"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"westus", "eastus"} {
		if h[r] != "holds it" {
			t.Errorf("right after the 201 to a push asking for 2 regions with westeurope down, %s: %s", r, h[r])
		}
	}
	t.Logf("geo-durability: 2 regions with westeurope down: PUT acknowledged in %d ms; westus and eastus hold it", took.Milliseconds())

	// 3 regions with westeurope down: the push waits for it.
	type result struct {
		took time.Duration
		at   time.Time
		err  error
	}
	done := make(chan result, 1)
	go func() {
		took, err := put(3, "v3", "3")
		done <- result{took, time.Now(), err}
	}()
	select {
	case r := <-done:
		t.Fatalf("a push asking for 3 regions returned after %v while westeurope was down: %v", r.took, errOrOK(r.err))
	case <-time.After(3 * time.Second):
	}
	m.Restart(t, ctx, "westeurope")
	back := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("a push asking for 3 regions has not returned 90 s after westeurope came back")
	}
	if r.err != nil {
		t.Fatalf("PUT with Georeg-Geo-Durability: 3 across westeurope's outage: %v", r.err)
	}
	if r.at.Before(back) {
		t.Errorf("a push asking for 3 regions was acknowledged before westeurope came back")
	}
	h, err = holders(3, regions)
	if err != nil {
		t.Fatal(err)
	}
	for _, reg := range regions {
		if h[reg] != "holds it" {
			t.Errorf("right after the 201 to a push asking for 3 regions, %s: %s", reg, h[reg])
		}
	}
	t.Logf("geo-durability: 3 regions across westeurope's outage: PUT acknowledged %d ms after westeurope came back (%v after the PUT, westeurope down %v in all)",
		r.at.Sub(back).Milliseconds(), r.took.Round(time.Millisecond), back.Sub(down).Round(time.Millisecond))
}
