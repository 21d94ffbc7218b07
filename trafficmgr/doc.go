// Package trafficmgr is the registry's one client endpoint: an HTTP reverse
// proxy in front of every zone node of every region that sends each request
// to the best healthy, enabled region for the client's location and fails
// over when a zone or region goes down, like Azure Traffic Manager's
// performance routing, but proxying rather than answering DNS.
//
// # Basics
//
// A Manager has one listener per client location (ListenerConfig); a client
// presents as a location by connecting to that location's listener, and the
// first listener is the default endpoint. Every ProbeInterval each location
// probes every node's GET /_georeg/health, through Options.Dial with that
// location so that a simulated WAN applies its latency and cuts to probes
// and proxied requests alike. A node is healthy for a location after
// RiseThreshold successful probes and down after FailThreshold failures (the
// first probe decides at once); a proxied request that cannot connect, or
// whose connection is reset before the response, takes the node down at
// once. A region's latency from a location is the lowest smoothed round
// trip among its healthy nodes. The region endpoint flags come from the
// health answers: a healthy home-region node's view, else the freshest.
//
// Route is the whole routing policy, a pure function: healthy, enabled
// regions by latency, the current one kept first unless another is faster by
// the hysteresis; disabled regions never. Within a region requests go
// round-robin to its healthy nodes. A route change is a failover (the
// current region went down or was disabled), a failback (back to a region
// that recovered) or a latency reroute; each is logged and counted.
//
// Requests stream both ways and are passed through unchanged but for the
// hop-by-hop headers, an absolute Location made relative and the
// Georeg-Location header naming the listener location. An upload session
// (/v2/<name>/blobs/uploads/<region>.<zone>.<uuid>) goes to the node that
// holds it; if that node is unreachable the client gets 404
// BLOB_UPLOAD_UNKNOWN and starts the upload again. GET and HEAD that fail
// before their response headers, or get 502, 503 or 504, are retried on the
// next node and region, and a blob download cut mid-stream is resumed from
// another node with a Range request, so a pull does not notice a zone or
// region dying. Other methods are retried only when no connection could be
// made, since their body streams through once.
//
// Blob downloads need not pass through here (Config.DataEndpoints, on by
// default): a blob GET goes to its node with DataLocationHeader naming the
// listener's location, and a node that holds the blob answers 307 to its
// data endpoint for that location with a short-lived signed URL, marked
// with DataRedirectHeader, whose absolute Location is passed on unchanged.
// The client then fetches the bytes from the node, and a node that dies
// mid-blob is the client's retry: a fresh request here, a fresh redirect to
// a healthy node. A client sending ProxyBlobsHeader gets the bytes through
// the relay, as every client does with data endpoints off.
//
// Every listener also serves GET /metrics (Prometheus, a registry of the
// Manager's own) and GET /_georeg/trafficmgr (Status as JSON).
//
// # Caveats
//
// A request that has sent part of its body when its node dies fails with 502
// UNAVAILABLE (retrying it is safe: every registry write is idempotent). A
// blob download that no node can resume aborts the client connection rather
// than end short. A GET waits up to five minutes for response headers from
// a node whose probes still pass, because a node reading a large blob
// through from another region answers only once it holds it.
package trafficmgr
