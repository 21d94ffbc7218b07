package connected

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestReadWriteSite runs a ReadWrite connected registry at a site of a
// 2-region mesh and checks the upload direction from outside: a push at
// the site outside its repositories refused with nothing stored; images
// pushed at the site while it is cut off from the cloud all acknowledged
// there, and pullable in every cloud region after heal; tags written both
// at the site and in the cloud during the cut converging to one digest
// everywhere, the loser pullable by digest, every conflict counted; the
// site killed and restarted during the cut losing none of its outbox.
//
// The figures are 100 images over a 5-minute cut; this test pushes
// 100 images over a cut of about 20 s (it logs both), to keep `make test`
// short.
func TestReadWriteSite(t *testing.T) {
	const (
		images = 100
		races  = 20
		minCut = 20 * time.Second
	)
	m := harness.StartMesh(t, "--regions", "westus,eastus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	pusher := m.CreateToken(t, "pusher1", "--scope-map", "_repositories_push")
	must("connected-registry", "create", "--name", "factory1", "--mode", "ReadWrite", "--repository", "samples/*", "--client-tokens", pusher.User)
	must("mesh", "add-site", "--name", "factory1")
	m.Reload()
	site := m.Sites["factory1"]
	siteURL := site.URL()
	local := ociclient.NewWithCredential(30*time.Second, pusher)
	cloud := m.Client(30 * time.Second)
	regions := map[string]string{}
	for _, r := range []string{"westus", "eastus"} {
		regions[r] = m.RegionNodes(r)[0].URL()
	}
	base := ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1, 256<<10)) // shared by every image
	image := func(name string, seed uint64) ociclient.Image {
		return ociclient.NewImage(name, base, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 16<<10)))
	}
	// unique is the blob bytes pushed at the site, each digest once: what
	// it should send up.
	var uniqueMu sync.Mutex
	unique := map[digest.Digest]int64{}
	atSite := func(img ociclient.Image) {
		uniqueMu.Lock()
		defer uniqueMu.Unlock()
		for _, b := range img.Blobs() {
			unique[b.Digest] = int64(len(b.Data))
		}
	}
	// digestIn is what repo:tag names in the region (or at the site) at
	// url, "" when nothing.
	digestIn := func(c *ociclient.Client, url, repo, tag string) digest.Digest {
		d, _, err := c.GetManifest(ctx, url, repo, tag)
		if err != nil {
			return ""
		}
		return d
	}

	// The site takes pushes once it activated (it learns its mode and
	// client tokens from the cloud).
	first := image("samples/app:first", 2)
	if err := ociclient.Poll(ctx, 60*time.Second, 200*time.Millisecond, func() (bool, error) {
		err := local.PushImage(ctx, siteURL, "samples/app", "first", first)
		return err == nil, err
	}); err != nil {
		t.Fatalf("pushing at the site: %v\n%s", err, site.LogTail(3000))
	}
	atSite(first)
	start := time.Now()
	for r, url := range regions {
		if err := ociclient.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
			return digestIn(cloud, url, "samples/app", "first") == first.Digest, nil
		}); err != nil {
			t.Fatalf("samples/app:first pushed at the site is not in %s: %v\n%s", r, err, site.LogTail(3000))
		}
	}
	t.Logf("an image pushed at the site was in every cloud region %v after its push", time.Since(start).Round(time.Millisecond))

	// Outside its repositories: refused, nothing stored.
	err := local.PushImage(ctx, siteURL, "other/x", "v1", image("other/x:v1", 3))
	if e := (*ociclient.Error)(nil); !errors.As(err, &e) || !e.Has("DENIED") {
		t.Errorf("a push at the site outside its repositories: %v, want DENIED", err)
	}
	if _, _, err := local.Do(ctx, http.MethodPost, siteURL, "/v2/other/x/blobs/uploads/", nil, nil, http.StatusAccepted); err == nil {
		t.Errorf("an upload at the site outside its repositories was let through")
	}
	if repos, err := local.List(ctx, siteURL, "/v2/_catalog", "repositories"); err != nil || strings.Contains(strings.Join(repos, " "), "other/") {
		t.Errorf("the site's catalog after the refused push: %v %v, want no other/x", repos, err)
	}

	// Cut off: pushes at the site are acknowledged there; the same tags
	// are written in the cloud too.
	must("chaos", "partition", "factory1", "westus")
	must("chaos", "partition", "factory1", "eastus")
	cut := time.Now()
	pushed := map[string]digest.Digest{} // repo:tag -> digest pushed at the site
	var failures []error
	for i := range images {
		repo, tag := fmt.Sprintf("samples/app%d", i%5), fmt.Sprintf("v%d", i)
		img := image(repo+":"+tag, uint64(100+i))
		if err := local.PushImage(ctx, siteURL, repo, tag, img); err != nil {
			failures = append(failures, err)
			continue
		}
		pushed[repo+":"+tag] = img.Digest
		atSite(img)
		// Spread over the cut, as a site's CI would.
		time.Sleep(minCut / 2 / images)
	}
	t.Logf("%d images pushed at the cut-off site in %v: %d acknowledged, %d failed", images, time.Since(cut).Round(time.Millisecond), len(pushed), len(failures))
	if len(failures) > 0 {
		t.Errorf("pushes at the cut-off site failed: %v", failures[:min(3, len(failures))])
	}
	type race struct{ site, cloud digest.Digest }
	raced := map[string]race{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range races {
		tag := fmt.Sprintf("race%d", i)
		si, ci := image("samples/race:"+tag+"-site", uint64(1000+i)), image("samples/race:"+tag+"-cloud", uint64(2000+i))
		wg.Go(func() {
			// Half the site first, half the cloud first: either may win.
			order := []func() error{
				func() error { atSite(si); return local.PushImage(ctx, siteURL, "samples/race", tag, si) },
				func() error { return cloud.PushImage(ctx, m.URL(), "samples/race", tag, ci) },
			}
			if i%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, f := range order {
				if err := f(); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			raced[tag] = race{si.Digest, ci.Digest}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("race pushes failed: %v", failures[:min(3, len(failures))])
	}
	var st struct {
		Site struct {
			Status struct {
				Pending int64 `json:"pending"`
			} `json:"status"`
		} `json:"site"`
	}
	if _, body, err := local.Do(ctx, http.MethodGet, siteURL, "/_georeg/status", nil, nil, http.StatusOK); err == nil && json.Unmarshal(body, &st) == nil {
		t.Logf("local writes waiting at the site during the cut: %d", st.Site.Status.Pending)
	}
	// The outbox is durable: the site killed and restarted while still
	// cut off loses none of it, and takes pushes again.
	m.Chaos(t, ctx, "kill-zone", "factory1/1")
	m.Restart(t, ctx, "factory1")
	for i := range 5 {
		repo, tag := "samples/after", fmt.Sprintf("restart%d", i)
		img := image(repo+":"+tag, uint64(3000+i))
		if err := ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
			err := local.PushImage(ctx, siteURL, repo, tag, img)
			return err == nil, err
		}); err != nil {
			t.Fatalf("pushing at the restarted, cut-off site: %v\n%s", err, site.LogTail(3000))
		}
		pushed[repo+":"+tag] = img.Digest
		atSite(img)
	}
	t.Logf("the site killed and restarted during the cut; 5 more images pushed there after")
	if d := minCut - time.Since(cut); d > 0 {
		time.Sleep(d)
	}
	t.Logf("cut for %v", time.Since(cut).Round(time.Millisecond))
	healed := time.Now()
	must("chaos", "heal")

	// Every image pushed at the site is pullable in every cloud region.
	for r, url := range regions {
		var lost []string
		if err := ociclient.Poll(ctx, 90*time.Second, 250*time.Millisecond, func() (bool, error) {
			lost = lost[:0]
			for ref, d := range pushed {
				repo, tag, _ := strings.Cut(ref, ":")
				if digestIn(cloud, url, repo, tag) != d {
					lost = append(lost, ref)
				}
			}
			return len(lost) == 0, nil
		}); err != nil {
			t.Errorf("%d of %d images pushed at the site are not in %s %v after heal: %v\n%s", len(lost), len(pushed), r,
				time.Since(healed).Round(time.Millisecond), lost[:min(5, len(lost))], site.LogTail(4000))
		} else {
			t.Logf("all %d images pushed at the cut-off site were in %s %v after heal, 0 lost", len(pushed), r, time.Since(healed).Round(time.Millisecond))
		}
	}
	for ref, d := range pushed {
		repo, _, _ := strings.Cut(ref, ":")
		if _, err := cloud.PullImage(ctx, m.URL(), repo, d.String()); err != nil {
			t.Errorf("pulling %s@%s through the endpoint: %v", repo, d, err)
			break
		}
	}

	// The races: one digest everywhere, the loser pullable by digest.
	places := map[string]func(tag string) digest.Digest{
		"the site": func(tag string) digest.Digest { return digestIn(local, siteURL, "samples/race", tag) },
	}
	for r, url := range regions {
		places[r] = func(tag string) digest.Digest { return digestIn(cloud, url, "samples/race", tag) }
	}
	siteWon := 0
	var diverged []string
	if err := ociclient.Poll(ctx, 60*time.Second, 250*time.Millisecond, func() (bool, error) {
		diverged, siteWon = diverged[:0], 0
		for tag, rc := range raced {
			seen := map[digest.Digest][]string{}
			for p, f := range places {
				d := f(tag)
				seen[d] = append(seen[d], p)
			}
			if len(seen) != 1 {
				diverged = append(diverged, fmt.Sprintf("%s: %v", tag, seen))
				continue
			}
			for d := range seen {
				if d != rc.site && d != rc.cloud {
					diverged = append(diverged, fmt.Sprintf("%s: %s, neither write", tag, d))
				}
				if d == rc.site {
					siteWon++
				}
			}
		}
		return len(diverged) == 0, nil
	}); err != nil {
		t.Errorf("%d of %d raced tags did not converge %v after heal: %v", len(diverged), races, time.Since(healed).Round(time.Millisecond), diverged[:min(4, len(diverged))])
	} else {
		t.Logf("%d same-tag races converged to one digest at the site and in every region %v after heal: the site's write won %d, the cloud's %d",
			races, time.Since(healed).Round(time.Millisecond), siteWon, races-siteWon)
	}
	for tag, rc := range raced {
		for _, d := range []digest.Digest{rc.site, rc.cloud} {
			if _, err := cloud.PullImage(ctx, m.URL(), "samples/race", d.String()); err != nil {
				t.Errorf("samples/race@%s (%s) by digest in the cloud: %v", d, tag, err)
			}
		}
		if _, err := local.PullImage(ctx, siteURL, "samples/race", rc.site.String()); err != nil {
			t.Errorf("samples/race@%s (%s) by digest at the site: %v", rc.site, tag, err)
		}
	}

	// Every race is a conflict, counted by the cloud and shown.
	var counted float64
	for _, url := range regions {
		mt, err := cloud.Metrics(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		counted += mt[ociclient.Series("georeg_connected_tag_conflicts_total", "connected", "factory1")]
	}
	var shown struct {
		Conflicts int64 `json:"tagConflicts"`
		Pending   int64 `json:"pendingWrites"`
	}
	if err := ociclient.Poll(ctx, 30*time.Second, 250*time.Millisecond, func() (bool, error) {
		shown.Conflicts, shown.Pending = 0, 0 // omitted when 0
		json.Unmarshal([]byte(must("connected-registry", "show", "--name", "factory1", "--json")), &shown)
		return shown.Conflicts == races && shown.Pending == 0, nil
	}); err != nil {
		_, body, _ := local.Do(ctx, http.MethodGet, siteURL, "/_georeg/status", nil, nil, http.StatusOK)
		t.Errorf("connected-registry show: %d tag conflicts, %d pending writes; want %d and 0\nthe site's status: %s\n%s",
			shown.Conflicts, shown.Pending, races, body, site.LogTail(6000))
	}
	t.Logf("conflicts counted by the cloud: %v (metric), %d (connected-registry show)", counted, shown.Conflicts)

	// Deduplicated: the site sent each blob it held once (the shared
	// layer too), none the parent had.
	var stats struct {
		Site struct {
			Stats struct {
				BytesSent    int64 `json:"bytesSent"`
				BlobsSent    int64 `json:"blobsSent"`
				BlobsSkipped int64 `json:"blobsSkipped"`
				BlobsMounted int64 `json:"blobsMounted"`
			} `json:"stats"`
		} `json:"site"`
	}
	if _, body, err := local.Do(ctx, http.MethodGet, siteURL, "/_georeg/status", nil, nil, http.StatusOK); err != nil || json.Unmarshal(body, &stats) != nil {
		t.Errorf("the site's status: %v", err)
	} else {
		var want int64
		for _, n := range unique {
			want += n
		}
		// Since the restart: the first image and the first shared layer
		// went before it.
		got := stats.Site.Stats
		t.Logf("since its restart the site sent %d blobs, %d blob bytes, mounted %d from another repository and skipped %d the cloud held; %d unique blob bytes were pushed there in all",
			got.BlobsSent, got.BytesSent, got.BlobsMounted, got.BlobsSkipped, want)
		if got.BytesSent > want {
			t.Errorf("the site sent %d blob bytes for %d unique bytes pushed there", got.BytesSent, want)
		}
	}
	if counted != races {
		t.Errorf("georeg_connected_tag_conflicts_total = %v, want %d", counted, races)
	}
}
