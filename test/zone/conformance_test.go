package zone

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
)

// conformanceLine is the summary test/conformance prints at the end.
var conformanceLine = regexp.MustCompile(`(?m)^conformance: \d+ checks, (\d+) failures.*$`)

// TestConformanceThreeZones runs the project's OCI conformance suite
// (test/conformance) against a follower of a three-zone region, so that
// every write goes through forwarding to the Raft leader.
func TestConformanceThreeZones(t *testing.T) {
	r := startRegion(t)
	leader := r.waitLeader(10*time.Second, 1, 2, 3)
	follower := r.follower(leader, 2, 3, 1)
	target := r.base(follower)
	t.Logf("conformance against %s/%d at %s (leader %s/%d)", regionName, follower, target, regionName, leader)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// -v: in package-list mode go test prints a passing package's output
	// only with -v, and the summary line is what this test checks.
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-run", "^TestConformance$", "./test/conformance/")
	cmd.Dir = harness.RepoRoot(t)
	cmd.Env = append(os.Environ(), "GEOREG_CONFORMANCE_URL="+target, "GEOREG_CONFORMANCE_TARGET=georeg",
		"OCI_USERNAME="+r.mesh.Cred.User, "OCI_PASSWORD="+r.mesh.Cred.Password)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	line := conformanceLine.FindSubmatch(out)
	if err != nil || line == nil || string(line[1]) != "0" {
		t.Fatalf("conformance suite against %s/%d (a follower) failed (err %v) after %v:\n%s", regionName, follower, err, took, failures(string(out)))
	}
	if ok, diff := r.converged(ctx, 1, 2, 3); !ok {
		// Not a failure yet: the background copies may still run.
		t.Logf("right after the suite the zones still differ: %s", diff)
	}
	converge := r.waitConverged(30 * time.Second)
	summary(t, "conformance-3-zones (via follower %s/%d): %s (%.1fs); zones converged %.2fs later", regionName, follower, line[0], took.Seconds(), converge.Seconds())
}

// failures keeps what explains a failure in a verbose go test output: every
// line but the RUN and PASS lines of the checks that passed.
func failures(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "=== ") || strings.HasPrefix(trimmed, "--- PASS") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > 200 {
		keep = append(keep[:200:200], "...")
	}
	return strings.Join(keep, "\n")
}
