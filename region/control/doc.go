// Package control is the registry's control plane: the replications,
// webhooks and access state (tokens, scope maps, settings, signing keys)
// kept in the home region's Raft group and served to the CLI over gRPC
// (proto/control.proto), and the copy of that state every other region
// refreshes from the home region so that it keeps serving, and
// authenticating clients, while the home region is down. Plane is also the
// zone/auth Directory every request is checked against; with
// authentication on, management calls need the admin credential. The protocol's messages are converted to and from the
// metadata types in convert.go, so the CLI needs only the protocol.
package control
