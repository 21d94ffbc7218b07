// Package ociclient is the small OCI Distribution client the end-to-end
// tests drive georeg with: plain net/http, every call naming the node it
// talks to, and every byte it reads checked against its digest, so a test
// sees exactly what each node answers.
package ociclient
