// Package control is the registry's control plane: the replications and
// webhooks kept in the home region's Raft group and served to the CLI over
// gRPC (proto/control.proto), and the copy of that state every other region
// refreshes from the home region so that it keeps serving while the home
// region is down. The protocol's messages are converted to and from the
// metadata types in convert.go, so the CLI needs only the protocol.
package control
