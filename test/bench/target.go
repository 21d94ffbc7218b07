package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/georeg/georeg/chaos"
)

// Target is a registry the benchmark can start and measure.
//
// Start starts a fresh instance with empty storage under the benchmark's work
// directory and returns once it answers GET /v2/. baseURL is
// scheme://host:port. stop ends the instance and waits for it to exit; the
// caller calls it exactly once, after which the target's files may be
// removed. Name is the short label used in tables; two targets of one
// comparison must have different names. A Target is used from one goroutine.
type Target interface {
	Name() string
	Start(ctx context.Context) (baseURL string, stop func(), err error)
}

// multiNode is an optional ability of a Target made of several nodes that
// each answer the whole API: listing every node's base URL, the first being
// the one Start returned. It is valid after Start.
type multiNode interface {
	Nodes() []string
}

// multiRegion is an optional ability of a Target of several regions:
// listing each region's node base URLs, so that the benchmark can wait
// for replication to the other regions to finish before it measures the
// next phase. It is valid after Start.
type multiRegion interface {
	Regions() [][]string
}

// authenticated is an optional ability of a Target that runs with
// authentication: wrapping the benchmark's transport so that every request
// carries the credential of the client Start created. It is valid after
// Start.
type authenticated interface {
	Transport(base http.RoundTripper) http.RoundTripper
}

// secured is an optional ability of a Target that serves HTTPS: the client
// TLS configuration that trusts its certificates. It is valid after Start.
type secured interface {
	TLSConfig() *tls.Config
}

// describer is an optional ability of a Target: saying which build and
// settings it runs, for the report. It is called after Start.
type describer interface {
	Describe(ctx context.Context) string
}

// targetEnv is what every target needs to start: where the binaries are,
// where to put its data and logs, and the limits all targets share.
type targetEnv struct {
	binDir     string // georeg binaries; third-party tools are in binDir/tools
	workDir    string // each target makes its own subdirectory
	gomaxprocs int
	georegMode string // auto, mesh or regiond
	log        *slog.Logger
}

// targetNames lists the names newTarget accepts, for flag help.
// A georeg target may name another build as NAME@DIR (binaries in DIR, for
// example a checkout of an earlier commit built there), so that one run
// compares two versions.
const targetNames = "georeg (one zone node), georeg-3zones (a region of three zone nodes), georeg-endpoint (one zone node behind the traffic manager), georeg-mesh (make run's mesh: 3 regions x 3 zones behind the traffic manager, default simulated WAN), georeg-3zones-endpoint (a region of three zone nodes behind the traffic manager), georeg-3zones-endpoint-auth (the same with authentication on, every request carrying a token as HTTP Basic), georeg-3zones-endpoint-tls (the same served over HTTPS, mesh up --tls), distribution; NAME@DIR runs a georeg target from the binaries in DIR"

// newTarget returns the target called name. To compare a new kind of
// deployment (the endpoint against a zone directly, another region size),
// add a case here and name it in -compare.
func newTarget(name string, env targetEnv) (Target, error) {
	if kind, dir, ok := strings.Cut(name, "@"); ok && strings.HasPrefix(kind, "georeg") {
		env.binDir = dir
		t, err := newTarget(kind, env)
		if m, isMesh := t.(*meshTarget); isMesh {
			m.name = name
		}
		if r, isNode := t.(*regiondTarget); isNode {
			r.name = name
		}
		return t, err
	}
	switch name {
	case "georeg":
		mode := env.georegMode
		if mode == "auto" {
			// The launcher is the way users run georeg; a bare regiond
			// is the fallback for trees where the launcher is not built.
			mode = "regiond"
			if _, err := os.Stat(filepath.Join(env.binDir, "georeg")); err == nil {
				mode = "mesh"
			}
		}
		switch mode {
		case "mesh":
			return &meshTarget{name: name, env: env, args: []string{"--regions", "westus", "--zones", "1", "--no-trafficmgr"}}, nil
		case "regiond":
			return &regiondTarget{name: name, env: env}, nil
		}
		return nil, fmt.Errorf("-georeg %q: want auto, mesh or regiond", env.georegMode)
	case "georeg-3zones":
		// Only the launcher plans the ports a region's nodes need to find
		// each other, so -georeg regiond does not apply here.
		return &meshTarget{name: name, env: env, args: []string{"--regions", "westus", "--zones", "3", "--no-trafficmgr"}}, nil
	case "georeg-endpoint":
		// The same node as "georeg", measured through the traffic manager.
		// The simulated WAN's path from clients to their own region is set
		// to zero so that the rows measure the traffic manager, not the
		// simulated 1 ms.
		return &meshTarget{name: name, env: env, endpoint: true, args: []string{"--regions", "westus", "--zones", "1"}}, nil
	case "georeg-3zones-endpoint":
		// A region of three zones through the traffic manager, with the
		// client path at zero latency like georeg-endpoint: what a client
		// of make run's region meets, without the simulated WAN.
		return &meshTarget{name: name, env: env, endpoint: true, args: []string{"--regions", "westus", "--zones", "3"}}, nil
	case "georeg-mesh":
		// make run's mesh as a user meets it: 3 regions of 3 zones behind
		// localhost's endpoint, with the default simulated WAN (the
		// client's 1 ms path to its region included).
		return &meshTarget{name: name, env: env, endpoint: true, defaultWAN: true}, nil
	case "georeg-3zones-endpoint-tls":
		// georeg-3zones-endpoint over HTTPS (mesh up --tls): what TLS
		// at the endpoint and between the traffic manager and the nodes
		// costs.
		return &meshTarget{name: name, env: env, endpoint: true, https: true, args: []string{"--regions", "westus", "--zones", "3", "--tls"}}, nil
	case "georeg-3zones-endpoint-auth":
		// georeg-3zones-endpoint with authentication on: what token
		// checks cost, with the verification cached as clients meet it
		// after their first request.
		return &meshTarget{name: name, env: env, endpoint: true, auth: true, args: []string{"--regions", "westus", "--zones", "3", "--auth"}}, nil
	case "distribution":
		return &distributionTarget{env: env}, nil
	}
	return nil, fmt.Errorf("unknown target %q (known: %s)", name, targetNames)
}

// childEnv is the environment every server process gets: the benchmark's
// own, with the shared GOMAXPROCS.
func (e targetEnv) childEnv(extra ...string) []string {
	env := append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(e.gomaxprocs))
	return append(env, extra...)
}

// binary returns the path of an executable under the bin directory, or an
// error saying how to build it.
func (e targetEnv) binary(rel, how string) (string, error) {
	p := filepath.Join(e.binDir, rel)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing: run %s", p, how)
	}
	return p, nil
}

// distributionTarget is the CNCF distribution registry with filesystem
// storage, configured close to its shipped config.yml.
type distributionTarget struct {
	env targetEnv
	pid int
}

// distributionConfig is the registry's config. The in-memory blob descriptor
// cache is on, as in the shipped config. The access log is off because it
// prints a line per request to stdout and georeg's request logging is not
// on the hot path either. Redirects only matter for cloud drivers; they are
// disabled to say so. Upload purging is a background sweep that has nothing
// to purge here.
const distributionConfig = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: georeg-bench-not-a-secret
`

// distributionSettings summarises distributionConfig and the environment for
// the report.
const distributionSettings = "filesystem storage, in-memory blob descriptor cache, access log off, OTEL_TRACES_EXPORTER=none"

func (d *distributionTarget) Name() string { return "distribution" }

func (d *distributionTarget) PIDs() []int { return []int{d.pid} }

func (d *distributionTarget) Describe(ctx context.Context) string {
	bin, err := d.env.binary("tools/registry", "`make tools`")
	if err != nil {
		return "distribution (" + distributionSettings + ")"
	}
	return versionOf(ctx, bin) + " (" + distributionSettings + ")"
}

func (d *distributionTarget) Start(ctx context.Context) (string, func(), error) {
	bin, err := d.env.binary("tools/registry", "`make tools`")
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(d.env.workDir, "distribution-")
	if err != nil {
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	cfg := filepath.Join(dir, "config.yml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, distributionConfig, data, addr), 0o644); err != nil {
		return "", nil, err
	}
	// distribution always wraps its handler in OpenTelemetry tracing; the
	// default exporter would try to reach a collector on localhost:4318 for
	// every batch of spans.
	p, err := startProcess(bin, []string{"serve", cfg}, d.env.childEnv("OTEL_TRACES_EXPORTER=none"), filepath.Join(dir, "registry.log"))
	if err != nil {
		return "", nil, err
	}
	base := "http://" + addr
	if err := waitReady(ctx, base, p.done, nil); err != nil {
		p.stop()
		return "", nil, fmt.Errorf("distribution: %w\n%s", err, tail(p.logPath, 2000))
	}
	d.pid = p.cmd.Process.Pid
	return base, p.stop, nil
}

// regiondTarget is one georeg zone node started directly, without the
// launcher.
type regiondTarget struct {
	name string
	env  targetEnv
	pid  int
}

func (r *regiondTarget) Name() string { return r.name }

func (r *regiondTarget) PIDs() []int { return []int{r.pid} }

func (r *regiondTarget) Describe(ctx context.Context) string {
	bin, err := r.env.binary("regiond", "`make build`")
	if err != nil {
		return "regiond"
	}
	return versionOf(ctx, bin) + " (bin/regiond started directly, 1 zone, filesystem storage)"
}

func (r *regiondTarget) Start(ctx context.Context) (string, func(), error) {
	bin, err := r.env.binary("regiond", "`make build`")
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(r.env.workDir, "regiond-")
	if err != nil {
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	args := []string{"--region", "westus", "--zone", "1", "--http", addr, "--data", filepath.Join(dir, "data")}
	p, err := startProcess(bin, args, r.env.childEnv(), filepath.Join(dir, "regiond.log"))
	if err != nil {
		return "", nil, err
	}
	base := "http://" + addr
	if err := waitReady(ctx, base, p.done, nil); err != nil {
		p.stop()
		return "", nil, fmt.Errorf("regiond: %w\n%s", err, tail(p.logPath, 2000))
	}
	r.pid = p.cmd.Process.Pid
	return base, p.stop, nil
}

// meshTarget is a local georeg mesh started by `georeg mesh up`, measured
// through its endpoint; Nodes lists the zone nodes of its home region.
type meshTarget struct {
	name string
	env  targetEnv
	args []string // after mesh up --dir D --port P
	// endpoint: measured through the traffic manager rather than at a
	// node; the WAN's client path gets zero latency.
	endpoint bool
	// defaultWAN: keep the mesh's default simulated WAN instead of
	// zeroing the client path.
	defaultWAN bool
	regions    [][]string // every region's node base URLs, after Start
	nodes      []string   // base URLs of the home region's zone nodes, endpoint first
	leader     string     // the Raft leader when Start returned, for a region
	dir        string     // the mesh's --dir, after Start
	// auth: the mesh runs with --auth; Start creates a token with the
	// built-in admin scope map (the benchmark also reads the nodes' state),
	// whose name and password are user and pass.
	auth       bool
	user, pass string
	// https: the mesh runs with --tls; tlsConfig trusts its CA after
	// Start.
	https     bool
	tlsConfig *tls.Config
}

// TLSConfig is the client configuration that trusts the mesh's CA, or
// nil for a plain HTTP mesh.
func (m *meshTarget) TLSConfig() *tls.Config { return m.tlsConfig }

// Transport sends the token Start created with every request (HTTP Basic,
// which georeg accepts from clients that send it).
func (m *meshTarget) Transport(base http.RoundTripper) http.RoundTripper {
	if !m.auth {
		return base
	}
	return &basicAuth{user: m.user, pass: m.pass, base: base}
}

// basicAuth adds HTTP Basic credentials to every request.
type basicAuth struct {
	user, pass string
	base       http.RoundTripper
}

func (b *basicAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.base.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the transport below.
func (b *basicAuth) CloseIdleConnections() {
	if c, ok := b.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (m *meshTarget) Name() string { return m.name }

func (m *meshTarget) Nodes() []string {
	if m.endpoint {
		// Measured through the endpoint only: spreading pulls over the
		// nodes would bypass what is measured.
		return nil
	}
	return m.nodes
}

// PIDs returns the process ids of the mesh's zone nodes, from its
// mesh.json.
func (m *meshTarget) PIDs() []int {
	mf, err := chaos.LoadMesh(m.dir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, r := range mf.Regions {
		for _, z := range r.Zones {
			if z.PID > 0 {
				pids = append(pids, z.PID)
			}
		}
	}
	return pids
}

func (m *meshTarget) Describe(ctx context.Context) string {
	v := "regiond"
	if bin, err := m.env.binary("regiond", "`make build`"); err == nil {
		v = versionOf(ctx, bin)
	}
	how := "directly at the node"
	if m.endpoint {
		how = "through the traffic manager (bin/trafficmgr) with a zero-latency simulated client path"
		if m.defaultWAN {
			how = "through the traffic manager (bin/trafficmgr) with the default simulated WAN"
		}
	}
	if len(m.nodes) > 1 && !m.endpoint {
		// Writes through a follower are forwarded to the leader, so where
		// the leader was matters for the small-image rows.
		how = fmt.Sprintf("at zone 1 of %d; Raft leader at start %s", len(m.nodes), m.leader)
	}
	return fmt.Sprintf("%s (georeg mesh up %s, %s, filesystem storage)", v, strings.Join(m.args, " "), how)
}

func (m *meshTarget) Start(ctx context.Context) (string, func(), error) {
	bin, err := m.env.binary("georeg", "`make build`")
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(m.env.workDir, "georeg-")
	if err != nil {
		return "", nil, err
	}
	m.dir = dir
	// The launcher derives the ports of the mesh's processes from the
	// endpoint port, so it needs a free block.
	port, err := freePortBlock(40)
	if err != nil {
		return "", nil, err
	}
	georeg := func(ctx context.Context, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = m.env.childEnv()
		return cmd.CombinedOutput()
	}
	down := func() {
		// Stopping must work after the benchmark's context is cancelled.
		if out, err := georeg(context.Background(), "mesh", "down", "--dir", dir); err != nil {
			m.env.log.Warn("georeg mesh down failed", "dir", dir, "err", err, "output", string(out))
		}
	}
	up := append([]string{"mesh", "up", "--dir", dir, "--port", strconv.Itoa(port)}, m.args...)
	if m.endpoint && !m.defaultWAN {
		wan := filepath.Join(dir, "zero-wan.json")
		if err := os.WriteFile(wan, []byte(`{"version":1,"links":[{"a":"westus","b":"westus","rtt":"0s"}]}`), 0o644); err != nil {
			return "", nil, err
		}
		up = append(up, "--wan", wan)
	}
	if out, err := georeg(ctx, up...); err != nil {
		down()
		return "", nil, fmt.Errorf("georeg %s: %w\n%s%s", strings.Join(up, " "), err, out, meshLogs(dir))
	}
	out, err := georeg(ctx, "mesh", "status", "--dir", dir, "--json")
	if err != nil {
		down()
		return "", nil, fmt.Errorf("georeg mesh status: %w\n%s", err, out)
	}
	var st chaos.Status
	if err := json.Unmarshal(out, &st); err != nil || st.Endpoint == "" {
		down()
		return "", nil, fmt.Errorf("georeg mesh status --json: no endpoint in %q (%v)", out, err)
	}
	scheme := "http"
	if m.https {
		scheme = "https"
		caPEM, err := os.ReadFile(filepath.Join(dir, chaos.TLSDir, "ca.crt"))
		if err != nil {
			down()
			return "", nil, fmt.Errorf("the CA of a mesh started with --tls: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		m.tlsConfig = &tls.Config{RootCAs: pool}
	}
	base := scheme + "://" + st.Endpoint
	if m.auth {
		if err := m.createToken(ctx, georeg); err != nil {
			down()
			return "", nil, err
		}
	}
	m.nodes = homeNodes(st, scheme)
	m.regions = regionNodes(st, scheme)
	if len(m.nodes) == 0 || (m.nodes[0] != base) != m.endpoint {
		down()
		return "", nil, fmt.Errorf("georeg mesh status --json: endpoint %s is not the first zone node of the home region (%v)", base, m.nodes)
	}
	for _, n := range m.nodes {
		if err := waitReady(ctx, n, nil, m.tlsConfig); err != nil {
			down()
			return "", nil, fmt.Errorf("georeg mesh: %w%s", err, meshLogs(dir))
		}
	}
	if len(m.nodes) > 1 {
		if m.leader, err = waitLeader(ctx, m.nodes, m.tlsConfig); err != nil {
			down()
			return "", nil, fmt.Errorf("georeg mesh: %w%s", err, meshLogs(dir))
		}
	}
	return base, down, nil
}

// createToken creates the benchmark client's token, trying for a while as
// the home region may still be recording the access state.
func (m *meshTarget) createToken(ctx context.Context, georeg func(context.Context, ...string) ([]byte, error)) error {
	args := []string{"token", "create", "--name", "bench-client", "--scope-map", "_repositories_admin", "--output", "json", "--dir", m.dir}
	var out []byte
	var err error
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(200 * time.Millisecond) {
		if out, err = georeg(ctx, args...); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("georeg %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	var created struct {
		Credentials struct {
			Username  string `json:"username"`
			Passwords []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"passwords"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(out, &created); err != nil || len(created.Credentials.Passwords) == 0 {
		return fmt.Errorf("georeg token create printed %q (%v)", out, err)
	}
	m.user, m.pass = created.Credentials.Username, created.Credentials.Passwords[0].Value
	return nil
}

// Regions returns every region's zone nodes when the mesh has several
// regions, for the benchmark to wait out replication between phases.
func (m *meshTarget) Regions() [][]string {
	if len(m.regions) < 2 {
		return nil
	}
	return m.regions
}

// regionNodes returns the base URLs of every region's zone nodes, a slice
// per region.
func regionNodes(st chaos.Status, scheme string) [][]string {
	var regions [][]string
	for _, r := range st.Regions {
		var nodes []string
		for _, z := range r.Zones {
			nodes = append(nodes, scheme+"://"+z.HTTP)
		}
		regions = append(regions, nodes)
	}
	return regions
}

// homeNodes returns the base URLs of the home region's zone nodes in zone
// order.
func homeNodes(st chaos.Status, scheme string) []string {
	var nodes []string
	for _, r := range st.Regions {
		if !r.Home {
			continue
		}
		zs := slices.Clone(r.Zones)
		slices.SortFunc(zs, func(a, b chaos.ZoneStatus) int { return a.Zone - b.Zone })
		for _, z := range zs {
			nodes = append(nodes, scheme+"://"+z.HTTP)
		}
	}
	return nodes
}

// waitLeader polls every node's GET /_georeg/status until all of them name
// the same Raft leader, so that no timed write pays for an election, and
// returns the leader's ID.
func waitLeader(ctx context.Context, nodes []string, tlsConfig *tls.Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsConfig}, Timeout: 2 * time.Second}
	leaderOf := func(base string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_georeg/status", nil)
		if err != nil {
			return "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var st struct {
			Raft struct {
				Leader string `json:"leader"`
			} `json:"raft"`
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s/_georeg/status: %s", base, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return "", fmt.Errorf("GET %s/_georeg/status: %w", base, err)
		}
		return st.Raft.Leader, nil
	}
	var last string
	for {
		seen := make([]string, 0, len(nodes))
		var err error
		for _, n := range nodes {
			var l string
			if l, err = leaderOf(n); err != nil {
				break
			}
			seen = append(seen, l)
		}
		switch {
		case err != nil:
			last = err.Error()
		case seen[0] != "" && len(slices.Compact(slices.Clone(seen))) == 1:
			return seen[0], nil
		default:
			last = fmt.Sprintf("the nodes name leaders %q", seen)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no Raft leader all %d nodes agree on: %s", len(nodes), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// meshLogs returns the tails of a mesh's logs, for errors.
func meshLogs(dir string) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	var b strings.Builder
	for _, l := range logs {
		fmt.Fprintf(&b, "\n---- %s ----\n%s", l, tail(l, 2000))
	}
	return b.String()
}

// process is a server the benchmark started and must stop.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
}

// startProcess starts bin with its output going to logPath.
func startProcess(bin string, args, env []string, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to exit and kills it if it has not within a few
// seconds.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitReady polls GET base/v2/ until the registry answers (200, or 401 once
// registries need auth) or exited is closed.
func waitReady(ctx context.Context, base string, exited <-chan struct{}, tlsConfig *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsConfig}, Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		select {
		case <-exited:
			return errors.New("server exited before answering")
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer GET /v2/ in time: %w", base, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freePortBlock returns the first of n consecutive loopback ports that were
// all free a moment ago.
func freePortBlock(n int) (int, error) {
	for try := range 200 {
		base := 20000 + (os.Getpid()*7919+try*131+int(time.Now().UnixNano()%9973))%30000
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no block of %d free ports", n)
}

// versionOf runs bin --version and returns its first line.
func versionOf(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return filepath.Base(bin) + " (version unknown)"
	}
	line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
	// distribution prints its own path first.
	return strings.TrimPrefix(string(line), bin+" ")
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
