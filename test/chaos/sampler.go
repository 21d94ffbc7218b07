package chaos

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	launcher "github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/zone"
)

// Resources are the counts of one process that I6 compares before and
// after a scenario.
type Resources struct {
	Goroutines float64 `json:"goroutines"`
	FDs        float64 `json:"fds"`
	// Sockets is how many of the open fds are sockets (from
	// /proc/PID/fd), -1 when unknown.
	Sockets int `json:"sockets"`
	// Uploads is the node's open upload sessions (-1 for the traffic
	// manager, which holds none).
	Uploads int `json:"uploads"`
}

// Leak slack of I6. A process may end a scenario with GoroutineSlack more
// goroutines and FileSlack more open files (fds that are not sockets) than
// it started with, and with no more upload sessions. Sockets are kept apart:
// a quiet process still holds the keep-alive connections its last requests
// pooled (the traffic manager keeps idle connections to a node for 90 s,
// the nodes' servers 2 minutes), and a failover leaves pools to regions the
// baseline never used. So up to SocketSlack more sockets are allowed, and
// GoroutinesPerSocket goroutines for each (a pooled HTTP connection runs a
// read and a write loop, and the simulated WAN's link a pump per
// direction).
//
// A site reaches the cloud through the traffic manager's listener, with up
// to 8 uploads and 8 downloads at once besides its long poll and reports,
// each two sockets there (the site's, accepted, and the manager's own to a
// region, pooled per region as its route moves): the traffic manager may
// keep SiteSocketSlack more sockets for each site of the mesh.
const (
	GoroutineSlack      = 20
	FileSlack           = 10
	SocketSlack         = 64
	GoroutinesPerSocket = 4
	SiteSocketSlack     = 64
)

// TrafficmgrName is the key of the traffic manager in resource samples.
const TrafficmgrName = "trafficmgr"

// SampleResources reads go_goroutines and process_open_fds from every node's,
// every site's and the traffic manager's /metrics, and every node's open
// upload sessions. A process that does not answer is left out.
func (m *Mesh) SampleResources(ctx context.Context) map[string]Resources {
	out := map[string]Resources{}
	pids := m.pids()
	read := func(name, base string, uploads int) {
		ms, err := m.c.Metrics(ctx, base)
		if err != nil {
			return
		}
		out[name] = Resources{Goroutines: ms["go_goroutines"], FDs: ms["process_open_fds"], Sockets: sockets(pids[name]), Uploads: uploads}
	}
	for _, n := range m.Nodes {
		st, err := m.NodeStatus(ctx, n)
		if err != nil {
			continue
		}
		read(n.String(), n.URL(), st.Uploads)
	}
	if m.Trafficmgr != "" {
		read(TrafficmgrName, m.Trafficmgr, -1)
	}
	for _, s := range m.sites {
		// A site knows its own client token only.
		n := m.Sites[s.spec.Name]
		st, err := m.siteStatus(ctx, s)
		if err != nil {
			continue
		}
		ms, err := s.c.Metrics(ctx, n.URL())
		if err != nil {
			continue
		}
		out[n.String()] = Resources{Goroutines: ms["go_goroutines"], FDs: ms["process_open_fds"], Sockets: sockets(pids[n.String()]), Uploads: st.Uploads}
	}
	return out
}

// pids returns the process id of every node and of the traffic manager, as
// mesh.json has them now (restarts change them).
func (m *Mesh) pids() map[string]int {
	out := map[string]int{}
	mf, err := launcher.LoadMesh(m.Dir)
	if err != nil {
		return out
	}
	for _, n := range append(mf.Nodes(), mf.SiteNodes()...) {
		out[n.Name()] = n.PID
	}
	if mf.TrafficManager != nil {
		out[TrafficmgrName] = mf.TrafficManager.PID
	}
	return out
}

// sockets counts the sockets among the open fds of process pid, or returns
// -1 when /proc does not say.
func sockets(pid int) int {
	if pid <= 0 {
		return -1
	}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// leaderKey is a Raft term of a region.
type leaderKey struct {
	region string
	term   uint64
}

type nodeSample struct {
	state string
	term  uint64
}

// LeaderSampler polls every node's /_georeg/status while a scenario runs
// and keeps, for every region and term, the nodes that reported themselves
// leader of it (I7).
//
// A node's status reads its Raft state and term one after the other, so a
// single sample may pair a leader's state with the term that just replaced
// its own. A node therefore counts as leader of a term only when two
// consecutive samples (about 100 ms apart) both show it leading that term;
// single sightings that would have made a second leader are kept apart as
// notes.
type LeaderSampler struct {
	m    *Mesh
	stop func()

	mu      sync.Mutex
	last    map[string]nodeSample
	leaders map[leaderKey]map[string]bool
	glimpse map[leaderKey]map[string]bool
	samples int
}

// StartLeaderSampler polls every node every interval until Stop.
func StartLeaderSampler(ctx context.Context, m *Mesh, interval time.Duration) *LeaderSampler {
	s := &LeaderSampler{m: m, last: map[string]nodeSample{}, leaders: map[leaderKey]map[string]bool{}, glimpse: map[leaderKey]map[string]bool{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, n := range m.Nodes {
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				if st, err := m.NodeStatus(ctx, n); err == nil {
					s.add(n, st)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	s.stop = func() { cancel(); wg.Wait() }
	return s
}

func (s *LeaderSampler) add(n harness.Node, st zone.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	cur := nodeSample{state: st.Raft.State, term: st.Raft.Term}
	prev := s.last[n.String()]
	s.last[n.String()] = cur
	if cur.state != "Leader" {
		return
	}
	k := leaderKey{n.Region, cur.term}
	set := s.glimpse
	if prev == cur {
		set = s.leaders
	}
	if set[k] == nil {
		set[k] = map[string]bool{}
	}
	set[k][n.String()] = true
}

// Stop ends the sampling.
func (s *LeaderSampler) Stop() { s.stop() }

// Result returns the I7 violations (two nodes confirmed as leaders of one
// term of one region), notes on single sightings that did not confirm, the
// number of distinct (region, term) leaderships seen, and the samples
// taken.
func (s *LeaderSampler) Result() (violations, notes []string, terms, samples int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Collect(maps.Keys(s.leaders))
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].region != keys[j].region {
			return keys[i].region < keys[j].region
		}
		return keys[i].term < keys[j].term
	})
	for _, k := range keys {
		if len(s.leaders[k]) > 1 {
			violations = append(violations, fmt.Sprintf("region %s term %d has leaders %v", k.region, k.term, slices.Sorted(maps.Keys(s.leaders[k]))))
		}
	}
	for k, g := range s.glimpse {
		all := maps.Clone(s.leaders[k])
		if all == nil {
			all = map[string]bool{}
		}
		maps.Copy(all, g)
		if len(all) > len(s.leaders[k]) && len(all) > 1 {
			notes = append(notes, fmt.Sprintf("region %s term %d: unconfirmed leader sightings %v", k.region, k.term, slices.Sorted(maps.Keys(all))))
		}
	}
	sort.Strings(notes)
	return violations, notes, len(s.leaders), s.samples
}

// MetricSum adds every series of /metrics named name (whatever its labels)
// over every node that answers.
func (m *Mesh) MetricSum(ctx context.Context, name string) (float64, error) {
	var sum float64
	for _, n := range m.Nodes {
		ms, err := m.c.Metrics(ctx, n.URL())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", n.String(), err)
		}
		for k, v := range ms {
			if k == name || strings.HasPrefix(k, name+"{") {
				sum += v
			}
		}
	}
	return sum, nil
}
