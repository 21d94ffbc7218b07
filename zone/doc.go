// Package zone assembles one zone node of a region, the process cmd/regiond
// runs: it opens the node's stores, joins the mesh's gossip and its region
// (region: the Raft group over the region's metadata and the
// majority-durable blob store), starts geo-replication (replication) and the
// control plane (region/control), and serves the OCI Distribution API
// (zone/api, with upload sessions from zone/upload) over HTTP, and the
// zone, replication and control services over gRPC.
//
// Nothing below this package knows about the others: the API sees its
// metadata and blobs through the small interfaces it defines (api.Metadata,
// storage.BlobStore), and replication reaches the region through
// replication.Metadata; Node is where they meet.
package zone
