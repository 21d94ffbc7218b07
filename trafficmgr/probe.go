package trafficmgr

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// HealthPath is the regiond endpoint the probes ask.
const HealthPath = "/_georeg/health"

// rttWeight is the weight of a new round trip in the smoothed RTT.
const rttWeight = 0.3

// healthReport is the body of a regiond health answer.
type healthReport struct {
	Region         string          `json:"region"`
	Zone           int             `json:"zone"`
	Ready          bool            `json:"ready"`
	Home           string          `json:"home"`
	RaftRole       string          `json:"raftRole"`
	Endpoints      map[string]bool `json:"endpoints"`
	ControlFetched string          `json:"controlFetched"`
	controlFetched time.Time
}

type probeResult struct {
	rtt    time.Duration
	report *healthReport
	err    error
}

// probeLoop probes n from l every ProbeInterval until ctx ends; firstDone is
// called after the first probe.
func (m *Manager) probeLoop(ctx context.Context, l *location, n *node, firstDone func()) {
	m.record(l, n, m.probe(ctx, l, n))
	firstDone()
	t := time.NewTimer(m.nextProbe(l, n))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res := m.probe(ctx, l, n)
		if ctx.Err() != nil {
			return
		}
		m.record(l, n, res)
		t.Reset(m.nextProbe(l, n))
	}
}

// nextProbe is how long to wait before probing n from l again: the steady
// interval while n is healthy and answered its last probe, the short one
// while it is in doubt.
func (m *Manager) nextProbe(l *location, n *node) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := l.health[n]; h.healthy && h.fails == 0 {
		return time.Duration(m.cfg.SteadyProbeInterval)
	}
	return time.Duration(m.cfg.ProbeInterval)
}

// probe asks n for its health through l's connections. The round trip is
// measured from having a connection to the first response byte, so that a
// delay a simulated WAN applies on either direction counts; on a new
// connection the connect time counts too when it is longer (a delay applied
// at dial).
func (m *Manager) probe(ctx context.Context, l *location, n *node) probeResult {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(m.cfg.ProbeTimeout))
	defer cancel()
	var getConn, gotConn, firstByte atomic.Int64
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn: func(string) { getConn.Store(time.Now().UnixNano()) },
		GotConn: func(info httptrace.GotConnInfo) {
			gotConn.Store(time.Now().UnixNano())
			reused.Store(info.Reused)
		},
		GotFirstResponseByte: func() { firstByte.Store(time.Now().UnixNano()) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, n.base+HealthPath, nil)
	if err != nil {
		return probeResult{err: err}
	}
	resp, err := l.probe.Do(req)
	if err != nil {
		return probeResult{err: err}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return probeResult{err: fmt.Errorf("read health: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return probeResult{err: fmt.Errorf("health: %s", resp.Status)}
	}
	res := probeResult{rtt: time.Duration(firstByte.Load() - gotConn.Load())}
	if !reused.Load() {
		res.rtt = max(res.rtt, time.Duration(gotConn.Load()-getConn.Load()))
	}
	res.rtt = max(res.rtt, time.Microsecond) // zero means unknown
	var rep healthReport
	if json.Unmarshal(body, &rep) == nil {
		rep.controlFetched, _ = time.Parse(time.RFC3339Nano, rep.ControlFetched)
		res.report = &rep
	}
	return res
}

// record applies one probe result to n's health from l: FailThreshold
// failures in a row take a healthy node down and RiseThreshold successes
// bring a down node back, except that the very first probe decides at once
// (a starting traffic manager should not wait thresholds to route).
func (m *Manager) record(l *location, n *node, res probeResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := l.health[n]
	first := !h.probed
	h.probed = true
	if res.err != nil {
		h.rises = 0
		h.fails++
		h.lastErr, h.lastErrAt = "probe: "+res.err.Error(), time.Now()
		if h.healthy && h.fails >= m.cfg.FailThreshold {
			m.setHealthLocked(l, n, h, false, h.lastErr)
		} else if first {
			// The gauge starts at 0; the log says why.
			m.log.Info("node down", "location", l.name, "node", n.String(), "error", h.lastErr)
		}
		m.evaluateLocked()
		return
	}
	h.fails = 0
	h.rises++
	h.report = res.report
	if !h.healthy && h.rises == 1 || h.rtt == 0 {
		// A node coming back may have moved: start its average afresh.
		h.rtt = res.rtt
	} else {
		h.rtt = time.Duration(rttWeight*float64(res.rtt) + (1-rttWeight)*float64(h.rtt))
	}
	if !h.healthy && (first || h.rises >= m.cfg.RiseThreshold) {
		m.setHealthLocked(l, n, h, true, "")
	}
	m.evaluateLocked()
}
