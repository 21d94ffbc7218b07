package chaos

import (
	"context"
	"fmt"
	"time"
)

// leaderZoneKill kills the zone of a region's Raft leader under load, and
// again every 30 s for 3 minutes, each time in the next region, restarting
// each killed zone halfway to the next kill. The short form kills once.
func leaderZoneKill(full bool) Scenario {
	kills, every := 6, 30*time.Second
	if !full {
		kills, every = 1, 8*time.Second
	}
	return Scenario{
		Name:   "leader-zone-kill",
		Fault:  fmt.Sprintf("SIGKILL the Raft leader's zone, %d times %v apart, rotating regions; each restarted %v later", kills, every, every/2),
		Target: "a new leader is elected; nothing acknowledged is lost; no pull fails",
		Zones:  3,
		Short:  true,
		Load:   &WorkloadConfig{Seed: 1},
		Inject: func(ctx context.Context, r *Run) error {
			for i := range kills {
				region := r.Mesh.Regions[i%len(r.Mesh.Regions)]
				leader, err := r.Mesh.Leader(ctx, region, 30*time.Second)
				if err != nil {
					return err
				}
				next := time.Now().Add(every)
				if err := r.Chaos(ctx, "kill-zone", leader.String()); err != nil {
					return err
				}
				killed := time.Now()
				newLeader, err := r.Mesh.Leader(ctx, region, 30*time.Second)
				if err != nil {
					return fmt.Errorf("no new leader in %s after killing %s: %w", region, leader.String(), err)
				}
				r.T.Logf("%s: %s took over from %s %v after the kill", region, newLeader.String(), leader.String(), time.Since(killed).Round(time.Millisecond))
				r.Sleep(ctx, time.Until(killed.Add(every/2)))
				if err := r.Chaos(ctx, "restart", leader.String()); err != nil {
					return err
				}
				r.Sleep(ctx, time.Until(next))
			}
			return nil
		},
	}
}
