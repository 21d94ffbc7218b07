// Package connected is the model of a connected registry, after ACR's: a
// registry running at a site (a factory, a shop, a ship), managed as a
// resource of the cloud registry, that syncs a subset of the cloud's
// repositories from its parent (the cloud registry, or another connected
// registry) and serves local clients, also while the site is cut off.
//
// This package holds the definition and the rules a definition must follow
// on its own and against its parent; the control plane (region/control)
// stores definitions in the home region's Raft group.
package connected
