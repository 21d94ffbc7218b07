// Package endpoint tests the traffic manager end to end: a mesh of three
// regions of three zones (westus home, eastus, westeurope) behind
// bin/trafficmgr, with the simulated WAN between them, started with
// `georeg mesh up` and driven over HTTP through the traffic manager's
// listeners, one per simulated client location.
//
// The tests check that each location is served by its nearest region
// (the Georeg-Region header names the region that answered); that
// `georeg chaos latency` moves a location to the next-best region and back;
// that a push whose blobs go through one location and whose manifest goes
// through another succeeds; that `replication update
// --region-endpoint-enabled=false` takes a region out of client traffic while
// it keeps replicating; that pulls through the endpoint see no failure while
// the region serving them is killed, and fail back after it restarts; and
// that pushes through the endpoint lose nothing when a zone dies under them;
// that a blob GET of 1 MiB or more is redirected to the serving node's data
// endpoint with a signed URL that cannot be replayed for another digest,
// another repository or a disabled token; and that a node killed in the
// middle of a redirected download costs the client one retry through the
// endpoint, which redirects it to a healthy node.
// They print the times they measure. Build the binaries first with
// `make build`.
package endpoint
