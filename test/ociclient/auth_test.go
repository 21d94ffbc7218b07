package ociclient

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// countingTransport counts CloseIdleConnections calls.
type countingTransport struct {
	http.RoundTripper
	closed int
}

func (c *countingTransport) CloseIdleConnections() { c.closed++ }

func TestCredentialTransport(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	base := &countingTransport{RoundTripper: http.DefaultTransport}
	c := &http.Client{Transport: Credential{User: "u", Password: "p"}.Transport(base)}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	if _, err := c.Do(req); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer x")
	if _, err := c.Do(req); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "Basic dTpw" || got[1] != "Bearer x" {
		t.Errorf("Authorization headers %q: want Basic on the first, the request's own on the second", got)
	}
	// Without this, a client's idle connections stay open through the
	// wrapper and count as the server's sockets (the chaos suite's I6).
	c.CloseIdleConnections()
	if base.closed != 1 {
		t.Errorf("CloseIdleConnections reached the transport below %d times, want 1", base.closed)
	}
	if tr := (Credential{}).Transport(base); tr != base {
		t.Errorf("the zero credential wraps its transport")
	}
}
