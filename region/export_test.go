package region

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/storage"
)

// What the tests of package region_test, which run clusters of
// region/regiontest (a package the internal tests cannot import: it
// imports region), share with the internal tests or reach inside.

// The helpers of helpers_test.go.
var (
	RandomBlob = randomBlob
	LinkBlob   = linkBlob
)

// Internals of Blobs.

// Replicate copies a blob the zone holds to the other zones (b.replicate).
func Replicate(b *Blobs, ctx context.Context, dgst digest.Digest, size int64) error {
	return b.replicate(ctx, dgst, size)
}

// LocalStore returns the zone's own store that b writes through.
func LocalStore(b *Blobs) *storage.Checked { return b.local }

// PlanCopies plans the copies of a blob about to be written and abandons
// the plan; ok is false when none could be planned.
func PlanCopies(b *Blobs, ctx context.Context, dgst digest.Digest) (streamed, later []members.Member, ok bool) {
	cp := b.newCopies(ctx, dgst, false)
	if cp == nil {
		return nil, nil, false
	}
	cp.abandon()
	return cp.streamed, cp.later, true
}

// BeginWriting marks a write with streamed copies in progress at b, until
// end is called.
func BeginWriting(b *Blobs) (end func()) {
	b.writing.begin()
	return b.writing.end
}

// FetchedIn returns the bytes b fetched from other zones.
func FetchedIn(b *Blobs) int64 { return b.fetchedIn.Load() }

// OtherZones returns the other zones b's gossip shows alive.
func OtherZones(b *Blobs) []members.Member { return otherZones(b.cfg.Members) }

// The forwarding protocol's result codec and kinds.
var (
	EncodeResult = encodeResult
	DecodeResult = decodeResult
)

const (
	KindManifestUnknown = kindManifestUnknown
	KindBlobUnknown     = kindBlobUnknown
	KindRepoUnknown     = kindRepoUnknown
	KindWebhookUnknown  = kindWebhookUnknown
	KindMissingContent  = kindMissingContent
	KindInternal        = kindInternal
)

// Snapshot has g's Raft take a snapshot now.
func Snapshot(g *Group) error { return g.raft.Snapshot().Error() }

// LastSnapshotIndex returns the index of g's last Raft snapshot.
func LastSnapshotIndex(g *Group) string { return g.raft.Stats()["last_snapshot_index"] }
