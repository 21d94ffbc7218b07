package upload

import (
	"errors"
	"testing"
)

// TestPerClientCap: one client cannot hold more than MaxPerClient sessions,
// others still can, and a finished or recovered session counts correctly.
func TestPerClientCap(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Config{Dir: dir, MaxSessions: 10, MaxPerClient: 3})
	if err != nil {
		t.Fatal(err)
	}
	var held []*Session
	steps := []struct {
		client string
		want   error
	}{
		{"10.0.0.1", nil}, {"10.0.0.1", nil}, {"10.0.0.1", nil},
		{"10.0.0.1", ErrTooManyForClient},
		{"10.0.0.2", nil},
		{"", nil}, // unknown clients are bounded by the node's cap only
		{"", nil}, {"", nil}, {"", nil}, {"", nil}, {"", nil},
		{"10.0.0.3", ErrTooMany},
	}
	for i, st := range steps {
		s, err := m.StartFor("repo", st.client)
		if !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("step %d (%q): err = %v, want %v", i, st.client, err, st.want)
		}
		if err == nil && st.client == "10.0.0.1" {
			held = append(held, s)
		}
	}
	// Finishing one of 10.0.0.1's sessions gives it a slot back.
	m.Remove(held[0])
	m.Remove(held[1])
	if _, err := m.StartFor("repo", "10.0.0.1"); err != nil {
		t.Fatalf("after removing a session: %v", err)
	}
	// A restarted node counts the sessions it recovers.
	m2, err := New(Config{Dir: dir, MaxSessions: 100, MaxPerClient: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.StartFor("repo", "10.0.0.1"); !errors.Is(err, ErrTooManyForClient) {
		t.Fatalf("recovered sessions not counted: %v", err)
	}
}
