package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// rollingRestart restarts every process of the mesh, one at a time, under
// load: `georeg chaos rolling-restart` gives each zone node SIGTERM, starts
// it again and waits until it has caught up, then hands the traffic
// manager's port over to a new process.
func rollingRestart(full bool) Scenario {
	zones := 3
	if !full {
		zones = 2
	}
	return Scenario{
		Name:   "rolling-restart",
		Fault:  fmt.Sprintf("georeg chaos rolling-restart: each of the %d zone nodes, then the traffic manager, restarted one at a time under load", 3*zones),
		Target: "no failed pull through the endpoint, nothing acknowledged lost, converged",
		Zones:  zones,
		Load:   &WorkloadConfig{Seed: 21},
		Inject: func(ctx context.Context, r *Run) error {
			start := time.Now()
			r.Fault("georeg chaos rolling-restart")
			out, err := r.Mesh.Run(ctx, "chaos", "rolling-restart")
			if err != nil {
				return fmt.Errorf("georeg chaos rolling-restart: %w\n%s", err, out)
			}
			r.mu.Lock()
			for _, n := range r.Mesh.Nodes {
				r.restarted[n.String()] = true
			}
			r.restarted[TrafficmgrName] = true
			r.mu.Unlock()
			restarts := strings.Count(out, "restarted ")
			r.Notef("%d processes restarted in %v", restarts, time.Since(start).Round(time.Millisecond))
			if restarts != len(r.Mesh.Nodes)+1 {
				r.Missf("rolling-restart restarted %d processes, want %d:\n%s", restarts, len(r.Mesh.Nodes)+1, out)
			}
			return r.Mesh.WaitHealthy(ctx, time.Minute)
		},
	}
}

// diskFull fills zone 2's blob store of westus (a quota of the registry's
// own, --blob-quota-file) under load, keeps it full, then frees it. The
// full zone must refuse writes, take itself out of client traffic, lose
// nothing the region acknowledged, and be repaired once it has room.
func diskFull(full bool) Scenario {
	hold := 20 * time.Second
	if !full {
		hold = 8 * time.Second
	}
	return Scenario{
		Name:     "disk-full",
		Fault:    fmt.Sprintf("westus/2's blob store full (quota file at its usage) for %v under load, then freed", hold),
		Target:   "pushes go on (the other two zones make the majority), nothing acknowledged lost, westus/2 repaired to every blob once freed",
		Regions:  []string{"westus"},
		Zones:    3,
		NodeArgs: []string{"--blob-quota-file=quota"},
		Load:     &WorkloadConfig{Seed: 22},
		Inject: func(ctx context.Context, r *Run) error {
			n, _ := r.Mesh.Node("westus/2")
			quota := filepath.Join(n.Data, "quota")
			// The quota is what the store holds now: it is full.
			if err := os.WriteFile(quota, []byte("1"), 0o644); err != nil {
				return err
			}
			r.Fault("westus/2's blob store full (%s)", quota)
			if err := ociclient.Poll(ctx, 10*time.Second, 100*time.Millisecond, func() (bool, error) {
				h, err := health(ctx, r.Mesh, n)
				return err == nil && h.DiskFull, err
			}); err != nil {
				return fmt.Errorf("westus/2 does not report its full store: %w", err)
			}
			r.Notef("westus/2 reports diskFull and answers its health probe with 503")
			before := r.History.Len()
			r.Sleep(ctx, hold)
			var writes, failed int
			for _, o := range r.History.Ops()[before:] {
				if o.Kind.IsWrite() {
					writes++
					if o.Failed() {
						failed++
					}
				}
			}
			r.Notef("%d writes while westus/2 was full, %d failed after the client's retries", writes, failed)
			if failed > 0 {
				r.Missf("%d writes failed while one zone of three was full", failed)
			}
			if err := os.Remove(quota); err != nil {
				return err
			}
			freed := time.Now()
			if err := r.Mesh.WaitHealthy(ctx, time.Minute); err != nil {
				return fmt.Errorf("after freeing westus/2: %w", err)
			}
			r.Notef("westus/2 back in client traffic %v after its store was freed", time.Since(freed).Round(time.Millisecond))
			return nil
		},
		Verify: func(ctx context.Context, r *Run) {
			// Every blob the region holds is back on the zone that was full.
			start := time.Now()
			var missing int
			err := ociclient.Poll(ctx, 90*time.Second, 500*time.Millisecond, func() (bool, error) {
				var sets []map[string]bool
				for _, n := range r.Mesh.RegionNodes("westus") {
					st, err := nodeState(ctx, r.Mesh, n)
					if err != nil {
						return false, err
					}
					set := map[string]bool{}
					for _, b := range st.Blobs {
						set[b] = true
					}
					sets = append(sets, set)
				}
				missing = 0
				for b := range sets[0] {
					if !sets[1][b] {
						missing++
					}
				}
				for b := range sets[2] {
					if !sets[1][b] {
						missing++
					}
				}
				return missing == 0, fmt.Errorf("westus/2 lacks %d blob copies", missing)
			})
			if err != nil {
				r.Missf("westus/2 not repaired 90 s after its store was freed: %v", err)
				return
			}
			r.Notef("westus/2 holds every blob again (repair converged %v after the faults healed)", time.Since(start).Round(time.Millisecond))
		},
	}
}

// uploadFlood opens 10,000 upload sessions from one client and abandons
// them: the per-client cap answers 429 with Retry-After beyond it, other
// clients still upload, and once the sessions expire the nodes hold no
// session and no staged file.
func uploadFlood(full bool) Scenario {
	sessions, cap := 10000, 1000
	if !full {
		sessions, cap = 600, 100
	}
	return Scenario{
		Name:     "upload-flood",
		Fault:    fmt.Sprintf("%d upload sessions opened through the endpoint by one client and abandoned (per-client cap %d per node, idle expiry 10 s)", sessions, cap),
		Target:   "the cap answers 429 with Retry-After; the regular workload is not refused; sessions and staged files back to zero after expiry",
		Regions:  []string{"westus"},
		Zones:    3,
		NodeArgs: []string{"--max-upload-sessions-per-client=" + strconv.Itoa(cap), "--upload-idle-timeout=10s"},
		Load:     &WorkloadConfig{Seed: 23},
		Inject: func(ctx context.Context, r *Run) error {
			r.Fault("%d upload sessions opened and abandoned", sessions)
			// The flooding client connects from 127.0.0.2, so that the
			// traffic manager names it apart from the workload's clients
			// (127.0.0.1) and the cap falls on it alone.
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			c := &http.Client{Timeout: 10 * time.Second, Transport: r.Mesh.Transport(&http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 32})}
			before := r.History.Len()
			base := r.Mesh.Locations["westus"]
			var opened, refused, other int
			var mu sync.Mutex
			retryAfter := ""
			work := make(chan struct{})
			results := make(chan int, sessions)
			for range 16 {
				go func() {
					for range work {
						req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/chaos/flood/blobs/uploads/", nil)
						resp, err := c.Do(req)
						if err != nil {
							results <- 0
							continue
						}
						if resp.StatusCode == http.StatusTooManyRequests {
							mu.Lock()
							if retryAfter == "" {
								retryAfter = resp.Header.Get("Retry-After")
							}
							mu.Unlock()
						}
						resp.Body.Close()
						results <- resp.StatusCode
					}
				}()
			}
			go func() {
				for range sessions {
					work <- struct{}{}
				}
				close(work)
			}()
			for range sessions {
				switch <-results {
				case http.StatusAccepted:
					opened++
				case http.StatusTooManyRequests:
					refused++
				default:
					other++
				}
			}
			r.Notef("%d sessions opened, %d refused with 429 (Retry-After %q), %d other answers", opened, refused, retryAfter, other)
			// The traffic manager spreads sessions over 3 nodes, each
			// capping this client (all from one address) at cap.
			if opened > 3*cap {
				r.Missf("%d sessions opened, more than the cap of %d on each of 3 nodes", opened, cap)
			}
			if refused == 0 || retryAfter == "" {
				r.Missf("no 429 with Retry-After past the cap (%d refused, Retry-After %q)", refused, retryAfter)
			}
			if other > 0 {
				r.Missf("%d session starts answered neither 202 nor 429", other)
			}
			var failed int
			for _, o := range r.History.Ops()[before:] {
				if o.Kind.IsWrite() && o.Failed() {
					failed++
				}
			}
			if failed > 0 {
				r.Missf("%d of the other clients' writes failed during the flood", failed)
			}
			return nil
		},
		Verify: func(ctx context.Context, r *Run) {
			start := time.Now()
			err := ociclient.Poll(ctx, 60*time.Second, 500*time.Millisecond, func() (bool, error) {
				for _, n := range r.Mesh.RegionNodes("westus") {
					st, err := r.Mesh.NodeStatus(ctx, n)
					if err != nil {
						return false, err
					}
					if st.Uploads != 0 {
						return false, fmt.Errorf("%s holds %d sessions", n.String(), st.Uploads)
					}
					staged, _ := os.ReadDir(filepath.Join(n.Data, "blobs", "uploads"))
					if len(staged) != 0 {
						return false, fmt.Errorf("%s has %d staged session directories", n.String(), len(staged))
					}
				}
				return true, nil
			})
			if err != nil {
				r.Missf("sessions not back to zero 60 s after the flood: %v", err)
				return
			}
			r.Notef("sessions and staged files back to zero %v after the load stopped", time.Since(start).Round(time.Millisecond))
		},
	}
}

// nodeHealth is the part of a node's GET /_georeg/health these scenarios read.
type nodeHealth struct {
	Ready    bool `json:"ready"`
	DiskFull bool `json:"diskFull"`
}

func health(ctx context.Context, m *Mesh, n harness.Node) (nodeHealth, error) {
	var h nodeHealth
	err := getJSON(ctx, m, n.URL()+"/_georeg/health", &h)
	return h, err
}

// stateReport is the part of a node's GET /_georeg/state these scenarios read.
type stateReport struct {
	Blobs []string `json:"blobs"`
}

func nodeState(ctx context.Context, m *Mesh, n harness.Node) (stateReport, error) {
	var st stateReport
	err := getJSON(ctx, m, n.URL()+"/_georeg/state", &st)
	return st, err
}

// getJSON decodes the JSON body of GET url, sent with m's credential,
// whatever its status.
func getJSON(ctx context.Context, m *Mesh, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: m.Transport(&http.Transport{DisableKeepAlives: true})}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
