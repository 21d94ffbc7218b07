package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors callers branch on.
var (
	// ErrRunning means a command that needs a stopped mesh found one
	// running.
	ErrRunning = errors.New("chaos: a mesh is already running")
	// ErrPortInUse means a node's port is taken by another process.
	ErrPortInUse = errors.New("chaos: port in use")
	// ErrNodeExited means a node process exited before it answered.
	ErrNodeExited = errors.New("exited before answering GET /v2/")
	// ErrNodeTimeout means a node did not answer within the wait.
	ErrNodeTimeout = errors.New("did not answer GET /v2/ in time")
	// ErrRegiondNotFound means the regiond binary is missing.
	ErrRegiondNotFound = errors.New("chaos: regiond not found")
	// ErrTrafficmgrNotFound means the trafficmgr binary is missing.
	ErrTrafficmgrNotFound = errors.New("chaos: trafficmgr not found")
)

// NodeError reports a node that did not come up, with the end of its log.
type NodeError struct {
	// Node is the node's name, "westus/1".
	Node string
	// HTTP is the address it was expected to answer on.
	HTTP string
	// Log is the node's log file and Tail its last lines from this run.
	Log, Tail string
	// Err is ErrNodeExited, ErrNodeTimeout or the cause of the failure.
	Err error
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("chaos: node %s at %s %v\n--- last lines of %s ---\n%s\n---", e.Node, e.HTTP, e.Err, e.Log, e.Tail)
}

func (e *NodeError) Unwrap() error { return e.Err }

// Defaults of Config and DownConfig.
const (
	DefaultProbeTimeout = time.Second
	DefaultGrace        = 10 * time.Second
	// killWait bounds how long a SIGKILLed process may take to disappear.
	killWait = 5 * time.Second
)

// Config configures a Controller.
type Config struct {
	// Dir is the mesh directory; relative paths are made absolute.
	Dir string
	// Out receives one line per change the controller makes ("stopped
	// westus/1 (pid 42)"); nil discards them.
	Out io.Writer
	// Progress receives progress lines while the controller waits; nil
	// discards them.
	Progress io.Writer
	// ProbeTimeout bounds one GET /v2/ probe; 0 means DefaultProbeTimeout.
	ProbeTimeout time.Duration
}

// Controller starts, inspects, stops and breaks the mesh in one directory.
// Each method reads mesh.json afresh, so a Controller may be used by several
// georeg invocations at once (they serialize on the directory lock) and holds
// no state of its own between calls.
type Controller struct {
	dir          string
	out          io.Writer
	progress     io.Writer
	probeTimeout time.Duration
	client       *http.Client
}

// NewController returns a Controller for the mesh in cfg.Dir.
func NewController(cfg Config) (*Controller, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: empty mesh directory", ErrInvalidConfig)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	c := &Controller{
		dir:          dir,
		out:          cfg.Out,
		progress:     cfg.Progress,
		probeTimeout: cfg.ProbeTimeout,
		client:       newProbeClient(dir),
	}
	if c.out == nil {
		c.out = io.Discard
	}
	if c.progress == nil {
		c.progress = io.Discard
	}
	if c.probeTimeout <= 0 {
		c.probeTimeout = DefaultProbeTimeout
	}
	return c, nil
}

// Dir returns the absolute mesh directory.
func (c *Controller) Dir() string { return c.dir }

func (c *Controller) lock(ctx context.Context) (func(), error) {
	return lockDir(ctx, c.dir, func() {
		fmt.Fprintf(c.progress, "waiting for another georeg command working on %s ...\n", c.dir)
	})
}

// lockMesh takes the mesh directory's lock and reads mesh.json under it;
// the caller releases the lock with unlock.
func (c *Controller) lockMesh(ctx context.Context) (m *Mesh, unlock func(), err error) {
	unlock, err = c.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	if m, err = LoadMesh(c.dir); err != nil {
		unlock()
		return nil, nil, err
	}
	if m.Docker != nil {
		unlock()
		return nil, nil, fmt.Errorf("%w in %s: use georeg cluster ... and the chaos verbs it supports (docs/cluster.md)", ErrContainerMesh, c.dir)
	}
	return m, unlock, nil
}

// Up starts the mesh cfg describes and returns once every node answers
// GET /v2/, or with an error (a *NodeError for a node that did not come up)
// after stopping what it started. It refuses, with an error wrapping
// ErrRunning, when the directory already has a running mesh; a mesh.json
// whose nodes are all dead is stale and replaced. Data directories of an
// earlier mesh are reused.
func (c *Controller) Up(ctx context.Context, cfg UpConfig) (*Mesh, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	regiond, err := filepath.Abs(cfg.Regiond)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if fi, err := os.Stat(regiond); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("%w at %s: build it with `make build`, or pass --regiond PATH", ErrRegiondNotFound, regiond)
	}
	cfg.Regiond = regiond
	if cfg.Trafficmgr != "" {
		tm, err := filepath.Abs(cfg.Trafficmgr)
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if fi, err := os.Stat(tm); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("%w at %s: build it with `make build`, pass --trafficmgr PATH, or start the nodes alone with --no-trafficmgr", ErrTrafficmgrNotFound, tm)
		}
		cfg.Trafficmgr = tm
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()

	switch old, err := LoadMesh(c.dir); {
	case errors.Is(err, ErrNoMesh):
	case err != nil:
		return nil, err
	case old.Docker != nil:
		return nil, fmt.Errorf("%w in %s: remove it first with `georeg cluster down --dir %s`", ErrContainerMesh, c.dir, c.dir)
	default:
		if pids := runningPIDs(old); len(pids) > 0 {
			return nil, fmt.Errorf("%w in %s (pids %s): stop it first with `georeg mesh down --dir %s`",
				ErrRunning, c.dir, strings.Join(pids, ", "), c.dir)
		}
		fmt.Fprintf(c.progress, "replacing stale %s: none of its nodes is running\n", filepath.Join(c.dir, MeshFile))
		if err := os.Remove(filepath.Join(c.dir, MeshFile)); err != nil {
			return nil, fmt.Errorf("chaos: remove stale mesh: %w", err)
		}
	}

	m, err := Plan(c.dir, cfg)
	if err != nil {
		return nil, err
	}
	nodes := m.Nodes()
	for _, n := range m.Processes() {
		if err := n.portsFree(0); err != nil {
			return nil, err
		}
	}
	for _, l := range m.Locations {
		if err := portFree(l.Addr); err != nil {
			return nil, fmt.Errorf("%w: the traffic manager cannot listen on %s for %s: %v", ErrPortInUse, l.Addr, l.Name, err)
		}
	}
	for _, d := range []string{filepath.Join(c.dir, LogsDir), filepath.Join(c.dir, DataDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	if err := writeCredentials(m); err != nil {
		return nil, err
	}
	if m.TrafficManager != nil {
		if err := writeWAN(m, cfg.WAN); err != nil {
			return nil, err
		}
		if err := writeTrafficmgrConfig(m); err != nil {
			return nil, err
		}
	}
	wait := cfg.Wait
	if wait == 0 {
		wait = DefaultWait
	}
	if err := c.startAndWait(ctx, m, nodes, wait); err != nil {
		return nil, err
	}
	stopAll := func(err error) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*killWait)
		defer cancel()
		c.stopNodes(cctx, m.Processes(), 3*time.Second, io.Discard)
		return errors.Join(err, m.Save())
	}
	if err := c.waitLeaders(ctx, nodes, wait); err != nil {
		return nil, stopAll(err)
	}
	if tm := m.TrafficManager; tm != nil {
		if err := c.startAndWait(ctx, m, []*Node{tm}, wait); err != nil {
			return nil, stopAll(err)
		}
	}
	fmt.Fprintf(c.out, "mesh up: %d node(s) in %s, endpoint %s\n", len(nodes), c.dir, m.Endpoint)
	for _, l := range m.Locations {
		fmt.Fprintf(c.out, "  clients in %s: %s\n", l.Name, l.Addr)
	}
	return m, nil
}

// startAndWait starts nodes, records them in mesh.json before waiting (so a
// launcher killed while waiting leaves a mesh that `down` can stop), and
// waits until each answers. On failure it stops the nodes it started and
// records that too.
func (c *Controller) startAndWait(ctx context.Context, m *Mesh, nodes []*Node, wait time.Duration) error {
	offsets := make(map[*Node]int64, len(nodes))
	var launched []*Node
	var err error
	for _, n := range nodes {
		if err = os.MkdirAll(n.Data, 0o755); err != nil {
			err = fmt.Errorf("chaos: %w", err)
			break
		}
		var st started
		if st, err = startProcess(n.Argv, n.Env, c.dir, n.Log); err != nil {
			err = &NodeError{Node: n.Name(), HTTP: n.HTTP, Log: n.Log, Tail: logTail(n.Log, 0), Err: fmt.Errorf("did not start: %w", err)}
			break
		}
		n.PID, n.PIDStart, n.Started = st.pid, st.start, time.Now().UTC()
		offsets[n] = st.logOffset
		launched = append(launched, n)
	}
	if serr := m.Save(); err == nil {
		err = serr
	}
	if err == nil {
		err = c.waitUp(ctx, nodes, offsets, wait)
	}
	if err == nil {
		return nil
	}
	// Clean up even when ctx was cancelled (Ctrl-C): that is when it
	// matters most.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*killWait)
	defer cancel()
	var running []*Node
	for _, n := range launched {
		if alive(n.PID, n.PIDStart) {
			running = append(running, n)
		}
	}
	if len(running) > 0 {
		fmt.Fprintf(c.progress, "stopping the %d node(s) just started\n", len(running))
	}
	c.stopNodes(cctx, launched, 3*time.Second, io.Discard)
	if serr := m.Save(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// errWaitTimeout is the cancellation cause of the wait deadline, telling it
// apart from the caller cancelling.
var errWaitTimeout = errors.New("wait timed out")

// waitUp waits, within wait in total, until every node answers GET /v2/.
func (c *Controller) waitUp(ctx context.Context, nodes []*Node, offsets map[*Node]int64, wait time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(ctx, wait, errWaitTimeout)
	defer cancel()
	begin := time.Now()
	for _, n := range nodes {
		fmt.Fprintf(c.progress, "waiting for %s at %s ...\n", n.Name(), n.HTTP)
		note := 5 * time.Second
		for {
			pctx, pcancel := context.WithTimeout(ctx, c.probeTimeout)
			err := probe(pctx, c.client, n.URL())
			pcancel()
			if err == nil {
				fmt.Fprintf(c.progress, "%s is up at %s (pid %d)\n", n.Name(), n.HTTP, n.PID)
				break
			}
			nodeErr := func(cause error) error {
				return &NodeError{Node: n.Name(), HTTP: n.HTTP, Log: n.Log, Tail: logTail(n.Log, offsets[n]), Err: cause}
			}
			if !alive(n.PID, n.PIDStart) {
				return nodeErr(ErrNodeExited)
			}
			if ctx.Err() != nil {
				if context.Cause(ctx) == errWaitTimeout {
					return nodeErr(fmt.Errorf("%w (waited %v; last probe: %v)", ErrNodeTimeout, wait, err))
				}
				return nodeErr(fmt.Errorf("wait interrupted: %w", ctx.Err()))
			}
			if time.Since(begin) >= note {
				fmt.Fprintf(c.progress, "still waiting for %s at %s (%v so far; last probe: %v) ...\n",
					n.Name(), n.HTTP, time.Since(begin).Round(time.Second), err)
				note += 5 * time.Second
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// waitLeaders waits until every node knows its region's Raft leader, so
// that the mesh accepts writes on any node when Up returns. A node without
// the status endpoint counts as ready.
func (c *Controller) waitLeaders(ctx context.Context, nodes []*Node, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for _, n := range nodes {
		for announced := false; ; {
			var zs ZoneStatus
			pctx, pcancel := context.WithTimeout(ctx, c.probeTimeout)
			found := c.report(pctx, n.URL(), &zs)
			pcancel()
			if !found || zs.RaftLeader != "" {
				break
			}
			if !announced {
				fmt.Fprintf(c.progress, "waiting for %s to see a raft leader ...\n", n.Name())
				announced = true
			}
			select {
			case <-ctx.Done():
				return &NodeError{Node: n.Name(), HTTP: n.HTTP, Log: n.Log, Tail: logTail(n.Log, 0),
					Err: fmt.Errorf("%w: no raft leader after %v", ErrNodeTimeout, wait)}
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// portsFree checks that every port of n (HTTP, gRPC, Raft, gossip) can be
// listened on, retrying for up to wait.
func (n *Node) portsFree(wait time.Duration) error {
	addrs := []string{n.HTTP}
	for _, p := range n.Ports {
		addrs = append(addrs, addr(p))
	}
	deadline := time.Now().Add(wait)
	for _, a := range addrs {
		err := portFree(a)
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = portFree(a)
		}
		if err != nil {
			return fmt.Errorf("%w: %s cannot listen on %s: %v", ErrPortInUse, n.Name(), a, err)
		}
	}
	return nil
}

// runningPIDs returns the pids of the mesh's live nodes.
func runningPIDs(m *Mesh) []string {
	var pids []string
	for _, n := range append(m.Processes(), m.SiteNodes()...) {
		if alive(n.PID, n.PIDStart) {
			pids = append(pids, fmt.Sprint(n.PID))
		}
	}
	return pids
}

// stopNodes stops the running nodes among nodes: SIGTERM, up to grace for
// them to exit, then SIGKILL (grace 0: SIGKILL at once). It clears their
// pids and writes one line per node to out. It returns an error naming the
// nodes that would not die.
func (c *Controller) stopNodes(ctx context.Context, nodes []*Node, grace time.Duration, out io.Writer) error {
	type victim struct {
		n     *Node
		pid   int
		start uint64
	}
	var vs []victim
	for _, n := range nodes {
		if alive(n.PID, n.PIDStart) {
			vs = append(vs, victim{n, n.PID, n.PIDStart})
		}
		n.PID, n.PIDStart, n.Started = 0, 0, time.Time{}
	}
	var errs []error
	if grace > 0 {
		for _, v := range vs {
			if err := signalProcess(v.pid, v.start, false); err != nil {
				errs = append(errs, err)
			}
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		for _, v := range vs {
			waitDead(gctx, v.pid, v.start)
		}
		cancel()
	}
	for _, v := range vs {
		how := "stopped"
		if alive(v.pid, v.start) {
			how = "killed"
			if grace > 0 {
				how = fmt.Sprintf("killed (no exit within %v of SIGTERM)", grace)
			}
			if err := signalProcess(v.pid, v.start, true); err != nil {
				errs = append(errs, err)
			}
			kctx, cancel := context.WithTimeout(ctx, killWait)
			dead := waitDead(kctx, v.pid, v.start)
			cancel()
			if !dead {
				errs = append(errs, fmt.Errorf("chaos: %s (pid %d) is still running after SIGKILL", v.n.Name(), v.pid))
				v.n.PID, v.n.PIDStart = v.pid, v.start
				continue
			}
		}
		fmt.Fprintf(out, "%s %s (pid %d, %s)\n", how, v.n.Name(), v.pid, v.n.HTTP)
	}
	return errors.Join(errs...)
}

// DownConfig configures Controller.Down.
type DownConfig struct {
	// Grace is how long nodes get to exit after SIGTERM before SIGKILL; 0
	// means DefaultGrace.
	Grace time.Duration
	// Purge also deletes the nodes' data directories. Logs and mesh.json
	// are kept.
	Purge bool
}

// Down stops every node of the mesh and records that in mesh.json, keeping
// data and logs unless cfg.Purge. It is idempotent: a stopped mesh, or no
// mesh at all, is not an error.
func (c *Controller) Down(ctx context.Context, cfg DownConfig) error {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if _, err := os.Stat(c.dir); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(c.out, "no mesh in %s: nothing to stop\n", c.dir)
		return nil
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := LoadMesh(c.dir)
	switch {
	case errors.Is(err, ErrNoMesh):
		fmt.Fprintf(c.out, "no mesh in %s: nothing to stop\n", c.dir)
	case err != nil:
		return err
	case m.Docker != nil:
		return fmt.Errorf("%w in %s: remove it with `georeg cluster down --dir %s`", ErrContainerMesh, c.dir, c.dir)
	default:
		nodes := append(m.Processes(), m.SiteNodes()...)
		if len(runningPIDs(m)) == 0 {
			fmt.Fprintf(c.out, "mesh in %s is already stopped\n", c.dir)
		} else {
			fmt.Fprintf(c.progress, "stopping %d node(s) in %s ...\n", len(runningPIDs(m)), c.dir)
		}
		err = c.stopNodes(ctx, nodes, cfg.Grace, c.out)
		if serr := m.Save(); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil {
			return err
		}
	}
	if cfg.Purge {
		data := filepath.Join(c.dir, DataDir)
		if err := os.RemoveAll(data); err != nil {
			return fmt.Errorf("chaos: purge: %w", err)
		}
		fmt.Fprintf(c.out, "deleted %s\n", data)
	}
	return nil
}

// Kill SIGKILLs the nodes t names, as a crash of that zone or region would,
// and records them as stopped. Data and logs are kept for Restart. Nodes
// already down are reported and left alone.
func (c *Controller) Kill(ctx context.Context, t Target) error {
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	nodes, err := m.Select(t)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if !alive(n.PID, n.PIDStart) {
			fmt.Fprintf(c.out, "%s was already down\n", n.Name())
		}
	}
	err = c.stopNodes(ctx, nodes, 0, c.out)
	if serr := m.Save(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// Restart starts again, with the argv and data they had, the nodes t names
// that are down, and waits up to wait (0: DefaultWait) until they answer.
// Nodes already running are reported and left alone.
func (c *Controller) Restart(ctx context.Context, t Target, wait time.Duration) error {
	if wait <= 0 {
		wait = DefaultWait
	}
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	nodes, err := m.Select(t)
	if err != nil {
		return err
	}
	var down []*Node
	for _, n := range nodes {
		if alive(n.PID, n.PIDStart) {
			fmt.Fprintf(c.out, "%s is already up (pid %d, %s)\n", n.Name(), n.PID, n.HTTP)
			continue
		}
		// A node killed a moment ago may hold its ports until the kernel has
		// finished tearing it down: give it a few seconds.
		if err := n.portsFree(5 * time.Second); err != nil {
			return err
		}
		down = append(down, n)
	}
	if len(down) == 0 {
		return nil
	}
	if err := c.startAndWait(ctx, m, down, wait); err != nil {
		return err
	}
	for _, n := range down {
		fmt.Fprintf(c.out, "restarted %s (pid %d, %s)\n", n.Name(), n.PID, n.HTTP)
	}
	return nil
}
