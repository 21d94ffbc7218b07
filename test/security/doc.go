// Package security tests the trust boundaries of a running mesh from
// outside: a process that lacks the cluster's certificate (it speaks
// plaintext, offers no certificate, or one of another CA) and the gossip
// key can neither write metadata, call the control plane, copy blob bytes
// in, take part in Raft nor join the gossip, and nothing it sends is ever
// stored or served. Build the binaries first with `make build`.
package security
