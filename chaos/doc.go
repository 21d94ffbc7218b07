// Package chaos runs a local georeg mesh on one machine and injects faults
// into it.
//
// A mesh is a set of regiond processes, one per zone of each region, started
// in the background by [Controller.Up] and described in DIR/mesh.json: the
// endpoint clients use, and for every node its HTTP address, process id, data
// directory, log file and the exact argv that started it. Every later command
// (status, down, kill, restart, partition, latency, ...) is a
// separate georeg invocation that finds the mesh again through that file, so
// the file is the whole state of the launcher and is rewritten atomically.
//
// # Basics
//
// Nodes run in their own session (setsid) so they outlive the georeg command
// that started them and do not receive its terminal's signals. Each writes
// stdout and stderr to DIR/logs/<region>-<zone>.log and keeps its state in
// DIR/data/<region>-<zone>; both survive kill, restart and down, so a
// restarted node comes back on its own data. A node counts as up when it
// answers GET /v2/ with 200 or 401.
//
// Ports are derived from the endpoint port P (see [Plan]): the traffic
// manager listens on P (the home region's location) and one port after it
// per other location; the nodes take the ports after those.
//
// Commands that change the mesh hold an exclusive lock on DIR/mesh.lock, so
// two of them never interleave their reads and writes of mesh.json.
//
// # Caveats
//
// Liveness is judged by process id. On Linux the process start time is
// recorded too, so a recycled pid is never mistaken for a node (and never
// signalled); elsewhere only the pid is checked. Processes and signals are
// Unix only.
//
// # Faults
//
// Kill and restart act on processes (a zone node, a whole region, a rolling
// restart); partition, heal, latency, bandwidth and loss rewrite the mesh's
// simulated WAN (base/wan), which every process rereads; endpoint toggles
// are replication updates through the control plane. The launcher lives
// here, above the traffic manager and the node, because every fault acts on
// what it started and on the file that describes it.
//
// # Container clusters
//
// [Cluster] runs the same mesh as containers of the local Docker engine
// (georeg cluster up): every zone node a container with its own address on
// its region's network, the traffic manager on an edge network and on every
// region's, and the WAN between two regions being each region's containers
// attached to the other's network. Killing a zone or a region is docker
// kill, a partition is docker network disconnect, so packets between cut
// regions really go nowhere. mesh.json describes a cluster too (Mesh.Docker
// set, addresses as published on the host's 127.0.0.1), so the management
// commands find its home region; the process commands refuse it with
// ErrContainerMesh. The simulated WAN's latency, bandwidth and loss have no
// counterpart there (the images have no tc; see docs/cluster.md).
package chaos
