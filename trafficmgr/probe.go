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

// probeLoop probes n from l until ctx ends, at the pace nextProbe sets;
// firstDone is called after the first probe.
func (m *Manager) probeLoop(ctx context.Context, l *location, n *node, firstDone func()) {
	m.record(l, n, m.probe(ctx, l, n))
	firstDone()
	d, awake := m.nextProbe(l, n)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-awake:
			t.Stop()
		}
		res := m.probe(ctx, l, n)
		if ctx.Err() != nil {
			return
		}
		m.record(l, n, res)
		d, awake = m.nextProbe(l, n)
		t.Reset(d)
	}
}

// nextProbe is how long to wait before probing n from l again: the steady
// interval while n is healthy and answered its last probe, the idle one
// (cut short when the returned channel closes) if the endpoint has also
// had no request for that long, and the short one while n is in doubt.
func (m *Manager) nextProbe(l *location, n *node) (time.Duration, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := l.health[n]; !h.healthy || h.fails > 0 {
		return time.Duration(m.cfg.ProbeInterval), nil
	}
	if m.idle() {
		return time.Duration(m.cfg.IdleProbeInterval), m.awake
	}
	return time.Duration(m.cfg.SteadyProbeInterval), nil
}

// idle reports whether no listener has taken a request for
// IdleProbeInterval.
func (m *Manager) idle() bool {
	return m.sinceStart()-m.lastRequest.Load() >= int64(m.cfg.IdleProbeInterval)
}

// sinceStart is the monotonic time since the Manager was made, in
// nanoseconds: a step of the wall clock neither starts nor ends a spell.
func (m *Manager) sinceStart() int64 { return int64(time.Since(m.start)) }

// noteRequest records a client request at a listener; the first one after
// an idle spell wakes every probe loop, so that routes rest on fresh probes
// again.
func (m *Manager) noteRequest() {
	now := m.sinceStart()
	quiet := now - m.lastRequest.Load()
	// Skip the shared write while the last one is recent: most requests
	// come in bursts.
	if quiet < int64(10*time.Millisecond) {
		return
	}
	m.lastRequest.Store(now)
	if quiet < int64(m.cfg.IdleProbeInterval) {
		return
	}
	m.mu.Lock()
	close(m.awake)
	m.awake = make(chan struct{})
	m.mu.Unlock()
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
