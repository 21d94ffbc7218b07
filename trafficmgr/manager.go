package trafficmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georeg/georeg/base/tlsconf"
)

// Options are the traffic manager's dependencies, which have no place in
// the JSON configuration.
type Options struct {
	// Dial opens every connection made on behalf of clients at location,
	// probes and proxied requests alike, so that a simulated WAN can apply
	// that location's latency and cuts. Nil dials directly.
	Dial func(ctx context.Context, location, network, addr string) (net.Conn, error)
	// Logger receives route changes (info), node health changes (info) and
	// request failures (debug, warn). Nil discards.
	Logger *slog.Logger
	// TLS, when set, makes the listeners HTTPS with its certificate (for
	// any client: no client certificate is asked for) and the nodes
	// reached over HTTPS, their certificates verified against its CA and
	// its own certificate offered. Nil is plain HTTP both ways.
	TLS *tlsconf.Config
}

// Manager is the traffic manager: one reverse proxy per listener location in
// front of every zone node of every region, steered by health probes.
type Manager struct {
	cfg     Config
	tls     *tls.Config // the listeners'; nil: plain HTTP
	log     *slog.Logger
	regions []*region // in configuration order
	byName  map[string]*region
	locs    []*location // in listener order
	byLoc   map[string]*location
	metrics *metrics
	ready   chan struct{}
	running atomic.Bool
	// start and lastRequest time the idle spells on the monotonic clock:
	// lastRequest is when a listener last took a request, in nanoseconds
	// since start; the probes slow down once it is IdleProbeInterval old.
	start       time.Time
	lastRequest atomic.Int64

	mu sync.Mutex
	// settled is set once the first round of probes has answered: routes
	// wait for it so that a location does not start on whichever region
	// answered first and then move.
	settled bool
	// enabled is the region endpoint flags as last reported by a healthy
	// node; a region missing from it is enabled.
	enabled map[string]bool
	// awake is closed, and replaced, by the first request after an idle
	// spell: it ends the probe loops' idle waits.
	awake chan struct{}
}

type region struct {
	name  string
	nodes []*node
}

// node is one zone node; it is immutable, its health lives per location.
type node struct {
	region string
	zone   int
	addr   string
	base   string // "http://" or "https://" and addr
}

func (n *node) String() string { return n.region + "/" + strconv.Itoa(n.zone) }

// location is one listener and everything measured from it.
type location struct {
	name      string
	listen    string
	probe     *http.Client
	transport *http.Transport
	rr        map[string]*atomic.Uint64 // per region: round-robin cursor

	// Guarded by Manager.mu.
	bound     string
	health    map[*node]*nodeHealth
	current   string
	order     []string
	up        map[string]bool // healthy and enabled at the last evaluation
	latency   map[string]time.Duration
	displaced map[string]bool // regions failed over from, not returned to yet
	routed    bool
	failovers int64
	failbacks int64
	reroutes  int64
	last      *RouteChange
}

// nodeHealth is one node's health as seen from one location.
type nodeHealth struct {
	probed  bool
	healthy bool
	fails   int // consecutive failures
	rises   int // consecutive successes
	rtt     time.Duration
	report  *healthReport
	lastErr string
	// lastErrAt is when lastErr was seen.
	lastErrAt time.Time
	// down is canceled when the node goes down, so that requests in flight
	// to it are abandoned and retried or resumed elsewhere.
	down     context.Context
	markDown context.CancelFunc
}

// New builds a Manager. It does not listen or probe until Run; until the
// first probes answer every region counts as down.
func New(cfg Config, opts Options) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, log: opts.Logger, byName: map[string]*region{}, byLoc: map[string]*location{},
		metrics: newMetrics(), ready: make(chan struct{}), enabled: map[string]bool{},
		awake: make(chan struct{}), start: time.Now(),
		tls: endpointTLS(opts.TLS),
	}
	// Idle from the start: no client has come yet.
	m.lastRequest.Store(-int64(cfg.IdleProbeInterval))
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var nodes []*node
	for _, rc := range cfg.Regions {
		r := &region{name: rc.Name}
		for _, nc := range rc.Nodes {
			n := &node{region: rc.Name, zone: nc.Zone, addr: nc.HTTP, base: "http://" + nc.HTTP}
			if opts.TLS != nil {
				n.base = "https://" + nc.HTTP
			}
			r.nodes = append(r.nodes, n)
			nodes = append(nodes, n)
		}
		m.regions = append(m.regions, r)
		m.byName[r.name] = r
	}
	for _, lc := range cfg.Listeners {
		l := &location{
			name: lc.Location, listen: lc.Addr, rr: map[string]*atomic.Uint64{},
			health: map[*node]*nodeHealth{}, up: map[string]bool{}, latency: map[string]time.Duration{},
			displaced: map[string]bool{},
		}
		dial := dialer(opts.Dial, lc.Location, 2*time.Duration(cfg.ProbeTimeout))
		l.probe = &http.Client{
			Transport: &http.Transport{
				DialContext: dial, DisableCompression: true, MaxIdleConnsPerHost: 2,
				IdleConnTimeout: 10 * time.Duration(cfg.ProbeInterval+cfg.ProbeTimeout),
				TLSClientConfig: nodeTLS(opts.TLS),
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		l.transport = &http.Transport{
			DialContext: dial,
			// Bytes must reach the client exactly as the node sent them.
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			// Blobs pass through here both ways: big buffers, few
			// system calls.
			ReadBufferSize:  256 << 10,
			WriteBufferSize: 256 << 10,
			TLSClientConfig: nodeTLS(opts.TLS),
		}
		for _, r := range m.regions {
			l.rr[r.name] = new(atomic.Uint64)
		}
		for _, n := range nodes {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			l.health[n] = &nodeHealth{down: ctx, markDown: cancel}
			m.metrics.nodeHealthy.WithLabelValues(l.name, n.region, strconv.Itoa(n.zone)).Set(0)
		}
		m.locs = append(m.locs, l)
		m.byLoc[l.name] = l
	}
	m.mu.Lock()
	m.evaluateLocked()
	m.mu.Unlock()
	return m, nil
}

// dialer returns the DialContext of one location's transports.
func dialer(dial func(ctx context.Context, location, network, addr string) (net.Conn, error), location string, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// A cut link must fail over, not hang a request.
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if dial != nil {
			return dial(ctx, location, network, addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// Ready is closed once Run listens on every listener and the first round of
// probes has answered (or timed out).
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Addr returns the address location's listener is bound to once Ready is
// closed (the configured address before), or "" for an unknown location.
func (m *Manager) Addr(location string) string {
	l := m.byLoc[location]
	if l == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.bound != "" {
		return l.bound
	}
	return l.listen
}

// Handler returns the HTTP handler of one client location (nil for a
// location that has no listener), for serving it on a listener of the
// caller's own. It routes with the health Run's probes maintain; without
// them every region counts as down and requests try every enabled region.
func (m *Manager) Handler(location string) http.Handler {
	l := m.byLoc[location]
	if l == nil {
		return nil
	}
	return &handler{m: m, loc: l}
}

// Run listens on every listener, probes every node from every location and
// serves until ctx ends, then shuts the listeners down gracefully (in-flight
// requests get shutdownGrace to finish). It returns nil after a shutdown
// caused by ctx, or the error that stopped it. A Manager runs once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	var lns []net.Listener
	for _, l := range m.locs {
		ln, err := listen(ctx, l.listen)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return fmt.Errorf("listen for location %s: %w", l.name, err)
		}
		lns = append(lns, ln)
		m.mu.Lock()
		l.bound = ln.Addr().String()
		m.mu.Unlock()
	}

	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	var probers, first sync.WaitGroup
	for _, l := range m.locs {
		for _, r := range m.regions {
			for _, n := range r.nodes {
				first.Add(1)
				probers.Go(func() { m.probeLoop(probeCtx, l, n, first.Done) })
			}
		}
	}
	first.Wait()
	m.mu.Lock()
	m.settled = true
	m.evaluateLocked()
	m.mu.Unlock()
	close(m.ready)

	errc := make(chan error, len(lns))
	servers := make([]*http.Server, len(lns))
	for i, l := range m.locs {
		servers[i] = &http.Server{
			Handler:           m.Handler(l.name),
			ReadHeaderTimeout: time.Minute,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		}
		if err := takeOver(lns[i]); err != nil {
			m.log.Debug("cannot steer new connections to this process (a restart may reset the odd connection)", "location", l.name, "err", err)
		}
		ln := lns[i]
		if m.tls != nil {
			ln = tls.NewListener(ln, m.tls)
		}
		m.log.Info("serving", "location", l.name, "addr", lns[i].Addr().String(), "https", m.tls != nil)
		go func() {
			if err := servers[i].Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve location %s: %w", l.name, err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	for _, s := range servers {
		if serr := s.Shutdown(shutdownCtx); serr != nil {
			s.Close()
		}
	}
	stopProbes()
	probers.Wait()
	for _, l := range m.locs {
		l.transport.CloseIdleConnections()
		l.probe.CloseIdleConnections()
	}
	m.log.Info("stopped")
	return err
}

// shutdownGrace is how long Run waits for in-flight requests at shutdown.
const shutdownGrace = 10 * time.Second

// candidates returns the nodes a routed request from l tries, in order:
// the route's regions, and within each its healthy nodes starting at the
// region's round-robin cursor. A region with no healthy node (the route's
// fallback when nothing is healthy) offers all of its nodes. With
// leaderFirst, a region's Raft leader (as its last probe reported) comes
// first: it answers metadata reads without asking another zone for a read
// index, and takes writes without forwarding them.
func (m *Manager) candidates(l *location, leaderFirst bool) []*node {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*node
	for _, name := range l.order {
		r := m.byName[name]
		var healthy []*node
		for _, n := range r.nodes {
			if l.health[n].healthy {
				healthy = append(healthy, n)
			}
		}
		if len(healthy) == 0 {
			healthy = r.nodes
		}
		start := int(l.rr[name].Add(1) % uint64(len(healthy)))
		if leaderFirst {
			for i, n := range healthy {
				if h := l.health[n]; h.healthy && h.report != nil && h.report.RaftRole == "leader" {
					start = i
					break
				}
			}
		}
		out = append(out, healthy[start:]...)
		out = append(out, healthy[:start]...)
	}
	return out
}

// downContext returns a context canceled when n goes down for l, or nil if
// n is not healthy now (there is nothing to watch).
func (m *Manager) downContext(l *location, n *node) context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := l.health[n]; h.healthy {
		return h.down
	}
	return nil
}

// markDown is passive health: a request to n from l failed to connect or
// was reset before its response, so n is down for l until probes see it
// rise again.
func (m *Manager) markDown(l *location, n *node, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := l.health[n]
	h.lastErr, h.lastErrAt = "proxy: "+err.Error(), time.Now()
	h.rises = 0
	h.fails = max(h.fails, m.cfg.FailThreshold)
	if h.healthy {
		m.setHealthLocked(l, n, h, false, h.lastErr)
		m.evaluateLocked()
	}
}

func (m *Manager) setHealthLocked(l *location, n *node, h *nodeHealth, healthy bool, why string) {
	h.healthy = healthy
	if healthy {
		h.down, h.markDown = context.WithCancel(context.Background())
		m.log.Info("node up", "location", l.name, "node", n.String())
	} else {
		h.markDown()
		m.log.Info("node down", "location", l.name, "node", n.String(), "error", why)
	}
	v := 0.0
	if healthy {
		v = 1
	}
	m.metrics.nodeHealthy.WithLabelValues(l.name, n.region, strconv.Itoa(n.zone)).Set(v)
}

func (m *Manager) enabledLocked(region string) bool {
	on, ok := m.enabled[region]
	return !ok || on
}

// evaluateLocked recomputes the endpoint flags and every location's route
// from the latest health, and records each route change.
func (m *Manager) evaluateLocked() {
	m.refreshFlagsLocked()
	if !m.settled && m.running.Load() {
		return
	}
	for _, l := range m.locs {
		in := RouteInput{Location: l.name, Current: l.current, Hysteresis: m.cfg.Hysteresis}
		latency := map[string]time.Duration{}
		for _, r := range m.regions {
			st := RegionState{Name: r.name, Disabled: !m.enabledLocked(r.name)}
			var best, known time.Duration
			for _, n := range r.nodes {
				h := l.health[n]
				if h.rtt > 0 && (known == 0 || h.rtt < known) {
					known = h.rtt
				}
				if h.healthy && (best == 0 || h.rtt < best) {
					st.Healthy, best = true, h.rtt
				}
			}
			st.Latency = known
			if st.Healthy {
				st.Latency = best
				latency[r.name] = best
			}
			in.Regions = append(in.Regions, st)
			m.metrics.regionHealthy.WithLabelValues(l.name, r.name).Set(boolFloat(st.Healthy))
			m.metrics.regionLatency.WithLabelValues(l.name, r.name).Set(st.Latency.Seconds())
		}
		order := Route(in)
		up := map[string]bool{}
		for _, st := range in.Regions {
			up[st.Name] = st.Healthy && !st.Disabled
		}
		next := ""
		if len(order) > 0 && up[order[0]] {
			next = order[0]
		}
		l.order, l.latency = order, latency
		if next != l.current {
			m.changeRouteLocked(l, next, up)
		}
		l.up = up
	}
}

// changeRouteLocked moves l's current region to next; up is the regions
// healthy and enabled now, l.up still those of the previous evaluation.
func (m *Manager) changeRouteLocked(l *location, next string, up map[string]bool) {
	prev := l.current
	reason := changeReason(up[prev], l.up[next], l.displaced[next], l.routed, prev)
	switch reason {
	case ReasonFailover:
		l.failovers++
		l.displaced[prev] = true
	case ReasonFailback:
		l.failbacks++
	case ReasonLatency:
		l.reroutes++
	}
	delete(l.displaced, next)
	if reason != ReasonInitial {
		m.metrics.routeChanges.WithLabelValues(l.name, reason).Inc()
	}
	if next != "" {
		l.routed = true
	}
	l.current = next
	l.last = &RouteChange{At: time.Now(), From: prev, To: next, Reason: reason}
	for _, r := range m.regions {
		m.metrics.route.WithLabelValues(l.name, r.name).Set(boolFloat(r.name == next))
	}
	m.log.Info("route change", "location", l.name, "from", prev, "to", next, "reason", reason, "order", l.order)
}

// refreshFlagsLocked takes the region endpoint flags from a healthy node:
// one of the home region if any (it holds the control plane), else the one
// whose copy of the control plane is freshest. With no healthy node the
// last flags stay.
func (m *Manager) refreshFlagsLocked() {
	var best *healthReport
	bestHome := false
	for _, l := range m.locs {
		for n, h := range l.health {
			if !h.healthy || h.report == nil || h.report.Endpoints == nil {
				continue
			}
			home := n.region == m.cfg.Home
			switch {
			case best == nil, home && !bestHome:
			case home == bestHome && h.report.controlFetched.After(best.controlFetched):
			default:
				continue
			}
			best, bestHome = h.report, home
		}
	}
	if best == nil {
		return
	}
	changed := len(best.Endpoints) != len(m.enabled)
	for r, on := range best.Endpoints {
		if prev, ok := m.enabled[r]; !ok || prev != on {
			changed = true
		}
	}
	if changed {
		m.enabled = maps.Clone(best.Endpoints)
		var off []string
		for r, on := range m.enabled {
			if !on {
				off = append(off, r)
			}
		}
		slices.Sort(off)
		m.log.Info("region endpoint flags", "disabled", off)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// nodeTLS is the client configuration of the links to the nodes: HTTP/1.1
// (the proxy streams blobs; one connection per request in flight), or nil
// for plain HTTP.
func nodeTLS(cfg *tlsconf.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Client.Clone()
	c.NextProtos = []string{"http/1.1"}
	return c
}

// endpointTLS is the listeners' configuration: the traffic manager's
// certificate for any client (registry clients bring no certificate),
// TLS 1.2 or later, HTTP/1.1.
func endpointTLS(cfg *tlsconf.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: cfg.Server.Certificates,
		NextProtos:   []string{"http/1.1"},
	}
}
