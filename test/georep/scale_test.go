package georep

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// scaleRepos and scaleTags size TestInitialSyncAtScale: 5,000 tags, a
// twentieth of the bench's registry (GEOREG_SCALE_REPOS overrides the
// repositories, for a run by hand).
const (
	scaleRepos = 500
	scaleTags  = 10
)

// TestInitialSyncAtScale fills westus with 500 repositories of 10 tags
// (5,000 distinct small manifests sharing two blobs), then:
//
//   - Create: `replication create --region eastus` (70 ms away, its
//     published round trip to westus) must reach Ready holding
//     every repository and tag, copied from summaries in bulk; the
//     progress `replication show` printed meanwhile and the time it took
//     are logged;
//   - Outage: eastus is killed while westus writes as many tags again,
//     more than the outbox keeps for it (--outbox-max-events=1000), so it
//     must catch up from summaries after `chaos restart`.
func TestInitialSyncAtScale(t *testing.T) {
	repos := scaleRepos
	if s := os.Getenv("GEOREG_SCALE_REPOS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("GEOREG_SCALE_REPOS=%q: %v", s, err)
		}
		repos = n
	}
	m := startMeshWith(t, 1, []string{"westus"}, "--node-arg=--outbox-max-events=1000")
	ctx := context.Background()
	west := m.first("westus")
	start := time.Now()
	_, layer := scaleLoad(t, m, "scale/a", repos)
	t.Logf("load: %d repositories, %d tags written at %s in %v", repos, repos*scaleTags, west, time.Since(start).Round(time.Millisecond))

	// Create.
	start = time.Now()
	stop := m.watchProgress(t, "eastus")
	out, errOut, err := m.cli(t, ctx, "replication", "create", "--region", "eastus", "--wait", "5m")
	took := time.Since(start)
	progress := stop()
	m.Reload()
	m.settle(t)
	if err != nil {
		t.Fatalf("replication create --region eastus: %v\n%s%s\nprogress:\n%s", err, out, errOut, progress)
	}
	t.Logf("create: eastus Ready %v after `replication create` (%d tags, %.0f tags/s); it printed:\n%s\nreplication show eastus meanwhile:\n%s",
		took.Round(time.Millisecond), repos*scaleTags, float64(repos*scaleTags)/took.Seconds(), indent(out), progress)
	m.sameListings(t, ctx, "westus", "eastus")
	if ok, err := m.c.HasBlob(ctx, m.first("eastus").URL(), "scale/a00000", layer.Digest); !ok || err != nil {
		t.Errorf("eastus lacks the shared layer in scale/a00000: %v", err)
	}

	// Outage.
	m.Chaos(t, ctx, "kill-region", "eastus")
	start = time.Now()
	scaleLoad(t, m, "scale/b", repos)
	t.Logf("outage: %d more tags written at westus with eastus down in %v", repos*scaleTags, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	stop = m.watchProgress(t, "eastus")
	m.Restart(t, ctx, "eastus")
	m.settle(t)
	restarted := time.Since(start)
	err = ociclient.Poll(ctx, 5*time.Minute, 500*time.Millisecond, func() (bool, error) {
		return m.countTags(ctx, "eastus", "scale/b") == repos*scaleTags, fmt.Errorf("eastus lacks tags of scale/b")
	})
	took = time.Since(start)
	progress = stop()
	if err != nil {
		t.Fatalf("eastus did not catch up: %v\nprogress:\n%s", err, progress)
	}
	t.Logf("outage: eastus held all %d new tags %v after `chaos restart` began (the restart took %v); replication show eastus meanwhile:\n%s",
		repos*scaleTags, took.Round(time.Millisecond), restarted.Round(time.Millisecond), progress)
	m.sameListings(t, ctx, "westus", "eastus")
	var reps []struct {
		Region  string    `json:"region"`
		Inbound []inbound `json:"inbound"`
	}
	m.cliJSON(t, ctx, &reps, "replication", "list", "--json")
	for _, r := range reps {
		for _, in := range r.Inbound {
			if r.Region == "eastus" && in.From == "westus" {
				t.Logf("outage: westus dropped %d events of eastus (the outbox keeps 1,000)", in.DroppedEvents)
				if in.DroppedEvents == 0 {
					t.Errorf("westus dropped no event of eastus: the catch-up was not from summaries")
				}
			}
		}
	}
}

// startMeshWith starts a mesh of regs with zones nodes each and extra
// mesh up arguments.
func startMeshWith(t testing.TB, zones int, regs []string, args ...string) *geoMesh {
	t.Helper()
	start := time.Now()
	hm := harness.StartMesh(t, append([]string{"--regions", strings.Join(regs, ","), "--home", regs[0], "--zones", strconv.Itoa(zones)}, args...)...)
	m := &geoMesh{Mesh: hm, c: newClient(hm)}
	m.settle(t)
	t.Logf("mesh: %s x %d zones up in %v (%s)", strings.Join(regs, ","), zones, time.Since(start).Round(time.Millisecond), m.Dir)
	return m
}

// scaleLoad writes repos repositories named prefix%05d at westus's node,
// each with scaleTags distinct small manifests sharing one config and one
// layer (mounted, not uploaded again), 16 at once. It returns the shared
// blobs' digests.
func scaleLoad(t testing.TB, m *geoMesh, prefix string, repos int) (cfg, layer ociclient.Blob) {
	t.Helper()
	ctx := context.Background()
	base := m.first("westus").URL()
	img := ociclient.NewImage("scale", ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(42, 64<<10)))
	if err := m.c.PushImage(ctx, base, prefix+"-base", "v0", img); err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= repos {
					return
				}
				repo := fmt.Sprintf("%s%05d", prefix, i)
				for _, b := range img.Blobs() {
					if err := m.c.MountBlob(ctx, base, repo, prefix+"-base", b.Digest); err != nil {
						errs <- fmt.Errorf("mount into %s: %w", repo, err)
						return
					}
				}
				for j := range scaleTags {
					man := ociclient.Manifest(img.Config, img.Layers, map[string]string{"n": repo + ":" + strconv.Itoa(j)})
					if err := m.c.PutManifest(ctx, base, repo, "v"+strconv.Itoa(j), man); err != nil {
						errs <- fmt.Errorf("%s:v%d: %w", repo, j, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return img.Config, img.Layers[0]
}

// watchProgress logs what `replication show REGION --json` says of the
// catch-up from westus every second until the returned stop is called,
// which returns the distinct lines seen.
func (m *geoMesh) watchProgress(t testing.TB, region string) (stop func() string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var lines []string
	start := time.Now()
	go func() {
		defer close(done)
		last := ""
		for ctx.Err() == nil {
			out, _, err := m.cli(t, ctx, "replication", "show", "--region", region, "--json")
			var rs []struct {
				Status  string    `json:"status"`
				Inbound []inbound `json:"inbound"`
			}
			if err == nil && json.Unmarshal([]byte(out), &rs) == nil && len(rs) == 1 {
				for _, in := range rs[0].Inbound {
					if l := rs[0].Status + " " + in.catchUp(); in.From == "westus" && l != last {
						lines = append(lines, fmt.Sprintf("%6.1fs %s", time.Since(start).Seconds(), l))
						last = l
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return func() string {
		cancel()
		<-done
		return "    " + strings.Join(lines, "\n    ")
	}
}

// inbound is one source region of `replication show --json`.
type inbound struct {
	From           string  `json:"from"`
	DroppedEvents  uint64  `json:"droppedEvents"`
	SyncRepos      int     `json:"syncRepos"`
	SyncReposDone  int     `json:"syncReposDone"`
	SyncManifests  int     `json:"syncManifests"`
	SyncRunning    bool    `json:"syncRunning"`
	SyncETASeconds float64 `json:"syncEtaSeconds"`
	SyncTags       int64   `json:"syncTags"`
	SyncTagsDone   int64   `json:"syncTagsDone"`
	SyncBytes      int64   `json:"syncBytes"`
	SyncBytesDone  int64   `json:"syncBytesDone"`
}

func (in inbound) catchUp() string {
	return fmt.Sprintf("%d/%d repos, %d/%d tags, %d/%d bytes, %d manifests, running=%v, eta %.0fs", in.SyncReposDone, in.SyncRepos,
		in.SyncTagsDone, in.SyncTags, in.SyncBytesDone, in.SyncBytes, in.SyncManifests, in.SyncRunning, in.SyncETASeconds)
}

// countTags counts the tags region's first node lists in the repositories
// whose name starts with prefix.
func (m *geoMesh) countTags(ctx context.Context, region, prefix string) int {
	l, err := m.listed(ctx, m.first(region))
	if err != nil {
		return -1
	}
	n := 0
	for repo, tags := range l {
		if strings.HasPrefix(repo, prefix) && !strings.HasSuffix(repo, "-base") {
			n += len(tags)
		}
	}
	return n
}

// sameListings checks that two regions list the same repositories and
// tags, and that the tags of a sample of repositories name the same
// manifests in both.
func (m *geoMesh) sameListings(t testing.TB, ctx context.Context, a, b string) {
	t.Helper()
	la, err := m.listed(ctx, m.first(a))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := m.listed(ctx, m.first(b))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(la) != fmt.Sprint(lb) {
		t.Fatalf("%s lists %d repositories, %s %d: they differ", a, len(la), b, len(lb))
	}
	checked := 0
	for repo, tags := range la {
		if checked == 20 {
			break
		}
		checked++
		for _, tag := range tags {
			da, _, err1 := m.c.GetManifest(ctx, m.first(a).URL(), repo, tag)
			db, _, err2 := m.c.GetManifest(ctx, m.first(b).URL(), repo, tag)
			if err1 != nil || err2 != nil || da != db {
				t.Errorf("%s:%s is %s in %s (%v) and %s in %s (%v)", repo, tag, da, a, err1, db, b, err2)
			}
		}
	}
	n := 0
	for _, tags := range la {
		n += len(tags)
	}
	t.Logf("%s and %s list the same %d repositories and %d tags (digests compared in %d repositories)", a, b, len(la), n, checked)
}
