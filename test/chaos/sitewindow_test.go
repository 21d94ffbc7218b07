package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// siteWindowClose closes a ReadWrite site's sync window while a large image
// goes each way over its capped link: one pushed at the site (uploading)
// and one pushed in the cloud (downloading). The window's end cuts both
// (the site keeps no connection outside its windows); between the windows
// neither moves and the site sends and receives nothing; the next window
// resumes both, and both images arrive whole, every byte checked. The
// site's local clients push and pull there throughout: the site serves
// them whether its window is open or not, and what they push meanwhile
// goes up in the next window.
//
// The site's clock runs an hour every 30 s (x120) with a window of 1 h
// every 2 h: 30 s open, 30 s closed. Its links to every region are capped
// (the traffic manager may move it to another region when the capped one
// looks slow).
func siteWindowClose(full bool) Scenario {
	const (
		site  = "factory3"
		speed = 120
		rate  = "1MB/s"
	)
	// 24 MiB each way, about 25 s at the cap; the pushes start lead
	// before the window ends, so about a third of it is through by then.
	layers, layerSize, lead := 6, 4<<20, 8*time.Second
	if !full {
		layers, lead = 4, 6*time.Second
	}
	return Scenario{
		Name: "site-window-close",
		Fault: fmt.Sprintf("ReadWrite site %s's sync window closes while a %d MiB image uploads from it and one downloads to it over a %s link; the next window opens 30 s later",
			site, layers*layerSize>>20, rate),
		Target: "nothing sent between the windows; both images complete in the next window, every byte checked; every push acknowledged",
		Sites:  []SiteSpec{siteWindowed(site, speed, "0 */2 * * *")},
		// A transfer the window cuts may leave its upload session at the
		// parent (the traffic manager may have moved the site to another
		// region by the next window): it expires when idle.
		NodeArgs:     []string{"--upload-idle-timeout=15s"},
		ZeroFailures: true,
		Load:         &WorkloadConfig{Seed: 27, Pullers: 1, PushPace: time.Second},
		// The site syncs 30 s of every minute.
		ConvergeWithin: 3 * time.Minute,
		Inject: func(ctx context.Context, r *Run) error {
			clock := r.Mesh.SiteClock(site)
			local := NewWorkload(r.Mesh, r.Client, WorkloadConfig{
				Seed: 28, Locations: []string{site}, Pushers: 1, Pullers: 1, MaxPushes: 20,
				RepoPrefix: "samples/local", Repos: 2, OverwriteRatio: -1, DeleteRatio: -1, ReferrerRatio: -1,
				PullScope: PullOwn, PushPace: 2 * time.Second,
			})
			stopLocal := local.Start(ctx)
			defer stopLocal()
			// Every region's link: the traffic manager may send the site
			// to another region when the capped one looks slow.
			if err := capSite(ctx, r, site, rate); err != nil {
				return err
			}
			big := func(seed uint64) ociclient.Image {
				var ls []ociclient.Blob
				for j := range layers {
					ls = append(ls, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed+uint64(j), layerSize)))
				}
				return ociclient.NewImage(fmt.Sprintf("big-%d", seed), ls...)
			}
			before, err := r.Mesh.SiteReport(ctx, site)
			if err != nil {
				return err
			}
			var (
				up, down       ociclient.Image
				tagUp, tagDown string
				end            time.Time
				pushed         time.Time
			)
			// The pushes must be acknowledged before the window ends for
			// the transfers to be cut midway; on a machine too loaded for
			// that, they are tried again in a later window.
			for attempt := 0; ; attempt++ {
				end = clock.Now().Truncate(2 * time.Hour).Add(time.Hour)
				for time.Until(clock.Real(end)) < lead+2*time.Second {
					end = end.Add(2 * time.Hour)
				}
				r.Sleep(ctx, time.Until(clock.Real(end))-lead)
				up, down = big(30_000+uint64(attempt)*100), big(40_000+uint64(attempt)*100)
				tagUp, tagDown = fmt.Sprintf("up%d", attempt), fmt.Sprintf("down%d", attempt)
				if before, err = r.Mesh.SiteReport(ctx, site); err != nil {
					return err
				}
				pushed = time.Now()
				var wg sync.WaitGroup
				for _, p := range []struct {
					loc, tag string
					img      ociclient.Image
				}{{site, tagUp, up}, {"westus", tagDown, down}} {
					wg.Go(func() {
						op := r.Client.Push(ctx, PushSpec{Kind: OpPush, Location: p.loc, Repo: "samples/big", Tag: p.tag, Blobs: p.img.Blobs(), Manifest: p.img.Manifest})
						if !op.Acked {
							r.Missf("push of samples/big:%s through %s: %s", p.tag, p.loc, op.Err)
						}
					})
				}
				wg.Wait()
				left := time.Until(clock.Real(end))
				if left > 500*time.Millisecond {
					r.Notef("%d MiB pushed at the site and %d MiB in the cloud, both acknowledged %v before the window's end (%s on the site's clock)",
						layers*layerSize>>20, layers*layerSize>>20, left.Round(100*time.Millisecond), end.Format("15:04"))
					break
				}
				if attempt == 2 {
					r.Missf("three windows in a row the pushes were acknowledged only at or after the window's end: nothing was cut mid-transfer")
					return nil
				}
				r.Notef("the pushes were acknowledged %v before the window's end (a loaded machine): not mid-transfer, again in a later window", left.Round(100*time.Millisecond))
			}

			// Between the windows: nothing moves (the first 2 s after the
			// end, where two processes' clocks meet, are left out).
			r.Sleep(ctx, time.Until(clock.Real(end))+2*time.Second)
			closed, err := r.Mesh.SiteReport(ctx, site)
			if err != nil {
				return err
			}
			next := end.Add(time.Hour)
			cloud, siteClient := r.Mesh.c, r.Mesh.site(site).c
			siteNode := r.Mesh.Sites[site]
			through := false
			for _, region := range r.Mesh.Regions {
				if d := resolve(ctx, cloud, r.Mesh.RegionNodes(region)[0], "samples/big", tagUp); d != "" && !through {
					through = true
					r.Missf("samples/big:%s reached %s before the window closed: the transfer was not cut (make it larger)", tagUp, region)
				}
			}
			if d := resolve(ctx, siteClient, siteNode, "samples/big", tagDown); d != "" {
				r.Missf("samples/big:%s reached the site before the window closed: the transfer was not cut (make it larger)", tagDown)
			}
			if !through {
				r.Notef("at the window's end: neither image through; the site had handed %d blob bytes to its link and received %d since the pushes",
					closed.Stats.BytesSent-before.Stats.BytesSent, closed.Stats.BytesFetched-before.Stats.BytesFetched)
			}
			r.Sleep(ctx, time.Until(clock.Real(next))-2*time.Second)
			gap, err := r.Mesh.SiteReport(ctx, site)
			if err != nil {
				return err
			}
			if gap.Stats.BytesSent != closed.Stats.BytesSent || gap.Stats.BytesFetched != closed.Stats.BytesFetched || gap.Stats.StatusReported != closed.Stats.StatusReported {
				r.Missf("the site moved bytes between its windows: sent %d -> %d, received %d -> %d, status reports %d -> %d",
					closed.Stats.BytesSent, gap.Stats.BytesSent, closed.Stats.BytesFetched, gap.Stats.BytesFetched, closed.Stats.StatusReported, gap.Stats.StatusReported)
			} else {
				r.Notef("between the windows (%s to %s on its clock, 2 s less each side): the site sent and received 0 bytes and 0 status reports",
					end.Format("15:04"), next.Format("15:04"))
			}
			if err := capSite(ctx, r, site, "off"); err != nil {
				return err
			}

			// The next window: both complete.
			want := map[string]digest.Digest{"samples/big:" + tagUp: up.Digest, "samples/big:" + tagDown: down.Digest}
			r.Sleep(ctx, time.Until(clock.Real(next)))
			if _, err := r.Mesh.WaitSettled(ctx, slices.Sorted(maps.Keys(want)), want, time.Until(clock.Real(next.Add(time.Hour)))); err != nil {
				r.Missf("the cut transfers did not complete in the next window: %v", err)
			} else {
				r.Notef("both images at the site and in every region %v after the next window opened (%s on its clock), %v after their pushes",
					time.Since(clock.Real(next)).Round(time.Millisecond), next.Format("15:04"), time.Since(pushed).Round(time.Millisecond))
			}
			// Every byte of the downloaded image, at the site.
			if op := r.Client.Pull(ctx, PullSpec{Kind: OpPull, Location: site, Repo: "samples/big", Ref: down.Digest.String()}); op.Failed() {
				r.Missf("pulling samples/big@%.19s at the site: %s", down.Digest, op.Err)
			}
			if rep, err := r.Mesh.SiteReport(ctx, site); err == nil {
				size := int64(layers * layerSize)
				s, b := rep.Stats, before.Stats
				r.Notef("for %d bytes each way the site sent %d blob bytes (%d uploads resumed) and received %d (%d downloads resumed by range)",
					size, s.BytesSent-b.BytesSent, s.UploadsResumed-b.UploadsResumed, s.BytesFetched-b.BytesFetched, s.BlobsResumed-b.BlobsResumed)
			}
			return nil
		},
		Verify: func(ctx context.Context, r *Run) { sessionsExpire(ctx, r, "the cut transfers") },
	}
}
