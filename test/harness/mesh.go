package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/ociclient"
	"github.com/georeg/georeg/zone"
)

// Mesh is the handle every end-to-end test has on a local mesh started by
// StartMesh: its directory, endpoint and nodes (from mesh.json), the
// mesh-wide waits (leaders, gossip, health) and the georeg verbs run on it.
// Its methods that fail the test do so on the test that started the mesh.
type Mesh struct {
	t   testing.TB
	c   *ociclient.Client // for the nodes' status and health endpoints
	Dir string
	// Endpoint is host:port of the registry endpoint clients use.
	Endpoint string
	// Port is the endpoint port given to `mesh up`.
	Port int
	// Home is the home region.
	Home string
	// Regions are the region names in the launcher's order, home first.
	Regions []string
	// Locations maps each client location to the base URL of the traffic
	// manager's listener for it; empty without a traffic manager.
	Locations map[string]string
	// Nodes lists every zone node, region by region, zone 1 first.
	Nodes []Node
	// Sites are the nodes of the connected registries the mesh runs at
	// simulated sites (`mesh add-site`), by name: zone 1's; SiteZones
	// has every zone of each.
	Sites     map[string]Node
	SiteZones map[string][]Node
	// Cred is the credential clients of the mesh send: a token with the
	// built-in admin scope map, created by StartMesh when the mesh runs
	// with authentication (the default); zero when it runs without.
	Cred ociclient.Credential
	// TLS, for a mesh started with --tls, is the client configuration
	// that trusts the mesh's CA; nil for plain HTTP.
	TLS *tls.Config
}

// Node is one zone node of a Mesh: the part of its mesh.json entry
// (chaos.Node) that tests use.
type Node struct {
	Region string
	Zone   int
	// HTTP is the host:port the node serves the Distribution API on.
	HTTP string
	// Data is the node's data directory (its blobs are under
	// Data/blobs/blobs/<algorithm>/<2 hex>/<hex>).
	Data string
	// Log is the file the node's output goes to.
	Log string
	// Scheme is "https" when the node serves HTTPS, else "http".
	Scheme string
}

// String is the node as the chaos verbs spell it: "westus/1".
func (n Node) String() string { return n.Region + "/" + strconv.Itoa(n.Zone) }

// URL is the node's base URL.
func (n Node) URL() string {
	if n.Scheme == "" {
		return "http://" + n.HTTP
	}
	return n.Scheme + "://" + n.HTTP
}

// BlobFile returns the path of the node's copy of the blob with hex digest
// enc (sha256), as storage.FS lays it out.
func (n Node) BlobFile(enc string) string {
	return filepath.Join(n.Data, "blobs", "blobs", "sha256", enc[:2], enc)
}

// LogTail returns the last max bytes of the node's log.
func (n Node) LogTail(max int) string {
	b, _ := os.ReadFile(n.Log)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// AuthOff is the argument that starts a mesh without authentication:
// StartMesh otherwise passes `--auth` to `mesh up`, so end-to-end tests
// run as a production registry does, with every client presenting a token.
const AuthOff = "--auth=false"

// e2eToken is the token StartMesh creates for the mesh's clients.
const e2eToken = "e2e-tests"

// StartMesh runs `georeg mesh up` with args (for example "--regions",
// "westus", "--zones", "1") in a fresh directory and port, waits for it to
// return, reads the mesh's nodes, and registers `mesh down` as cleanup. On
// failure it prints the mesh's logs. `mesh up` returns once the first node
// sees a leader: tests that need more wait for it (WaitLeaders,
// WaitGossip, WaitHealthy).
//
// Unless args hold AuthOff (or another --auth flag), the mesh runs with
// authentication and StartMesh creates a token with the built-in
// _repositories_admin scope map; m.Cred holds it, and m.Client and
// m.Transport send it.
func StartMesh(t testing.TB, args ...string) *Mesh {
	t.Helper()
	dir := t.TempDir()
	port := freeport.Block(t, 64)
	m := &Mesh{t: t, c: ociclient.New(10 * time.Second), Dir: dir, Port: port}
	auth := !slices.ContainsFunc(args, func(a string) bool { return a == "--auth" || strings.HasPrefix(a, "--auth=") })
	full := append([]string{"mesh", "up", "--dir", dir, "--port", strconv.Itoa(port)}, args...)
	if auth {
		full = append(full, "--auth")
	}
	if out, err := m.Georeg(context.Background(), full...); err != nil {
		m.dumpLogs()
		t.Fatalf("harness: georeg %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			m.dumpLogs()
		}
		if out, err := m.Georeg(context.Background(), "mesh", "down", "--dir", dir); err != nil {
			t.Errorf("harness: mesh down: %v\n%s", err, out)
		}
	})
	m.Reload()
	if m.TLS != nil {
		m.c.HTTP.Transport = m.Transport(m.c.HTTP.Transport)
	}
	if auth || slices.Contains(args, "--auth") {
		m.Cred = m.CreateToken(t, e2eToken, "--scope-map", "_repositories_admin")
		m.c = m.Client(10 * time.Second)
	}
	return m
}

// CreateToken runs `georeg token create --name NAME ARGS...` on the mesh and
// returns the token's name and password1. The home region may still be
// electing its leader or recording the access state when the mesh has just
// come up, so it tries for up to 30 s unless the input is refused.
func (m *Mesh) CreateToken(t testing.TB, name string, args ...string) ociclient.Credential {
	t.Helper()
	full := append([]string{"token", "create", "--name", name, "--output", "json"}, args...)
	var out string
	var err error
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(200 * time.Millisecond) {
		if out, err = m.Run(context.Background(), full...); err == nil || strings.Contains(out, "invalid") {
			break
		}
	}
	if err != nil {
		t.Fatalf("harness: georeg %s: %v\n%s", strings.Join(full, " "), err, out)
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
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("harness: token create output: %v\n%s", err, out)
	}
	for _, p := range created.Credentials.Passwords {
		if p.Name == "password1" {
			return ociclient.Credential{User: created.Credentials.Username, Password: p.Value}
		}
	}
	t.Fatalf("harness: token create printed no password1:\n%s", out)
	return ociclient.Credential{}
}

// Client returns an OCI client whose requests carry the mesh's credential
// (and trust its CA, for a mesh started with --tls) and give up after
// timeout.
func (m *Mesh) Client(timeout time.Duration) *ociclient.Client {
	c := ociclient.New(timeout)
	c.HTTP.Transport = m.Transport(c.HTTP.Transport)
	return c
}

// Transport returns base (a fresh transport when nil) sending the mesh's
// credential with every request and, for a mesh started with --tls,
// trusting its CA, for tests that build their own http.Client. base is
// changed in place when it is an *http.Transport.
func (m *Mesh) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	}
	if t, ok := base.(*http.Transport); ok && m.TLS != nil {
		t.TLSClientConfig = m.TLS.Clone()
	}
	return m.Cred.Transport(base)
}

// Reload reads the mesh's endpoint, regions, locations and nodes again from
// mesh.json, as after the launcher added a region.
func (m *Mesh) Reload() {
	m.t.Helper()
	mf, err := chaos.LoadMesh(m.Dir)
	if err != nil {
		m.t.Fatalf("harness: %v", err)
	}
	m.Endpoint, m.Home = mf.Endpoint, mf.Home
	scheme := "http"
	if mf.HTTPS {
		scheme = "https"
		caPEM, err := os.ReadFile(filepath.Join(m.Dir, chaos.TLSDir, "ca.crt"))
		if err != nil {
			m.t.Fatalf("harness: the CA of a mesh started with --tls: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			m.t.Fatalf("harness: %s holds no certificate", filepath.Join(m.Dir, chaos.TLSDir, "ca.crt"))
		}
		m.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	m.Regions, m.Nodes, m.Locations, m.Sites, m.SiteZones = nil, nil, map[string]string{}, map[string]Node{}, map[string][]Node{}
	for _, s := range mf.Sites {
		for _, z := range s.Zones {
			m.SiteZones[s.Name] = append(m.SiteZones[s.Name], Node{Region: z.Region, Zone: z.Zone, HTTP: z.HTTP, Data: z.Data, Log: z.Log})
		}
		if len(s.Zones) > 0 {
			m.Sites[s.Name] = m.SiteZones[s.Name][0]
		}
	}
	for _, l := range mf.Locations {
		if _, site := m.Sites[l.Name]; site {
			// A site's location is the traffic manager's listener its
			// node reaches the cloud through, not a region's.
			continue
		}
		m.Locations[l.Name] = scheme + "://" + l.Addr
	}
	for _, r := range mf.Regions {
		m.Regions = append(m.Regions, r.Name)
		for _, z := range r.Zones {
			m.Nodes = append(m.Nodes, Node{Region: z.Region, Zone: z.Zone, HTTP: z.HTTP, Data: z.Data, Log: z.Log, Scheme: z.Scheme})
		}
	}
}

// Georeg runs bin/georeg with args and returns its combined output.
func (m *Mesh) Georeg(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin(m.t, "georeg"), args...)
	return cmd.CombinedOutput()
}

// Run runs bin/georeg with args and --dir, and returns its combined
// output, trimmed.
func (m *Mesh) Run(ctx context.Context, args ...string) (string, error) {
	out, err := m.Georeg(ctx, append(slices.Clone(args), "--dir", m.Dir)...)
	return strings.TrimSpace(string(out)), err
}

// MustRun is Run that fails t, with the command's output, when the
// command fails.
func (m *Mesh) MustRun(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := m.Run(ctx, args...)
	if err != nil {
		t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Chaos runs `georeg chaos VERB TARGET` on the mesh and fails t if it
// fails.
func (m *Mesh) Chaos(t testing.TB, ctx context.Context, verb, target string) {
	t.Helper()
	out, err := m.Georeg(ctx, "chaos", verb, target, "--dir", m.Dir)
	if err != nil {
		t.Fatalf("georeg chaos %s %s: %v\n%s", verb, target, err, out)
	}
}

// Restart runs `georeg chaos restart TARGET`. A node killed a moment ago
// may still hold its port while the kernel tears the process down; restart
// then answers "port in use", and is tried again for a few seconds.
func (m *Mesh) Restart(t testing.TB, ctx context.Context, target string) {
	t.Helper()
	start := time.Now()
	for tries := 1; ; tries++ {
		out, err := m.Georeg(ctx, "chaos", "restart", target, "--dir", m.Dir)
		if err == nil {
			if tries > 1 {
				t.Logf("chaos restart %s: succeeded on try %d, %v after the first (port still in use after kill-zone returned)", target, tries, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if !strings.Contains(string(out), "port in use") || time.Since(start) > 10*time.Second {
			t.Fatalf("georeg chaos restart %s: %v\n%s", target, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Status runs `georeg mesh status --json` and decodes it.
func (m *Mesh) Status() chaos.Status {
	m.t.Helper()
	out, err := m.Georeg(context.Background(), "mesh", "status", "--dir", m.Dir, "--json")
	if err != nil {
		m.t.Fatalf("harness: mesh status: %v\n%s", err, out)
	}
	var st chaos.Status
	if err := json.Unmarshal(out, &st); err != nil {
		m.t.Fatalf("harness: mesh status output: %v\n%s", err, out)
	}
	return st
}

// URL returns the base URL of the mesh endpoint, for example
// "http://127.0.0.1:5000" (https for a mesh started with --tls).
func (m *Mesh) URL() string {
	if m.TLS != nil {
		return "https://" + m.Endpoint
	}
	return "http://" + m.Endpoint
}

// RegionNodes returns the nodes of region r, or of site r (a site is a
// region of its own).
func (m *Mesh) RegionNodes(r string) []Node {
	if zs, ok := m.SiteZones[r]; ok {
		return zs
	}
	var out []Node
	for _, n := range m.Nodes {
		if n.Region == r {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node named "region/zone".
func (m *Mesh) Node(name string) (Node, bool) {
	for _, n := range m.Nodes {
		if n.String() == name {
			return n, true
		}
	}
	return Node{}, false
}

// LocationNames returns the client locations in region order.
func (m *Mesh) LocationNames() []string {
	var out []string
	for _, r := range m.Regions {
		if _, ok := m.Locations[r]; ok {
			out = append(out, r)
		}
	}
	return out
}

// NodeStatus reads node n's GET /_georeg/status, waiting at most 3 s: a
// node that does not answer by then is as good as down to the waits below.
func (m *Mesh) NodeStatus(ctx context.Context, n Node) (zone.Status, error) {
	var st zone.Status
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, body, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/status", nil, nil, http.StatusOK)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(body, &st)
}

// Leader waits until exactly one node of region r that answers reports
// itself Raft leader and returns it.
func (m *Mesh) Leader(ctx context.Context, r string, timeout time.Duration) (Node, error) {
	var found Node
	err := ociclient.Poll(ctx, timeout, 100*time.Millisecond, func() (bool, error) {
		var leaders []Node
		for _, n := range m.RegionNodes(r) {
			if st, err := m.NodeStatus(ctx, n); err == nil && st.Raft.State == "Leader" {
				leaders = append(leaders, n)
			}
		}
		if len(leaders) != 1 {
			return false, fmt.Errorf("region %s has leaders %v", r, leaders)
		}
		found = leaders[0]
		return true, nil
	})
	return found, err
}

// WaitLeaders waits until every region has one Raft leader.
func (m *Mesh) WaitLeaders(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, r := range m.Regions {
		if _, err := m.Leader(ctx, r, time.Until(deadline)); err != nil {
			return err
		}
	}
	return nil
}

// WaitGossip waits until every node's gossip sees every node. With
// health, every node must also answer GET /_georeg/health.
func (m *Mesh) WaitGossip(ctx context.Context, timeout time.Duration, health bool) error {
	return ociclient.Poll(ctx, timeout, 100*time.Millisecond, func() (bool, error) {
		for _, n := range m.Nodes {
			if health {
				if _, _, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/health", nil, nil, http.StatusOK); err != nil {
					return false, fmt.Errorf("%s: %w", n, err)
				}
			}
			st, err := m.NodeStatus(ctx, n)
			if err != nil {
				return false, fmt.Errorf("%s: %w", n, err)
			}
			if len(st.Members) != len(m.Nodes) {
				return false, fmt.Errorf("%s sees members %v", n, st.Members)
			}
		}
		return true, nil
	})
}

// WaitHealthy waits until every region has one Raft leader, every node
// answers /_georeg/health and its gossip sees every node, and every
// location is served by its own region.
func (m *Mesh) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := m.WaitLeaders(ctx, timeout); err != nil {
		return err
	}
	if err := m.WaitGossip(ctx, time.Until(deadline), true); err != nil {
		return err
	}
	return ociclient.Poll(ctx, time.Until(deadline), 50*time.Millisecond, func() (bool, error) {
		for loc, base := range m.Locations {
			resp, _, err := m.c.Do(ctx, http.MethodGet, base, "/v2/", nil, nil, http.StatusOK)
			if err != nil {
				return false, fmt.Errorf("location %s: %w", loc, err)
			}
			if got := resp.Header.Get("Georeg-Region"); got != loc {
				return false, fmt.Errorf("location %s is served by %q", loc, got)
			}
		}
		return true, nil
	})
}

func (m *Mesh) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(m.Dir, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		m.t.Logf("---- %s (tail) ----\n%s", l, b)
	}
}
