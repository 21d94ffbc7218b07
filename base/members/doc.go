// Package members runs memberlist gossip among every node of a mesh: each
// node announces its region, zone and addresses, learns everyone else's, and
// hears within about a second when a node stops answering. Zones use it to
// find their region's Raft peers and gRPC addresses; regions use it to find
// each other.
package members
