package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// RollingConfig configures Controller.RollingRestart.
type RollingConfig struct {
	// Grace is how long each process gets to exit after SIGTERM before
	// SIGKILL; 0 means DefaultGrace.
	Grace time.Duration
	// Wait bounds how long a restarted process may take to serve again; 0
	// means DefaultWait.
	Wait time.Duration
}

// RollingRestart restarts every running process of the mesh, one at a time,
// as an upgrade would: each zone node gets SIGTERM (it finishes in-flight
// requests), starts again on its data, and must serve again (caught up with
// its region, a Raft leader known) before the next one stops. The traffic
// manager is restarted last without closing its port: the new process binds
// the same listeners (SO_REUSEPORT) and serves before the old one stops.
// Nodes that are down are reported and left down.
func (c *Controller) RollingRestart(ctx context.Context, cfg RollingConfig) error {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	nodes := m.Nodes()
	for i, n := range nodes {
		if !alive(n.PID, n.PIDStart) {
			fmt.Fprintf(c.out, "%s is down: left alone\n", n.Name())
			continue
		}
		begin := time.Now()
		fmt.Fprintf(c.progress, "[%d/%d] restarting %s ...\n", i+1, len(nodes), n.Name())
		if err := c.stopNodes(ctx, []*Node{n}, cfg.Grace, io.Discard); err != nil {
			return errors.Join(err, m.Save())
		}
		if err := n.portsFree(5 * time.Second); err != nil {
			return errors.Join(err, m.Save())
		}
		if err := c.startAndWait(ctx, m, []*Node{n}, cfg.Wait); err != nil {
			return err
		}
		if err := c.waitLeaders(ctx, []*Node{n}, cfg.Wait); err != nil {
			return err
		}
		if err := c.waitHealthy(ctx, n, cfg.Wait); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "restarted %s (pid %d, serving again after %v)\n", n.Name(), n.PID, time.Since(begin).Round(time.Millisecond))
	}
	if tm := m.TrafficManager; tm != nil {
		if !alive(tm.PID, tm.PIDStart) {
			fmt.Fprintf(c.out, "%s is down: left alone\n", tm.Name())
		} else if err := c.handOver(ctx, m, tm, cfg); err != nil {
			return errors.Join(err, m.Save())
		}
	}
	return m.Save()
}

// waitHealthy waits until n's health endpoint answers 200: it has caught up
// with its region and serves clients. A node without one counts as healthy.
func (c *Controller) waitHealthy(ctx context.Context, n *Node, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/_georeg/health", nil)
		if err != nil {
			return err
		}
		resp, err := c.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return &NodeError{Node: n.Name(), HTTP: n.HTTP, Log: n.Log, Tail: logTail(n.Log, 0),
				Err: fmt.Errorf("%w: not caught up with its region after %v", ErrNodeTimeout, wait)}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// handOver starts a second traffic manager on the same listeners, waits
// until it serves every location, then stops the old one gracefully.
func (c *Controller) handOver(ctx context.Context, m *Mesh, tm *Node, cfg RollingConfig) error {
	begin := time.Now()
	fmt.Fprintf(c.progress, "starting a new traffic manager next to pid %d ...\n", tm.PID)
	st, err := startProcess(tm.Argv, tm.Env, c.dir, tm.Log)
	if err != nil {
		return fmt.Errorf("chaos: start the new traffic manager: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Wait)
	defer cancel()
	// The new process prints one "serving LOCATION on ..." line per
	// listener once it has probed every node and serves.
	for {
		if servingLines(tm.Log, st.logOffset) >= max(1, len(m.Locations)) {
			break
		}
		if !alive(st.pid, st.start) {
			return &NodeError{Node: tm.Name(), HTTP: tm.HTTP, Log: tm.Log, Tail: logTail(tm.Log, st.logOffset), Err: ErrNodeExited}
		}
		select {
		case <-ctx.Done():
			signalProcess(st.pid, st.start, true)
			return &NodeError{Node: tm.Name(), HTTP: tm.HTTP, Log: tm.Log, Tail: logTail(tm.Log, st.logOffset), Err: ErrNodeTimeout}
		case <-time.After(50 * time.Millisecond):
		}
	}
	old, oldStart := tm.PID, tm.PIDStart
	tm.PID, tm.PIDStart, tm.Started = st.pid, st.start, time.Now().UTC()
	if err := m.Save(); err != nil {
		return err
	}
	if err := signalProcess(old, oldStart, false); err != nil {
		return err
	}
	gctx, gcancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Grace)
	dead := waitDead(gctx, old, oldStart)
	gcancel()
	if !dead {
		signalProcess(old, oldStart, true)
	}
	fmt.Fprintf(c.out, "restarted %s (pid %d replaced pid %d without closing its port, %v)\n", tm.Name(), tm.PID, old, time.Since(begin).Round(time.Millisecond))
	return nil
}

// servingLines counts the "serving ..." lines a traffic manager printed to
// its log after offset.
func servingLines(log string, offset int64) int {
	b, err := os.ReadFile(log)
	if err != nil || int64(len(b)) <= offset {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b[offset:]), "\n") {
		if strings.HasPrefix(line, "serving ") {
			n++
		}
	}
	return n
}
