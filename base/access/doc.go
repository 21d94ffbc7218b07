// Package access is the registry's access model, after ACR's
// repository-scoped tokens: scope maps (named sets of repository
// permissions, with trailing-wildcard patterns), tokens (a scope map and two
// passwords kept only as bcrypt hashes, each with an optional expiry), the
// built-in pull, push and admin scope maps, and the registry's access
// settings (admin user, anonymous pull).
//
// It holds the model, its validation and its limits; the control plane
// stores it in the home region's Raft with a copy in every region, and the
// zone node's HTTP layer (zone/auth) checks requests against that copy.
package access
