// Command bench measures georeg against the CNCF distribution registry, and
// a 3-zone georeg region against a single georeg node, on this machine, in
// the same run, and prints a Markdown table per comparison, then a table of
// geo-replication, failover and scale figures. `make bench` runs it after
// building georeg and the pinned tools.
//
// A comparison puts two targets side by side; -compare lists them, by
// default georeg:distribution and georeg-3zones:georeg. A Target is anything
// that starts a registry and hands back its base URL: georeg through `georeg
// mesh up --zones 1` (or regiond directly before the launcher exists),
// georeg-3zones through `georeg mesh up --zones 3`, measured through its
// endpoint (the first zone node) once every node names the same Raft
// leader, and distribution with a generated filesystem config. All run on
// loopback, with their data under os.TempDir() and the same GOMAXPROCS (but
// georeg's traffic manager, which runs with `mesh up`'s default of one), and
// are driven by one net/http client with one tuned http.Transport, so only
// the servers differ.
//
// Each run of the workload measures, on each target in turn:
//
//   - pushing a big image (256 MiB in 8 layers of incompressible bytes by
//     default) with the standard monolithic flow: POST an upload session,
//     PUT the whole layer with ?digest=, then the config and the manifest,
//     several layers at once;
//   - pulling it back (manifest, then every blob read in full and checked
//     against its digest);
//   - pushing and pulling many small images (a unique 1 KiB layer, a config
//     and a manifest each) with a few concurrent clients;
//   - the latency of GET manifest by tag for every small image, one request
//     at a time.
//
// When a target of the comparison has several nodes (a region), both
// targets also measure the big image's push until every node holds it (not
// only the majority that acknowledged it) and a second pull of it with its
// blobs spread round-robin over every node. After each phase the benchmark
// waits, untimed, until a region's nodes hold the same blobs and Raft index,
// so that copies to the last zone do not land on the next measurement.
//
// At the start of every run the benchmark also writes a file as big as the
// big image to the targets' filesystem and fsyncs it: the disk's own
// durable write bandwidth, which bounds every push (both registries fsync
// each blob before acknowledging it). The report gives each push as a
// fraction of it and, for a region, how much of it the majority's copies
// used, since on one machine all zones share the disk.
//
// Every run pushes content neither registry has seen, identical for both
// targets. After a warm-up, the workload runs -runs times on each target,
// alternating which target goes first, and the table shows the medians. The
// ratio column is oriented so that 1.0 or more means the first target is at
// least as good as the second: first/second for throughput, second/first for
// times and latencies. The goal column gives the ratio each row should
// reach: 1.0 against distribution; for the region against one node, issue
// 3's targets (pull at least 1.0, push at least 0.5) and none elsewhere.
//
// A second table, "Geo-replication and failover", gathers the figures that
// have no twin target (section geo) and those at scale (section scale):
//
//   - on a mesh of westus, eastus and westeurope with one zone node each,
//     started by `georeg mesh up` with the traffic manager and the default
//     simulated WAN, every push going through westus's listener: the
//     replication latency of small images (from the push's acknowledgement
//     until a peer's node lists the tag; a tag list never reads through),
//     pushed one at a time and by -geo-pushers clients at once (one poller
//     per peer listing the repository's tags), that of the big image with `georeg chaos bandwidth` capping westus's
//     links (against the ideal, size/cap), the dedup ratio (bytes
//     replication sent each peer, from /metrics, over the distinct bytes of
//     images sharing a base layer), the latency the traffic manager adds to
//     a manifest GET (interleaved with GETs at the node it routes to, the
//     simulated client path set to 0 meanwhile), and failover and failback
//     of a pull loop through westus's listener while `georeg chaos
//     kill-region westus` and `chaos restart westus` run, with its failed
//     pulls;
//   - georeg (one node) and distribution, one after the other, loaded with
//     -scale-repos repositories of -scale-tags tags (one small image mounted
//     into each repository and its manifest PUT under each tag): the load's
//     time and server CPU time, the server's resident memory, and the
//     latency of `_catalog` pages and tag lists at that size;
//   - make run's mesh (westus, eastus and westeurope with three zone nodes
//     each and the traffic manager, section idle) left alone: after
//     -idle-settle, the user and system CPU time of its ten processes over
//     -idle-window, from /proc/PID/stat as the scale section reads it, in cores (issue 19's goal: 0.05).
//
// -only-section runs some of compare, geo, scale, sync and idle.
//
// The tables and the raw numbers (JSON) are also written to bench-results/
// at the repository root, with the date, the machine and the Go version.
//
// Caveats: client and servers share the machine's cores, so absolute numbers
// depend on the client too; the ratios are what the benchmark is for.
// MB means 10^6 bytes.
package main
