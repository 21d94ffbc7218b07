// Package site is the child side of a connected registry's sync (issue
// 17): a Syncer activates the connected registry at its parent with the
// connection string, applies the Config it gets back (client tokens and
// their scope maps) to the local access state, and copies the
// repositories the connected registry syncs into the local region,
// following the parent's events and comparing the whole when the events
// cannot say what changed. The protocol is base/connected's (wire.go);
// content moves through the parent's OCI Distribution API.
//
// The site serves from its local store whatever the link does: the
// Syncer only brings changes in, retrying with backoff while the parent
// is unreachable.
package site
