// Package harness starts and stops georeg's built binaries for end-to-end
// tests. Tests in test/ drive georeg from outside, as a user would: through
// bin/georeg, bin/regiond and bin/trafficmgr and over HTTP. Build them first
// with `make build` (`make test` does).
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
)

// RepoRoot returns the root of the georeg checkout the test runs in.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/georeg/georeg\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("harness: no georeg go.mod above the working directory")
		}
		dir = parent
	}
}

// Bin returns the path of a georeg binary (regiond, trafficmgr, georeg). It
// fails the test, saying how to build it, when the binary is missing. The
// GEOREG_BIN_DIR environment variable overrides the default <repo>/bin.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("GEOREG_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("harness: %s is missing: run `make build` first (make test does)", p)
	}
	return p
}

// Tool returns the path of a pinned third-party tool built by `make tools`
// into <repo>/bin/tools (crane, regctl, oras, versitygw, registry). It fails
// the test, saying how to install it, when the tool is missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "bin", "tools", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("harness: %s is missing: run `make tools` (make test does); it builds the versions pinned in tools/go.mod", p)
	}
	return p
}

// MeshStatus is the JSON that `georeg mesh status --json` prints.
type MeshStatus struct {
	Endpoint string         `json:"endpoint"`
	Dir      string         `json:"dir"`
	Regions  []RegionStatus `json:"regions"`
}

// RegionStatus is one region of a MeshStatus.
type RegionStatus struct {
	Name  string       `json:"name"`
	Home  bool         `json:"home"`
	Zones []ZoneStatus `json:"zones"`
}

// ZoneStatus is one zone node of a RegionStatus.
type ZoneStatus struct {
	Zone  int    `json:"zone"`
	HTTP  string `json:"http"`
	PID   int    `json:"pid"`
	State string `json:"state"`
}

// Mesh is a running local mesh started by StartMesh.
type Mesh struct {
	t   testing.TB
	Dir string
	// Endpoint is host:port of the registry endpoint clients use.
	Endpoint string
	// Port is the endpoint port given to `mesh up`.
	Port int
}

// StartMesh runs `georeg mesh up` with args (for example "--regions",
// "westus", "--zones", "1") in a fresh directory and port, waits for it to
// return, and registers `mesh down` as cleanup. On failure it prints the
// mesh's logs.
func StartMesh(t testing.TB, args ...string) *Mesh {
	t.Helper()
	dir := t.TempDir()
	port := freeport.Block(t, 64)
	m := &Mesh{t: t, Dir: dir, Port: port}
	full := append([]string{"mesh", "up", "--dir", dir, "--port", strconv.Itoa(port)}, args...)
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
	st := m.Status()
	m.Endpoint = st.Endpoint
	return m
}

// Georeg runs bin/georeg with args and returns its combined output.
func (m *Mesh) Georeg(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin(m.t, "georeg"), args...)
	return cmd.CombinedOutput()
}

// Status runs `georeg mesh status --json` and decodes it.
func (m *Mesh) Status() MeshStatus {
	m.t.Helper()
	out, err := m.Georeg(context.Background(), "mesh", "status", "--dir", m.Dir, "--json")
	if err != nil {
		m.t.Fatalf("harness: mesh status: %v\n%s", err, out)
	}
	var st MeshStatus
	if err := json.Unmarshal(out, &st); err != nil {
		m.t.Fatalf("harness: mesh status output: %v\n%s", err, out)
	}
	return st
}

// URL returns the base URL of the mesh endpoint, for example
// "http://127.0.0.1:5000".
func (m *Mesh) URL() string { return "http://" + m.Endpoint }

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

// Must fails the test on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
