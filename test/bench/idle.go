package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/georeg/georeg/chaos"
)

// idleRegions are make run's regions; the idle mesh has three zones each.
var idleRegions = []string{"westus", "eastus", "westeurope"}

// idleResult is the CPU an idle make-run mesh used: 9 zone nodes and the
// traffic manager, nothing pushed.
type idleResult struct {
	Settle time.Duration `json:"settle_ns"` // quiet time after mesh up, before the window
	Window time.Duration `json:"window_ns"`
	// Cores is, per process ("westus/1", "trafficmgr"), its user and system
	// CPU time over the window divided by the window.
	Cores map[string]float64 `json:"cores"`
}

// Total is the mesh's CPU over the window, in cores.
func (r *idleResult) Total() float64 {
	var t float64
	for _, c := range r.Cores {
		t += c
	}
	return t
}

// runIdle starts make run's mesh, leaves it alone for settle and measures
// the CPU its processes use over window, from /proc.
func runIdle(ctx context.Context, env targetEnv, settle, window time.Duration, log *slog.Logger) (*idleResult, error) {
	start := time.Now()
	g, err := startGeoMesh(ctx, env, idleRegions, 3)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	mf, err := chaos.LoadMesh(g.dir)
	if err != nil {
		return nil, err
	}
	log.Info("idle: mesh up, leaving it alone", "dir", g.dir, "took", time.Since(start).Round(time.Millisecond), "settle", settle, "window", window)
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	before := map[string]time.Duration{}
	for _, p := range mf.Processes() {
		if before[p.Name()], err = cpuOf([]int{p.PID}); err != nil {
			return nil, err
		}
	}
	began := time.Now()
	if err := sleepCtx(ctx, window); err != nil {
		return nil, err
	}
	res := &idleResult{Settle: settle, Window: time.Since(began), Cores: map[string]float64{}}
	for _, p := range mf.Processes() {
		after, err := cpuOf([]int{p.PID})
		if err != nil {
			return nil, fmt.Errorf("%s stopped while the mesh was idle: %w", p.Name(), err)
		}
		res.Cores[p.Name()] = (after - before[p.Name()]).Seconds() / res.Window.Seconds()
	}
	log.Info("idle: measured", "cores", fmt.Sprintf("%.3f", res.Total()))
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// idleRows is the idle mesh's row of the second table.
func idleRows(r *idleResult) []geoRow {
	if r == nil {
		return nil
	}
	goal := "≤ 0.050"
	if r.Total() > 0.05 {
		goal += " missed"
	}
	var tm, zones float64
	var most string
	for _, name := range slices.Sorted(maps.Keys(r.Cores)) {
		c := r.Cores[name]
		if name == chaos.RoleTrafficmgr {
			tm = c
			continue
		}
		zones += c
		if most == "" || c > r.Cores[most] {
			most = name
		}
	}
	ref := fmt.Sprintf("zone nodes %.3f", zones)
	if most != "" {
		ref += fmt.Sprintf(" (busiest %s %.3f)", most, r.Cores[most])
	}
	return []geoRow{{
		Measure: fmt.Sprintf("Idle CPU of make run's mesh (%d regions x 3 zones and the traffic manager, nothing pushed), over %s after %s of quiet (cores)",
			len(idleRegions), r.Window.Round(time.Second), r.Settle.Round(time.Second)),
		Value: fmt.Sprintf("%.3f", r.Total()),
		Ref:   fmt.Sprintf("%s, traffic manager %.3f", ref, tm),
		Goal:  goal,
	}}
}
