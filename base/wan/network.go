package wan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrCut is wrapped by the errors of dials across a cut link and of reads and
// writes on connections that a cut closed. The full message names the link:
// "simulated partition between westus and eastus".
var ErrCut = errors.New("simulated partition")

// DefaultPollInterval is how often a Network checks its file when
// NetworkConfig.PollInterval is 0.
const DefaultPollInterval = 200 * time.Millisecond

// NetworkConfig configures [Open].
type NetworkConfig struct {
	// File is the wan.json to load and watch.
	File string
	// PollInterval is how often File is checked for changes; 0 means
	// [DefaultPollInterval]. A cut closes open connections within one
	// interval.
	PollInterval time.Duration
	// Logger receives reloads and warnings about bad files; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Network is one process's view of the simulated WAN. Connections made by
// its dialers apply the current settings of their link, which change when
// the file does. A Network is safe for concurrent use.
type Network struct {
	cfg NetworkConfig
	log *slog.Logger

	state atomic.Pointer[netState]

	mu    sync.Mutex // guards paths
	paths map[[2]string]*path
}

// netState is one loaded config with its lookups precomputed.
type netState struct {
	cfg   Config
	addrs map[string]string // canonical host:port → location
}

// Open loads cfg.File and watches it until ctx ends: the file is checked
// every PollInterval (modification time, size, identity, then content) and a
// changed, valid file replaces the settings of every link at once, open
// connections included. A file that fails to load is logged and the last good
// settings stay. Connections keep working after ctx ends, with the settings
// they had then.
func Open(ctx context.Context, cfg NetworkConfig) (*Network, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	n := &Network{cfg: cfg, log: cfg.Logger, paths: map[[2]string]*path{}}
	if n.log == nil {
		n.log = slog.Default()
	}
	w := watcher{path: cfg.File}
	data, err := w.read()
	if err != nil {
		return nil, fmt.Errorf("wan: %w", err)
	}
	c, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("wan: %s: %w", cfg.File, err)
	}
	n.apply(c)
	go n.poll(ctx, &w)
	return n, nil
}

// Current returns a copy of the settings in force.
func (n *Network) Current() Config {
	return n.state.Load().cfg.clone()
}

// Location returns the location of the node listener addr ("host:port"), and
// false when the config does not list it.
func (n *Network) Location(addr string) (string, bool) {
	loc, ok := n.state.Load().addrs[canonicalAddr(addr)]
	return loc, ok
}

// Dialer returns a dial function for clients in location from, shaped like
// net.Dialer.DialContext so it plugs into http.Transport.DialContext and
// grpc.WithContextDialer. TCP dials to a listed address go through the link
// between from and the address's location; any other dial (unknown address,
// non-TCP network, empty from) is a plain dial. With skipSameLocation, dials
// inside from are plain too: regiond uses it so that zone-to-zone traffic is
// not simulated, while the traffic manager does not, so a client in westus
// reaching westus pays the location's own round trip.
func (n *Network) Dialer(from string, skipSameLocation bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if from == "" || !strings.HasPrefix(network, "tcp") {
			return d.DialContext(ctx, network, addr)
		}
		to, ok := n.Location(addr)
		if !ok || (skipSameLocation && to == from) {
			return d.DialContext(ctx, network, addr)
		}
		out, in := n.path(from, to), n.path(to, from)
		if st := out.load(); st.cut {
			return nil, fmt.Errorf("wan: dial %s %s: %w", network, addr, cutError(from, to))
		}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// The TCP handshake costs a round trip before the first byte.
		if rtt := 2 * out.load().delay; rtt > 0 {
			t := time.NewTimer(rtt)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				raw.Close()
				return nil, fmt.Errorf("wan: dial %s %s: %w", network, addr, ctx.Err())
			}
		}
		c := newConn(raw, out, in, false)
		// Register before checking for a cut: apply stores the new state
		// before it looks at the registered connections, so one of the two
		// sees the other.
		out.add(c)
		if out.load().cut {
			c.Close()
			return nil, fmt.Errorf("wan: dial %s %s: %w", network, addr, cutError(from, to))
		}
		return c, nil
	}
}

func cutError(a, b string) error {
	return fmt.Errorf("%w between %s and %s", ErrCut, a, b)
}

// path returns the direction from → to, creating it on first use.
func (n *Network) path(from, to string) *path {
	k := [2]string{from, to}
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.paths[k]
	if p == nil {
		p = &path{
			from:    from,
			to:      to,
			limiter: rate.NewLimiter(rate.Inf, chunkSize),
			conns:   map[*conn]struct{}{},
		}
		p.update(n.state.Load().cfg.Link(from, to))
		n.paths[k] = p
	}
	return p
}

// apply makes cfg the settings in force, for new and open connections.
func (n *Network) apply(cfg Config) {
	st := &netState{cfg: cfg.clone(), addrs: make(map[string]string, len(cfg.Addresses))}
	for a, loc := range cfg.Addresses {
		st.addrs[canonicalAddr(a)] = loc
	}
	// Store first: a dial that registers its connection after this sees
	// the new state (see Dialer).
	n.state.Store(st)
	n.mu.Lock()
	paths := make([]*path, 0, len(n.paths))
	for _, p := range n.paths {
		paths = append(paths, p)
	}
	n.mu.Unlock()
	for _, p := range paths {
		if cut := p.update(st.cfg.Link(p.from, p.to)); cut {
			p.cutAll(cutError(p.from, p.to))
		}
	}
}

// poll reloads the file whenever it changes, until ctx ends.
func (n *Network) poll(ctx context.Context, w *watcher) {
	t := time.NewTicker(n.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, changed, err := w.poll()
		switch {
		case err != nil:
			n.log.Warn("wan: cannot read config; keeping the last good one", "file", w.path, "err", err)
		case !changed:
		default:
			cfg, err := parse(data)
			if err != nil {
				n.log.Warn("wan: invalid config; keeping the last good one", "file", w.path, "err", err)
				continue
			}
			n.apply(cfg)
			n.log.Info("wan: config reloaded", "file", w.path, "links", len(cfg.Links))
		}
	}
}

// watcher notices changes of a file cheaply: it reads the file only when its
// identity, size or modification time changed, and reports a change only
// when the content differs from the last content it returned.
type watcher struct {
	path    string
	info    os.FileInfo // at the last read or failed stat
	content []byte
	failed  bool // the last poll reported an error; do not repeat it
}

// read reads the file and remembers it.
func (w *watcher) read() ([]byte, error) {
	info, err := os.Stat(w.path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, err
	}
	w.info, w.content = info, data
	return data, nil
}

// poll returns the content and true when it changed since the last call. An
// error is reported once, not at every poll while it lasts.
func (w *watcher) poll() ([]byte, bool, error) {
	info, err := os.Stat(w.path)
	if err == nil && w.info != nil && os.SameFile(info, w.info) &&
		info.Size() == w.info.Size() && info.ModTime().Equal(w.info.ModTime()) {
		return nil, false, nil
	}
	var data []byte
	if err == nil {
		data, err = os.ReadFile(w.path)
	}
	if err != nil {
		if w.failed {
			return nil, false, nil
		}
		w.failed = true
		return nil, false, err
	}
	w.failed = false
	w.info = info
	if bytes.Equal(data, w.content) {
		return nil, false, nil
	}
	w.content = data
	return data, true, nil
}

// canonicalAddr spells the loopback and unspecified hosts one way, so that a
// listener configured as ":5001" or "localhost:5001" matches a dial to
// "127.0.0.1:5001".
func canonicalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch strings.ToLower(host) {
	case "", "localhost", "127.0.0.1", "0.0.0.0", "::", "::1":
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// path is one direction of a link as seen by one Network: its current
// settings, its bandwidth budget shared by every connection on it, and, for
// the dialing direction, the connections to close on a cut.
type path struct {
	from, to string
	limiter  *rate.Limiter
	state    atomic.Pointer[linkState]

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// linkState is the settings of a path at one moment. It is immutable;
// changed is closed when a newer state replaces it, which wakes connections
// waiting on a delay computed from it.
type linkState struct {
	delay     time.Duration // one way
	rto       time.Duration // retransmission delay of a lost chunk
	bandwidth int64
	loss      float64
	cut       bool
	changed   chan struct{}
}

// zero reports whether the path adds nothing, so data can bypass the queues.
func (s *linkState) zero() bool {
	return s.delay == 0 && s.bandwidth == 0 && s.loss == 0
}

func (p *path) load() *linkState { return p.state.Load() }

// burstTime is how long a capped path may have been idle and still send
// at once what it could have sent meanwhile: a router's buffer. Without
// it, a read pump that wakes late (a loaded machine's timers run
// milliseconds late) loses what the link could have carried meanwhile,
// and a capped link delivers well below its cap.
const burstTime = 10 * time.Millisecond

// burst is the token bucket's depth of a path capped at bandwidth bytes per
// second: burstTime's worth, and one chunk at least.
func burst(bandwidth int64) int {
	return max(chunkSize, int(bandwidth*int64(burstTime)/int64(time.Second)))
}

// update installs the settings of l and reports whether the link is cut.
func (p *path) update(l Link) (cut bool) {
	rtt := l.RTT.D()
	st := &linkState{
		delay:     rtt / 2,
		rto:       max(200*time.Millisecond, 2*rtt),
		bandwidth: l.Bandwidth,
		loss:      l.Loss,
		cut:       l.Cut,
		changed:   make(chan struct{}),
	}
	old := p.state.Load()
	if old != nil && old.delay == st.delay && old.bandwidth == st.bandwidth &&
		old.loss == st.loss && old.cut == st.cut {
		return st.cut
	}
	if old == nil || old.bandwidth != st.bandwidth {
		if st.bandwidth > 0 {
			p.limiter.SetLimit(rate.Limit(st.bandwidth))
			p.limiter.SetBurst(burst(st.bandwidth))
		} else {
			p.limiter.SetLimit(rate.Inf)
		}
	}
	p.state.Store(st)
	if old != nil {
		close(old.changed)
	}
	return st.cut
}

func (p *path) add(c *conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *path) remove(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cutAll breaks every connection registered on p.
func (p *path) cutAll(err error) {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.cut(err)
	}
}

// Listener wraps ln, a listener of location at, so that every connection it
// accepts is a client of location from reaching at over their link: data
// the server writes is delayed, metered and lost on the way at → from, data
// it reads on the way from → at, and a cut closes the connection as it
// closes dialed ones. A node's data endpoint uses it: the client (docker,
// crane) does not dial through the simulated WAN, so the server applies
// the client's link on its side. Its connections are folded (see conn):
// what the server writes goes straight to the socket, with sendfile for
// files, and what it reads waits the whole round trip, so a request and
// its response cost the client what they would over a dialed connection
// while a download costs the server no copy. Unlike a dial, an accepted
// connection does not pay the handshake's round trip. A connection
// accepted while the link is cut is closed at once.
func (n *Network) Listener(ln net.Listener, from, at string) net.Listener {
	return &listener{Listener: ln, n: n, from: from, at: at}
}

type listener struct {
	net.Listener
	n        *Network
	from, at string
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		out, in := l.n.path(l.at, l.from), l.n.path(l.from, l.at)
		c := newConn(raw, out, in, true)
		out.add(c)
		if out.load().cut {
			c.Close()
			continue
		}
		return c, nil
	}
}
