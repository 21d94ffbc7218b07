package trafficmgr

import (
	"slices"
	"testing"
	"time"
)

func TestRoute(t *testing.T) {
	ms := time.Millisecond
	up := func(name string, lat time.Duration) RegionState {
		return RegionState{Name: name, Healthy: true, Latency: lat}
	}
	down := func(name string, lat time.Duration) RegionState {
		return RegionState{Name: name, Latency: lat}
	}
	disabled := func(r RegionState) RegionState { r.Disabled = true; return r }
	tests := []struct {
		name       string
		regions    []RegionState
		current    string
		hysteresis float64
		want       []string
	}{
		{"no regions", nil, "", 0.2, []string{}},
		{"one healthy region", []RegionState{up("westus", 5*ms)}, "", 0.2, []string{"westus"}},
		{"by latency", []RegionState{up("westus", 30*ms), up("eastus", 5*ms), up("westeurope", 80*ms)}, "",
			0.2, []string{"eastus", "westus", "westeurope"}},
		{"ties by name", []RegionState{up("westus", 5*ms), up("eastus", 5*ms), up("brazil", 5*ms)}, "",
			0.2, []string{"brazil", "eastus", "westus"}},
		{"unhealthy regions left out", []RegionState{down("eastus", 1*ms), up("westus", 30*ms)}, "",
			0.2, []string{"westus"}},
		{"disabled regions left out", []RegionState{disabled(up("eastus", 1*ms)), up("westus", 30*ms)}, "",
			0.2, []string{"westus"}},
		{"current kept: other faster by less than the hysteresis",
			[]RegionState{up("westus", 10*ms), up("eastus", 9*ms)}, "westus", 0.2, []string{"westus", "eastus"}},
		{"current kept: other faster by 20% but under 10ms",
			[]RegionState{up("westus", 45*ms), up("eastus", 36*ms)}, "westus", 0.2,
			[]string{"westus", "eastus"}},
		{"current kept: other faster by 10ms but under 20%",
			[]RegionState{up("westus", 100*ms), up("eastus", 90*ms)}, "westus", 0.2, []string{"westus", "eastus"}},
		{"current left: other faster by the hysteresis exactly",
			[]RegionState{up("westus", 50*ms), up("eastus", 40*ms)}, "westus", 0.2, []string{"eastus", "westus"}},
		{"current left: other much faster",
			[]RegionState{up("westus", 80*ms), up("eastus", 10*ms)}, "westus", 0.2, []string{"eastus", "westus"}},
		{"current kept first, the rest by latency",
			[]RegionState{up("a", 12*ms), up("b", 11*ms), up("c", 10*ms), up("d", 50*ms)}, "a", 0.2,
			[]string{"a", "c", "b", "d"}},
		{"current in the middle moves to the front",
			[]RegionState{up("a", 10*ms), up("b", 11*ms), up("c", 12*ms)}, "c", 0.2,
			[]string{"c", "a", "b"}},
		{"current that is best stays",
			[]RegionState{up("a", 10*ms), up("b", 11*ms)}, "a", 0.2, []string{"a", "b"}},
		{"no hysteresis: a 10ms gain moves",
			[]RegionState{up("westus", 20*ms), up("eastus", 10*ms)}, "westus", 0, []string{"eastus", "westus"}},
		{"no hysteresis: under 10ms stays",
			[]RegionState{up("westus", 20*ms), up("eastus", 11*ms)}, "westus", 0, []string{"westus", "eastus"}},
		{"current unhealthy: best takes over",
			[]RegionState{down("westus", 1*ms), up("eastus", 50*ms), up("brazil", 70*ms)}, "westus", 0.2,
			[]string{"eastus", "brazil"}},
		{"current disabled: best takes over",
			[]RegionState{disabled(up("westus", 1*ms)), up("eastus", 50*ms)}, "westus", 0.2,
			[]string{"eastus"}},
		{"current unknown to the input",
			[]RegionState{up("westus", 10*ms), up("eastus", 9*ms)}, "gone", 0.2, []string{"eastus", "westus"}},
		{"none healthy: every enabled region, known latency first",
			[]RegionState{down("c", 0), down("b", 30*ms), down("a", 0), down("d", 10*ms), disabled(down("e", 1*ms))},
			"b", 0.2, []string{"d", "b", "a", "c"}},
		{"none healthy and enabled: healthy disabled regions still get nothing",
			[]RegionState{disabled(up("westus", 1*ms)), down("eastus", 0)}, "westus", 0.2, []string{"eastus"}},
		{"every region disabled", []RegionState{disabled(up("westus", 1*ms)), disabled(down("eastus", 0))}, "",
			0.2, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := RouteInput{Location: "westus", Regions: slices.Clone(tt.regions), Current: tt.current, Hysteresis: tt.hysteresis}
			got := Route(in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Route = %q, want %q", got, tt.want)
			}
			if !slices.Equal(in.Regions, tt.regions) {
				t.Errorf("Route changed its input: %v", in.Regions)
			}
		})
	}
}

func TestRouteIsStableUnderNoise(t *testing.T) {
	// Two regions whose latencies jitter around each other must not flap.
	cur := ""
	changes := 0
	for i := range 100 {
		a, b := 10*time.Millisecond, 10*time.Millisecond
		if i%2 == 0 {
			a += time.Millisecond
		} else {
			b += time.Millisecond
		}
		order := Route(RouteInput{Regions: []RegionState{
			{Name: "a", Healthy: true, Latency: a}, {Name: "b", Healthy: true, Latency: b},
		}, Current: cur, Hysteresis: 0.2})
		if order[0] != cur {
			changes++
			cur = order[0]
		}
	}
	if changes != 1 {
		t.Errorf("route changed %d times, want 1 (the initial choice)", changes)
	}
}

func TestChangeReason(t *testing.T) {
	tests := []struct {
		name                             string
		prevUp, wasUp, displaced, routed bool
		prev                             string
		want                             string
	}{
		{"first route", false, false, false, false, "", ReasonInitial},
		{"first route even if the region was down before", false, false, false, false, "", ReasonInitial},
		{"current went down", false, true, false, true, "westus", ReasonFailover},
		{"current went down, nothing left", false, false, false, true, "westus", ReasonFailover},
		{"back from no region at all", false, false, false, true, "", ReasonFailback},
		{"to a region that just recovered", true, false, false, true, "eastus", ReasonFailback},
		{"back to the region failed over from", true, true, true, true, "eastus", ReasonFailback},
		{"faster healthy region", true, true, false, true, "eastus", ReasonLatency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := changeReason(tt.prevUp, tt.wasUp, tt.displaced, tt.routed, tt.prev); got != tt.want {
				t.Errorf("changeReason = %q, want %q", got, tt.want)
			}
		})
	}
}
