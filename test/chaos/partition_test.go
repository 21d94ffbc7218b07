package chaos

import (
	"context"
	"fmt"
	"time"
)

// partition cuts westus off from both other regions while clients on both
// sides push (new tags, overwrites of shared tags, deletes, referrers), then
// heals. Pullers ask only for images pushed through their own location:
// the other side's are rightly out of reach until the cut heals.
func partition(full bool) Scenario {
	cut := 2 * time.Minute
	if !full {
		cut = 15 * time.Second
	}
	return Scenario{
		Name:   "partition",
		Fault:  fmt.Sprintf("westus cut from eastus and westeurope for %v while both sides take pushes; then healed", cut),
		Target: "both sides keep serving; after healing every region has every acknowledged push and the same tags",
		// Writes are paced so that what piles up in two minutes does not
		// take minutes more to deliver: replication offers one event per
		// WAN round trip or two.
		Load: &WorkloadConfig{Seed: 5, PullScope: PullOwn, PushPace: 800 * time.Millisecond},
		Inject: func(ctx context.Context, r *Run) error {
			for _, other := range []string{"eastus", "westeurope"} {
				if err := r.Chaos(ctx, "partition", "westus", other); err != nil {
					return err
				}
			}
			r.Sleep(ctx, cut)
			return r.Chaos(ctx, "heal")
		},
	}
}
