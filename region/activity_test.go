package region

import (
	"testing"
	"time"
)

func TestActivityWaitIdle(t *testing.T) {
	tests := []struct {
		name     string
		before   int           // writes that began and ended before
		busy     bool          // a write is in progress when waitIdle is called
		endAfter time.Duration // when it ends (0: not before max)
		max      time.Duration
		wantMin  time.Duration // waitIdle took at least this long
	}{
		{name: "no write yet", max: time.Hour},
		{name: "idle again", before: 2, max: time.Hour, wantMin: quietAfterWrites / 2},
		{name: "a write that ends", busy: true, endAfter: 50 * time.Millisecond, max: time.Hour, wantMin: 50*time.Millisecond + quietAfterWrites},
		{name: "a write that outlasts max", busy: true, max: 50 * time.Millisecond, wantMin: 50 * time.Millisecond},
		{name: "negative max", busy: true, max: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a activity
			// The clock starts before the writes: a write ends endAfter
			// after its timer is set, which is after this instant.
			start := time.Now()
			for range tt.before {
				a.begin()
				a.end()
			}
			if tt.busy {
				a.begin()
				if tt.endAfter > 0 {
					time.AfterFunc(tt.endAfter, a.end)
				}
			}
			done := make(chan struct{})
			go func() {
				a.waitIdle(t.Context(), tt.max)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(waitTimeout):
				t.Fatal("waitIdle did not return")
			}
			if took := time.Since(start); took < tt.wantMin {
				t.Fatalf("waitIdle returned after %v, want at least %v", took, tt.wantMin)
			}
		})
	}
}
