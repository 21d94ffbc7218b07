package zone

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/test/harness"
	zonenode "github.com/georeg/georeg/zone"
)

const regionName = "westus"

// nodeState is a node's GET /_georeg/state.
type nodeState struct {
	Meta         string   `json:"meta"`
	AppliedIndex uint64   `json:"appliedIndex"`
	Blobs        []string `json:"blobs"`
}

// region is a running three-zone region started with `georeg mesh up`.
type region struct {
	t     *testing.T
	mesh  *harness.Mesh
	zones []chaos.ZoneStatus // by zone number - 1; the static part: addresses, data, log
	// probe reads node status; short timeouts, so a dead node is seen fast.
	probe *client
}

// startRegion starts a three-zone region and waits until it has a leader
// that every node knows.
func startRegion(t *testing.T) *region {
	t.Helper()
	start := time.Now()
	m := harness.StartMesh(t, "--regions", regionName, "--zones", "3")
	r := &region{t: t, mesh: m, probe: newClient(m, 2*time.Second)}
	st := r.mesh.Status()
	if len(st.Regions) != 1 || len(st.Regions[0].Zones) != 3 {
		t.Fatalf("mesh status: want one region of three zones, got %+v", st)
	}
	r.zones = st.Regions[0].Zones
	up := time.Since(start)
	leader := r.waitLeader(20*time.Second, 1, 2, 3)
	t.Logf("region up in %v (mesh up %v), leader %s/%d", time.Since(start).Round(time.Millisecond), up.Round(time.Millisecond), regionName, leader)
	return r
}

// base returns the URL of zone z's node.
func (r *region) base(z int) string { return "http://" + r.zones[z-1].HTTP }

// bases returns the URLs of the given zones' nodes.
func (r *region) bases(zones ...int) []string {
	var b []string
	for _, z := range zones {
		b = append(b, r.base(z))
	}
	return b
}

func (r *region) georeg(args ...string) string {
	r.t.Helper()
	out, err := r.mesh.Georeg(context.Background(), args...)
	if err != nil {
		r.t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kill SIGKILLs zone z's node.
func (r *region) kill(z int) {
	r.t.Helper()
	r.georeg("chaos", "kill-zone", regionName+"/"+strconv.Itoa(z), "--dir", r.mesh.Dir)
}

// restart starts zone z's node again on its data; it returns once the node
// answers HTTP.
func (r *region) restart(z int) {
	r.t.Helper()
	r.georeg("chaos", "restart", regionName+"/"+strconv.Itoa(z), "--dir", r.mesh.Dir)
}

// waitLeader waits until the given zones are up, exactly one of them says it
// is the Raft leader (read from `mesh status`) and all of them name it, and
// returns the leader's zone.
func (r *region) waitLeader(timeout time.Duration, zones ...int) int {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		st := r.mesh.Status()
		leader, agree := 0, true
		var seen []string
		for _, zs := range st.Regions[0].Zones {
			if !slices.Contains(zones, zs.Zone) {
				continue
			}
			seen = append(seen, fmt.Sprintf("%d:%s/%s/leader=%s", zs.Zone, zs.State, zs.RaftRole, zs.RaftLeader))
			if zs.State != "up" || zs.RaftLeader == "" {
				agree = false
				continue
			}
			if zs.RaftRole == "Leader" {
				if leader != 0 {
					agree = false
				}
				leader = zs.Zone
			}
		}
		if agree && leader != 0 {
			id := regionName + "-" + strconv.Itoa(leader)
			for _, zs := range st.Regions[0].Zones {
				if slices.Contains(zones, zs.Zone) && zs.RaftLeader != id {
					agree = false
				}
			}
			if agree {
				return leader
			}
		}
		last = strings.Join(seen, " ")
		if time.Now().After(deadline) {
			r.t.Fatalf("no Raft leader agreed on by zones %v within %v; last mesh status: %s", zones, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// follower returns a zone among zones that is up and not the leader.
func (r *region) follower(leader int, zones ...int) int {
	for _, z := range zones {
		if z != leader {
			return z
		}
	}
	r.t.Fatalf("no follower among zones %v (leader %d)", zones, leader)
	return 0
}

func (r *region) nodeStatus(ctx context.Context, z int) (zonenode.Status, error) {
	var st zonenode.Status
	_, b, err := r.probe.Do(ctx, http.MethodGet, r.base(z), "/_georeg/status", nil, nil, http.StatusOK)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func (r *region) nodeState(ctx context.Context, z int) (nodeState, error) {
	var st nodeState
	_, b, err := r.probe.Do(ctx, http.MethodGet, r.base(z), "/_georeg/state", nil, nil, http.StatusOK)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// waitCaughtUp waits until zone z's node (just restarted) follows a leader,
// sees all three zones in gossip, and has applied everything the leader had
// committed when z first saw it: from then on it is a voter that counts
// towards a majority.
func (r *region) waitCaughtUp(z int, timeout time.Duration) time.Duration {
	r.t.Helper()
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(timeout)
	var target uint64
	var last string
	for time.Now().Before(deadline) {
		st, err := r.nodeStatus(ctx, z)
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("state %s, leader %q, applied %d, members %v", st.Raft.State, st.Raft.Leader, st.Raft.AppliedIndex, st.Members)
		}
		if err == nil && st.Raft.Leader != "" && len(st.Members) == 3 {
			if target == 0 {
				lz, _ := strconv.Atoi(strings.TrimPrefix(st.Raft.Leader, regionName+"-"))
				if lz == z {
					target = st.Raft.CommitIndex
				} else if ls, err := r.nodeStatus(ctx, lz); err == nil {
					target = ls.Raft.CommitIndex
				}
			}
			if target != 0 && st.Raft.AppliedIndex >= target {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("zone %d did not catch up within %v: %s", z, timeout, last)
	return 0
}

// converged reports whether the given zones' nodes hold the same metadata
// and the same blobs, and if not, how they differ.
func (r *region) converged(ctx context.Context, zones ...int) (bool, string) {
	var first nodeState
	var diffs []string
	for i, z := range zones {
		st, err := r.nodeState(ctx, z)
		if err != nil {
			return false, fmt.Sprintf("zone %d: %v", z, err)
		}
		if i == 0 {
			first = st
			continue
		}
		if st.Meta != first.Meta {
			diffs = append(diffs, fmt.Sprintf("meta of zone %d is %s (applied %d), zone %d has %s (applied %d)", z, st.Meta, st.AppliedIndex, zones[0], first.Meta, first.AppliedIndex))
		}
		if !slices.Equal(st.Blobs, first.Blobs) {
			diffs = append(diffs, fmt.Sprintf("zone %d holds %d blobs, zone %d holds %d; %s", z, len(st.Blobs), zones[0], len(first.Blobs), blobDiff(first.Blobs, st.Blobs)))
		}
	}
	return len(diffs) == 0, strings.Join(diffs, "; ")
}

// blobDiff describes the differences of two sorted digest lists.
func blobDiff(a, b []string) string {
	var onlyA, onlyB []string
	for _, d := range a {
		if _, ok := slices.BinarySearch(b, d); !ok {
			onlyA = append(onlyA, d)
		}
	}
	for _, d := range b {
		if _, ok := slices.BinarySearch(a, d); !ok {
			onlyB = append(onlyB, d)
		}
	}
	cut := func(s []string) []string {
		if len(s) > 5 {
			return append(s[:5:5], "...")
		}
		return s
	}
	return fmt.Sprintf("only in the first: %d %v, only in the other: %d %v", len(onlyA), cut(onlyA), len(onlyB), cut(onlyB))
}

// waitConverged polls until all three nodes' /_georeg/state agree and
// returns how long that took, or fails the test after timeout.
func (r *region) waitConverged(timeout time.Duration) time.Duration {
	r.t.Helper()
	ctx := context.Background()
	start := time.Now()
	var why string
	for {
		ok, d := r.converged(ctx, 1, 2, 3)
		if ok {
			return time.Since(start)
		}
		why = d
		if time.Since(start) > timeout {
			r.dumpStatus()
			r.t.Fatalf("the zones did not converge within %v: %s", timeout, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpStatus logs every node's status, for failures.
func (r *region) dumpStatus() {
	for z := 1; z <= 3; z++ {
		_, b, err := r.probe.Do(context.Background(), http.MethodGet, r.base(z), "/_georeg/status", nil, nil, http.StatusOK)
		if err != nil {
			r.t.Logf("zone %d status: %v", z, err)
			continue
		}
		r.t.Logf("zone %d status: %s", z, strings.TrimSpace(string(b)))
	}
}

// blobFile returns the path of zone z's local copy of a sha256 blob
// (storage/fs.go: <data>/blobs/blobs/sha256/<first two hex>/<hex>), after
// checking by listing its directory that the file is where the layout says.
func (r *region) blobFile(z int, hex string) string {
	r.t.Helper()
	dir := filepath.Join(r.zones[z-1].Data, "blobs", "blobs", "sha256", hex[:2])
	entries, err := os.ReadDir(dir)
	if err != nil {
		r.t.Fatalf("listing zone %d's blob directory: %v", z, err)
	}
	for _, e := range entries {
		if e.Name() == hex && e.Type().IsRegular() {
			return filepath.Join(dir, hex)
		}
	}
	r.t.Fatalf("zone %d's blob directory %s has no file %s", z, dir, hex)
	return ""
}

// logTail returns the last n bytes of zone z's log.
func (r *region) logTail(z int, n int) string {
	b, err := os.ReadFile(r.zones[z-1].Log)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// summary logs a figure line and prints it to stdout too, so that it shows
// in `go test -v` and CI logs.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println(line)
}
