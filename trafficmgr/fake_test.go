package trafficmgr

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNode is a stand-in for one regiond: the health endpoint, a manifest,
// a blob (with Range), upload sessions named after the node, and switches
// to make it fail in the ways the traffic manager must hide.
type fakeNode struct {
	t      testing.TB
	region string
	zone   int
	addr   string
	blob   []byte

	health    atomic.Int32 // status of /_georeg/health; 0 is 200
	v2Status  atomic.Int32 // when set, every /v2/ request gets this status
	cutBlobAt atomic.Int64 // when > 0, blob bodies stop after this many bytes
	absLoc    atomic.Bool  // answer upload Locations as absolute URLs
	hang      atomic.Bool  // /v2/ requests get no answer
	hits      atomic.Int64 // /v2/ requests served
	probes    atomic.Int64 // health probes answered
	leader    atomic.Bool  // health reports the node as its region's Raft leader
	unasked   atomic.Value // when a non-empty string, /v2/ requests get a 404 naming these unasked regions
	redirect  atomic.Bool  // a blob GET asking for a data endpoint gets 307 to data.<region>.<zone>.test

	mu        sync.Mutex
	srv       *http.Server
	endpoints map[string]bool
	fetched   time.Time
	uploads   []string // "METHOD id" of upload session requests
}

func newFakeNode(t testing.TB, region string, zone int, blob []byte) *fakeNode {
	n := &fakeNode{t: t, region: region, zone: zone, blob: blob, addr: "127.0.0.1:0"}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// start serves on the node's address (the same one after a stop).
func (n *fakeNode) start() {
	n.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after a stop
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		n.t.Fatalf("fake node %s/%d: %v", n.region, n.zone, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(n.serve), ErrorLog: slog.NewLogLogger(slog.DiscardHandler, 0)}
	n.mu.Lock()
	n.addr, n.srv = ln.Addr().String(), srv
	n.mu.Unlock()
	go srv.Serve(ln)
}

// stop kills the node: the listener and every connection close at once.
func (n *fakeNode) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (n *fakeNode) setEndpoints(ep map[string]bool, fetched time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.endpoints, n.fetched = ep, fetched
}

func (n *fakeNode) uploadLog() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string{}, n.uploads...)
}

func (n *fakeNode) name() string { return fmt.Sprintf("%s/%d", n.region, n.zone) }

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Georeg-Region", n.region)
	w.Header().Set("Georeg-Zone", strconv.Itoa(n.zone))
	path := r.URL.Path
	if path == HealthPath {
		n.probes.Add(1)
		n.mu.Lock()
		role := "follower"
		if n.leader.Load() {
			role = "leader"
		}
		rep := map[string]any{
			"region": n.region, "zone": n.zone, "home": "", "raftRole": role,
			"endpoints": n.endpoints, "controlFetched": n.fetched.Format(time.RFC3339Nano),
		}
		n.mu.Unlock()
		code := int(n.health.Load())
		if code == 0 {
			code = http.StatusOK
		}
		rep["ready"] = code == http.StatusOK
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(rep)
		return
	}
	if !strings.HasPrefix(path, "/v2/") {
		http.NotFound(w, r)
		return
	}
	n.hits.Add(1)
	if code := n.v2Status.Load(); code != 0 {
		if r.ContentLength != 0 {
			// As a georeg node does (zone/api): a body left unread is not
			// drained from a client that may be slow.
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(code))
		fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"from %s"}]}`, n.name())
		return
	}
	if u, _ := n.unasked.Load().(string); u != "" {
		w.Header().Set(UnaskedRegionsHeader, u)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"from %s"}]}`, n.name())
		return
	}
	switch {
	case n.hang.Load():
		// Answers nothing until the caller gives up.
		<-r.Context().Done()
	case path == "/v2/":
		w.Write([]byte("{}"))
	case strings.Contains(path, "/blobs/uploads/"):
		n.serveUpload(w, r)
	case strings.Contains(path, "/manifests/"):
		if r.Method == http.MethodPut {
			if strings.HasPrefix(path, "/v2/cutbody/") {
				// Dies having read part of the body.
				io.ReadFull(r.Body, make([]byte, 10))
				panic(http.ErrAbortHandler)
			}
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Location", path)
			w.WriteHeader(http.StatusCreated)
			return
		}
		body := []byte(`{"schemaVersion":2}`)
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", digestOf(body))
		w.Header().Set("OCI-Subject", "sha256:subject")
		w.Header().Set("Link", `</v2/demo/tags/list?n=1&last=a>; rel="next"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	case strings.Contains(path, "/blobs/") && n.redirect.Load() && r.Method == http.MethodGet && r.Header.Get(DataLocationHeader) != "":
		w.Header().Set("Location", fmt.Sprintf("http://data.%s.%d.test%s?for=%s", n.region, n.zone, path, r.Header.Get(DataLocationHeader)))
		w.Header().Set(DataRedirectHeader, "1")
		w.WriteHeader(http.StatusTemporaryRedirect)
	case strings.Contains(path, "/blobs/"):
		w.Header().Set("Docker-Content-Digest", digestOf(n.blob))
		w.Header().Set("Content-Type", "application/octet-stream")
		var out http.ResponseWriter = w
		if cut := n.cutBlobAt.Load(); cut > 0 && r.Method == http.MethodGet {
			out = &cutWriter{ResponseWriter: w, left: cut}
		}
		http.ServeContent(out, r, "", time.Time{}, bytes.NewReader(n.blob))
	default:
		http.NotFound(w, r)
	}
}

func (n *fakeNode) serveUpload(w http.ResponseWriter, r *http.Request) {
	i := strings.LastIndex(r.URL.Path, "/blobs/uploads/")
	id := r.URL.Path[i+len("/blobs/uploads/"):]
	h := sha256.New()
	io.Copy(h, r.Body)
	w.Header().Set("Test-Body-Digest", fmt.Sprintf("sha256:%x", h.Sum(nil)))
	if id == "" && r.Method == http.MethodPost {
		loc := fmt.Sprintf("%s%s.%d.%d", r.URL.Path, n.region, n.zone, time.Now().UnixNano())
		if n.absLoc.Load() {
			loc = "http://" + r.Host + loc + "?state=x"
		}
		w.Header().Set("Location", loc)
		w.Header().Set("Range", "0-0")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	n.mu.Lock()
	n.uploads = append(n.uploads, r.Method+" "+id)
	n.mu.Unlock()
	if r.Method == http.MethodPut {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.Header().Set("Location", r.URL.Path)
	w.WriteHeader(http.StatusAccepted)
}

// cutWriter lets left bytes of a body through, then kills the connection,
// as a node dying mid-download does.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, _ := c.ResponseWriter.Write(b)
	c.left -= int64(n)
	if c.left == 0 {
		http.NewResponseController(c.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	}
	return n, nil
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// wan is a fake simulated WAN: a delay per (client location, node address)
// and cut links. The delay applies to health probes only: routing measures
// it there, and the tests' proxied requests need not pay for it, so delays
// can be large enough to stand out from a loaded machine's noise.
type wan struct {
	mu    sync.Mutex
	delay map[string]time.Duration // location + " " + addr
	cut   map[string]bool
}

func newWAN() *wan { return &wan{delay: map[string]time.Duration{}, cut: map[string]bool{}} }

func (w *wan) setDelay(location string, n *fakeNode, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.delay[location+" "+n.addr] = d
}

func (w *wan) setCut(location string, n *fakeNode, cut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cut[location+" "+n.addr] = cut
}

func (w *wan) dial(ctx context.Context, location, network, addr string) (net.Conn, error) {
	w.mu.Lock()
	d, cut := w.delay[location+" "+addr], w.cut[location+" "+addr]
	w.mu.Unlock()
	if cut {
		return nil, errors.New("link cut")
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, w: w, key: location + " " + addr, d: d}, nil
}

type slowConn struct {
	net.Conn
	w   *wan
	key string
	d   time.Duration
}

func (c *slowConn) Write(b []byte) (int, error) {
	c.w.mu.Lock()
	d, cut := c.w.delay[c.key], c.w.cut[c.key]
	c.w.mu.Unlock()
	if cut {
		c.Conn.Close()
		return 0, errors.New("link cut")
	}
	if bytes.HasPrefix(b, []byte("GET "+HealthPath+" ")) {
		time.Sleep(d)
	}
	return c.Conn.Write(b)
}

// testMesh is a set of fake nodes and a Manager in front of them.
type testMesh struct {
	t      *testing.T
	nodes  map[string]*fakeNode // by "region/zone"
	wan    *wan
	m      *Manager
	client *http.Client
	blob   []byte
}

// newTestMesh starts zones nodes in each region (the first is home) and a
// Manager with one listener per location, probing every 20ms.
func newTestMesh(t *testing.T, regions []string, zones int, locations []string, tune func(*Config, *testMesh)) *testMesh {
	t.Helper()
	tm := &testMesh{t: t, nodes: map[string]*fakeNode{}, wan: newWAN(), blob: bytes.Repeat([]byte("georeg-blob-"), 100_000)}
	cfg := Config{
		Home:                regions[0],
		ProbeInterval:       Duration(20 * time.Millisecond),
		SteadyProbeInterval: Duration(20 * time.Millisecond),
		ProbeTimeout:        Duration(time.Second),
	}
	for _, r := range regions {
		rc := RegionConfig{Name: r}
		for z := 1; z <= zones; z++ {
			n := newFakeNode(t, r, z, tm.blob)
			tm.nodes[n.name()] = n
			rc.Nodes = append(rc.Nodes, NodeConfig{Zone: z, HTTP: n.addr})
		}
		cfg.Regions = append(cfg.Regions, rc)
	}
	for _, l := range locations {
		cfg.Listeners = append(cfg.Listeners, ListenerConfig{Location: l, Addr: "127.0.0.1:0"})
	}
	if tune != nil {
		tune(&cfg, tm)
	}
	m, err := New(cfg, Options{Dial: tm.wan.dial, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	tm.m = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("manager not ready after 10s")
	}
	tm.client = &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		tm.client.CloseIdleConnections()
	})
	return tm
}

func (tm *testMesh) node(name string) *fakeNode {
	n := tm.nodes[name]
	if n == nil {
		tm.t.Fatalf("no node %s", name)
	}
	return n
}

func (tm *testMesh) url(location, path string) string {
	return "http://" + tm.m.Addr(location) + path
}

// do sends a request through location's listener and returns the response
// with its body read.
func (tm *testMesh) do(location, method, path string, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, tm.url(location, path), body)
	if err != nil {
		return nil, nil, err
	}
	resp, err := tm.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// current is the location's current region.
func (tm *testMesh) current(location string) string {
	return tm.m.Status().Locations[location].Region
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter returns the value of a counter of the manager's registry whose
// label values (in label name order) are values.
func (tm *testMesh) counter(name string, values ...string) float64 {
	tm.t.Helper()
	mfs, err := tm.m.metrics.reg.Gather()
	if err != nil {
		tm.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != values[i] {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
