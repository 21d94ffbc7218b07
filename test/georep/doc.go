// Package georep tests geo-replication end to end: meshes of three regions
// (westus, eastus, westeurope) started with bin/georeg, driven over HTTP by
// the tests' OCI client (test/ociclient), while bin/georeg chaos kills and
// restarts regions and Raft leaders under them.
//
// The tests check what replication promises: an image pushed to one region
// becomes pullable with the same digest everywhere; a layer crosses to a
// peer region once however many images share it (bytes read from /metrics);
// concurrent writes of one tag in two regions converge on one digest with
// both manifests kept; a region cut off while others push and delete
// converges to identical repository, tag and digest maps when it returns; a
// transfer cut by the death of a Raft leader resumes instead of starting
// over; and a pull from a region replication has not reached yet succeeds
// through read-through. They print their figures (replication times, bytes
// sent and received). Build the binaries first with `make build`.
package georep
