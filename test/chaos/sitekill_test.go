package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/georeg/georeg/test/ociclient"
)

// siteKill kills a ReadWrite site while it syncs a burst of local pushes
// up over a capped link: the node is SIGKILLed with part of its outbox
// sent and a blob upload in flight, then started again. Its outbox is
// durable (Raft), so nothing acknowledged there is lost: the rest goes up
// after the restart, a blob cut midway is sent again, and every image
// reaches every region.
//
// The upload sessions the killed site had open in the cloud stay there:
// the site keeps them in memory only, and its restarted node uploads those
// blobs again in new ones. They expire when idle (an hour by default; 15 s
// here), and I6 then finds none left.
func siteKill(full bool) Scenario {
	const (
		site = "factory2"
		rate = "1MB/s"
	)
	// 256 KiB of its own per image: the burst is pushed at the site in
	// about a third of the time its upload takes at the cap.
	images, layer := 40, 256<<10
	if !full {
		images = 12
	}
	return Scenario{
		Name: "site-kill-upload",
		Fault: fmt.Sprintf("ReadWrite site %s killed (SIGKILL) and restarted while it syncs %d images pushed there up a %s link",
			site, images, rate),
		Target:       "every push at the site acknowledged; after the restart every one in every region, 0 lost; no byte wrong",
		Sites:        []SiteSpec{{Name: site, ReadWrite: true, Repositories: []string{"samples/*"}}},
		NodeArgs:     []string{"--upload-idle-timeout=15s"},
		ZeroFailures: true,
		Load:         &WorkloadConfig{Seed: 24, PushPace: time.Second},
		Inject: func(ctx context.Context, r *Run) error {
			// The cap makes the upload last long enough to be cut; on
			// every region's link, as the traffic manager may send the
			// site to another region when the capped one looks slow.
			if err := capSite(ctx, r, site, rate); err != nil {
				return err
			}
			local := NewWorkload(r.Mesh, r.Client, WorkloadConfig{
				Seed: 25, Locations: []string{site}, Pushers: 1, Pullers: -1, MaxPushes: images,
				RepoPrefix: "samples/kill", Repos: 4, UniqueLayerSize: layer, OverwriteRatio: -1, DeleteRatio: -1, ReferrerRatio: -1,
				PushPace: 20 * time.Millisecond,
			})
			stopLocal := local.Start(ctx)
			ociclient.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) { return countOps(r.History, site, OpPush) >= images, nil })
			stopLocal()
			// Kill it with part of the burst synced up and more on its way.
			var at string
			err := ociclient.Poll(ctx, 2*time.Minute, 50*time.Millisecond, func() (bool, error) {
				rep, err := r.Mesh.SiteReport(ctx, site)
				if err != nil {
					return false, err
				}
				at = fmt.Sprintf("%d writes synced, %d pending, %d blobs (%d bytes) sent", rep.Stats.WritesSynced, rep.Status.Pending,
					rep.Stats.BlobsSent, rep.Stats.BytesSent)
				return rep.Stats.WritesSynced > 0 && rep.Status.Pending > 0, fmt.Errorf("%s", at)
			})
			if err != nil {
				r.Missf("the site's upload was not under way with more pending when the burst was pushed: %v", err)
			}
			if err := r.Chaos(ctx, "kill-zone", site+"/1"); err != nil {
				return err
			}
			r.Notef("killed the site mid-upload: %s (as it last reported)", at)
			r.Sleep(ctx, 2*time.Second)
			if err := r.Chaos(ctx, "restart", site); err != nil {
				return err
			}
			restarted := time.Now()
			if rep, err := r.Mesh.WaitSiteOnline(ctx, site, time.Minute); err != nil {
				r.Missf("the restarted site not Online: %v", err)
			} else {
				r.Notef("the restarted site Online %v after its restart with %d writes pending", time.Since(restarted).Round(time.Millisecond), rep.Status.Pending)
			}
			// It takes pushes again at once.
			after := NewWorkload(r.Mesh, r.Client, WorkloadConfig{
				Seed: 26, Locations: []string{site}, Pushers: 1, Pullers: -1, MaxPushes: 5,
				RepoPrefix: "samples/after", Repos: 1, OverwriteRatio: -1, DeleteRatio: -1, ReferrerRatio: -1,
				PushPace: 20 * time.Millisecond,
			})
			before := countOps(r.History, site, OpPush)
			stopAfter := after.Start(ctx)
			ociclient.Poll(ctx, time.Minute, 100*time.Millisecond, func() (bool, error) { return countOps(r.History, site, OpPush) >= before+5, nil })
			stopAfter()

			pushed := ackedAt(r.History, site, OpPush)
			r.Notef("%d images pushed at the site, %d acknowledged", countOps(r.History, site, OpPush), len(pushed))
			if _, err := r.Mesh.WaitSettled(ctx, slices.Sorted(maps.Keys(pushed)), pushed, 3*time.Minute); err != nil {
				r.Missf("images pushed at the site not in every region after its restart: %v", err)
			} else {
				r.Notef("all %d in every region %v after the restart, 0 lost", len(pushed), time.Since(restarted).Round(time.Millisecond))
			}
			if rep, err := r.Mesh.SiteReport(ctx, site); err == nil {
				s := rep.Stats
				r.Notef("since its restart the site synced %d writes: %d blobs sent (%d bytes), %d skipped (the cloud had them), %d mounted, %d uploads resumed",
					s.WritesSynced, s.BlobsSent, s.BytesSent, s.BlobsSkipped, s.BlobsMounted, s.UploadsResumed)
			}
			return capSite(ctx, r, site, "off")
		},
		Verify: func(ctx context.Context, r *Run) { sessionsExpire(ctx, r, "the killed site") },
	}
}

// sessionsExpire waits until no cloud node holds an upload session: those
// a site's cut uploads left behind (by whom, for the note) expire once
// idle, which the scenarios that leave some shorten to 15 s
// (--upload-idle-timeout) so that I6 then finds none.
func sessionsExpire(ctx context.Context, r *Run, by string) {
	start := time.Now()
	open := 0
	err := ociclient.Poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, error) {
		open = 0
		for _, n := range r.Mesh.Nodes {
			st, err := r.Mesh.NodeStatus(ctx, n)
			if err != nil {
				return false, err
			}
			open += st.Uploads
		}
		return open == 0, fmt.Errorf("%d upload sessions open in the cloud", open)
	})
	if err != nil {
		r.Missf("upload sessions %s left in the cloud did not expire: %v", by, err)
	} else if took := time.Since(start); took > time.Second {
		r.Notef("the upload sessions %s left open in the cloud expired %v after convergence (idle expiry 15 s)", by, took.Round(100*time.Millisecond))
	}
}

// capSite caps (or, with "off", uncaps) the bandwidth of site's link to
// every region.
func capSite(ctx context.Context, r *Run, site, rate string) error {
	for _, region := range r.Mesh.Regions {
		if err := r.Chaos(ctx, "bandwidth", site, region, rate); err != nil {
			return err
		}
	}
	return nil
}
