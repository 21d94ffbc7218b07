package replication_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestBadOfferRefused offers eastus batches that are malformed (among
// them inline blobs that do not match their digests or the manifest's
// descriptors), name repositories no registry could hold, or claim a
// cursor beyond the origin's outbox: each is refused with INVALID_ARGUMENT and a message
// saying why, and eastus's metadata does not change, even where the
// batch's other events are good.
func TestBadOfferRefused(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	east := m.Region("eastus")

	now := time.Now()
	clock := uint64(now.UnixMilli()) << 16
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":2},"layers":[]}`)
	push := func(seq uint64, repo, tag string) *replicationpb.Event {
		return &replicationpb.Event{Seq: seq, Repo: repo, Clock: clock, Origin: "westus", Time: timestamppb.New(now),
			Change: &replicationpb.Event_PutManifest{PutManifest: &replicationpb.PutManifest{
				Tag: tag, Digest: digest.FromBytes(manifest).String(),
				MediaType: "application/vnd.oci.image.manifest.v1+json", Content: manifest,
			}}}
	}
	delTag := func(seq uint64, repo, tag string) *replicationpb.Event {
		return &replicationpb.Event{Seq: seq, Repo: repo, Clock: clock, Origin: "westus", Time: timestamppb.New(now),
			Change: &replicationpb.Event_DeleteTag{DeleteTag: &replicationpb.DeleteTag{Tag: tag}}}
	}
	with := func(e *replicationpb.Event, f func(*replicationpb.Event)) *replicationpb.Event { f(e); return e }
	// An image whose config ("{}") and 64 KiB + 1 layer are real, to carry
	// inline.
	config, wide := []byte("{}"), make([]byte, 64<<10+1)
	image := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromBytes(config).String() + `","size":2},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + digest.FromBytes(wide).String() + `","size":65537}]}`)
	pushInline := func(seq uint64, blobs ...*replicationpb.InlineBlob) *replicationpb.Event {
		return with(push(seq, "app", "v9"), func(e *replicationpb.Event) {
			pm := e.GetPutManifest()
			pm.Content, pm.Digest, pm.Blobs = image, digest.FromBytes(image).String(), blobs
		})
	}
	inline := func(d digest.Digest, data []byte) *replicationpb.InlineBlob {
		return &replicationpb.InlineBlob{Digest: d.String(), Data: data}
	}

	tests := []struct {
		name        string
		req         *replicationpb.OfferBatchRequest
		wantMessage string
	}{
		{"no origin", &replicationpb.OfferBatchRequest{Head: 1, Events: []*replicationpb.Event{delTag(1, "app", "v1")}},
			"names no origin region"},
		{"from this region", &replicationpb.OfferBatchRequest{Origin: "eastus", Head: 1, Events: []*replicationpb.Event{delTag(1, "app", "v1")}},
			"this region"},
		{"event without a change", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), {Seq: 2, Repo: "app", Clock: clock, Origin: "westus"}}},
			"no known change"},
		{"manifest not matching its digest", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), with(push(2, "app", "v2"), func(e *replicationpb.Event) {
				e.GetPutManifest().Content = append([]byte(" "), manifest...)
			})}},
			"does not match its digest"},
		{"manifest that does not parse", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 1, Events: []*replicationpb.Event{
			with(push(1, "app", "v1"), func(e *replicationpb.Event) {
				e.GetPutManifest().Content = []byte("{")
				e.GetPutManifest().Digest = digest.FromString("{").String()
			})}},
			"manifest sha256:"},
		{"bad digest", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 1, Events: []*replicationpb.Event{
			with(push(1, "app", "v1"), func(e *replicationpb.Event) { e.GetPutManifest().Digest = "sha256:nothex" })}},
			"digest \"sha256:nothex\""},
		{"bad tag", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 1, Events: []*replicationpb.Event{delTag(1, "app", "-v1")}},
			"tag \"-v1\""},
		{"no clock", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 1, Events: []*replicationpb.Event{
			with(delTag(1, "app", "v1"), func(e *replicationpb.Event) { e.Clock = 0 })}},
			"has no clock"},
		{"clock far ahead", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 1, Events: []*replicationpb.Event{
			with(delTag(1, "app", "v1"), func(e *replicationpb.Event) { e.Clock = uint64(now.Add(time.Hour).UnixMilli()) << 16 })}},
			"ahead of this node's"},
		{"unknown repository: empty name", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			push(1, "app", "v1"), delTag(2, "", "v1")}},
			"repository \"\""},
		{"unknown repository: invalid name", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			push(1, "app", "v1"), push(2, "../App", "v1")}},
			"repository \"../App\""},
		{"cursor from the future", &replicationpb.OfferBatchRequest{Origin: "westus", After: 5, Head: 3, Events: []*replicationpb.Event{delTag(6, "app", "v1")}},
			"beyond the origin's newest event 3"},
		{"event from the future", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			push(1, "app", "v1"), delTag(3, "app", "v1")}},
			"event 3 is beyond the origin's newest event 2"},
		{"event at or before the cursor", &replicationpb.OfferBatchRequest{Origin: "westus", After: 4, Head: 9, Events: []*replicationpb.Event{delTag(4, "app", "v1")}},
			"event 4 follows event 4"},
		{"sequences out of order", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 9, Events: []*replicationpb.Event{
			push(2, "app", "v1"), delTag(1, "app", "v1")}},
			"sequences must grow"},
		{"inline blob not matching its digest", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), pushInline(2, inline(digest.FromBytes(config), []byte("[]")))}},
			"does not match its digest"},
		{"inline blob with a malformed digest", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), pushInline(2, inline("sha256:nothex", config))}},
			"inline blob \"sha256:nothex\""},
		{"inline blob the manifest does not reference", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), pushInline(2, inline(digest.FromString("xx"), []byte("xx")))}},
			"is not a blob of the manifest"},
		{"inline blob of another size than its descriptor", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), pushInline(2, inline(digest.FromBytes(config), []byte("{} ")))}},
			"holds 3 bytes, the manifest says 2"},
		{"inline blob twice", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), pushInline(2, inline(digest.FromBytes(config), config), inline(digest.FromBytes(config), config))}},
			"comes twice"},
		{"inline blob too big", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 2, Events: []*replicationpb.Event{
			delTag(1, "app", "v1"), pushInline(2, inline(digest.FromBytes(wide), wide))}},
			"more than 65536"},
		{"good inline blob beside a bad one", &replicationpb.OfferBatchRequest{Origin: "westus", Head: 3, Events: []*replicationpb.Event{
			pushInline(1, inline(digest.FromBytes(config), config)), delTag(2, "app", "v1"),
			pushInline(3, inline(digest.FromBytes(config), []byte("[]")))}},
			"event 3: manifest"},
	}
	blobCount := func(t *testing.T) int {
		n := 0
		if err := east.Blobs.Walk(t.Context(), func(digest.Digest, int64) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blobsBefore := blobCount(t)
			before, err := east.Meta.Digest()
			if err != nil {
				t.Fatal(err)
			}
			_, err = east.Replicator.OfferBatch(t.Context(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.wantMessage) {
				t.Fatalf("OfferBatch: %v, want INVALID_ARGUMENT saying %q", err, tt.wantMessage)
			}
			if !strings.Contains(status.Convert(err).Message(), "nothing applied") {
				t.Errorf("the refusal %q does not say that nothing was applied", status.Convert(err).Message())
			}
			after, err := east.Meta.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Error("a refused batch changed eastus's metadata")
			}
			if n := blobCount(t); n != blobsBefore {
				t.Errorf("a refused batch changed eastus's blobs: %d, were %d", n, blobsBefore)
			}
		})
	}

	// One event at a time, as an older sender offers: a bad one is refused
	// the same way, a good one applies.
	if _, err := east.Replicator.Offer(t.Context(), &replicationpb.OfferRequest{Origin: "westus", Event: delTag(1, "a//b", "v1")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Offer of an event for repository a//b: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := east.Replicator.Offer(t.Context(), &replicationpb.OfferRequest{Origin: "westus"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Offer without an event: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := east.Replicator.Offer(t.Context(), &replicationpb.OfferRequest{Origin: "westus", Event: delTag(1, "app", "v1")}); err != nil {
		t.Fatalf("Offer of a good event: %v", err)
	}
	if tag, err := east.Meta.Tag("app", "v1"); err == nil {
		t.Errorf("eastus holds app:v1 (%s) after its replicated delete", tag.Digest)
	}
	st, err := east.Meta.RepoState("app")
	if err != nil || len(st.Tags) != 1 || !st.Tags[0].Deleted {
		t.Errorf("eastus's state of app is %+v (%v), want one tag tombstone", st, err)
	}
}
