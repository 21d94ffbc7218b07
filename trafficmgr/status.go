package trafficmgr

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// StatusPath is where every listener serves the Status as JSON.
const StatusPath = "/_georeg/trafficmgr"

// Status is the traffic manager's view of the mesh, served as JSON at
// StatusPath on every listener (`georeg mesh status` decodes it).
type Status struct {
	Home string `json:"home"`
	// Locations is keyed by listener location.
	Locations map[string]LocationStatus `json:"locations"`
	// Regions is keyed by region name.
	Regions map[string]RegionStatus `json:"regions"`
}

// LocationStatus is the routing state of one client location.
type LocationStatus struct {
	// Listen is the address the location's listener is bound to.
	Listen string `json:"listen"`
	// Region is the current region ("" while none is healthy and enabled).
	Region string `json:"region"`
	// Order is the route: the regions a request tries, best first.
	Order []string `json:"order"`
	// LatencyMs is the smoothed probe round trip to each region's fastest
	// healthy node; a region with no healthy node is absent.
	LatencyMs  map[string]float64 `json:"latencyMs"`
	Failovers  int64              `json:"failovers"`
	Failbacks  int64              `json:"failbacks"`
	Reroutes   int64              `json:"reroutes"`
	LastChange *RouteChange       `json:"lastChange,omitempty"`
}

// RouteChange records one change of a location's current region.
type RouteChange struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"` // one of the Reason constants
}

// RegionStatus is one region as the traffic manager sees it.
type RegionStatus struct {
	// Enabled is the region endpoint flag from the control plane.
	Enabled bool `json:"enabled"`
	// Healthy is keyed by location: whether any node passes its probes
	// from there.
	Healthy map[string]bool `json:"healthy"`
	Nodes   []NodeStatus    `json:"nodes"`
}

// NodeStatus is one zone node.
type NodeStatus struct {
	Zone int    `json:"zone"`
	HTTP string `json:"http"`
	// Healthy is keyed by location.
	Healthy map[string]bool `json:"healthy"`
	// LastError is the most recent probe or proxy failure, prefixed by the
	// location it was seen from; it is kept after the node recovers.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Status returns a snapshot of every location's route and every node's
// health.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Home: m.cfg.Home, Locations: map[string]LocationStatus{}, Regions: map[string]RegionStatus{}}
	for _, l := range m.locs {
		ls := LocationStatus{
			Listen: l.bound, Region: l.current, Order: append([]string{}, l.order...),
			LatencyMs: map[string]float64{},
			Failovers: l.failovers, Failbacks: l.failbacks, Reroutes: l.reroutes,
		}
		if ls.Listen == "" {
			ls.Listen = l.listen
		}
		for name, d := range l.latency {
			ls.LatencyMs[name] = float64(d.Microseconds()) / 1000
		}
		if l.last != nil {
			c := *l.last
			ls.LastChange = &c
		}
		st.Locations[l.name] = ls
	}
	for _, r := range m.regions {
		rs := RegionStatus{Enabled: m.enabledLocked(r.name), Healthy: map[string]bool{}}
		for _, l := range m.locs {
			rs.Healthy[l.name] = false
		}
		for _, n := range r.nodes {
			ns := NodeStatus{Zone: n.zone, HTTP: n.addr, Healthy: map[string]bool{}}
			for _, l := range m.locs {
				h := l.health[n]
				ns.Healthy[l.name] = h.healthy
				if h.lastErr != "" && h.lastErrAt.After(ns.LastErrorAt) {
					ns.LastError, ns.LastErrorAt = l.name+": "+h.lastErr, h.lastErrAt
				}
				if h.healthy {
					rs.Healthy[l.name] = true
				}
			}
			rs.Nodes = append(rs.Nodes, ns)
		}
		st.Regions[r.name] = rs
	}
	return st
}

func (m *Manager) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the operation is unsupported", nil)
		return
	}
	b, err := json.MarshalIndent(m.Status(), "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error", err.Error())
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}
