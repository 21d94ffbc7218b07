// Package control is the registry's control plane: the replications (and,
// later, webhooks, tokens and locks) kept in the home region's Raft group and
// served to the CLI over gRPC, and the copy of that state every other region
// refreshes from the home region so that it keeps serving while the home
// region is down.
package control
