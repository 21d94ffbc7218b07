// Package consistency tests, end to end, what a client reads right after its
// own writes: a mesh of three regions of three zones started with
// `georeg mesh up` and driven over HTTP by the tests' OCI client
// (test/ociclient).
//
// The design promises that whichever zone answers, a client never reads
// older than its own acknowledged writes (read-your-writes) nor older than
// what it read before (monotonic reads), listings included. The traffic
// manager spreads a location's requests over the zones of its region, so a
// write acknowledged by one zone is read back from another.
//
// TestReadYourWrites writes through the endpoint and reads back at once, for
// every read endpoint of the distribution API, each with the write it must
// reflect:
//
//	tags list               a new tag
//	referrers               a new manifest with the subject asked about
//	_catalog                a new repository (paged with n and last from a
//	                        prefix of the run's own)
//	manifest GET by tag     the tag moved to another manifest
//	manifest HEAD by tag    the tag moved to another manifest
//	blob HEAD               a blob upload (monolithic or POST then PUT)
//
// Every write is followed by two reads. An answer is stale when it does not
// show the write just acknowledged, and a regression when it shows less than
// an earlier answer of the same endpoint; the test fails on either and
// prints the counts per endpoint and per answering zone with the first
// examples. It then does the same directly at a follower node, writing
// through the region's other zones, since the promise holds at a node too.
//
// There is no pause between a write and its reads: waiting for replication
// to settle would hide exactly what is tested. Build the binaries first with
// `make build`.
package consistency
