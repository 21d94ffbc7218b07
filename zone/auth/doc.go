// Package auth authenticates and authorizes a zone node's clients against
// the region's copy of the registry's access state (tokens, scope maps,
// settings, signing keys; see base/access).
//
// Clients authenticate the way every OCI client does: the Docker registry
// token flow (a 401 with a Bearer challenge whose realm is this registry's
// /oauth2/token; the token endpoint takes Basic credentials or a refresh
// token and returns a short-lived EdDSA-signed JWT for the part of the
// requested scopes the caller may have), or Basic credentials on every
// request. Every request is checked against the token's current state, so a
// disabled token or a regenerated password stops working as soon as the
// region's copy has the change, whatever tokens were issued before.
//
// # Brute force
//
// A password is a 256-bit random string, so guessing is hopeless; what an
// attacker can do is make the node hash. Verification therefore runs one
// bcrypt comparison at a time (at most one core), successes are cached per
// token version, and each client address and each user name may fail 10
// times in a burst and then 30 times a minute; past that a login is refused
// with 429 before any hashing.
package auth
