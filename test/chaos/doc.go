// Package chaos is georeg's chaos suite: scenarios that inject faults into a
// running local mesh (bin/georeg mesh up) while a recorded workload pushes
// and pulls through the traffic manager, then hold the recorded history and
// the converged mesh against the registry's invariants and write a
// scoreboard.
//
// # Basics
//
// A scenario is a Scenario value: the mesh it needs, a background workload
// (a WorkloadConfig: pushers and pullers at every client location, images
// sharing base layers, tag overwrites, deletes, referrers) and an Inject
// function that injects its faults (and any load of its own) and heals them
// before it returns. RunScenario starts the mesh, records every client
// operation in a History, samples Raft leaders and resource counts, waits
// for the mesh to converge and checks the invariants:
//
//	I1 every acknowledged push is pullable by digest from every region once converged
//	I2 no answer carries bytes that do not match the requested digest and size
//	I3 no region serves a manifest whose blobs it can neither serve nor fetch
//	I4 after healing, every region resolves every tag to the same client-written digest
//	I5 pulls through the endpoint do not fail during zone or region failover
//	I6 no goroutine, file-descriptor or upload-session leak in any node
//	I7 at most one Raft leader per term in every region
//
// Each scenario is a subtest of TestChaos. `make test` runs the short
// subset (scenarios marked Short, with reduced counts); the rest skip unless
// GEOREG_CHAOS=full, which `make chaos` sets. GEOREG_CHAOS_RESULTS names a
// directory to write scoreboard.json and scoreboard.md into. Every mesh runs
// with authentication and mutual TLS between nodes; GEOREG_CHAOS_TLS=1
// (`make chaos TLS=1`) also serves the endpoint and the nodes' HTTP over
// HTTPS (`mesh up --tls`).
//
// # Sites
//
// A scenario may run connected registries at sites of its mesh
// (Scenario.Sites, docs/connected.md): each is created in the cloud with a
// client token of its own and started by `georeg mesh add-site`, and the
// chaos verbs act on its links and node. Its local clients are a location
// of the history named after the site (the workload and the Recorder send
// them to the site's node with its client token), and the invariants hold
// the site too: I1 also pulls what was acknowledged at a site from that
// site (and, as every push, from every region), I3 fetches every manifest a
// site's tags name there, I4's convergence includes every site serving the
// regions' tags for the repositories it syncs, I5 counts the pulls of a
// site's clients, and I6 samples the site's node. A site may run on a test
// clock (SiteSpec.ClockAt), for scenarios placed in its sync windows.
//
// # Caveats
//
// The suite drives built binaries (make build) on one machine: every
// "region" is a set of local processes and the WAN is simulated, so times
// are those of a loaded two-core machine and the targets are about
// correctness (nothing lost, no wrong byte, no failed pull), not speed.
package chaos
