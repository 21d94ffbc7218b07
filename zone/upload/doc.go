// Package upload keeps the blob upload sessions of one zone node: the bytes a
// client has sent so far, staged in a local file, with a running sha256 so
// that closing a session needs no second read of the data.
//
// # Basics
//
// A session belongs to the node that created it: its data is on that node's
// disk. Sessions survive a restart of the node (the staged file and a small
// info file are on disk; the hash state is rebuilt from the file when next
// needed). Idle sessions expire after Config.IdleTimeout and their files are
// removed. A client that loses its session (the node died, the session
// expired) gets ErrUnknown and starts a new upload.
//
// A session closed by a request that carries all of its bytes (POST, then
// one PUT with the whole blob) is not staged at all: StoreWhole lets the
// caller write them straight to the blob store, which in a zone-redundant
// region streams them to the other zones while they arrive.
//
// # Caveats
//
// Chunks must arrive in order: a chunk whose start is not the session's
// current size is refused with ErrOutOfOrder and changes nothing, and a
// chunk whose body ends early is rolled back.
package upload
