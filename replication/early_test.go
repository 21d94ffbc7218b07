package replication_test

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestEarlyBlobOffer offers a big layer as it lands in westus: eastus holds
// its bytes before any manifest references it, and the manifest's offer
// then fetches nothing more (one GetBlob of the layer in all).
func TestEarlyBlobOffer(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")
	layer := replicationtest.RandomLayer(t, 3<<20)
	d := west.PutBlob(t, "app", layer)
	west.Replicator.BlobLanded("app", d, int64(len(layer)))
	replicationtest.WaitFor(t, "eastus to hold the layer", func() bool {
		_, err := east.Blobs.Stat(context.Background(), d)
		return err == nil
	})
	if _, err := east.Meta.BlobLink("app", d); err == nil {
		t.Error("an early offer linked the layer into the repository before a manifest did")
	}
	img := west.Push(t, "app", "v1", layer)
	replicationtest.WaitFor(t, "eastus to hold the image", func() bool { return east.Has(img) })
	if n := west.BlobRequests(d); n != 1 {
		t.Errorf("westus served %d requests for the layer, want 1 (the early fetch)", n)
	}
}

// TestEarlyBlobOfferBadInput sends early offers that must be refused with
// INVALID_ARGUMENT before anything is fetched, and one of a blob the
// origin does not hold, which is accepted and stores nothing.
func TestEarlyBlobOfferBadInput(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	east := m.Region("eastus")
	good := digest.FromString("not held anywhere")
	tests := []struct {
		name string
		req  *replicationpb.OfferBlobRequest
	}{
		{"no origin", &replicationpb.OfferBlobRequest{Repo: "app", Digest: good.String(), Size: 2 << 20}},
		{"from itself", &replicationpb.OfferBlobRequest{Origin: "eastus", Repo: "app", Digest: good.String(), Size: 2 << 20}},
		{"bad repository", &replicationpb.OfferBlobRequest{Origin: "westus", Repo: "App/../x", Digest: good.String(), Size: 2 << 20}},
		{"bad digest", &replicationpb.OfferBlobRequest{Origin: "westus", Repo: "app", Digest: "sha256:xyz", Size: 2 << 20}},
		{"small", &replicationpb.OfferBlobRequest{Origin: "westus", Repo: "app", Digest: good.String(), Size: 10}},
		{"negative size", &replicationpb.OfferBlobRequest{Origin: "westus", Repo: "app", Digest: good.String(), Size: -1}},
		{"huge", &replicationpb.OfferBlobRequest{Origin: "westus", Repo: "app", Digest: good.String(), Size: 1 << 50}},
		{"unknown origin", &replicationpb.OfferBlobRequest{Origin: "mars", Repo: "app", Digest: good.String(), Size: 2 << 20}},
	}
	before, err := east.Meta.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := east.Replicator.OfferBlob(t.Context(), tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("OfferBlob = %v, want INVALID_ARGUMENT", err)
			}
		})
	}
	resp, err := east.Replicator.OfferBlob(t.Context(), &replicationpb.OfferBlobRequest{Origin: "westus", Repo: "app", Digest: good.String(), Size: 2 << 20})
	if err != nil || !resp.Started {
		t.Fatalf("OfferBlob of a blob westus lacks = %v, %v; want a fetch started", resp, err)
	}
	replicationtest.WaitFor(t, "the fetch to give up", func() bool { return m.Count("early blob fetch") > 0 })
	time.Sleep(100 * time.Millisecond)
	if _, err := east.Blobs.Stat(context.Background(), good); err == nil {
		t.Error("eastus stored a blob westus does not hold")
	}
	after, err := east.Meta.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Error("early offers changed eastus's metadata")
	}
}

// TestCloseStopsEarlyFetch closes eastus's replicator while an early fetch
// crawls over a link of 1 MB/s: Close stops it and waits for it, in far
// less than the fetch would take.
func TestCloseStopsEarlyFetch(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	m.SetLink(wan.Link{A: "westus", B: "eastus", Bandwidth: 1_000_000})
	west, east := m.Region("westus"), m.Region("eastus")
	layer := replicationtest.RandomLayer(t, 16<<20)
	d := west.PutBlob(t, "app", layer)
	west.Replicator.BlobLanded("app", d, int64(len(layer)))
	replicationtest.WaitFor(t, "the early fetch to bring bytes", func() bool { return east.BytesReceived("westus") > 0 })
	start := time.Now()
	east.Replicator.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with an early fetch running", took)
	}
	if n := m.Count("closing with early blob fetches still running"); n > 0 {
		t.Error("Close returned before the early fetch did")
	}
	got := east.BytesReceived("westus")
	time.Sleep(500 * time.Millisecond)
	if more := east.BytesReceived("westus") - got; more > 0 {
		t.Errorf("the early fetch went on after Close: %d more bytes", more)
	}
}
