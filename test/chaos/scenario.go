package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scenario is one chaos scenario: the mesh it runs on, the background load,
// and the faults. Adding a scenario is writing one value of this type (and
// its Inject function) and listing it in the suite.
type Scenario struct {
	// Name is the subtest name: `go test -run TestChaos/<Name>`.
	Name string
	// Fault and Target say, for the scoreboard and the logs, what is
	// injected and what must hold besides the invariants.
	Fault, Target string
	// Regions are the mesh's regions, home first (default westus, eastus,
	// westeurope); Zones the nodes per region (default 1).
	Regions []string
	Zones   int
	// NodeArgs are extra regiond arguments of every node.
	NodeArgs []string
	// Sites are connected registries run at sites of the mesh, started
	// once the cloud is up (StartSites).
	Sites []SiteSpec
	// Short puts the scenario in `make test`'s subset; the suite then
	// builds it with full=false (smaller counts and times).
	Short bool
	// Load is the background workload that runs from before the first
	// fault until after the last one healed; nil for none.
	Load *WorkloadConfig
	// Preload is the number of images each location pushes before the
	// resource baseline (default 2 with a Load).
	Preload int
	// Inject injects the faults through the Run (and may drive load of its
	// own through Run.Client) and heals every one before it returns. An
	// error is a missed target.
	Inject func(ctx context.Context, r *Run) error
	// Verify, when set, checks the scenario's own targets once the mesh
	// has converged (Run.Missf for each one missed).
	Verify func(ctx context.Context, r *Run)
	// ZeroFailures makes every client-visible failure a missed target,
	// writes included (pulls through the endpoint never may fail).
	ZeroFailures bool
	// ConvergeWithin bounds the wait for convergence after the faults
	// healed (default 2 minutes).
	ConvergeWithin time.Duration
}

// Run is one scenario in progress, handed to its Inject function.
type Run struct {
	T        testing.TB
	Mesh     *Mesh
	History  *History
	Client   *Recorder
	Workload *Workload
	// Full reports whether the suite runs at full size (GEOREG_CHAOS=full).
	Full bool

	mu         sync.Mutex
	faults     []string
	faultStart time.Time
	restarted  map[string]bool
	notes      []string
	missed     []string
}

// faultVerbs are the chaos verbs that inject a fault (the others heal).
var faultVerbs = map[string]bool{"kill-zone": true, "kill-region": true, "partition": true, "latency": true, "bandwidth": true, "loss": true}

// Fault records a fault the scenario injected by itself (a flipped byte, a
// receiver taken down, an endpoint toggled).
func (r *Run) Fault(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.faultStart.IsZero() {
		r.faultStart = time.Now()
	}
	desc := fmt.Sprintf(format, args...)
	r.faults = append(r.faults, time.Now().Format("15:04:05.000")+" "+desc)
	r.T.Logf("fault: %s", desc)
}

// Notef adds a figure to the scenario's scoreboard row.
func (r *Run) Notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.T.Logf("note: %s", r.notes[len(r.notes)-1])
}

// Missf records a missed target of the scenario's own.
func (r *Run) Missf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.missed = append(r.missed, fmt.Sprintf(format, args...))
	r.T.Errorf("missed: %s", r.missed[len(r.missed)-1])
}

// Chaos runs `georeg chaos VERB ARGS...` on the mesh. Kills, cuts and link
// changes count as faults; restarts are retried while the killed process's
// port is still held, and mark what they start as restarted (I6 does not
// compare those).
func (r *Run) Chaos(ctx context.Context, verb string, args ...string) error {
	full := append([]string{"chaos", verb}, args...)
	start := time.Now()
	for {
		out, err := r.Mesh.Run(ctx, full...)
		if err != nil && verb == "restart" && strings.Contains(out, "port in use") && time.Since(start) < 15*time.Second {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("georeg %s: %w\n%s", strings.Join(full, " "), err, out)
		}
		break
	}
	took := time.Since(start).Round(time.Millisecond)
	if faultVerbs[verb] && !(len(args) > 0 && slices.Contains([]string{"off", "0", "0%", "0s", "0ms"}, args[len(args)-1])) {
		r.Fault("georeg chaos %s %s (%v)", verb, strings.Join(args, " "), took)
	} else {
		r.T.Logf("heal: georeg chaos %s %s (%v)", verb, strings.Join(args, " "), took)
	}
	if verb == "restart" && len(args) > 0 {
		r.mu.Lock()
		for _, n := range r.Mesh.Nodes {
			if args[0] == n.Region || args[0] == n.String() {
				r.restarted[n.String()] = true
			}
		}
		for _, n := range r.Mesh.Sites {
			if args[0] == n.Region || args[0] == n.String() {
				r.restarted[n.String()] = true
			}
		}
		if args[0] == TrafficmgrName {
			r.restarted[TrafficmgrName] = true
		}
		r.mu.Unlock()
	}
	return nil
}

// Sleep waits for d or until ctx ends, and reports whether ctx is alive.
func (r *Run) Sleep(ctx context.Context, d time.Duration) bool { return sleepCtx(ctx, d) }

// Options are what the suite passes to every scenario it runs.
type Options struct {
	// Full runs scenarios at full size.
	Full bool
	// Board receives each scenario's row.
	Board *Scoreboard
	// ResultsDir, when set, receives a failed scenario's history
	// (<dir>/<scenario>/history.json) and its processes' logs.
	ResultsDir string
}

// RunScenario runs sc on a mesh of its own and adds its row to the board:
// it starts the mesh and the workload, samples resources and leaders,
// calls Inject, stops the load, waits for convergence and holds the history
// against every invariant. Any missed target fails t.
func RunScenario(t *testing.T, sc Scenario, opt Options) {
	began := time.Now()
	if len(sc.Regions) == 0 {
		sc.Regions = []string{"westus", "eastus", "westeurope"}
	}
	if sc.Zones == 0 {
		sc.Zones = 1
	}
	if sc.ConvergeWithin == 0 {
		sc.ConvergeWithin = 2 * time.Minute
	}
	t.Logf("scenario %s: %s; target: %s", sc.Name, sc.Fault, sc.Target)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	m := StartMesh(t, sc.Regions, sc.Zones, sc.NodeArgs...)
	m.StartSites(t, ctx, sc.Sites)
	h := &History{}
	r := &Run{T: t, Mesh: m, History: h, Client: NewRecorder(m, h, 3*time.Minute), Full: opt.Full, restarted: map[string]bool{}}
	if sc.Load != nil {
		r.Workload = NewWorkload(m, r.Client, *sc.Load)
		n := sc.Preload
		if n == 0 {
			n = 2
		}
		r.Workload.Preload(ctx, n)
	}
	// The baseline is taken in a quiet, converged mesh.
	if _, err := m.WaitConverged(ctx, nil, time.Minute); err != nil {
		t.Fatalf("the mesh did not converge before the faults: %v", err)
	}
	r.Client.CloseIdle()
	time.Sleep(time.Second)
	before := m.SampleResources(ctx)
	leaders := StartLeaderSampler(ctx, m, 100*time.Millisecond)

	stop := func() {}
	if r.Workload != nil {
		stop = r.Workload.Start(ctx)
		time.Sleep(time.Second)
	}
	injectErr := sc.Inject(ctx, r)
	faultEnd := time.Now()
	if r.Workload != nil {
		// Keep the load on a little after healing, so that failback is
		// in the history.
		time.Sleep(time.Second)
	}
	stop()
	if injectErr != nil {
		r.Missf("inject: %v", injectErr)
	}
	healed := time.Now()
	ops := h.Ops()
	agreed, convErr := m.WaitConverged(ctx, subjectsOf(ops), sc.ConvergeWithin)
	convergence := time.Since(healed)
	if convErr != nil {
		t.Logf("not converged after %v: %v", sc.ConvergeWithin, convErr)
	} else {
		t.Logf("converged %v after the faults healed and the load stopped: %d repositories, %d tags", convergence.Round(time.Millisecond), len(agreed), agreed.Tags())
	}
	if convErr == nil {
		if took, err := m.WaitDrained(ctx, 30*time.Second); err != nil {
			r.Notef("replication still busy %v after converging: %v", took.Round(time.Second), err)
		} else if took > 2*time.Second {
			r.Notef("replication backlog drained %v after the regions converged", took.Round(100*time.Millisecond))
		}
	}
	if sc.Verify != nil {
		sc.Verify(ctx, r)
	}
	leaders.Stop()
	r.Client.CloseIdle()
	time.Sleep(2 * time.Second)
	after := m.SampleResources(ctx)

	ev := &Evidence{Mesh: m, Ops: ops, Converged: convErr == nil, Agreed: agreed, ConvergeErr: convErr,
		Before: before, After: after, Restarted: r.restarted, Leaders: leaders, FaultStart: r.faultStart, FaultEnd: faultEnd}
	row := Row{Scenario: sc.Name, Fault: sc.Fault, Target: sc.Target, Violations: map[string][]string{}}
	checked := time.Now()
	var took []string
	for _, inv := range Invariants() {
		start := time.Now()
		v := inv.Check(ctx, ev)
		took = append(took, fmt.Sprintf("%s %v", inv.ID, time.Since(start).Round(10*time.Millisecond)))
		if len(v) == 0 {
			row.Passed = append(row.Passed, inv.ID)
			continue
		}
		row.Failed = append(row.Failed, inv.ID)
		row.Violations[inv.ID] = v[:min(len(v), 10)]
		t.Errorf("%s (%s) violated %d times", inv.ID, inv.Name, len(v))
		for _, line := range v[:min(len(v), 10)] {
			t.Errorf("%s: %s", inv.ID, line)
		}
	}
	t.Logf("invariants checked in %v (%s)", time.Since(checked).Round(10*time.Millisecond), strings.Join(took, ", "))
	_, leaderNotes, terms, samples := leaders.Result()
	t.Logf("leader sampler: %d samples, %d (region, term) leaderships seen", samples, terms)
	for _, n := range leaderNotes {
		r.Notef("%s", n)
	}
	t.Logf("resources before -> after: %s", resourceDelta(before, after, r.restarted))

	r.mu.Lock()
	row.Faults, row.FaultLog = len(r.faults), slices.Clone(r.faults)
	row.Notes, row.Missed = slices.Clone(r.notes), slices.Clone(r.missed)
	r.mu.Unlock()
	row.Ops = len(ops)
	for _, o := range ops {
		if o.Failed() {
			row.Failures++
		}
	}
	for _, o := range readsThroughEndpoint(ops) {
		if o.Failed() {
			row.PullFailures++
			if !r.faultStart.IsZero() && o.End.After(r.faultStart) && o.Start.Before(faultEnd) {
				row.PullFailuresInFaults++
			}
		}
	}
	ev.mu.Lock()
	row.Lost = ev.lost
	row.BadBytes = ev.badBytes
	ev.mu.Unlock()
	for _, o := range ops {
		if o.BadBytes {
			row.BadBytes++
		}
	}
	row.Converged = convErr == nil
	if row.Converged {
		row.ConvergenceSeconds = convergence.Seconds()
	}
	gap, where := LongestGap(ops, r.faultStart, faultEnd)
	row.LongestFailoverSeconds, row.FailoverLocation = gap.Seconds(), where

	// The targets every scenario shares, then the scenario's own.
	miss := func(cond bool, format string, args ...any) {
		if cond {
			row.Missed = append(row.Missed, fmt.Sprintf(format, args...))
		}
	}
	miss(row.Lost > 0, "%d acknowledged writes lost", row.Lost)
	miss(row.BadBytes > 0, "%d answers with bad bytes", row.BadBytes)
	miss(row.PullFailures > 0, "%d pulls through the endpoint failed (%d during faults)", row.PullFailures, row.PullFailuresInFaults)
	miss(!row.Converged, "not converged within %v", sc.ConvergeWithin)
	miss(len(row.Failed) > 0, "invariants failed: %s", strings.Join(row.Failed, " "))
	miss(sc.ZeroFailures && row.Failures > 0, "%d client-visible failures, want 0", row.Failures)
	row.Pass = len(row.Missed) == 0
	row.DurationSeconds = time.Since(began).Seconds()
	if opt.Board != nil {
		opt.Board.Add(row)
	}
	t.Logf("%s: %d faults, %d client ops, %d failures (%d pulls), %d lost, %d bad bytes, converged=%v in %.1f s, longest failover %.2f s (%s), invariants failed: %v, %.0f s",
		sc.Name, row.Faults, row.Ops, row.Failures, row.PullFailures, row.Lost, row.BadBytes, row.Converged, row.ConvergenceSeconds,
		row.LongestFailoverSeconds, row.FailoverLocation, row.Failed, row.DurationSeconds)
	for _, f := range row.FaultLog {
		t.Logf("  fault %s", f)
	}
	for _, mi := range row.Missed {
		t.Errorf("target missed: %s", mi)
	}
	if t.Failed() && opt.ResultsDir != "" {
		if err := keepEvidence(filepath.Join(opt.ResultsDir, sc.Name), m, ops); err != nil {
			t.Logf("keeping the failed scenario's history and logs: %v", err)
		} else {
			t.Logf("history and logs of the failed scenario kept in %s", filepath.Join(opt.ResultsDir, sc.Name))
		}
	}
	if t.Failed() {
		for _, o := range ops {
			if o.Failed() {
				t.Logf("failed op %d %s %s %s@%.19s via %s (served by %s/%s, %d attempts, %s-%s): %s", o.ID, o.Kind, o.Repo, o.Tag, o.Digest,
					o.Location, o.Region, o.Zone, o.Attempts, o.Start.Format("15:04:05.000"), o.End.Format("15:04:05.000"), o.Err)
			}
		}
	}
}

// subjectsOf returns the subjects of every acknowledged referrer.
func subjectsOf(ops []Op) []Subject {
	seen := map[Subject]bool{}
	var out []Subject
	for _, o := range ops {
		if o.Kind == OpReferrer && o.Acked {
			s := Subject{o.Repo, o.Subject}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// resourceDelta prints the largest goroutine and fd growth over the
// processes compared.
func resourceDelta(before, after map[string]Resources, restarted map[string]bool) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(before)) {
		b, a := before[name], after[name]
		if restarted[name] {
			parts = append(parts, name+" restarted")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s g%+.0f fd%+.0f sock%+d up%d", name, a.Goroutines-b.Goroutines, a.FDs-b.FDs, a.Sockets-b.Sockets, a.Uploads))
	}
	return strings.Join(parts, ", ")
}

// keepEvidence writes ops to dir/history.json and copies the mesh's logs
// into dir/logs.
func keepEvidence(dir string, m *Mesh, ops []Op) error {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(ops, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644); err != nil {
		return err
	}
	logs, _ := filepath.Glob(filepath.Join(m.Dir, "logs", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "logs", filepath.Base(l)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
