// Package harness starts and stops georeg's built binaries for end-to-end
// tests. Tests in test/ drive georeg from outside, as a user would: through
// bin/georeg, bin/regiond and bin/trafficmgr and over HTTP. Build them first
// with `make build` (`make test` does).
//
// StartMesh returns the one handle every end-to-end test has on a running
// mesh (Mesh): its nodes, their status, the waits for leaders, gossip and
// health, and the chaos verbs. What the binaries print is decoded into
// their own types (chaos.Status for `mesh status --json`, zone.Status for a
// node's GET /_georeg/status), so each shape is declared once. Meshes run
// with authentication on; Mesh.Cred is the token their clients present.
package harness

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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

// Must fails the test on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Start runs bin with args, its output in the file logPath, until the test
// ends; a failed test logs the end of that file.
func Start(t testing.TB, logPath, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(logPath)
	Must(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	Must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("---- %s (%s) ----\n%s", filepath.Base(bin), logPath, b)
		}
	})
}
