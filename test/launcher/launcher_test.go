// Package launcher tests `georeg mesh` and `georeg chaos` end to end against
// the built bin/georeg and bin/regiond.
package launcher

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
)

// nodeStates returns "region/zone=state" for every node the status shows.
func nodeStates(st chaos.Status) string {
	var s []string
	for _, r := range st.Regions {
		for _, z := range r.Zones {
			s = append(s, r.Name+"/"+strconv.Itoa(z.Zone)+"="+z.State)
		}
	}
	return strings.Join(s, " ")
}

func georeg(t *testing.T, m *harness.Mesh, args ...string) string {
	t.Helper()
	out, err := m.Georeg(context.Background(), args...)
	if err != nil {
		t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ping answers the status of GET /v2/ on addr, sent with m's credential;
// 0 when nothing answers.
func ping(t *testing.T, m *harness.Mesh, addr string) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: m.Transport(&http.Transport{DisableKeepAlives: true})}
	resp, err := c.Get("http://" + addr + "/v2/")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestMeshLifecycle(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")

	st := m.Status()
	want := "127.0.0.1:" + strconv.Itoa(m.Port)
	if st.Endpoint != want || m.Endpoint != want {
		t.Errorf("endpoint = %q, want %q (the traffic manager serves the endpoint port)", st.Endpoint, want)
	}
	// The traffic manager listens on the endpoint port (westus's location);
	// the node takes the next port.
	want = "127.0.0.1:" + strconv.Itoa(m.Port+1)
	if len(st.Regions) != 1 || st.Regions[0].Name != "westus" || !st.Regions[0].Home || len(st.Regions[0].Zones) != 1 {
		t.Fatalf("status shape: %+v", st)
	}
	z := st.Regions[0].Zones[0]
	if z.Zone != 1 || z.HTTP != want || z.PID <= 0 || z.State != "up" {
		t.Fatalf("zone status: %+v", z)
	}
	if code := ping(t, m, m.Endpoint); code != http.StatusOK {
		t.Fatalf("GET /v2/ on the endpoint: %d", code)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "mesh.json")); err != nil {
		t.Errorf("mesh.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "logs", "westus-1.log")); err != nil {
		t.Errorf("node log: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "data", "westus-1")); err != nil {
		t.Errorf("node data: %v", err)
	}

	out := georeg(t, m, "chaos", "kill-zone", "westus/1", "--dir", m.Dir)
	if !strings.Contains(out, "killed westus/1 (pid "+strconv.Itoa(z.PID)) {
		t.Errorf("kill-zone output does not say what it did:\n%s", out)
	}
	st = m.Status()
	if got := nodeStates(st); got != "westus/1=down" {
		t.Fatalf("after kill-zone: %s", got)
	}
	if st.Regions[0].Zones[0].PID != 0 {
		t.Errorf("a down node reports pid %d", st.Regions[0].Zones[0].PID)
	}
	if code := ping(t, m, z.HTTP); code != 0 {
		t.Errorf("a killed node still answers: %d", code)
	}
	if code := ping(t, m, m.Endpoint); code == http.StatusOK {
		t.Errorf("the endpoint answers 200 with its only region down")
	}

	out = georeg(t, m, "chaos", "restart", "westus", "--dir", m.Dir)
	if !strings.Contains(out, "restarted westus/1") {
		t.Errorf("restart output does not say what it did:\n%s", out)
	}
	st = m.Status()
	if got := nodeStates(st); got != "westus/1=up" {
		t.Fatalf("after restart: %s", got)
	}
	if pid := st.Regions[0].Zones[0].PID; pid == z.PID || pid <= 0 {
		t.Errorf("restarted node has pid %d (was %d)", pid, z.PID)
	}
	if code := ping(t, m, z.HTTP); code != http.StatusOK {
		t.Fatalf("GET /v2/ after restart: %d", code)
	}
	// The traffic manager sees the node healthy again within a few probes.
	deadline := time.Now().Add(10 * time.Second)
	for ping(t, m, m.Endpoint) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint does not answer 200 10 s after the node restarted")
		}
		time.Sleep(50 * time.Millisecond)
	}

	georeg(t, m, "mesh", "down", "--dir", m.Dir)
	if got := nodeStates(m.Status()); got != "westus/1=down" {
		t.Fatalf("after down: %s", got)
	}
	// Down is idempotent; the harness runs it once more at cleanup.
	georeg(t, m, "mesh", "down", "--dir", m.Dir)
}

func TestMeshUpTwiceFails(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	before := m.Status()

	out, err := m.Georeg(context.Background(), "mesh", "up", "--dir", m.Dir, "--port", strconv.Itoa(m.Port+20))
	if err == nil {
		t.Fatalf("second mesh up in the same dir succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "already running") || !strings.Contains(string(out), "georeg mesh down --dir "+m.Dir) {
		t.Errorf("second mesh up does not explain itself:\n%s", out)
	}
	after := m.Status()
	if nodeStates(after) != "westus/1=up" || after.Regions[0].Zones[0].PID != before.Regions[0].Zones[0].PID {
		t.Errorf("the refused mesh up disturbed the mesh: %+v", after)
	}
}

func TestMeshUpNodeFails(t *testing.T) {
	dir := t.TempDir()
	port := freeport.Block(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := runGeoreg(ctx, t, "mesh", "up", "--dir", dir, "--port", strconv.Itoa(port), "--regions", "westus", "--zones", "1", "--node-arg=--no-such-regiond-flag")
	if err == nil {
		t.Fatalf("mesh up with a bad node flag succeeded:\n%s", out)
	}
	if !strings.Contains(out, "westus/1") || !strings.Contains(out, "no-such-regiond-flag") || !strings.Contains(out, "last lines of") {
		t.Errorf("the error does not show the failing node and its log:\n%s", out)
	}
	out, err = runGeoreg(ctx, t, "mesh", "status", "--dir", dir, "--json")
	if err != nil {
		t.Fatalf("status after a failed up: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"state": "down"`) {
		t.Errorf("a failed up left a node running:\n%s", out)
	}
}

// runGeoreg runs bin/georeg outside a harness.Mesh and returns its combined
// output.
func runGeoreg(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(ctx, harness.Bin(t, "georeg"), args...).CombinedOutput()
	return string(out), err
}
