package replication

import "testing"

// TestInflightBytes counts the bytes of the batches a peer has not
// answered: one answered but waiting for an earlier one to be answered no
// longer holds its place in the budget.
func TestInflightBytes(t *testing.T) {
	bs := []*outBatch{{bytes: 100}, {bytes: 50, finished: true}, {bytes: 7}}
	if got := inflightBytes(bs); got != 107 {
		t.Errorf("inflightBytes = %d, want 107", got)
	}
	if got := inflightBytes(nil); got != 0 {
		t.Errorf("inflightBytes(nil) = %d, want 0", got)
	}
}
