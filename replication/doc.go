// Package replication keeps the regions of a registry in step: active-active
// geo-replication with deduplicated, resumable blob transfer, last-writer-wins
// tags, tombstoned deletes, anti-entropy and read-through.
//
// # Basics
//
// A local write (a manifest push, a tag or manifest delete) appends an
// event to the region's outbox in the same Raft entry as the write
// (base/meta), so no acknowledged write is forgotten. The leader of each
// region's Raft group runs a Replicator: for every peer region it offers the
// outbox events in order, in batches, several in flight (OfferBatch,
// sender.go). The peer checks a whole batch before applying any of it
// (offer.go), then applies its events concurrently, in order wherever two
// touch the same tag or manifest. It fetches only the blobs it does not
// already hold in any repository, from the offering region, in chunks that
// resume where a cut transfer stopped, makes them majority-durable in its own
// zones, and commits the manifest and tag through its own Raft log. The
// offering leader then advances the peer's cursor past the batches the peer
// answered, in order; events every peer holds
// are dropped. Delivery is idempotent and retried with exponential backoff
// and jitter. Events and repository states travel as the messages of
// proto/replication.proto (convert.go); a push carries its manifest's bytes
// and the small blobs it references (inline.go), which the peer then need
// not fetch. A big blob is offered as soon as a client stores it (OfferBlob,
// early.go), so that its bytes cross while the client still pushes; the
// manifest's offer joins that fetch.
//
// Tags are last-writer-wins on (hybrid logical clock, origin region) and
// deletes leave tombstones with the same clock, so every region reaches the
// same state whatever the delivery order. Anti-entropy compares per-repository
// summaries with every peer every few seconds and pulls whatever events
// missed; a new region's initial sync is the same pull. Read-through: a
// region asked for a manifest or blob it lacks fetches it from a peer that
// has it, so replication lag never fails a pull.
//
// # Caveats
//
// Offers go from the origin region to every other region directly (a full
// mesh); a region that is down past the outbox's bound (Config.OutboxMaxEvents,
// OutboxMaxAge) has its events dropped and catches up through anti-entropy.
package replication
