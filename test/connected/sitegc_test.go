package connected

import (
	"bytes"
	"context"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestSiteGarbage runs a ReadWrite connected registry with a short
// garbage collection grace (--site-gc-grace 2s) and checks, from outside,
// that what the cloud deletes and what leaves the site's repositories
// leaves the site's disk and catalog after the grace, that what it still
// syncs stays pullable there with its bytes, and that a local push not
// synced up yet (the site cut off from the cloud, and restarted) is kept
// and reaches the cloud after heal.
func TestSiteGarbage(t *testing.T) {
	const grace = 2 * time.Second
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	pusher := m.CreateToken(t, "pusher1", "--scope-map", "_repositories_push")
	cloud := m.Client(30 * time.Second)
	westus := m.RegionNodes("westus")[0].URL()
	base := ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1, 128<<10)) // shared by every image
	image := func(name string, seed uint64) ociclient.Image {
		return ociclient.NewImage(name, base, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 256<<10)))
	}
	push := func(repo, tag string, seed uint64) ociclient.Image {
		t.Helper()
		img := image(repo+":"+tag, seed)
		if err := cloud.PushImage(ctx, m.URL(), repo, tag, img); err != nil {
			t.Fatal(err)
		}
		return img
	}
	app1 := push("samples/app", "v1", 11)
	app2 := push("samples/app", "v2", 12)
	tools := push("samples/tools", "v1", 13)

	must("connected-registry", "create", "--name", "factory1", "--mode", "ReadWrite", "--repository", "samples/*", "--client-tokens", pusher.User)
	must("mesh", "add-site", "--name", "factory1", "--node-arg", "--site-gc-grace", "--node-arg", grace.String())
	m.Reload()
	site := m.Sites["factory1"]
	siteURL := site.URL()
	local := ociclient.NewWithCredential(30*time.Second, pusher)

	// pulled checks that img is pullable at url as repo:ref, every byte
	// as pushed.
	pulled := func(c *ociclient.Client, url, repo, ref string, img ociclient.Image) error {
		d, body, err := c.GetManifest(ctx, url, repo, ref)
		if err != nil {
			return err
		}
		if d != img.Digest || !bytes.Equal(body, img.Manifest) {
			return &mismatch{repo + ":" + ref + " manifest"}
		}
		for _, b := range img.Blobs() {
			got, err := c.GetBlob(ctx, url, repo, b.Digest)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, b.Data) {
				return &mismatch{repo + "@" + b.Digest.String()}
			}
		}
		return nil
	}
	poll := func(what string, timeout time.Duration, cond func() error) time.Duration {
		t.Helper()
		start := time.Now()
		var last error
		if err := ociclient.Poll(ctx, timeout, 100*time.Millisecond, func() (bool, error) {
			last = cond()
			return last == nil, nil
		}); err != nil {
			t.Fatalf("%s: %v (last: %v)\n%s", what, err, last, site.LogTail(4000))
		}
		return time.Since(start)
	}
	gone := func(repo, ref string) error {
		_, _, err := local.GetManifest(ctx, siteURL, repo, ref)
		if ociclient.IsStatus(err, http.StatusNotFound) {
			return nil
		}
		if err == nil {
			return &mismatch{repo + ":" + ref + " still at the site"}
		}
		return err
	}
	took := poll("the cloud's images at the site", 60*time.Second, func() error {
		for _, c := range []struct {
			repo, tag string
			img       ociclient.Image
		}{{"samples/app", "v1", app1}, {"samples/app", "v2", app2}, {"samples/tools", "v1", tools}} {
			if err := pulled(local, siteURL, c.repo, c.tag, c.img); err != nil {
				return err
			}
		}
		return nil
	})
	before := blobFiles(t, site.Data)
	t.Logf("site synced 3 images %v after add-site: %d blob files, %d bytes on its disk", took.Round(time.Millisecond), len(before), sumSizes(before))

	// The cloud deletes samples/app:v2's manifest and the site stops
	// syncing samples/tools (narrowed to samples/app).
	deleted := time.Now()
	if err := cloud.DeleteRef(ctx, m.URL(), "samples/app", app2.Digest.String()); err != nil {
		t.Fatal(err)
	}
	poll("samples/app@v2 deleted at the site", 30*time.Second, func() error { return gone("samples/app", app2.Digest.String()) })
	t.Logf("the cloud's delete reached the site %v after it began", time.Since(deleted).Round(time.Millisecond))
	must("connected-registry", "update", "--name", "factory1", "--remove-repository", "samples/*", "--add-repository", "samples/app")
	changed := time.Now()
	// The update reaches the site at its next activation (every 30 s).
	poll("samples/tools deleted at the site", 45*time.Second, func() error { return gone("samples/tools", "v1") })
	t.Logf("the narrowing removed samples/tools:v1 at the site %v after the update", time.Since(changed).Round(time.Millisecond))

	// Cut off: a local push, acknowledged there, not synced up; the site
	// restarts while cut off (its first sync after heal resyncs).
	must("chaos", "partition", "factory1", "westus")
	mine := image("samples/app:mine", 14)
	if err := local.PushImage(ctx, siteURL, "samples/app", "mine", mine); err != nil {
		t.Fatalf("pushing at the cut-off site: %v", err)
	}
	m.Chaos(t, ctx, "kill-zone", "factory1/1")
	m.Restart(t, ctx, "factory1")
	pushedAt := time.Now()

	// After the grace, the site's disk holds exactly the blobs of what it
	// still has: samples/app:v1 and the local push.
	want := map[digest.Digest]int64{}
	for _, img := range []ociclient.Image{app1, mine} {
		for _, b := range img.Blobs() {
			want[b.Digest] = int64(len(b.Data))
		}
	}
	took = poll("the site's disk shrunk to what it still holds", 30*time.Second, func() error {
		have := blobFiles(t, site.Data)
		if !sameKeys(have, want) {
			return &mismatch{"blob files " + keys(have)}
		}
		return nil
	})
	after := blobFiles(t, site.Data)
	t.Logf("site disk: %d blob files, %d bytes before; %d files, %d bytes after (%v after the local push and restart, grace %v)",
		len(before), sumSizes(before), len(after), sumSizes(after), took.Round(time.Millisecond), grace)
	poll("samples/tools gone from the site's catalog", 10*time.Second, func() error {
		repos, err := local.List(ctx, siteURL, "/v2/_catalog", "repositories")
		if err != nil {
			return err
		}
		if slices.Contains(repos, "samples/tools") || !slices.Contains(repos, "samples/app") {
			return &mismatch{"catalog " + keys(sliceSet(repos))}
		}
		return nil
	})
	if since := time.Since(pushedAt); since < 2*grace {
		time.Sleep(2*grace - since) // the local push outlives the grace twice
	}
	for _, c := range []struct {
		ref string
		img ociclient.Image
	}{{"v1", app1}, {"mine", mine}} {
		if err := pulled(local, siteURL, "samples/app", c.ref, c.img); err != nil {
			t.Errorf("samples/app:%s at the site after its garbage went: %v", c.ref, err)
		}
	}
	st, err := m.NodeStatus(ctx, site)
	if err != nil {
		t.Fatal(err)
	}
	if st.Site == nil || st.Site.GC.BlobsFreed == 0 {
		t.Errorf("site status: %+v, want blobs freed", st.Site)
	} else {
		t.Logf("site gc since its restart: %+v", st.Site.GC)
	}

	// Healed: the local push reaches the cloud whole.
	must("chaos", "heal")
	healed := time.Now()
	poll("samples/app:mine in westus", 30*time.Second, func() error { return pulled(cloud, westus, "samples/app", "mine", mine) })
	t.Logf("the local push kept through the garbage collection was in westus %v after heal", time.Since(healed).Round(time.Millisecond))
	// The site's first sync after its restart compared everything with
	// the cloud: the local push, in the cloud or still on its way up,
	// stayed.
	for _, c := range []struct {
		ref string
		img ociclient.Image
	}{{"v1", app1}, {"mine", mine}} {
		if err := pulled(local, siteURL, "samples/app", c.ref, c.img); err != nil {
			t.Errorf("samples/app:%s at the site after heal: %v", c.ref, err)
		}
	}
	if err := gone("samples/tools", "v1"); err != nil {
		t.Errorf("samples/tools:v1 at the site after heal: %v", err)
	}
}

// TestMultiZoneSiteGarbage runs a ReadOnly connected registry of three
// zones with a short grace (--site-gc-grace 2s) and checks that a
// manifest deleted in the cloud leaves the disk of every zone: the
// leader's collector frees its own copies, and each other zone sweeps its
// own; the image the site still holds stays pullable at every zone,
// bytes checked.
func TestMultiZoneSiteGarbage(t *testing.T) {
	const grace = 2 * time.Second
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	puller := m.CreateToken(t, "puller1", "--scope-map", "_repositories_pull")
	cloud := m.Client(30 * time.Second)
	base := ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1, 64<<10))
	push := func(tag string, seed uint64) ociclient.Image {
		t.Helper()
		img := ociclient.NewImage("samples/app:"+tag, base, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 128<<10)))
		if err := cloud.PushImage(ctx, m.URL(), "samples/app", tag, img); err != nil {
			t.Fatal(err)
		}
		return img
	}
	v1, v2 := push("v1", 21), push("v2", 22)
	must("connected-registry", "create", "--name", "factory1", "--repository", "samples/*", "--client-tokens", puller.User)
	must("mesh", "add-site", "--name", "factory1", "--zones", "3", "--node-arg", "--site-gc-grace", "--node-arg", grace.String())
	m.Reload()
	zones := m.RegionNodes("factory1")
	if len(zones) != 3 {
		t.Fatalf("the site has %d zones, want 3", len(zones))
	}
	local := ociclient.NewWithCredential(15*time.Second, puller)
	logs := func() string {
		var s string
		for _, z := range zones {
			s += "--- " + z.String() + "\n" + z.LogTail(1500) + "\n"
		}
		return s
	}
	blobsOf := func(imgs ...ociclient.Image) map[digest.Digest]int64 {
		out := map[digest.Digest]int64{}
		for _, img := range imgs {
			for _, b := range img.Blobs() {
				out[b.Digest] = int64(len(b.Data))
			}
		}
		return out
	}
	// everyZone waits until every zone's disk holds exactly want and
	// returns when each got there.
	everyZone := func(what string, want map[digest.Digest]int64) map[string]time.Duration {
		t.Helper()
		start := time.Now()
		at := map[string]time.Duration{}
		if err := ociclient.Poll(ctx, 45*time.Second, 100*time.Millisecond, func() (bool, error) {
			for _, z := range zones {
				if _, ok := at[z.String()]; !ok && sameKeys(blobFiles(t, z.Data), want) {
					at[z.String()] = time.Since(start).Round(time.Millisecond)
				}
			}
			return len(at) == len(zones), nil
		}); err != nil {
			for _, z := range zones {
				t.Logf("%s holds %s", z, keys(blobFiles(t, z.Data)))
			}
			t.Fatalf("%s: %v\n%s", what, err, logs())
		}
		return at
	}
	took := everyZone("every zone holding both images", blobsOf(v1, v2))
	t.Logf("every zone of the site held both images (5 blobs) after: %v", took)

	if err := cloud.DeleteRef(ctx, m.URL(), "samples/app", v2.Digest.String()); err != nil {
		t.Fatal(err)
	}
	took = everyZone("every zone's disk down to samples/app:v1", blobsOf(v1))
	leader, _ := m.Leader(ctx, "factory1", 10*time.Second)
	t.Logf("v2's 2 blobs left the disk of each zone after the cloud's delete, grace %v (leader %s): %v", grace, leader, took)
	for _, z := range zones {
		d, body, err := local.GetManifest(ctx, z.URL(), "samples/app", "v1")
		if err != nil || d != v1.Digest || !bytes.Equal(body, v1.Manifest) {
			t.Errorf("samples/app:v1 at %s: %v", z, err)
			continue
		}
		for _, b := range v1.Blobs() {
			if got, err := local.GetBlob(ctx, z.URL(), "samples/app", b.Digest); err != nil || !bytes.Equal(got, b.Data) {
				t.Errorf("samples/app@%.19s at %s: %v", b.Digest, z, err)
			}
		}
		if _, _, err := local.GetManifest(ctx, z.URL(), "samples/app", v2.Digest.String()); !ociclient.IsStatus(err, http.StatusNotFound) {
			t.Errorf("samples/app@v2 at %s: %v, want 404", z, err)
		}
	}
}

type mismatch struct{ what string }

func (e *mismatch) Error() string { return "mismatch: " + e.what }

// blobFiles returns the blobs in a node's filesystem store, by digest,
// with their sizes.
func blobFiles(t *testing.T, data string) map[digest.Digest]int64 {
	t.Helper()
	out := map[digest.Digest]int64{}
	root := filepath.Join(data, "blobs", "blobs")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(filepath.ToSlash(rel), "/") // ALG/XX/HEX
		if len(parts) != 3 {
			return nil
		}
		dg := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		if dg.Validate() != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[dg] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sumSizes(m map[digest.Digest]int64) int64 {
	var n int64
	for _, s := range m {
		n += s
	}
	return n
}

func sameKeys(a, b map[digest.Digest]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func keys[K ~string, V any](m map[K]V) string {
	var ks []string
	for k := range m {
		ks = append(ks, string(k))
	}
	slices.Sort(ks)
	return "[" + joinShort(ks) + "]"
}

func joinShort(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(" ")
		}
		if len(x) > 19 {
			x = x[:19]
		}
		b.WriteString(x)
	}
	return b.String()
}

func sliceSet(s []string) map[string]bool {
	out := map[string]bool{}
	for _, x := range s {
		out[x] = true
	}
	return out
}
