// Package region makes one region out of its zone nodes.
//
// # Basics
//
// The zone nodes of a region form one Raft group (hashicorp/raft, log and
// stable store in bbolt). The replicated state machine is the region's
// metadata (base/meta): every metadata write is a meta.Command, encoded by
// meta.Encode, proposed by the leader; a follower forwards it to the leader
// over gRPC and waits until it has applied the entry itself before
// answering, so a client reads its own writes from the node it wrote
// through. Reads are served from the local replica, which may trail the
// leader by the entries in flight. The Group opens the node's meta.Store and
// is its only writer; what it hands out (itself, a meta.Reader with Apply)
// cannot write around the log.
//
// Blob bytes never go through Raft. Blobs (a storage.BlobStore) writes a blob
// to the local store and, while it does, streams the same bytes to as many
// other zones as a majority needs (chosen by digest, so the load spreads);
// it acknowledges once a majority of the region's zones (counting itself)
// hold a verified, fsynced copy. The blob's bytes are hashed once per
// region, by the node that sends them (the upload's own store write, or a
// pass over the stored copy it sends), and checked on the way by a CRC-32C
// per frame; the receivers store them without hashing them again
// (storage.VouchedPutter). The other zones then copy the committed blob in
// the background, once the node has streamed no upload for a moment (or after
// BlobsConfig.BackgroundWait), so that they do not slow the copies clients
// are waiting for; a streamed copy that fails is replaced at once by one of
// them. Copies travel over the blob stream protocol (BlobStreamMagic),
// which Serve offers on the gRPC port next to the Zone service. A node
// asked for a blob it lacks fetches it from another zone, verifies it and
// keeps it. The Repairer walks the blob index and fetches what the local
// store lacks or holds corrupt, after a restart, after a zone was down during
// writes, after corruption.
//
// Blob integrity has one owner on a node: its local store, a
// storage.Checked, which Blobs and Server write and check through and
// which alone knows which copies match their digests. Blobs.Check is the
// region's verified read (the local Check, then a fetch from another zone
// of a copy missing or corrupt here); the API calls it before it serves a
// blob and never marks a copy itself.
//
// # Caveats
//
// Blobs.Delete removes this zone's copy only; a later read fetches it
// again from a zone that holds it.
//
// Upload sessions are local to the node that holds them. When that node dies
// mid-upload the session is lost: other nodes answer BLOB_UPLOAD_UNKNOWN and
// the client starts a fresh upload, which succeeds on any node.
//
// The Raft group is bootstrapped once, when gossip shows all the region's
// expected zones; a region cannot grow zones after that in this version.
package region
