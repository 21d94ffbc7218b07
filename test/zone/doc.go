// Package zone tests a zone-redundant region end to end: three zone nodes
// started with bin/georeg, driven over HTTP by the tests' OCI client
// (test/ociclient), while bin/georeg chaos kills and restarts zones under them.
//
// The tests check what the region promises: no acknowledged push is lost
// when a zone dies, every node serves the same content with verified digests,
// a corrupt blob copy is never served and is repaired, writes without a
// majority of zones fail with 503 UNAVAILABLE and leave nothing behind, and
// the OCI conformance suite passes through a follower. Build the binaries
// first with `make build`.
package zone
