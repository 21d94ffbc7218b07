package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/georeg/georeg/trafficmgr"
)

// Node states reported by Status.
const (
	// StateUp: the process runs and answers GET /v2/.
	StateUp = "up"
	// StateDown: no process runs for the node.
	StateDown = "down"
	// StateUnresponsive: the process runs but does not answer GET /v2/.
	StateUnresponsive = "unresponsive"
)

// Status is the observed state of a mesh, as `georeg mesh status --json`
// prints it.
type Status struct {
	Endpoint string         `json:"endpoint"`
	Dir      string         `json:"dir"`
	Home     string         `json:"home"`
	Regions  []RegionStatus `json:"regions"`
	// Sites are the connected registries' nodes at simulated sites, each
	// a one-zone region of its own.
	Sites []RegionStatus `json:"sites,omitempty"`
	// TrafficManager is the traffic manager's process and routing, or nil
	// when the mesh has none.
	TrafficManager *TrafficmgrStatus `json:"trafficManager,omitempty"`
	// Cuts are a container cluster's partitioned pairs of regions.
	Cuts []string `json:"cuts,omitempty"`
}

// TrafficmgrStatus is the traffic manager's part of a Status.
type TrafficmgrStatus struct {
	HTTP  string `json:"http"`
	PID   int    `json:"pid"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	Log   string `json:"log"`
	// Routing is the traffic manager's own report: the region chosen for
	// every location, failovers and failbacks, and node health.
	Routing *trafficmgr.Status `json:"routing,omitempty"`
}

// RegionStatus is one region of a Status.
type RegionStatus struct {
	Name  string       `json:"name"`
	Home  bool         `json:"home"`
	Zones []ZoneStatus `json:"zones"`
}

// ZoneStatus is one zone node of a RegionStatus.
type ZoneStatus struct {
	Zone int    `json:"zone"`
	HTTP string `json:"http"`
	// PID is the running process, or 0 when the node is down.
	PID   int    `json:"pid"`
	State string `json:"state"`
	// Error says why an unresponsive node failed its probe.
	Error string `json:"error,omitempty"`
	Data  string `json:"data"`
	Log   string `json:"log"`
	// The node's own report (GET /_georeg/status), when it answers.
	RaftRole      string `json:"raftRole,omitempty"`
	RaftLeader    string `json:"raftLeader,omitempty"`
	RaftTerm      uint64 `json:"raftTerm,omitempty"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	RepairBacklog int64  `json:"repairBacklog"`
	// Members are the node IDs this node's gossip sees alive.
	Members []string `json:"members,omitempty"`
}

// nodeReport is the part of a node's GET /_georeg/status the launcher shows.
type nodeReport struct {
	Raft struct {
		State        string `json:"state"`
		Leader       string `json:"leader"`
		Term         uint64 `json:"term"`
		AppliedIndex uint64 `json:"appliedIndex"`
	} `json:"raft"`
	Members       []string `json:"members"`
	RepairBacklog int64    `json:"repairBacklog"`
}

// report fills zs from the node's own status report and says whether the
// node has one.
func (c *Controller) report(ctx context.Context, base string, zs *ZoneStatus) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_georeg/status", nil)
	if err != nil {
		return false
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var rep nodeReport
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rep) != nil {
		return false
	}
	zs.RaftRole, zs.RaftLeader, zs.RaftTerm = rep.Raft.State, rep.Raft.Leader, rep.Raft.Term
	zs.AppliedIndex, zs.RepairBacklog, zs.Members = rep.Raft.AppliedIndex, rep.RepairBacklog, rep.Members
	return true
}

// Status reads the mesh and checks every node: is its process alive, and
// does it answer GET /v2/ within the probe timeout. It returns an error
// wrapping ErrNoMesh when the directory has no mesh.
func (c *Controller) Status(ctx context.Context) (*Status, error) {
	m, err := LoadMesh(c.dir)
	if err != nil {
		return nil, err
	}
	if m.Docker != nil {
		return c.dockerStatus(ctx, m)
	}
	st := &Status{Endpoint: m.Endpoint, Dir: m.Dir, Home: m.Home}
	var wg sync.WaitGroup
	regions := slices.Clone(m.Regions)
	for _, s := range m.Sites {
		regions = append(regions, Region{Name: s.Name, Zones: s.Zones})
	}
	for i, r := range regions {
		rs := RegionStatus{Name: r.Name, Home: r.Home, Zones: make([]ZoneStatus, len(r.Zones))}
		for i, n := range r.Zones {
			zs := &rs.Zones[i]
			*zs = ZoneStatus{Zone: n.Zone, HTTP: n.HTTP, State: StateDown, Data: n.Data, Log: n.Log}
			if !alive(n.PID, n.PIDStart) {
				continue
			}
			zs.PID = n.PID
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
				defer cancel()
				if err := probe(pctx, c.client, n.URL()); err != nil {
					zs.State, zs.Error = StateUnresponsive, err.Error()
					return
				}
				zs.State = StateUp
				c.report(pctx, n.URL(), zs)
			})
		}
		if i < len(m.Regions) {
			st.Regions = append(st.Regions, rs)
		} else {
			st.Sites = append(st.Sites, rs)
		}
	}
	if tm := m.TrafficManager; tm != nil {
		ts := &TrafficmgrStatus{HTTP: tm.HTTP, State: StateDown, Log: tm.Log}
		st.TrafficManager = ts
		if alive(tm.PID, tm.PIDStart) {
			ts.PID = tm.PID
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
				defer cancel()
				rep, err := c.trafficmgrReport(pctx, tm.URL())
				if err != nil {
					ts.State, ts.Error = StateUnresponsive, err.Error()
					return
				}
				ts.State, ts.Routing = StateUp, rep
			})
		}
	}
	wg.Wait()
	return st, nil
}

// WriteText prints s as a table for people.
func (s *Status) WriteText(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "mesh in %s\nendpoint %s\n\n", s.Dir, s.Endpoint); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tHTTP\tPID\tSTATE\tRAFT\tAPPLIED\tREPAIR BACKLOG")
	for i, r := range append(slices.Clone(s.Regions), s.Sites...) {
		home := ""
		switch {
		case r.Home:
			home = "home"
		case i >= len(s.Regions):
			home = "site"
		}
		for _, z := range r.Zones {
			pid := "-"
			if z.PID != 0 {
				pid = strconv.Itoa(z.PID)
			}
			state := z.State
			if z.Error != "" {
				state += " (" + z.Error + ")"
			}
			role, applied, backlog := "-", "-", "-"
			if z.RaftRole != "" {
				role = strings.ToLower(z.RaftRole)
				applied = strconv.FormatUint(z.AppliedIndex, 10)
				backlog = strconv.FormatInt(z.RepairBacklog, 10)
			}
			fmt.Fprintf(tw, "%s/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, z.Zone, home, z.HTTP, pid, state, role, applied, backlog)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.TrafficManager != nil {
		return s.TrafficManager.writeText(w)
	}
	return nil
}

// writeText prints the traffic manager's routing: one line per location,
// then any node a location cannot reach.
func (t *TrafficmgrStatus) writeText(w io.Writer) error {
	state := t.State
	if t.Error != "" {
		state += " (" + t.Error + ")"
	}
	pid := "-"
	if t.PID != 0 {
		pid = strconv.Itoa(t.PID)
	}
	fmt.Fprintf(w, "\ntraffic manager %s, pid %s, %s\n", t.HTTP, pid, state)
	if t.Routing == nil {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCATION\tLISTEN\tSERVED BY\tORDER\tLATENCY (ms)\tFAILOVERS\tFAILBACKS\tREROUTES\tLAST CHANGE")
	locs := make([]string, 0, len(t.Routing.Locations))
	for name := range t.Routing.Locations {
		locs = append(locs, name)
	}
	sort.Strings(locs)
	for _, name := range locs {
		l := t.Routing.Locations[name]
		served := l.Region
		if served == "" {
			served = "(none healthy)"
		}
		var lat []string
		for _, r := range l.Order {
			if ms, ok := l.LatencyMs[r]; ok {
				lat = append(lat, fmt.Sprintf("%s=%.1f", r, ms))
			}
		}
		last := "-"
		if c := l.LastChange; c != nil {
			last = fmt.Sprintf("%s %s -> %s (%s)", c.At.Local().Format("15:04:05"), orDash(c.From), orDash(c.To), c.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", name, l.Listen, served, strings.Join(l.Order, ","),
			strings.Join(lat, " "), l.Failovers, l.Failbacks, l.Reroutes, last)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	regions := make([]string, 0, len(t.Routing.Regions))
	for name := range t.Routing.Regions {
		regions = append(regions, name)
	}
	sort.Strings(regions)
	for _, name := range regions {
		r := t.Routing.Regions[name]
		if !r.Enabled {
			fmt.Fprintf(w, "region %s: endpoint disabled (no client traffic; it keeps replicating)\n", name)
		}
		for _, n := range r.Nodes {
			var from []string
			for _, loc := range locs {
				if h, ok := n.Healthy[loc]; ok && !h {
					from = append(from, loc)
				}
			}
			if len(from) > 0 {
				fmt.Fprintf(w, "node %s/%d unhealthy from %s: %s\n", name, n.Zone, strings.Join(from, ","), n.LastError)
			}
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
