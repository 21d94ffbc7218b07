package replication_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/replication"
	"github.com/georeg/georeg/replication/replicationtest"
	"github.com/georeg/georeg/storage"
)

// These tests run regions in this process (replicationtest) and break the
// links between them while replication runs.

// TestOfferDeliveredAfterHeal pushes while the peer is cut off: the offer
// fails and is retried, and once the link heals the peer holds the image
// once. Offering the same event again changes nothing and fetches nothing.
func TestOfferDeliveredAfterHeal(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")

	m.Cut("westus", "eastus")
	img := west.Push(t, "app", "v1", replicationtest.RandomLayer(t, 256<<10))
	events, err := west.Meta.OutboxAfter(0, 10)
	if err != nil || len(events) != 1 {
		t.Fatalf("the push left %d events in the outbox (%v), want 1", len(events), err)
	}
	replicationtest.WaitFor(t, "westus to fail an offer to eastus", func() bool { return west.Peer("eastus").LastError != "" })
	if east.Has(img) {
		t.Fatal("eastus holds the image through a cut link")
	}

	m.Heal("westus", "eastus")
	replicationtest.WaitFor(t, "eastus to hold the image", func() bool { return east.Has(img) })
	replicationtest.WaitFor(t, "westus to record that eastus holds every event", func() bool {
		return west.Meta.Cursors()["eastus"] >= events[0].Seq
	})
	st, err := east.Meta.RepoState("app")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Manifests) != 1 || len(st.Tags) != 1 {
		t.Errorf("eastus holds %d manifests and %d tags of app, want 1 and 1", len(st.Manifests), len(st.Tags))
	}
	if last := east.Meta.LastSeq(); last != 0 {
		t.Errorf("eastus's outbox holds events up to %d: a replicated write was queued to be offered again", last)
	}

	// A sender that lost the peer's answer offers the event again.
	before, err := east.Meta.Digest()
	if err != nil {
		t.Fatal(err)
	}
	received := east.BytesReceived("westus")
	offer(t, west, east, events[0])
	after, err := east.Meta.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Error("offering a delivered event again changed eastus's metadata")
	}
	if got := east.BytesReceived("westus"); got != received {
		t.Errorf("offering a delivered event again fetched %d more bytes", got-received)
	}
}

// offer sends push event e of region from to region to again, as from's
// sender does when it did not hear the answer.
func offer(t *testing.T, from, to *replicationtest.Region, e meta.Event) {
	t.Helper()
	if e.Op != meta.OpPutManifest {
		t.Fatalf("offer: event %d is a %s, want a push", e.Seq, e.Op)
	}
	m, err := from.Meta.Manifest(e.Repo, e.Digest)
	if err != nil {
		t.Fatal(err)
	}
	event := &replicationpb.Event{
		Seq: e.Seq, Repo: e.Repo, Clock: e.Clock, Origin: e.Origin, Time: timestamppb.New(e.Time),
		Change: &replicationpb.Event_PutManifest{PutManifest: &replicationpb.PutManifest{
			Tag: e.Tag, Digest: e.Digest.String(), MediaType: m.MediaType, Content: m.Content,
		}},
	}
	if _, err := to.Replicator.Offer(t.Context(), &replicationpb.OfferRequest{Event: event, Origin: from.Name}); err != nil {
		t.Fatalf("offer to %s: %v", to.Name, err)
	}
}

// TestConcurrentTagWritesConverge writes one tag in two regions while they
// are cut off from each other: once healed, both hold both manifests and
// the tag points at the write with the greater (clock, origin) in both.
func TestConcurrentTagWritesConverge(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")

	m.Cut("westus", "eastus")
	a := west.Push(t, "app", "latest", replicationtest.RandomLayer(t, 4<<10))
	b := east.Push(t, "app", "latest", replicationtest.RandomLayer(t, 4<<10))
	ta, err := west.Meta.Tag("app", "latest")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := east.Meta.Tag("app", "latest")
	if err != nil {
		t.Fatal(err)
	}
	winner := a
	if tb.Clock > ta.Clock || (tb.Clock == ta.Clock && tb.Origin > ta.Origin) {
		winner = b
	}

	m.Heal("westus", "eastus")
	for _, r := range []*replicationtest.Region{west, east} {
		replicationtest.WaitFor(t, r.Name+" to hold both manifests with the tag on the last write", func() bool {
			tag, err := r.Meta.Tag("app", "latest")
			_, errA := r.Meta.Manifest("app", a.Manifest)
			_, errB := r.Meta.Manifest("app", b.Manifest)
			return err == nil && tag.Digest == winner.Manifest && errA == nil && errB == nil
		})
	}
	replicationtest.WaitFor(t, "the summaries of app to agree", func() bool {
		sw, err1 := west.Meta.RepoSummaries()
		se, err2 := east.Meta.RepoSummaries()
		return err1 == nil && err2 == nil && sw["app"] == se["app"]
	})
}

// TestHeldBlobIsNotFetchedAgain replicates a second image that shares a
// layer with one the peer holds already, in another repository: only the
// new blobs cross.
func TestHeldBlobIsNotFetchedAgain(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")

	shared := replicationtest.RandomLayer(t, 512<<10)
	first := west.Push(t, "app", "v1", shared)
	replicationtest.WaitFor(t, "eastus to hold the first image", func() bool { return east.Has(first) })
	received, deduped := east.BytesReceived("westus"), east.BytesDeduplicated()

	fresh := replicationtest.RandomLayer(t, 8<<10)
	second := west.Push(t, "other", "v1", shared, fresh)
	replicationtest.WaitFor(t, "eastus to hold the second image", func() bool { return east.Has(second) })
	config, err := west.Blobs.Stat(t.Context(), second.Config)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := east.BytesReceived("westus")-received, config+int64(len(fresh)); got != want {
		t.Errorf("eastus fetched %d bytes for the second image, want %d (its config and new layer only)", got, want)
	}
	if got := east.BytesDeduplicated() - deduped; got < int64(len(shared)) {
		t.Errorf("eastus counted %d bytes as deduplicated, want at least the shared layer's %d", got, len(shared))
	}
}

// TestReadThroughNamesCutRegion asks for content no region holds while one
// peer is cut off: the answer is "not found", fast, and names the region
// that could not be asked; once healed, content that region holds is read
// through.
func TestReadThroughNamesCutRegion(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{Regions: []string{"westus", "eastus", "westeurope"}})
	west, east := m.Region("westus"), m.Region("eastus")
	// A blob linked in eastus only: blob links alone are not replicated.
	only := east.PutBlob(t, "app", replicationtest.RandomLayer(t, 64<<10))

	m.Cut("westus", "eastus")
	tests := []struct {
		name  string
		fetch func(ctx context.Context) error
	}{
		{"manifest", func(ctx context.Context) error { return west.Replicator.FetchManifest(ctx, "app", "missing") }},
		{"blob", func(ctx context.Context) error { return west.Replicator.FetchBlob(ctx, "app", only) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fetch(t.Context())
			var nf *replication.NotFoundError
			if !errors.As(err, &nf) || !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("read-through with eastus cut off: %v, want a *NotFoundError", err)
			}
			if !slices.Equal(nf.UnaskedRegions(), []string{"eastus"}) {
				t.Errorf("unasked regions = %v, want [eastus]", nf.UnaskedRegions())
			}
		})
	}

	m.Heal("westus", "eastus")
	replicationtest.WaitFor(t, "the blob to be read through from eastus", func() bool {
		return west.Replicator.FetchBlob(t.Context(), "app", only) == nil
	})
	if _, err := west.Meta.BlobLink("app", only); err != nil {
		t.Errorf("the blob read through is not linked into app in westus: %v", err)
	}
	err := west.Replicator.FetchManifest(t.Context(), "app", "missing")
	var nf *replication.NotFoundError
	if !errors.As(err, &nf) || len(nf.UnaskedRegions()) != 0 {
		t.Errorf("read-through of missing content with every link up: %v, want a *NotFoundError naming no region", err)
	}
}

// TestTransferCutMidBlobResumes cuts the link while a layer crosses it:
// after the heal the transfer resumes where it stopped, so hardly more than
// the blob crosses in all. The layer is fetched in segments over several
// connections, each capped and each bringing 1 MiB chunks, so received
// bytes grow by a chunk per connection at a time: the layer must hold
// several such waves for the cut to fall inside it (with 4 MiB, the first
// wave could be the whole layer).
func TestTransferCutMidBlobResumes(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")

	const size = 16 << 20
	m.SetLink(wan.Link{A: "westus", B: "eastus", Bandwidth: 2 << 20})
	img := west.Push(t, "app", "v1", replicationtest.RandomLayer(t, size))
	replicationtest.WaitFor(t, "eastus to receive part of the layer", func() bool { return east.BytesReceived("westus") >= 512<<10 })
	m.Cut("westus", "eastus")
	atCut := east.BytesReceived("westus")
	if atCut >= size {
		t.Fatalf("eastus received the whole layer (%d bytes) before the cut", atCut)
	}
	replicationtest.WaitFor(t, "westus to fail an offer to eastus", func() bool { return west.Peer("eastus").LastError != "" })

	m.Heal("westus", "eastus")
	replicationtest.WaitFor(t, "eastus to hold the image", func() bool { return east.Has(img) })
	config, err := west.Blobs.Stat(t.Context(), img.Config)
	if err != nil {
		t.Fatal(err)
	}
	total, want := east.BytesReceived("westus"), config+size
	t.Logf("eastus received %d bytes before the cut and %d in all, for %d bytes of blobs", atCut, total, want)
	if total > want+want/10 {
		t.Errorf("eastus received %d bytes for %d bytes of blobs: the transfer started over instead of resuming", total, want)
	}
}

// TestTagDeleteAgainstMoveConverges deletes a tag in one region while
// another, cut off from it, moves the tag: once healed, both regions agree
// on the later write, a tombstone or the moved tag.
func TestTagDeleteAgainstMoveConverges(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")
	first := west.Push(t, "app", "stable", replicationtest.RandomLayer(t, 4<<10))
	replicationtest.WaitFor(t, "eastus to hold the first image", func() bool { return east.Has(first) })

	m.Cut("westus", "eastus")
	moved := east.Push(t, "app", "stable", replicationtest.RandomLayer(t, 4<<10))
	west.DeleteTag(t, "app", "stable")
	tagState := func(r *replicationtest.Region) (clock uint64, origin string, deleted bool) {
		st, err := r.Meta.RepoState("app")
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range st.Tags {
			if tg.Tag == "stable" {
				return tg.Clock, tg.Origin, tg.Deleted
			}
		}
		t.Fatalf("%s has no state of the tag", r.Name)
		return 0, "", false
	}
	dc, do, _ := tagState(west)
	mc, mo, _ := tagState(east)
	wantDeleted := dc > mc || (dc == mc && do > mo)

	m.Heal("westus", "eastus")
	for _, r := range []*replicationtest.Region{west, east} {
		replicationtest.WaitFor(t, r.Name+" to settle the tag on the later write", func() bool {
			tag, err := r.Meta.Tag("app", "stable")
			if wantDeleted {
				return err != nil
			}
			return err == nil && tag.Digest == moved.Manifest
		})
	}
	replicationtest.WaitFor(t, "the summaries of app to agree", func() bool {
		sw, err1 := west.Meta.RepoSummaries()
		se, err2 := east.Meta.RepoSummaries()
		return err1 == nil && err2 == nil && sw["app"] == se["app"]
	})
}
