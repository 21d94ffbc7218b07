package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// regionKill kills every node of eastus under load, keeps it down, restarts
// it, and lets it catch up. Pushes ask for geo-durability 2, so an
// acknowledged image is in a second region when its first dies.
func regionKill(full bool) Scenario {
	down := 15 * time.Second
	if !full {
		down = 6 * time.Second
	}
	return Scenario{
		Name:   "region-kill",
		Fault:  fmt.Sprintf("SIGKILL every node of eastus under load, restart it %v later", down),
		Target: "eastus clients fail over and back without a failed pull; eastus catches up; nothing acknowledged lost",
		Load:   &WorkloadConfig{Seed: 2, GeoDurability: 2},
		Inject: func(ctx context.Context, r *Run) error {
			if err := r.Chaos(ctx, "kill-region", "eastus"); err != nil {
				return err
			}
			r.Sleep(ctx, down)
			if err := r.Chaos(ctx, "restart", "eastus"); err != nil {
				return err
			}
			restarted := time.Now()
			if err := r.Mesh.WaitHealthy(ctx, time.Minute); err != nil {
				return fmt.Errorf("after restarting eastus: %w", err)
			}
			r.Notef("eastus serving its clients again %v after `chaos restart` returned", time.Since(restarted).Round(time.Millisecond))
			return nil
		},
	}
}

// regionFlap kills eastus and starts it again every 5 s under load.
func regionFlap(full bool) Scenario {
	cycles := 4
	if !full {
		cycles = 2
	}
	return Scenario{
		Name:   "region-flap",
		Fault:  fmt.Sprintf("eastus killed, restarted 5 s later, killed again 5 s after it is up: %d cycles under load", cycles),
		Target: "no failed pull, nothing acknowledged lost, converged",
		Load:   &WorkloadConfig{Seed: 3, GeoDurability: 2},
		Inject: func(ctx context.Context, r *Run) error {
			for range cycles {
				if err := r.Chaos(ctx, "kill-region", "eastus"); err != nil {
					return err
				}
				r.Sleep(ctx, 5*time.Second)
				if err := r.Chaos(ctx, "restart", "eastus"); err != nil {
					return err
				}
				r.Sleep(ctx, 5*time.Second)
			}
			return nil
		},
	}
}

// homeDown kills the home region while pushes go on through every
// location; management calls must fail at once with an error that names
// the home region.
func homeDown(full bool) Scenario {
	down := 15 * time.Second
	if !full {
		down = 8 * time.Second
	}
	return Scenario{
		Name:   "home-down",
		Fault:  fmt.Sprintf("SIGKILL every node of the home region westus for %v while pushes continue", down),
		Target: "pushes and pulls go on; management calls fail within 10 s naming the home region; westus catches up",
		Load:   &WorkloadConfig{Seed: 4, GeoDurability: 2},
		Inject: func(ctx context.Context, r *Run) error {
			if err := r.Chaos(ctx, "kill-region", r.Mesh.Home); err != nil {
				return err
			}
			killed := time.Now()
			for _, args := range [][]string{
				{"replication", "list"},
				{"replication", "show", "--region", "eastus"},
				{"replication", "update", "--region", "eastus", "--region-endpoint-enabled=true"},
				{"webhook", "list"},
			} {
				cctx, cancel := context.WithTimeout(ctx, time.Minute)
				start := time.Now()
				out, err := r.Mesh.Run(cctx, args...)
				took := time.Since(start)
				cancel()
				r.T.Logf("home down: `georeg %s` -> %v after %v: %s", strings.Join(args, " "), err, took.Round(time.Millisecond), out)
				if err == nil || !strings.Contains(out, "home region "+r.Mesh.Home) {
					r.Missf("`georeg %s` with the home region down: err %v, printed %q; want a failure naming the home region %s", strings.Join(args, " "), err, out, r.Mesh.Home)
				}
				if took >= 10*time.Second {
					r.Missf("`georeg %s` took %v to fail with the home region down, want under 10 s", strings.Join(args, " "), took.Round(time.Millisecond))
				}
			}
			r.Sleep(ctx, time.Until(killed.Add(down)))
			return r.Chaos(ctx, "restart", r.Mesh.Home)
		},
	}
}
