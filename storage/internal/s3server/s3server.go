// Package s3server starts a real S3-compatible server for the storage
// tests: versitygw over a POSIX directory, listening on loopback. The binary
// is built by `make tools` into <repo root>/bin/tools/versitygw; a test that
// needs it fails, never skips, when it is missing.
//
// It lives here rather than in test/ because storage must not depend on
// test/ (see the package documentation of storage for why versitygw).
package s3server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/syncbuf"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is host:port, for storage.S3Config.Endpoint.
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the directory holding the buckets, one subdirectory each.
	Dir string
}

// Start starts versitygw on a free loopback port and stops it when the test
// ends. Its output goes to the test log if the test fails.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "tools", "versitygw")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("versitygw not found at %s: run `make tools` (%v)", bin, err)
	}
	s := &Server{
		AccessKey: "georeg-test",
		SecretKey: "georeg-test-secret",
		Region:    "us-east-1",
		Dir:       t.TempDir(),
	}
	// Another process may take the port between our probe and versitygw's
	// bind; try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Endpoint = net.JoinHostPort("127.0.0.1", port)
		if lastErr = s.start(t, bin); lastErr == nil {
			return s
		}
	}
	t.Fatalf("starting versitygw: %v", lastErr)
	return nil
}

func (s *Server) start(t testing.TB, bin string) error {
	out := new(syncbuf.Buffer)
	cmd := exec.Command(bin,
		"--access", s.AccessKey,
		"--secret", s.SecretKey,
		"--region", s.Region,
		"--port", s.Endpoint,
		"--quiet",
		"posix", s.Dir)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", s.Endpoint, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("versitygw exited (%v):\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("versitygw did not listen on %s:\n%s", s.Endpoint, out)
		}
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("versitygw output:\n%s", out)
		}
	})
	return nil
}

// repoRoot walks up from the working directory (a go test runs in its
// package's directory) to the directory holding go.mod.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		return "", errors.New("bad listener address")
	}
	return port, nil
}
