// Package meta holds a region's registry metadata in bbolt: repositories,
// tags, manifests (with their bytes, which are small and bounded), the blob
// index and per-repository blob links, and the referrers index.
//
// # Basics
//
// Every change is a Command applied in one bbolt transaction, so a change is
// all or nothing: a manifest whose blobs are missing is refused inside the
// same transaction that would have stored it, and a failed command leaves no
// partial record. Each operation is a type of its own holding only its
// arguments (LinkBlob, PutManifest, DeleteTag, PutWebhook, TransferBegin,
// ...). A command's effect depends only on the command and the current
// state, and Encode and Decode turn it into a stable envelope, so a
// replicated log (the region's Raft group) can carry commands and every
// replica reaches the same state: the group applies each entry with
// Store.ApplyAt and snapshots the store with Store.Snapshot and
// Store.Restore. A Store's read side is a Reader, which cannot write: the
// group owns the Store and hands out only its Reader, so nothing writes the
// metadata around the log.
//
// The replication outbox and the webhook notices are logs of their own in the
// store, appended in the same transaction as the write they report.
//
// # Caveats
//
// Blob bytes are not here; the blob index only records that a verified blob
// of a size exists. Upload sessions are node-local and live elsewhere.
package meta
