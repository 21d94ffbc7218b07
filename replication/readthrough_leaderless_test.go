package replication_test

import (
	"errors"
	"testing"

	"github.com/georeg/georeg/replication"
	"github.com/georeg/georeg/replication/replicationtest"
	"github.com/georeg/georeg/storage"
)

// TestReadThroughLeaderlessPeer reads through from a peer region whose
// node knows no leader and lacks the content: its "not found" does not
// speak for its region (the leader and another zone may have acknowledged
// a write it has not applied), so the asking region must not answer
// "not found" but name the peer as not asked, and say "not found" again
// once the peer knows its leader.
func TestReadThroughLeaderlessPeer(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")
	missing := west.PutBlob(t, "other", []byte("a blob of another repository"))

	west.Meta.Leaderless.Store(true)
	for _, fetch := range []struct {
		name string
		call func() error
	}{
		{"blob", func() error { return east.Replicator.FetchBlob(t.Context(), "app", missing) }},
		{"manifest", func() error { return east.Replicator.FetchManifest(t.Context(), "app", "latest") }},
	} {
		err := fetch.call()
		var nf *replication.NotFoundError
		switch {
		case err == nil:
			t.Fatalf("%s: read-through found what westus does not hold", fetch.name)
		case errors.As(err, &nf) && len(nf.Unasked) == 0:
			t.Errorf("%s: a leaderless westus made eastus answer not found for the region: %v", fetch.name, err)
		case !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrUnavailable):
			t.Errorf("%s: %v, want westus named as not asked", fetch.name, err)
		}
	}

	west.Meta.Leaderless.Store(false)
	err := east.Replicator.FetchBlob(t.Context(), "app", missing)
	var nf *replication.NotFoundError
	if !errors.As(err, &nf) || len(nf.Unasked) != 0 {
		t.Errorf("with its leader known, westus's answer is not found for the region; got %v", err)
	}
}
