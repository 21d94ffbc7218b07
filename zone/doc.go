// Package region assembles one zone node of a region: the metadata store
// (meta), the blob store (storage), the upload sessions (upload) and the
// OCI Distribution API (api), served over HTTP.
//
// A Node is what cmd/regiond runs. Today a node is a region of one zone;
// zone replication (zone/) and geo-replication (replication/) plug in behind
// the same api.Metadata and storage.BlobStore seams, so the HTTP layer does
// not change when they arrive.
package region
