package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// readThrough pushes images through westus and pulls each, the moment its
// push is acknowledged, through westeurope, the farthest region: every pull
// must succeed, served by westeurope reading through from westus.
func readThrough(full bool) Scenario {
	images, workers := 500, 10
	if !full {
		images, workers = 40, 4
	}
	return Scenario{
		Name:         "read-through-farthest",
		Fault:        fmt.Sprintf("%d images pushed through westus, each pulled through westeurope (140 ms away) as soon as acknowledged (no fault injected)", images),
		Target:       "0 failures: every pull is served, reading through, before replication delivers",
		ZeroFailures: true,
		Inject: func(ctx context.Context, r *Run) error {
			w := NewWorkload(r.Mesh, r.Client, WorkloadConfig{Seed: 7})
			before, _ := r.Mesh.MetricSum(ctx, "georeg_replication_read_through_total")
			var next atomic.Int64
			var servedBy sync.Map
			err := parallel(ctx, workers, seq(workers), func(ctx context.Context, worker int) error {
				rng := rand.New(rand.NewPCG(7, uint64(worker)))
				for i := next.Add(1); i <= int64(images); i = next.Add(1) {
					img := w.Image(rng)
					tag := fmt.Sprintf("rt-%d", i)
					push := r.Client.Push(ctx, PushSpec{Kind: OpPush, Location: "westus", Repo: "farthest/app", Tag: tag, Blobs: img.Blobs(), Manifest: img.Manifest})
					if !push.Acked {
						continue
					}
					pull := r.Client.Pull(ctx, PullSpec{Kind: OpPull, Location: "westeurope", Repo: "farthest/app", Ref: img.Digest.String()})
					c, _ := servedBy.LoadOrStore(pull.Region, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
				}
				return nil
			})
			after, _ := r.Mesh.MetricSum(ctx, "georeg_replication_read_through_total")
			by := map[string]int64{}
			servedBy.Range(func(k, v any) bool { by[k.(string)] = v.(*atomic.Int64).Load(); return true })
			r.Notef("pulls through westeurope served by %v; %.0f read-throughs counted by the nodes", by, after-before)
			return err
		},
	}
}

// randomRegionPushes sends every request of every push (each blob's
// upload, chunked sessions' POST, PATCHes and PUT, the manifest) through a
// client location picked at random, so one image's pieces land in
// different regions.
func randomRegionPushes(full bool) Scenario {
	pushes, workers := 500, 12
	if !full {
		pushes, workers = 60, 3
	}
	return Scenario{
		Name:         "random-region-pushes",
		Fault:        fmt.Sprintf("%d pushes, each request through a random region's location (no fault injected)", pushes),
		Target:       "0 failures; every image pullable everywhere",
		Short:        true,
		ZeroFailures: true,
		Inject: func(ctx context.Context, r *Run) error {
			w := NewWorkload(r.Mesh, r.Client, WorkloadConfig{Seed: 8})
			locs := r.Mesh.LocationNames()
			var next atomic.Int64
			var regions sync.Map
			start := time.Now()
			err := parallel(ctx, workers, seq(workers), func(ctx context.Context, worker int) error {
				rng := rand.New(rand.NewPCG(8, uint64(worker)))
				var mu sync.Mutex
				via := func() string {
					mu.Lock()
					defer mu.Unlock()
					return locs[rng.IntN(len(locs))]
				}
				for i := next.Add(1); i <= int64(pushes); i = next.Add(1) {
					img := w.Image(rng)
					op := r.Client.Push(ctx, PushSpec{Kind: OpPush, Location: "random", Via: via, Repo: "random/app", Tag: fmt.Sprintf("p-%d", i),
						Blobs: img.Blobs(), Manifest: img.Manifest, Chunked: i%3 == 0})
					regions.Store(op.Region, true)
				}
				return nil
			})
			var got []string
			regions.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
			r.Notef("%d pushes in %v; manifests acknowledged by %v", pushes, time.Since(start).Round(time.Millisecond), got)
			return err
		},
	}
}
