package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// siteWindowed is a ReadWrite connected registry syncing samples/* in a
// window of 1 h every 6 h, started at 06:00:01 on its clock: the windows
// are what it would have at sea; the scenarios place their faults in them.
func siteWindowed(name string, speed float64, schedule string) SiteSpec {
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return SiteSpec{
		Name: name, ReadWrite: true, Repositories: []string{"samples/*"},
		Args:    []string{"--sync-schedule", schedule, "--sync-window", "PT1H"},
		ClockAt: day.Add(6*time.Hour + time.Second), ClockSpeed: speed,
	}
}

// sitePartition is issue 18's acceptance for ReadWrite sites: the site cut
// off from every cloud region during its sync window while its local
// clients push 100 images over 5 minutes (and pull what they pushed), and
// the same 20 tags are written at the site and in the cloud meanwhile;
// then healed. Every push at the site is acknowledged there; within 60 s
// of heal every one is in every region; each raced tag ends on one digest
// at the site and in every region, the loser pullable by digest.
func sitePartition(full bool) Scenario {
	const site = "factory1"
	cut, images, races := 5*time.Minute, 100, 20
	if !full {
		cut, images, races = 20*time.Second, 20, 6
	}
	// The site's clock runs at the real speed: its 06:00 window lasts the
	// whole scenario.
	return Scenario{
		Name: "site-partition",
		Fault: fmt.Sprintf("ReadWrite site %s cut from every region for %v in its sync window while %d images are pushed there and %d tags at both the site and the cloud; then healed",
			site, cut, images, races),
		Target:       "every push at the site acknowledged, 0 failures; all in every region within 60 s of heal; every raced tag one digest everywhere",
		Sites:        []SiteSpec{siteWindowed(site, 1, "0 */6 * * *")},
		ZeroFailures: true,
		// The cloud's own load is paced so that five minutes of it are
		// checked quickly after.
		Load:           &WorkloadConfig{Seed: 21, PullScope: PullOwn, PushPace: 2 * time.Second},
		ConvergeWithin: 3 * time.Minute,
		Inject: func(ctx context.Context, r *Run) error {
			for _, region := range r.Mesh.Regions {
				if err := r.Chaos(ctx, "partition", site, region); err != nil {
					return err
				}
			}
			cutAt := time.Now()
			// The site's clients: one pusher spread over the cut, one
			// puller of what was pushed there (a cut-off site serves
			// its own store).
			local := NewWorkload(r.Mesh, r.Client, WorkloadConfig{
				Seed: 22, Locations: []string{site}, Pushers: 1, Pullers: 1, MaxPushes: images,
				RepoPrefix: "samples/app", Repos: 5, OverwriteRatio: -1, DeleteRatio: -1, ReferrerRatio: -1,
				PullScope: PullOwn, PushPace: cut * 3 / 4 / time.Duration(images),
			})
			stopLocal := local.Start(ctx)
			defer stopLocal()

			// Halfway, the races: the site and the cloud (through westus)
			// write the same tag, half the site first.
			r.Sleep(ctx, cut/2)
			raced := sameTagSiteAndCloud(ctx, r, local, site, races)

			for countOps(r.History, site, OpPush) < images && time.Since(cutAt) < 2*cut {
				r.Sleep(ctx, 200*time.Millisecond)
			}
			r.Sleep(ctx, cut-time.Since(cutAt))
			if rep, err := r.Mesh.SiteReport(ctx, site); err == nil {
				r.Notef("%d local writes waiting at the site at the end of the %v cut", rep.Status.Pending, time.Since(cutAt).Round(time.Second))
			}
			pushed := ackedAt(r.History, site, OpPush)
			r.Notef("%d images pushed at the cut-off site: %d acknowledged, %d failed", countOps(r.History, site, OpPush), len(pushed),
				countOps(r.History, site, OpPush)-len(pushed))
			healed := time.Now()
			if err := r.Chaos(ctx, "heal"); err != nil {
				return err
			}

			if _, err := r.Mesh.WaitSettled(ctx, slices.Sorted(maps.Keys(pushed)), pushed, 3*time.Minute); err != nil {
				r.Missf("images pushed at the site not in every region %v after heal: %v", time.Since(healed).Round(time.Millisecond), err)
			} else if took := time.Since(healed); took > time.Minute {
				r.Missf("all %d images pushed at the site were in every region only %v after heal, want within 60 s", len(pushed), took.Round(time.Millisecond))
			} else {
				r.Notef("all %d images pushed at the site in every region %v after heal, 0 lost", len(pushed), took.Round(time.Millisecond))
			}
			settled, err := r.Mesh.WaitSettled(ctx, slices.Sorted(maps.Keys(raced)), nil, 2*time.Minute)
			if err != nil {
				r.Missf("raced tags not settled %v after heal: %v", time.Since(healed).Round(time.Millisecond), err)
			} else {
				siteWon := 0
				for ref, d := range settled {
					if d == raced[ref] {
						siteWon++
					}
				}
				r.Notef("%d same-tag races (site and cloud) on one digest at the site and in every region %v after heal: the site's write won %d, the cloud's %d",
					races, time.Since(healed).Round(time.Millisecond), siteWon, races-siteWon)
			}
			var shown struct {
				Conflicts int64 `json:"tagConflicts"`
				Pending   int64 `json:"pendingWrites"`
			}
			if err := ociclient.Poll(ctx, 30*time.Second, 250*time.Millisecond, func() (bool, error) {
				shown.Conflicts, shown.Pending = 0, 0 // omitted when 0
				out, err := r.Mesh.Run(ctx, "connected-registry", "show", "--name", site, "--json")
				return err == nil && json.Unmarshal([]byte(out), &shown) == nil && shown.Conflicts == int64(races) && shown.Pending == 0, err
			}); err != nil {
				r.Missf("connected-registry show: %d tag conflicts and %d pending writes, want %d and 0", shown.Conflicts, shown.Pending, races)
			} else {
				r.Notef("the cloud counted %d tag conflicts, 0 writes pending at the site", shown.Conflicts)
			}
			return nil
		},
	}
}

// sameTagSiteAndCloud writes n tags samples/race:raceN both at site (its
// local clients) and in the cloud (through westus) at once, half the site
// first, with images of w, and returns each ref with the digest the site
// wrote to it.
func sameTagSiteAndCloud(ctx context.Context, r *Run, w *Workload, site string, n int) map[string]digest.Digest {
	rng := rand.New(rand.NewPCG(23, 23))
	out := map[string]digest.Digest{}
	var wg sync.WaitGroup
	for i := range n {
		tag := fmt.Sprintf("race%d", i)
		si, ci := w.Image(rng), w.Image(rng)
		out["samples/race:"+tag] = si.Digest
		wg.Go(func() {
			order := []func(){
				func() {
					r.Client.Push(ctx, PushSpec{Kind: OpOverwrite, Location: site, Repo: "samples/race", Tag: tag, Blobs: si.Blobs(), Manifest: si.Manifest})
				},
				func() {
					r.Client.Push(ctx, PushSpec{Kind: OpOverwrite, Location: "westus", Repo: "samples/race", Tag: tag, Blobs: ci.Blobs(), Manifest: ci.Manifest})
				},
			}
			if i%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, f := range order {
				f()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return out
}

// countOps returns how many operations of kind went through loc.
func countOps(h *History, loc string, kind OpKind) int {
	n := 0
	for _, o := range h.Ops() {
		if o.Location == loc && o.Kind == kind {
			n++
		}
	}
	return n
}

// ackedAt returns "repo:tag" and digest of every acknowledged operation of
// kind through loc.
func ackedAt(h *History, loc string, kind OpKind) map[string]digest.Digest {
	out := map[string]digest.Digest{}
	for _, o := range h.Ops() {
		if o.Location == loc && o.Kind == kind && o.Acked {
			out[o.Repo+":"+o.Tag] = o.Digest
		}
	}
	return out
}
