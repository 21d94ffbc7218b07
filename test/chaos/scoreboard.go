package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Row is one scenario's line on the scoreboard.
type Row struct {
	Scenario string `json:"scenario"`
	// Fault and Target are the scenario's description.
	Fault  string `json:"fault"`
	Target string `json:"target"`
	// Faults is the number of faults injected; FaultLog lists them.
	Faults   int      `json:"faults"`
	FaultLog []string `json:"faultLog"`
	// Ops counts client operations; Failures those the client saw fail
	// (after its own retries, for writes); PullFailures the failed reads
	// through the endpoint, of which PullFailuresInFaults happened during
	// the fault window.
	Ops                  int `json:"clientOps"`
	Failures             int `json:"clientFailures"`
	PullFailures         int `json:"pullFailures"`
	PullFailuresInFaults int `json:"pullFailuresDuringFaults"`
	// Lost counts acknowledged writes not pullable from every region after
	// convergence; BadBytes answers whose bytes did not match their digest
	// or size.
	Lost     int `json:"ackedButLost"`
	BadBytes int `json:"badBytesServed"`
	// Converged reports whether every region agreed; ConvergenceSeconds is
	// how long that took after the faults healed and the load stopped.
	Converged          bool    `json:"converged"`
	ConvergenceSeconds float64 `json:"convergenceSeconds"`
	// LongestFailoverSeconds is the longest time a client location saw no
	// successful request during the fault window, in FailoverLocation.
	LongestFailoverSeconds float64 `json:"longestFailoverSeconds"`
	FailoverLocation       string  `json:"failoverLocation,omitempty"`
	// Passed and Failed list invariant ids; Violations the first few
	// violations of each failed one.
	Passed     []string            `json:"invariantsPassed"`
	Failed     []string            `json:"invariantsFailed"`
	Violations map[string][]string `json:"violations,omitempty"`
	// Missed lists the scenario's targets that were missed; the scenario
	// passed when it is empty.
	Missed          []string `json:"targetsMissed"`
	Pass            bool     `json:"pass"`
	DurationSeconds float64  `json:"durationSeconds"`
	// Notes are the scenario's own figures (bytes ratios, times).
	Notes []string `json:"notes,omitempty"`
}

// Scoreboard collects the rows of a run of the suite. It is safe for
// concurrent use.
type Scoreboard struct {
	mu        sync.Mutex
	Generated time.Time `json:"generated"`
	Mode      string    `json:"mode"`
	Rows      []Row     `json:"rows"`
}

// Add appends a row.
func (s *Scoreboard) Add(r Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Rows = append(s.Rows, r)
}

// has reports whether the board has a row for scenario.
func (s *Scoreboard) has(scenario string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.Rows {
		if r.Scenario == scenario {
			return true
		}
	}
	return false
}

func seconds(f float64) string {
	if f == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f s", f)
}

// Markdown renders the scoreboard as a Markdown table followed by each
// scenario's notes and missed targets.
func (s *Scoreboard) Markdown() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "Chaos suite (%s), %s\n\n", s.Mode, s.Generated.UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| Scenario | Faults | Client ops | Client-visible failures | Pull failures | Acked-but-lost | Bad bytes | Converged in | Longest failover | Invariants failed | Result |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
	for _, r := range s.Rows {
		conv := "not converged"
		if r.Converged {
			conv = fmt.Sprintf("%.1f s", r.ConvergenceSeconds)
		}
		failed := "none"
		if len(r.Failed) > 0 {
			failed = strings.Join(r.Failed, " ")
		}
		result := "pass"
		if !r.Pass {
			result = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s |\n", r.Scenario, r.Faults, r.Ops, r.Failures,
			r.PullFailures, r.Lost, r.BadBytes, conv, seconds(r.LongestFailoverSeconds), failed, result)
	}
	b.WriteString("\n")
	for _, r := range s.Rows {
		if len(r.Notes) == 0 && len(r.Missed) == 0 {
			continue
		}
		fmt.Fprintf(&b, "- **%s** (%s; %.0f s):", r.Scenario, r.Fault, r.DurationSeconds)
		for _, n := range r.Notes {
			fmt.Fprintf(&b, " %s;", n)
		}
		for _, m := range r.Missed {
			fmt.Fprintf(&b, " MISSED: %s;", m)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Write writes scoreboard.json and scoreboard.md into dir.
func (s *Scoreboard) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	md := s.Markdown()
	s.mu.Lock()
	js, err := json.MarshalIndent(s, "", "  ")
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "scoreboard.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "scoreboard.md"), []byte(md), 0o644)
}
