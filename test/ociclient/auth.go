package ociclient

import (
	"net/http"
	"time"
)

// Credential is a user name and password a client sends as HTTP Basic
// authentication on every request, as georeg accepts directly from clients
// that send it. The zero Credential sends nothing.
type Credential struct {
	User, Password string
}

// IsZero reports whether c sends nothing.
func (c Credential) IsZero() bool { return c.User == "" && c.Password == "" }

// Transport returns a RoundTripper that adds c to every request that has no
// Authorization header of its own, then sends it with base (a fresh
// http.Transport without compression when base is nil). The zero Credential
// returns base as it is.
func (c Credential) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	}
	if c.IsZero() {
		return base
	}
	return &basicTransport{cred: c, base: base}
}

type basicTransport struct {
	cred Credential
	base http.RoundTripper
}

func (t *basicTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return t.base.RoundTrip(req)
	}
	// A RoundTripper must not modify the request it was given.
	r := req.Clone(req.Context())
	r.SetBasicAuth(t.cred.User, t.cred.Password)
	return t.base.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the transport below,
// so that http.Client.CloseIdleConnections reaches it through the wrapper.
func (t *basicTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// NewWithCredential is New with every request carrying cred.
func NewWithCredential(timeout time.Duration, cred Credential) *Client {
	c := New(timeout)
	c.HTTP.Transport = cred.Transport(c.HTTP.Transport)
	return c
}
