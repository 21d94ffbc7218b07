package trafficmgr

import (
	"slices"
	"strings"
	"time"
)

// MinLatencyGain is the least a region must be faster than a location's
// healthy current region, whatever the hysteresis, for the route to move.
// Regions a few milliseconds apart are as good as each other, and probe
// noise of that size (regions on one host, as the container cluster's)
// moved routes every few seconds, so that a client's push and its next
// request met different regions.
const MinLatencyGain = 10 * time.Millisecond

// RegionState is what routing knows of one region from one client location.
type RegionState struct {
	Name string
	// Healthy is true when at least one of the region's nodes passes its
	// probes from the location.
	Healthy bool
	// Disabled is the control plane's "region endpoint enabled" flag,
	// inverted so that a region nobody reported on counts as enabled.
	Disabled bool
	// Latency is the lowest smoothed probe round trip among the region's
	// healthy nodes from the location; zero when unknown.
	Latency time.Duration
}

// RouteInput is everything a route depends on.
type RouteInput struct {
	Location string
	Regions  []RegionState
	// Current is the region the location is routed to now ("" for none).
	Current string
	// Hysteresis is the fraction of the current region's latency another
	// region must gain before the route moves to it.
	Hysteresis float64
}

// Route returns the regions a request from in.Location should try, best
// first. It is a pure function of its input.
//
// The healthy, enabled regions come first, by latency (ties by name). The
// current region stays first while it is healthy and enabled unless the
// best region is faster by in.Hysteresis of its latency and by
// MinLatencyGain. When no region is healthy and enabled, Route returns every
// enabled region (by last known latency, unknown last, then name) so that a
// request reaches a real node and the client sees a real error. A disabled
// region is never returned: it gets no client traffic.
func Route(in RouteInput) []string {
	var up, enabled []RegionState
	for _, r := range in.Regions {
		if r.Disabled {
			continue
		}
		enabled = append(enabled, r)
		if r.Healthy {
			up = append(up, r)
		}
	}
	if len(up) == 0 {
		slices.SortStableFunc(enabled, func(a, b RegionState) int {
			switch {
			case a.Latency == b.Latency:
				return strings.Compare(a.Name, b.Name)
			case a.Latency == 0:
				return 1
			case b.Latency == 0:
				return -1
			case a.Latency < b.Latency:
				return -1
			default:
				return 1
			}
		})
		return names(enabled)
	}
	slices.SortStableFunc(up, byLatency)
	if cur := slices.IndexFunc(up, func(r RegionState) bool { return r.Name == in.Current }); cur > 0 {
		if !worthMoving(up[cur].Latency, up[0].Latency, in.Hysteresis) {
			c := up[cur]
			copy(up[1:cur+1], up[:cur])
			up[0] = c
		}
	}
	return names(up)
}

// worthMoving reports whether a region at latency best is enough faster
// than the current region at latency cur to move the route.
func worthMoving(cur, best time.Duration, hysteresis float64) bool {
	gain := cur - best
	return gain >= MinLatencyGain && float64(gain) >= hysteresis*float64(cur)
}

func byLatency(a, b RegionState) int {
	switch {
	case a.Latency < b.Latency:
		return -1
	case a.Latency > b.Latency:
		return 1
	default:
		return strings.Compare(a.Name, b.Name)
	}
}

func names(rs []RegionState) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// Reasons a location's route changes, as logged, counted and reported.
const (
	ReasonInitial  = "initial"  // the first route of a location
	ReasonFailover = "failover" // the current region became unhealthy or disabled
	ReasonFailback = "failback" // back to a region that recovered or was re-enabled
	ReasonLatency  = "latency"  // a healthy region became faster by the hysteresis
)

// changeReason classifies a route change of one location from prev to next.
// wasUp is whether next was healthy and enabled at the previous evaluation;
// prevUp whether prev still is; displaced whether next is a region the
// location failed over from and has not returned to since; routed whether
// the location ever had a route.
func changeReason(prevUp, wasUp, displaced, routed bool, prev string) string {
	switch {
	case !routed:
		return ReasonInitial
	case prev != "" && !prevUp:
		return ReasonFailover
	case prev == "" || !wasUp || displaced:
		return ReasonFailback
	default:
		return ReasonLatency
	}
}
