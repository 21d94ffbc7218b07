package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// buildConformance compiles the conformance suite (test/conformance) into
// dir while the cluster comes up, so running it later costs no compile
// time. The returned function waits for the compiler and returns the test
// binary.
func buildConformance(t *testing.T, dir string) func() string {
	t.Helper()
	root := harness.RepoRoot(t)
	bin := filepath.Join(dir, "conformance.test")
	done := make(chan error, 1)
	go func() {
		cmd := exec.Command("go", "test", "-c", "-o", bin, "./test/conformance")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go test -c ./test/conformance: %w\n%s", err, out)
		}
		done <- err
	}()
	return func() string {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return bin
	}
}

// runConformance runs the conformance suite's TestConformance binary
// against the endpoint, as an operator would point the suite at any
// registry: GEOREG_CONFORMANCE_URL, OCI_USERNAME and OCI_PASSWORD, and the
// cluster's CA through SSL_CERT_FILE (the suite's client takes the
// system's roots, which Go reads from there). It returns the suite's
// summary line and reports a failure with the failed checks, from a
// goroutine as well.
func runConformance(t *testing.T, root, bin string, ep published, cred ociclient.Credential) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Without -test.v a failed check's messages follow its "--- FAIL"
	// line, which is what is shown of them below.
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^TestConformance$", "-test.count", "1")
	// In its package's folder, as go test runs it.
	cmd.Dir = filepath.Join(root, "test", "conformance")
	cmd.Env = append(os.Environ(), "GEOREG_CONFORMANCE_URL=https://"+ep.host, "GEOREG_CONFORMANCE_TARGET=georeg",
		"OCI_USERNAME="+cred.User, "OCI_PASSWORD="+cred.Password, "SSL_CERT_FILE="+ep.ca)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	summary := ""
	// Every "--- FAIL" line and the more indented lines right after it:
	// what a failed check found.
	var failed []string
	within := -1
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "conformance: ") && strings.Contains(l, " checks, ") {
			summary = l
		}
		trimmed := strings.TrimSpace(l)
		indent := len(l) - len(strings.TrimLeft(l, " \t"))
		switch {
		case strings.HasPrefix(trimmed, "--- FAIL"):
			failed, within = append(failed, l), indent
		case within >= 0 && indent > within && !strings.HasPrefix(trimmed, "--- "):
			failed = append(failed, l)
		default:
			within = -1
		}
	}
	if err != nil || summary == "" || !strings.Contains(summary, " 0 failures") {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		tail := lines[max(0, len(lines)-60):]
		t.Errorf("conformance through the endpoint: %v; %s\nfailed:\n%s\nlast lines:\n%s", err, summary,
			strings.Join(failed, "\n"), strings.Join(tail, "\n"))
	}
	return summary
}
