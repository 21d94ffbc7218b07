package chaos

import (
	"os"
	"testing"
	"time"
)

// scenarios returns every scenario of the suite, at full size or (full
// false) at the reduced size `make test` runs the Short ones at. A new
// scenario is one constructor in its own file, listed here.
func scenarios(full bool) []Scenario {
	return []Scenario{
		leaderZoneKill(full),
		byteFlip(full),
		randomRegionPushes(full),
		regionKill(full),
		regionFlap(full),
		homeDown(full),
		partition(full),
		sameTag(full),
		readThrough(full),
		endpointToggle(full),
		slowLink(full),
		webhookDown(full),
		rollingRestart(full),
		diskFull(full),
		uploadFlood(full),
		sitePartition(full),
		siteKill(full),
		siteWindowClose(full),
	}
}

// TestChaos runs the chaos suite: every scenario with GEOREG_CHAOS=full
// (`make chaos`), every scenario at reduced size with GEOREG_CHAOS=quick,
// else only the Short subset at reduced size. With GEOREG_CHAOS_RESULTS set
// it writes the scoreboard there as JSON and Markdown (and a failed
// scenario's history and logs); it always logs the Markdown.
func TestChaos(t *testing.T) {
	mode := os.Getenv("GEOREG_CHAOS")
	full, all := mode == "full", mode == "full" || mode == "quick"
	board := &Scoreboard{Generated: time.Now(), Mode: "short subset (make test)"}
	switch mode {
	case "full":
		board.Mode = "full (make chaos)"
	case "quick":
		board.Mode = "every scenario at reduced size (GEOREG_CHAOS=quick)"
	}
	t.Cleanup(func() {
		if len(board.Rows) == 0 {
			return
		}
		t.Logf("scoreboard:\n%s", board.Markdown())
		if dir := os.Getenv("GEOREG_CHAOS_RESULTS"); dir != "" {
			if err := board.Write(dir); err != nil {
				t.Errorf("writing the scoreboard: %v", err)
			}
		}
	})
	for _, sc := range scenarios(full) {
		t.Run(sc.Name, func(t *testing.T) {
			if !all && !sc.Short {
				t.Skipf("%s is in the full chaos suite: `make chaos` runs it (alone: GEOREG_CHAOS=full go test -count=1 -v -run 'TestChaos/%s$' ./test/chaos)", sc.Name, sc.Name)
			}
			if len(sc.Sites) > 0 && os.Getenv("GEOREG_CHAOS_TLS") != "" {
				t.Skipf("%s runs sites, which a mesh serving HTTPS (make chaos TLS=1) does not support yet", sc.Name)
			}
			defer func() {
				// A scenario stopped by t.Fatal (say, a mesh that did not
				// start) still gets its failing row.
				if !board.has(sc.Name) {
					board.Add(Row{Scenario: sc.Name, Fault: sc.Fault, Target: sc.Target, Missed: []string{"did not complete: see the test log"}})
				}
			}()
			RunScenario(t, sc, Options{Full: full, Board: board, ResultsDir: os.Getenv("GEOREG_CHAOS_RESULTS")})
		})
	}
}
