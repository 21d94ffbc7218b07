// Package api serves the OCI Distribution API v1.1 over HTTP for one zone
// node: the pull, push, content discovery (tags, catalog, referrers) and
// content management workflows.
//
// The handler depends only on small interfaces it declares (Metadata for the
// registry's metadata, Blobs for bytes, Uploads for sessions), so the same
// handler serves a single node, a Raft-replicated zone group and a
// connected registry.
//
// The handler does not own the integrity of blob bytes: the blob layer
// does (region.Blobs over a storage.Checked). Its writes check the bytes
// against their digest and mark the copies they make; before every read
// the handler asks Blobs.Check, which hashes a copy unless it is known good
// and replaces a corrupt one. The handler never marks a copy verified. Every error a client sees is an OCI error code in the
// spec's JSON envelope (errcode.go), and a refused request changes nothing.
//
// Access control hooks in through Authorizer: every route declares the
// repository and action it needs before any work is done.
package api
