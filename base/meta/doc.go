// Package meta holds a region's registry metadata in bbolt: repositories,
// tags, manifests (with their bytes, which are small and bounded), the blob
// index and per-repository blob links, and the referrers index.
//
// # Basics
//
// Every change is a Command applied in one bbolt transaction by Store.Apply,
// so a change is all or nothing: a manifest whose blobs are missing is
// refused inside the same transaction that would have stored it, and a failed
// command leaves no partial record. Commands are plain values with a JSON
// encoding and Apply depends only on the command and the current state, so a
// replicated log (the zone Raft group) can carry them and every replica
// reaches the same state.
//
// # Caveats
//
// Blob bytes are not here; the blob index only records that a verified blob
// of a size exists. Upload sessions are node-local and live elsewhere.
package meta
