package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// sameTag pushes two different images to the same tag through westus and
// eastus at the same moment, 100 times: each round to a tag of its own
// (race-N) and to one tag shared by every round (latest). Last writer wins;
// every region must end with the same digest for every tag, one a client
// wrote (I4).
func sameTag(full bool) Scenario {
	rounds := 100
	if !full {
		rounds = 10
	}
	return Scenario{
		Name:         "same-tag-two-regions",
		Fault:        fmt.Sprintf("the same tag pushed through westus and eastus at once, %d times (no fault injected)", rounds),
		Target:       "every push acknowledged; every region resolves every tag to the same client-written digest",
		ZeroFailures: true,
		Inject: func(ctx context.Context, r *Run) error {
			rng := rand.New(rand.NewPCG(6, 6))
			w := NewWorkload(r.Mesh, r.Client, WorkloadConfig{Seed: 6})
			start := time.Now()
			for i := range rounds {
				var wg sync.WaitGroup
				ready := make(chan struct{})
				for _, loc := range []string{"westus", "eastus"} {
					img := w.Image(rng)
					wg.Go(func() {
						<-ready
						for _, tag := range []string{fmt.Sprintf("race-%d", i), "latest"} {
							r.Client.Push(ctx, PushSpec{Kind: OpOverwrite, Location: loc, Repo: "race/app", Tag: tag,
								Blobs: img.Blobs(), Manifest: img.Manifest})
						}
					})
				}
				close(ready)
				wg.Wait()
			}
			r.Notef("%d rounds of two concurrent pushes per tag in %v", rounds, time.Since(start).Round(time.Millisecond))
			return nil
		},
		Verify: func(ctx context.Context, r *Run) {
			if n, err := r.Mesh.MetricSum(ctx, "georeg_replication_conflicts_total"); err == nil {
				r.Notef("%.0f concurrent tag writes resolved by last-writer-wins (georeg_replication_conflicts_total)", n)
			}
		},
	}
}
