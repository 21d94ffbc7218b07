// Package oci parses and validates what the OCI distribution and image
// specifications define and georeg accepts from clients: repository names,
// tags and references, digests, Content-Range and Range headers, and
// manifests (OCI image manifest and index, Docker schema 2 manifest and
// manifest list).
//
// Every parser here sees untrusted input straight off the wire, so each one
// is total (it returns an error, never panics) and is fuzzed
// (go test -fuzz). Nothing here does I/O.
package oci
