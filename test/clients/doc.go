// Package clients holds georeg's end-to-end tests with real OCI clients: the
// docker CLI against the machine's Docker engine, skopeo, crane, regctl and
// oras. Each test starts a one-node mesh with `georeg mesh up`, pushes content
// through a client, pulls it back through the same or another client and
// checks that every manifest and blob has the digest that was pushed. The
// tests are the user's view of the zone node's OCI Distribution API: if a
// client people use every day cannot round-trip an image, the API is wrong,
// whatever the conformance tests say.
//
// # Basics
//
// The Go tools (crane, regctl, oras) are the versions pinned in tools/go.mod,
// built into bin/tools by `make tools`. skopeo and docker come from PATH; a
// missing client fails the test with the command that installs it, because a
// skipped client test would hide a broken registry in CI. Every client runs
// with HOME, DOCKER_CONFIG and REGCTL_CONFIG pointing into the test's
// temporary directory, so the tests read and write no user configuration.
//
// # Targets
//
// By default each test starts its own node. Two environment variables point
// the same tests elsewhere, which is how they were checked against the CNCF
// distribution registry as a reference:
//
//   - GEOREG_CLIENTS_URL=host:port (or http://host:port): use a registry that
//     is already running. Repository names carry a per-run suffix, so runs do
//     not collide.
//   - GEOREG_CLIENTS_TARGET=distribution: start bin/tools/registry (the CNCF
//     distribution registry) with filesystem storage for each test.
//
// # Caveats
//
// The Docker engine pushes and pulls itself, from its own daemon process, so
// the registry has to be reachable from the daemon. On this kind of machine
// the daemon runs on the host and treats 127.0.0.0/8 as insecure registries,
// so the node's 127.0.0.1:PORT address works over plain HTTP as is.
package clients
