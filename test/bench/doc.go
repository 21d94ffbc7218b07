// Command bench measures georeg against the CNCF distribution registry on
// this machine, in the same run, and prints a Markdown table of the results.
// `make bench` runs it after building georeg and the pinned tools.
//
// A comparison puts two targets side by side (georeg against distribution by
// default). A Target is anything that starts a registry and hands back its
// base URL: georeg through `georeg mesh up` (or regiond directly before the
// launcher exists) and distribution with a generated filesystem config. Both
// run on loopback, with their data under os.TempDir() and the same
// GOMAXPROCS, and are driven by one net/http client with one tuned
// http.Transport, so only the servers differ.
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
// Every run pushes content neither registry has seen, identical for both
// targets. After a warm-up, the workload runs -runs times on each target,
// alternating which target goes first, and the table shows the medians. The
// ratio column is oriented so that 1.0 or more means the first target (georeg)
// is at least as good as the second: first/second for throughput,
// second/first for times and latencies.
//
// The table and the raw numbers (JSON) are also written to bench-results/ at
// the repository root, with the date, the machine and the Go version.
//
// Caveats: client and servers share the machine's cores, so absolute numbers
// depend on the client too; the ratios are what the benchmark is for.
// MB means 10^6 bytes.
package main
