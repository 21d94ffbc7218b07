// Package base holds nothing itself: its subpackages are the foundations
// every layer of georeg may import, and that import nothing above them.
//
//   - base/meta: a region's registry metadata in bbolt (the Raft group's
//     state machine);
//   - base/oci: parsing and validation of OCI names, digests, manifests and
//     ranges;
//   - base/hlc: the hybrid logical clock that orders tag writes across regions;
//   - base/members: memberlist gossip among every node of a mesh;
//   - base/wan: the simulated wide-area network every process dials through
//     in a local mesh.
//
// The layers, bottom to top, and what each may import, are listed in the
// README ("Architecture") and checked by test/layers (make lint).
package base
