package conformance

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
)

// meshRounds is how many times in a row TestConformanceMesh runs the suite
// unless GEOREG_CONFORMANCE_ROUNDS says otherwise. make test runs 3 (25 to
// 60 s a round on two cores); issue 13's acceptance is 20 in a row:
// GEOREG_CONFORMANCE_ROUNDS=20 go test -run TestConformanceMesh ./test/conformance
const meshRounds = 3

// TestConformanceMesh runs every check meshRounds times in a row through the
// endpoint of one default mesh (three regions of three zones behind the
// traffic manager), each round under a repository prefix of its own. The
// traffic manager spreads a client's requests over the zones of its region,
// so a check that reads what the check before it wrote is answered by
// another zone than the one that took the write: the suite must pass
// whichever zone answers, every time.
//
// It needs no environment; with GEOREG_CONFORMANCE_URL or a target other
// than georeg set, it is skipped (TestConformance covers those).
func TestConformanceMesh(t *testing.T) {
	if target := os.Getenv("GEOREG_CONFORMANCE_TARGET"); os.Getenv("GEOREG_CONFORMANCE_URL") != "" || target != "" && target != "georeg" {
		t.Skip("GEOREG_CONFORMANCE_URL or GEOREG_CONFORMANCE_TARGET names another registry; TestConformance checks it")
	}
	rounds := meshRounds
	if v := os.Getenv("GEOREG_CONFORMANCE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GEOREG_CONFORMANCE_ROUNDS=%q: want a number of rounds", v)
		}
		rounds = n
	}
	conformanceRounds(t, rounds)
}

// TestConformanceMeshTLS runs the suite once through the endpoint of a
// default mesh started with --tls: the endpoint and the nodes serve HTTPS
// with certificates of the mesh's CA, which the suite trusts, and the
// traffic manager reaches the nodes over HTTPS.
func TestConformanceMeshTLS(t *testing.T) {
	if target := os.Getenv("GEOREG_CONFORMANCE_TARGET"); os.Getenv("GEOREG_CONFORMANCE_URL") != "" || target != "" && target != "georeg" {
		t.Skip("GEOREG_CONFORMANCE_URL or GEOREG_CONFORMANCE_TARGET names another registry; TestConformance checks it")
	}
	conformanceRounds(t, 1, "--tls")
}

// conformanceRounds starts a default mesh with args and runs the whole
// suite rounds times through its endpoint, each round under its own
// repository prefix.
func conformanceRounds(t *testing.T, rounds int, args ...string) {
	start := time.Now()
	m := harness.StartMesh(t, args...)
	t.Logf("conformance-mesh: 3 regions x 3 zones up in %v; rounds go through the endpoint %s", time.Since(start).Round(time.Millisecond), m.URL())

	var (
		took     []time.Duration
		checks   int
		failures int
		// failedIn maps a failed check to the rounds it failed in.
		failedIn    = map[string][]int{}
		roundsGreen int
	)
	for round := 1; round <= rounds; round++ {
		s := newSuite(t, "georeg", m.URL(), m.Cred, m.TLS)
		roundStart := time.Now()
		t.Run(fmt.Sprintf("round-%02d", round), func(t *testing.T) {
			s.groups(t)
			s.summary(t)
		})
		took = append(took, time.Since(roundStart))
		s.client.CloseIdleConnections()
		checks += s.tally.checks
		failures += s.tally.failures
		if s.tally.failures == 0 {
			roundsGreen++
		}
		for _, name := range s.tally.failed {
			failedIn[name] = append(failedIn[name], round)
		}
	}

	slices.Sort(took)
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	line := fmt.Sprintf("conformance-mesh: %d rounds through the endpoint, %d checks, %d failures, %d of %d rounds without a failure; one round took %v on average (min %v, max %v), all %v",
		rounds, checks, failures, roundsGreen, rounds, (sum / time.Duration(len(took))).Round(time.Millisecond),
		took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Log(line)
	fmt.Println(line)
	if failures == 0 {
		return
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(failedIn)) {
		fmt.Fprintf(&b, "\n  %s: failed in %d of %d rounds %v", name, len(failedIn[name]), rounds, failedIn[name])
	}
	t.Errorf("conformance through the endpoint: %d failures in %d of %d rounds; failed checks:%s", failures, rounds-roundsGreen, rounds, b.String())
}
