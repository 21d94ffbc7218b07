package trafficmgr

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

const manifestPath = "/v2/demo/manifests/1"

var blobPath = "/v2/demo/blobs/" + digestOf(bytes.Repeat([]byte("georeg-blob-"), 100_000))

func TestRoutesEachLocationToNearestRegion(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 2, []string{"westus", "eastus"}, func(c *Config, tm *testMesh) {
		for _, z := range []string{"1", "2"} {
			tm.wan.setDelay("westus", tm.node("eastus/"+z), 50*time.Millisecond)
			tm.wan.setDelay("eastus", tm.node("westus/"+z), 50*time.Millisecond)
		}
	})
	waitFor(t, "each location routed to its own region", func() bool {
		return tm.current("westus") == "westus" && tm.current("eastus") == "eastus"
	})
	for _, loc := range []string{"westus", "eastus"} {
		zones := map[string]bool{}
		for range 4 {
			resp, body, err := tm.do(loc, http.MethodGet, manifestPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || string(body) != `{"schemaVersion":2}` {
				t.Fatalf("%s: GET manifest = %d %q", loc, resp.StatusCode, body)
			}
			if got := resp.Header.Get("Georeg-Region"); got != loc {
				t.Errorf("%s: served by region %s, want %s", loc, got, loc)
			}
			zones[resp.Header.Get("Georeg-Zone")] = true
			for k, want := range map[string]string{
				LocationHeader:          loc,
				"Docker-Content-Digest": digestOf(body),
				"OCI-Subject":           "sha256:subject",
				"Link":                  `</v2/demo/tags/list?n=1&last=a>; rel="next"`,
				"Content-Type":          "application/vnd.oci.image.manifest.v1+json",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: header %s = %q, want %q", loc, k, got, want)
				}
			}
		}
		if len(zones) != 2 {
			t.Errorf("%s: requests went to zones %v, want round-robin over both", loc, zones)
		}
	}

	// westus gets slower than eastus from westus: a latency reroute.
	for _, z := range []string{"1", "2"} {
		tm.wan.setDelay("westus", tm.node("westus/"+z), 150*time.Millisecond)
	}
	waitFor(t, "westus rerouted to eastus", func() bool { return tm.current("westus") == "eastus" })
	st := tm.m.Status().Locations["westus"]
	if st.Reroutes != 1 || st.Failovers != 0 || st.LastChange == nil || st.LastChange.Reason != ReasonLatency {
		t.Errorf("status after the reroute: %+v (last change %+v)", st, st.LastChange)
	}
	if got := tm.m.Status().Locations["eastus"]; got.Region != "eastus" || got.Reroutes != 0 {
		t.Errorf("eastus location moved: %+v", got)
	}
}

func TestCutLinkFailsOverOneLocation(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 1, []string{"westus", "eastus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
		tm.wan.setDelay("eastus", tm.node("westus/1"), 50*time.Millisecond)
	})
	waitFor(t, "initial routes", func() bool {
		return tm.current("westus") == "westus" && tm.current("eastus") == "eastus"
	})
	tm.wan.setCut("eastus", tm.node("eastus/1"), true)
	waitFor(t, "eastus location failed over", func() bool { return tm.current("eastus") == "westus" })
	for range 5 {
		resp, _, err := tm.do("eastus", http.MethodGet, manifestPath, nil)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Georeg-Region") != "westus" {
			t.Fatalf("GET from eastus during the cut: %v %v", resp, err)
		}
	}
	st := tm.m.Status()
	if st.Locations["westus"].Region != "westus" || !st.Regions["eastus"].Nodes[0].Healthy["westus"] ||
		st.Regions["eastus"].Nodes[0].Healthy["eastus"] {
		t.Errorf("the cut must only affect location eastus: %+v", st)
	}
	if st.Regions["eastus"].Nodes[0].LastError == "" {
		t.Error("the unreachable node has no lastError")
	}
	tm.wan.setCut("eastus", tm.node("eastus/1"), false)
	waitFor(t, "eastus location failed back", func() bool { return tm.current("eastus") == "eastus" })
	ls := tm.m.Status().Locations["eastus"]
	if ls.Failovers != 1 || ls.Failbacks != 1 || ls.LastChange.Reason != ReasonFailback || ls.LastChange.From != "westus" {
		t.Errorf("eastus location after the cut healed: %+v (last change %+v)", ls, ls.LastChange)
	}
}

func TestFailoverWithoutFailedGets(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 2, []string{"westus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
		tm.wan.setDelay("westus", tm.node("eastus/2"), 50*time.Millisecond)
	})
	waitFor(t, "route to westus", func() bool { return tm.current("westus") == "westus" })
	regions := map[string]int{}
	for i := range 160 {
		switch i {
		case 30:
			tm.node("westus/1").stop()
		case 60:
			tm.node("westus/2").stop()
		}
		path := manifestPath
		if i%8 == 0 {
			path = blobPath
		}
		resp, body, err := tm.do("westus", http.MethodGet, path, nil)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %d: %d %s", i, resp.StatusCode, body)
		}
		if path == blobPath && !bytes.Equal(body, tm.blob) {
			t.Fatalf("GET %d: wrong blob bytes (%d bytes)", i, len(body))
		}
		regions[resp.Header.Get("Georeg-Region")]++
	}
	if regions["westus"] == 0 || regions["eastus"] < 100 {
		t.Errorf("GETs by region: %v", regions)
	}
	waitFor(t, "failover to eastus", func() bool { return tm.current("westus") == "eastus" })
	if ls := tm.m.Status().Locations["westus"]; ls.Failovers != 1 || ls.LastChange.Reason != ReasonFailover {
		t.Errorf("after failover: %+v (last change %+v)", ls, ls.LastChange)
	}

	tm.node("westus/1").start()
	waitFor(t, "failback to westus", func() bool { return tm.current("westus") == "westus" })
	ls := tm.m.Status().Locations["westus"]
	if ls.Failbacks != 1 || ls.LastChange.Reason != ReasonFailback || ls.LastChange.From != "eastus" {
		t.Errorf("after failback: %+v (last change %+v)", ls, ls.LastChange)
	}
	resp, _, err := tm.do("westus", http.MethodGet, manifestPath, nil)
	if err != nil || resp.Header.Get("Georeg-Region") != "westus" || resp.Header.Get("Georeg-Zone") != "1" {
		t.Fatalf("GET after failback: %v %v", resp, err)
	}
	if got := tm.counter("georeg_trafficmgr_route_changes_total", "westus", ReasonFailback); got != 1 {
		t.Errorf("failback metric = %v", got)
	}
}

func TestGetRetriedOnUnavailable(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 1, []string{"westus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
	})
	waitFor(t, "route to westus", func() bool { return tm.current("westus") == "westus" })
	west, east := tm.node("westus/1"), tm.node("eastus/1")
	west.v2Status.Store(http.StatusServiceUnavailable)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, _, err := tm.do("westus", method, manifestPath, nil)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Georeg-Region") != "eastus" {
			t.Fatalf("%s with westus answering 503: %v %v", method, resp, err)
		}
		if method == http.MethodHead && resp.ContentLength != int64(len(`{"schemaVersion":2}`)) {
			t.Errorf("HEAD Content-Length = %d", resp.ContentLength)
		}
	}
	if got := tm.counter("georeg_trafficmgr_retries_total", "westus"); got != 2 {
		t.Errorf("retries = %v, want 2", got)
	}

	// A write is not retried: the node's answer is the client's.
	resp, body, err := tm.do("westus", http.MethodPut, manifestPath, strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "from westus/1") {
		t.Fatalf("PUT with westus answering 503: %v %s %v", resp, body, err)
	}

	// Every region unavailable: the client gets a real node's answer.
	east.v2Status.Store(http.StatusServiceUnavailable)
	resp, body, err = tm.do("westus", http.MethodGet, manifestPath, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"UNAVAILABLE"`) {
		t.Fatalf("GET with every region answering 503: %v %s %v", resp, body, err)
	}
}

// TestIncompleteNotFoundAsksAnotherRegion checks that a 404 speaking only
// for the regions a node could ask sends a GET or HEAD on to another
// region, and that it stands when no other region knows better.
func TestIncompleteNotFoundAsksAnotherRegion(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 2, []string{"westus"}, func(c *Config, tm *testMesh) {
		for _, z := range []string{"1", "2"} {
			tm.wan.setDelay("westus", tm.node("eastus/"+z), 50*time.Millisecond)
		}
	})
	waitFor(t, "route to westus", func() bool { return tm.current("westus") == "westus" })
	for _, z := range []string{"1", "2"} {
		tm.node("westus/" + z).unasked.Store("eastus")
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, _, err := tm.do("westus", method, manifestPath, nil)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Georeg-Region") != "eastus" {
			t.Fatalf("%s with westus not reaching eastus: %v %v", method, resp, err)
		}
	}
	// One westus node answered each request; the other was not asked the
	// same question again.
	if hits := tm.node("westus/1").hits.Load() + tm.node("westus/2").hits.Load(); hits != 2 {
		t.Errorf("westus nodes asked %d times for 2 requests", hits)
	}

	// eastus unavailable: the westus 404 is the best answer there is.
	for _, z := range []string{"1", "2"} {
		tm.node("eastus/" + z).v2Status.Store(http.StatusServiceUnavailable)
	}
	resp, body, err := tm.do("westus", http.MethodGet, manifestPath, nil)
	if err != nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "MANIFEST_UNKNOWN") {
		t.Fatalf("GET with eastus answering 503: %v %s %v", resp, body, err)
	}

	// A write is never sent on.
	resp, _, err = tm.do("westus", http.MethodPut, manifestPath, strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusNotFound || resp.Header.Get("Georeg-Region") != "westus" {
		t.Fatalf("PUT: %v %v", resp, err)
	}
}

// TestMetadataGoesToLeader checks that manifest, tag, referrer and catalog
// requests go to the region's Raft leader first, and blob reads stay spread
// over the zones.
func TestMetadataGoesToLeader(t *testing.T) {
	tm := newTestMesh(t, []string{"westus"}, 3, []string{"westus"}, nil)
	tm.node("westus/2").leader.Store(true)
	waitFor(t, "the leader reported", func() bool {
		tm.m.mu.Lock()
		defer tm.m.mu.Unlock()
		for n, h := range tm.m.locs[0].health {
			if n.zone == 2 && h.report != nil && h.report.RaftRole == "leader" {
				return true
			}
		}
		return false
	})
	for _, path := range []string{manifestPath, "/v2/demo/tags/list", "/v2/_catalog", "/v2/demo/referrers/sha256:" + strings.Repeat("a", 64)} {
		for range 6 {
			resp, _, err := tm.do("westus", http.MethodGet, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("Georeg-Zone"); got != "2" {
				t.Errorf("GET %s served by zone %s, want the leader (2)", path, got)
			}
		}
	}
	zones := map[string]bool{}
	for range 6 {
		resp, _, err := tm.do("westus", http.MethodHead, blobPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		zones[resp.Header.Get("Georeg-Zone")] = true
	}
	if len(zones) != 3 {
		t.Errorf("blob HEADs went to zones %v, want all three", zones)
	}
}

func TestBlobResumedAfterCut(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 1, []string{"westus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
	})
	waitFor(t, "route to westus", func() bool { return tm.current("westus") == "westus" })
	tm.node("westus/1").cutBlobAt.Store(500_000)

	resp, body, err := tm.do("westus", http.MethodGet, blobPath, nil)
	if err != nil {
		t.Fatalf("GET blob cut mid-stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, tm.blob) {
		t.Fatalf("GET blob: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal(body, tm.blob))
	}
	if resp.Header.Get("Georeg-Region") != "westus" || resp.Header.Get("Docker-Content-Digest") != digestOf(tm.blob) {
		t.Errorf("headers are not the first node's: %v", resp.Header)
	}

	// A client's own range is resumed within its bounds.
	req, _ := http.NewRequest(http.MethodGet, tm.url("westus", blobPath), nil)
	req.Header.Set("Range", "bytes=100000-899999")
	resp, err = tm.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, tm.blob[100000:900000]) {
		t.Fatalf("ranged GET cut mid-stream: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	if got := tm.counter("georeg_trafficmgr_resumes_total", "westus", "resumed"); got != 2 {
		t.Errorf("resumes = %v, want 2", got)
	}

	// Nobody can finish it: the client must see a failure, not a short blob.
	tm.node("eastus/1").cutBlobAt.Store(200_000)
	_, body, err = tm.do("westus", http.MethodGet, blobPath, nil)
	if err == nil {
		t.Fatalf("GET blob no node can finish succeeded with %d bytes", len(body))
	}
	if !bytes.Equal(body, tm.blob[:len(body)]) {
		t.Error("the bytes sent before the abort are wrong")
	}
	if got := tm.counter("georeg_trafficmgr_resumes_total", "westus", "aborted"); got != 1 {
		t.Errorf("aborted resumes = %v, want 1", got)
	}
}

func TestUploadSessionsPinned(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 2, []string{"westus"}, nil)
	waitFor(t, "route to a region", func() bool { return tm.current("westus") != "" })

	resp, _, err := tm.do("westus", http.MethodPost, "/v2/demo/blobs/uploads/", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %v %v", resp, err)
	}
	loc := resp.Header.Get("Location")
	wantPrefix := fmt.Sprintf("/v2/demo/blobs/uploads/%s.%s.", resp.Header.Get("Georeg-Region"), resp.Header.Get("Georeg-Zone"))
	if !strings.HasPrefix(loc, wantPrefix) {
		t.Errorf("Location %q, want prefix %q", loc, wantPrefix)
	}

	// Whatever the route, a session's requests reach the node named in it.
	chunk := bytes.Repeat([]byte("layer"), 600_000)
	for _, node := range []string{"eastus/2", "westus/1", "eastus/1"} {
		n := tm.node(node)
		id := strings.ReplaceAll(node, "/", ".") + ".0f3c"
		resp, _, err := tm.do("westus", http.MethodPatch, "/v2/demo/blobs/uploads/"+id, bytes.NewReader(chunk))
		if err != nil || resp.StatusCode != http.StatusAccepted || resp.Header.Get("Georeg-Region")+"/"+resp.Header.Get("Georeg-Zone") != node {
			t.Fatalf("PATCH %s: %v %v", id, resp, err)
		}
		if got := resp.Header.Get("Test-Body-Digest"); got != digestOf(chunk) {
			t.Errorf("PATCH %s: the node received other bytes (%s)", id, got)
		}
		resp, _, err = tm.do("westus", http.MethodPut, "/v2/demo/blobs/uploads/"+id+"?digest=sha256:x", nil)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %v %v", id, resp, err)
		}
		if got := n.uploadLog(); !slices.Equal(got, []string{"PATCH " + id, "PUT " + id}) {
			t.Errorf("node %s saw %q", node, got)
		}
	}

	// An absolute Location is made relative so the client stays on the endpoint.
	for _, n := range tm.nodes {
		n.absLoc.Store(true)
	}
	resp, _, err = tm.do("westus", http.MethodPost, "/v2/demo/blobs/uploads/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/v2/demo/blobs/uploads/") || !strings.HasSuffix(loc, "?state=x") {
		t.Errorf("absolute Location not made relative: %q", loc)
	}

	// The session's node is gone: the client is told to start over.
	tm.node("eastus/2").stop()
	resp, body, err := tm.do("westus", http.MethodPatch, "/v2/demo/blobs/uploads/eastus.2.dead", strings.NewReader("data"))
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("PATCH to a dead node's session: %v %v", resp, err)
	}
	var env struct {
		Errors []struct{ Code, Message, Detail string }
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Code != "BLOB_UPLOAD_UNKNOWN" ||
		!strings.Contains(env.Errors[0].Detail, "eastus/2") {
		t.Errorf("error body %s (%v)", body, err)
	}

	// Ids that name no node are routed like any request.
	for _, id := range []string{"0f3c-uuid", "mars.1.x", "eastus.9.x", "eastus.one.x"} {
		resp, _, err := tm.do("westus", http.MethodGet, "/v2/demo/blobs/uploads/"+id, nil)
		if err != nil || resp.StatusCode != http.StatusAccepted || resp.Header.Get("Georeg-Region") != tm.current("westus") {
			t.Errorf("GET upload %s: %v %v", id, resp, err)
		}
	}
}

func TestDisabledRegionGetsNoTraffic(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 1, []string{"westus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
	})
	west, east := tm.node("westus/1"), tm.node("eastus/1")
	waitFor(t, "route to westus", func() bool { return tm.current("westus") == "westus" })

	// The home region (westus) disables itself; eastus's copy is fresher but
	// stale: the home region's view wins.
	now := time.Now()
	west.setEndpoints(map[string]bool{"westus": false, "eastus": true}, now)
	east.setEndpoints(map[string]bool{"westus": true}, now.Add(time.Minute))
	waitFor(t, "westus disabled", func() bool { return tm.current("westus") == "eastus" })
	hits := west.hits.Load()
	for range 20 {
		resp, _, err := tm.do("westus", http.MethodGet, manifestPath, nil)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Georeg-Region") != "eastus" {
			t.Fatalf("GET with westus disabled: %v %v", resp, err)
		}
	}
	if got := west.hits.Load() - hits; got != 0 {
		t.Errorf("disabled region served %d requests", got)
	}
	st := tm.m.Status()
	if st.Regions["westus"].Enabled || !st.Regions["eastus"].Enabled || slices.Contains(st.Locations["westus"].Order, "westus") {
		t.Errorf("status with westus disabled: %+v", st)
	}
	if ls := st.Locations["westus"]; ls.Failovers != 1 || ls.LastChange.Reason != ReasonFailover {
		t.Errorf("disabling the current region is a failover: %+v", ls)
	}

	west.setEndpoints(map[string]bool{"westus": true, "eastus": true}, time.Now())
	waitFor(t, "westus re-enabled", func() bool { return tm.current("westus") == "westus" })
	if ls := tm.m.Status().Locations["westus"]; ls.Failbacks != 1 || ls.LastChange.Reason != ReasonFailback {
		t.Errorf("re-enabling is a failback: %+v", ls)
	}

	// Every region disabled: nothing is routed anywhere.
	west.setEndpoints(map[string]bool{"westus": false, "eastus": false}, time.Now())
	waitFor(t, "every region disabled", func() bool { return len(tm.m.Status().Locations["westus"].Order) == 0 })
	resp, body, err := tm.do("westus", http.MethodGet, manifestPath, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "UNAVAILABLE") {
		t.Errorf("GET with every region disabled: %v %s %v", resp, body, err)
	}
}

func TestEndpointFlagsView(t *testing.T) {
	tm := newTestMesh(t, []string{"home", "a", "b"}, 1, []string{"x"}, nil)
	home, a, b := tm.node("home/1"), tm.node("a/1"), tm.node("b/1")
	now := time.Now()
	home.setEndpoints(map[string]bool{"b": false}, now.Add(-time.Hour))
	a.setEndpoints(map[string]bool{"a": false}, now)
	b.setEndpoints(map[string]bool{}, now.Add(-time.Minute))
	enabled := func(r string) bool { return tm.m.Status().Regions[r].Enabled }
	waitFor(t, "the home region's view", func() bool { return !enabled("b") && enabled("a") })

	// Home down: the freshest copy wins.
	home.health.Store(http.StatusServiceUnavailable)
	waitFor(t, "the freshest view", func() bool { return !enabled("a") && enabled("b") })
}

func TestWriteRetriedOnlyBeforeSending(t *testing.T) {
	tm := newTestMesh(t, []string{"westus"}, 2, []string{"westus"}, func(c *Config, tm *testMesh) {
		// Probe once: the dead node is found by the request itself.
		c.ProbeInterval, c.SteadyProbeInterval = Duration(time.Hour), Duration(time.Hour)
	})
	tm.node("westus/1").stop()
	tm.node("westus/2").stop()
	tm.node("westus/2").start()
	manifest := bytes.Repeat([]byte("m"), 100_000)
	for range 2 {
		// Round-robin tries westus/1 on one of the two: it cannot connect,
		// so the PUT moves to westus/2.
		resp, body, err := tm.do("westus", http.MethodPut, manifestPath, bytes.NewReader(manifest))
		if err != nil || resp.StatusCode != http.StatusCreated || resp.Header.Get("Georeg-Zone") != "2" {
			t.Fatalf("PUT with a dead node: %v %s %v", resp, body, err)
		}
	}
	n := tm.m.Status().Regions["westus"].Nodes[0]
	if n.Healthy["westus"] || !strings.HasPrefix(n.LastError, "westus: proxy:") {
		t.Errorf("the dead node is not marked down by the failed request: %+v", n)
	}

	// The node dies having read part of the body: no retry, a clear error.
	hits := tm.node("westus/2").hits.Load()
	resp, body, err := tm.do("westus", http.MethodPut, "/v2/cutbody/manifests/1", bytes.NewReader(manifest))
	if err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"UNAVAILABLE"`) {
		t.Fatalf("PUT cut mid-body: %v %s %v", resp, body, err)
	}
	if got := tm.node("westus/2").hits.Load() - hits; got != 1 {
		t.Errorf("the PUT reached westus/2 %d times, want once", got)
	}
}

func TestMetricsAndStatus(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 1, []string{"westus", "eastus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
		tm.wan.setDelay("eastus", tm.node("westus/1"), 50*time.Millisecond)
	})
	waitFor(t, "routes", func() bool { return tm.current("westus") == "westus" && tm.current("eastus") == "eastus" })
	if resp, _, err := tm.do("westus", http.MethodGet, manifestPath, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatal(resp, err)
	}

	for _, loc := range []string{"westus", "eastus"} {
		resp, body, err := tm.do(loc, http.MethodGet, "/metrics", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /metrics: %v %v", loc, resp, err)
		}
		for _, want := range []string{
			`georeg_trafficmgr_requests_total{code="2xx",location="westus",method="GET",region="westus"} 1`,
			`georeg_trafficmgr_route{location="eastus",region="eastus"} 1`,
			`georeg_trafficmgr_route{location="eastus",region="westus"} 0`,
			`georeg_trafficmgr_node_healthy{location="westus",region="eastus",zone="1"} 1`,
			`georeg_trafficmgr_region_healthy{location="westus",region="westus"} 1`,
			`georeg_trafficmgr_region_latency_seconds{location="westus",region="eastus"}`,
			`go_goroutines`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("%s /metrics lacks %s", loc, want)
			}
		}

		resp, body, err = tm.do(loc, http.MethodGet, StatusPath, nil)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get(LocationHeader) != loc {
			t.Fatalf("%s status: %v %v", loc, resp, err)
		}
		var st Status
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, body)
		}
		ls := st.Locations["westus"]
		if st.Home != "westus" || ls.Listen != tm.m.Addr("westus") || ls.Region != "westus" ||
			!slices.Equal(ls.Order, []string{"westus", "eastus"}) || ls.LatencyMs["eastus"] < 5 ||
			ls.LastChange == nil || ls.LastChange.Reason != ReasonInitial {
			t.Errorf("status of location westus: %+v", ls)
		}
		n := st.Regions["eastus"].Nodes[0]
		if !st.Regions["eastus"].Enabled || n.Zone != 1 || n.HTTP != tm.node("eastus/1").addr || !n.Healthy["westus"] || !n.Healthy["eastus"] {
			t.Errorf("status of region eastus: %+v", st.Regions["eastus"])
		}
	}
}

func TestPayloadsStreamExactly(t *testing.T) {
	tm := newTestMesh(t, []string{"westus"}, 1, []string{"westus"}, nil)
	big := bytes.Repeat([]byte{0, 1, 2, 253, 254, 255}, 2_000_000)
	req, _ := http.NewRequest(http.MethodPatch, tm.url("westus", "/v2/demo/blobs/uploads/westus.1.x"), io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1 // chunked
	resp, err := tm.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Test-Body-Digest"), fmt.Sprintf("sha256:%x", sha256.Sum256(big)); got != want {
		t.Errorf("chunked upload arrived as %s, want %s", got, want)
	}
	resp, body, err := tm.do("westus", http.MethodGet, blobPath, nil)
	if err != nil || resp.ContentLength != int64(len(tm.blob)) || !bytes.Equal(body, tm.blob) {
		t.Errorf("blob GET: %v, %d bytes, %v", resp, len(body), err)
	}
	resp, _, err = tm.do("westus", http.MethodHead, blobPath, nil)
	if err != nil || resp.ContentLength != int64(len(tm.blob)) || resp.Header.Get("Docker-Content-Digest") != digestOf(tm.blob) {
		t.Errorf("blob HEAD: %v %v", resp, err)
	}
}

func TestHungNodeAbandonedWhenProbesFail(t *testing.T) {
	tm := newTestMesh(t, []string{"westus", "eastus"}, 1, []string{"westus"}, func(c *Config, tm *testMesh) {
		tm.wan.setDelay("westus", tm.node("eastus/1"), 50*time.Millisecond)
	})
	waitFor(t, "route to westus", func() bool { return tm.current("westus") == "westus" })
	west := tm.node("westus/1")
	west.hang.Store(true)
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	get, patch := make(chan result, 1), make(chan result, 1)
	go func() {
		resp, body, err := tm.do("westus", http.MethodGet, manifestPath, nil)
		get <- result{resp, body, err}
	}()
	go func() {
		resp, body, err := tm.do("westus", http.MethodPatch, "/v2/demo/blobs/uploads/westus.1.hang", strings.NewReader("data"))
		patch <- result{resp, body, err}
	}()
	waitFor(t, "both requests at the node", func() bool { return west.hits.Load() == 2 })
	west.health.Store(http.StatusServiceUnavailable)

	// The GET moves to eastus; the upload's node is gone for the client.
	r := <-get
	if r.err != nil || r.resp.StatusCode != http.StatusOK || r.resp.Header.Get("Georeg-Region") != "eastus" {
		t.Errorf("GET of a hung node: %v %v", r.resp, r.err)
	}
	r = <-patch
	if r.err != nil || r.resp.StatusCode != http.StatusNotFound || !strings.Contains(string(r.body), "BLOB_UPLOAD_UNKNOWN") {
		t.Errorf("PATCH to a hung node: %v %s %v", r.resp, r.body, r.err)
	}
}

// TestIdleClientBody sends, through the endpoint, upload requests whose
// body stops after a few bytes: the request fails with 408 within the body
// idle timeout, the client's connection is closed, and the session's node
// is not taken for a failing one.
func TestIdleClientBody(t *testing.T) {
	const idle = 200 * time.Millisecond
	tm := newTestMesh(t, []string{"westus"}, 1, []string{"westus"}, func(c *Config, _ *testMesh) {
		c.BodyIdleTimeout = Duration(idle)
	})
	waitFor(t, "route to a region", func() bool { return tm.current("westus") != "" })
	tests := []struct {
		name, method, path string
	}{
		{"pinned PATCH of a session", http.MethodPatch, "/v2/demo/blobs/uploads/westus.1.abc"},
		{"routed monolithic POST", http.MethodPost, "/v2/demo/blobs/uploads/?digest=sha256:x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tm.m.Addr("westus"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: registry\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", tt.method, tt.path)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "BLOB_UPLOAD_INVALID") {
				t.Fatalf("answer %d %s, want 408 BLOB_UPLOAD_INVALID", resp.StatusCode, b)
			}
			// The connection is closed, not kept waiting for the body.
			if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Fatalf("connection still open after the answer: %v", err)
			}
			if took := time.Since(start); took > idle+time.Second {
				t.Fatalf("took %s, idle timeout %s", took, idle)
			}
			if st := tm.m.Status(); !st.Regions["westus"].Nodes[0].Healthy["westus"] {
				t.Fatalf("the node was marked down for the client's idle body: %+v", st.Regions["westus"])
			}
		})
	}
}

// TestEarlyAnswerReleasesBody: when a node answers an upload without
// reading its body (an error), a client still trickling the body gets the
// answer and has its connection closed after drainGrace, not when it
// finishes sending.
func TestEarlyAnswerReleasesBody(t *testing.T) {
	tm := newTestMesh(t, []string{"westus"}, 1, []string{"westus"}, func(c *Config, _ *testMesh) {
		c.BodyIdleTimeout = Duration(time.Minute)
	})
	waitFor(t, "route to a region", func() bool { return tm.current("westus") != "" })
	tm.node("westus/1").v2Status.Store(http.StatusUnauthorized)
	conn, err := net.Dial("tcp", tm.m.Addr("westus"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "PATCH /v2/demo/blobs/uploads/westus.1.abc HTTP/1.1\r\nHost: registry\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("answer %d, want the node's 401", resp.StatusCode)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection still open after the answer: %v", err)
	}
	if took := time.Since(start); took > drainGrace+time.Second {
		t.Fatalf("connection closed after %s, want within %s", took, drainGrace+time.Second)
	}
}

// TestBlobRedirectedToDataEndpoint: a blob GET asks the node for a redirect
// to its data endpoint for the client's location, and the node's absolute
// Location reaches the client unchanged; a client asking for the bytes
// (ProxyBlobsHeader), a HEAD, and a manager with data endpoints off get the
// bytes through the relay, and a client cannot name a location itself.
func TestBlobRedirectedToDataEndpoint(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("dataEndpoints=%v", on), func(t *testing.T) {
			tm := newTestMesh(t, []string{"westus"}, 1, []string{"westus", "eastus"}, func(c *Config, tm *testMesh) {
				if !on {
					c.DataEndpoints = &on
				}
			})
			tm.node("westus/1").redirect.Store(true)
			for _, loc := range []string{"westus", "eastus"} {
				req, _ := http.NewRequest(http.MethodGet, tm.url(loc, blobPath), nil)
				req.Header.Set(DataLocationHeader, "elsewhere")
				resp, err := tm.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !on {
					if resp.StatusCode != http.StatusOK || digestOf(body) != digestOf(tm.node("westus/1").blob) {
						t.Errorf("%s, data endpoints off: %d with %d bytes, want the blob", loc, resp.StatusCode, len(body))
					}
					continue
				}
				want := "http://data.westus.1.test" + blobPath + "?for=" + loc
				if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
					t.Errorf("%s: %d Location %q, want 307 to %s", loc, resp.StatusCode, resp.Header.Get("Location"), want)
				}
				if resp.Header.Get(DataRedirectHeader) != "" {
					t.Errorf("%s: the internal %s header reached the client", loc, DataRedirectHeader)
				}
			}
			req, _ := http.NewRequest(http.MethodGet, tm.url("westus", blobPath), nil)
			req.Header.Set(ProxyBlobsHeader, "1")
			resp, err := tm.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || digestOf(body) != digestOf(tm.node("westus/1").blob) {
				t.Errorf("%s: %d with %d bytes, want the blob through the relay", ProxyBlobsHeader, resp.StatusCode, len(body))
			}
			if resp, _, err := tm.do("westus", http.MethodHead, blobPath, nil); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("HEAD: %v %v, want 200", resp.StatusCode, err)
			}
			want := 0.0
			if on {
				want = 2
			}
			if got := tm.counter("georeg_trafficmgr_blob_redirects_total", "westus", "westus") + tm.counter("georeg_trafficmgr_blob_redirects_total", "eastus", "westus"); got != want {
				t.Errorf("redirects counted: %v, want %v", got, want)
			}
		})
	}
}

func TestDataLocation(t *testing.T) {
	const signed = "/v2/a/blobs/sha256:ab?georeg-exp=1&georeg-sig=x"
	tests := []struct {
		name, loc, host, want string
	}{
		{"localhost client, loopback node", "http://127.0.0.1:36377" + signed, "localhost:5000", "http://localhost:36377" + signed},
		{"LOCALHOST without a port", "https://127.0.0.1:443" + signed, "LOCALHOST", "https://localhost:443" + signed},
		{"IPv6 loopback node", "http://[::1]:9000" + signed, "localhost:5000", "http://localhost:9000" + signed},
		{"no port in the location", "http://127.0.0.1" + signed, "localhost:5000", "http://localhost" + signed},
		{"client came by address", "http://127.0.0.1:36377" + signed, "127.0.0.1:5000", ""},
		{"client came by another name", "http://127.0.0.1:36377" + signed, "registry.example:5000", ""},
		{"node with a public address", "http://10.1.2.3:36377" + signed, "localhost:5000", ""},
		{"node with a name", "https://westus.data.example" + signed, "localhost:5000", ""},
		{"relative location", signed, "localhost:5000", ""},
		{"unparsable location", "http://[::1" + signed, "localhost:5000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dataLocation(tt.loc, tt.host); got != tt.want {
				t.Fatalf("dataLocation(%q, %q) = %q, want %q", tt.loc, tt.host, got, tt.want)
			}
		})
	}
}

// TestIdleEndpointProbesSlowly: with no request at the endpoint a healthy
// node is probed at the idle pace; the first request probes it at once and
// brings back the steady pace.
func TestIdleEndpointProbesSlowly(t *testing.T) {
	tm := newTestMesh(t, []string{"westus"}, 1, []string{"westus"}, func(c *Config, _ *testMesh) {
		c.IdleProbeInterval = Duration(time.Minute)
	})
	n := tm.node("westus/1")
	time.Sleep(500 * time.Millisecond)
	if got := n.probes.Load(); got > 3 {
		t.Fatalf("%d probes in the first 500ms of an idle endpoint; want the first and hardly more (steady: every 20ms)", got)
	}
	before := n.probes.Load()
	if resp, _, err := tm.do("westus", http.MethodGet, "/v2/", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %v %v", resp, err)
	}
	waitFor(t, "a probe right after the first request", func() bool { return n.probes.Load() > before })
	// A metrics scrape is not a client: it does not wake the probes.
	m := tm.m
	m.lastRequest.Store(m.sinceStart() - int64(time.Hour))
	time.Sleep(100 * time.Millisecond) // the steady wait in progress ends; the next is idle
	before = n.probes.Load()
	if resp, _, err := tm.do("westus", http.MethodGet, "/metrics", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp, err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := n.probes.Load() - before; got > 0 {
		t.Fatalf("%d probes after a metrics scrape of an idle endpoint, want none", got)
	}
	if resp, _, err := tm.do("westus", http.MethodGet, "/v2/", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %v %v", resp, err)
	}
	before = n.probes.Load()
	time.Sleep(500 * time.Millisecond)
	if got := n.probes.Load() - before; got < 5 {
		t.Fatalf("%d probes in 500ms after a request; want the steady pace (every 20ms)", got)
	}
}
