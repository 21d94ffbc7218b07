package main

import (
	"strings"
	"testing"
	"time"
)

// TestTestClock: GEOREG_TEST_CLOCK is refused unless GEOREG_TESTING=1,
// and a malformed one is refused naming the variable.
func TestTestClock(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	now := time.Now()
	if c, err := testClock(env(nil), now); c != nil || err != nil {
		t.Errorf("unset: %v, %v; want none", c, err)
	}
	if _, err := testClock(env(map[string]string{testClockEnv: "speed=60"}), now); err == nil || !strings.Contains(err.Error(), "tests only") {
		t.Errorf("without %s=1: %v, want a refusal", testingEnv, err)
	}
	if _, err := testClock(env(map[string]string{testClockEnv: "speed=60", testingEnv: "true"}), now); err == nil {
		t.Errorf("with %s=true: taken, want only 1", testingEnv)
	}
	if _, err := testClock(env(map[string]string{testClockEnv: "speed=fast", testingEnv: "1"}), now); err == nil || !strings.Contains(err.Error(), testClockEnv) {
		t.Errorf("malformed: %v, want a refusal naming %s", err, testClockEnv)
	}
	c, err := testClock(env(map[string]string{testClockEnv: "at=2026-01-01T04:00:00Z,speed=1200", testingEnv: "1"}), now)
	if err != nil || c.Speed != 1200 || !c.From.Equal(now) {
		t.Errorf("test-enabled: %+v, %v", c, err)
	}
}
