// Package tools pins the command-line tools georeg's tests and benchmarks
// drive (crane, regctl, oras, versitygw, the CNCF distribution registry)
// with tool directives, so `go tool` and `make tools` build the same versions
// on every machine.
package tools
