// Package conformance is georeg's own OCI Distribution Specification v1.1
// conformance suite. It drives a registry purely over HTTP, as the official
// conformance tool (github.com/opencontainers/distribution-spec/conformance)
// does, and checks the spec's four workflow categories — Pull, Push, Content
// Discovery and Content Management — plus cross-repository mounts, sha512
// digests, the repository-name and tag grammars, and the rule that a
// rejected request changes nothing.
//
// The checks are written from the spec text, not from georeg's code: each
// check's name starts with the spec section it comes from, for example
// push/pushing-a-blob-in-chunks/out-of-order-chunk-416. A MUST that is not
// met fails the check; a SHOULD that is not met is reported as a warning.
//
// The suite lives in conformance_test.go and its siblings. By default it
// starts a one-zone georeg mesh with bin/georeg (build it with `make build`).
// Environment variables point it elsewhere:
//
//	GEOREG_CONFORMANCE_URL=http://127.0.0.1:5000   an already-running registry
//	GEOREG_CONFORMANCE_TARGET=distribution         start bin/tools/registry (CNCF
//	                                               distribution, `make tools`) as
//	                                               the reference implementation, or
//	                                               name the registry at the URL
//	OCI_USERNAME, OCI_PASSWORD                     the credential to send (HTTP Basic),
//	                                               as the official tool takes it
//	SSL_CERT_FILE=ca.crt                           the CA an https URL's certificate is
//	                                               signed by, when not the system's
//	                                               (Go reads its roots from there)
//
// The georeg meshes it starts run with authentication on (`mesh up
// --auth`), and the suite sends a token with the built-in admin scope map.
//
// test/cluster runs TestConformance this way through the endpoint of the
// container cluster (HTTPS with the cluster's own CA, authentication on).
//
// With the distribution target, the checks where distribution is known to
// deviate from the spec are reported as known deviations instead of failures.
//
// TestConformanceMesh runs the whole suite several times in a row (3 in
// make test; issue 13's acceptance is 20) through the endpoint of a default
// mesh (three regions of three zones behind the traffic manager), each round
// under its own repository prefix. The traffic manager spreads a client's
// requests over the zones of its region, so each check reads back from other
// zones what it has just written: the suite must pass whichever zone
// answers. GEOREG_CONFORMANCE_ROUNDS=N runs N rounds instead; the test is
// skipped when the variables above point the suite at another registry.
package conformance
