package security

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestHTTPSEndpoint: with `mesh up --tls` the endpoint's locations and the
// nodes serve HTTPS with certificates of the mesh's CA, which a client
// that trusts the CA verifies; plain HTTP is not served there. An image
// pushed through one location is pulled through the other, after it
// crossed the regions over mutual TLS.
func TestHTTPSEndpoint(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus,eastus", "--zones", "1", "--tls")
	ctx := t.Context()
	if m.TLS == nil {
		t.Fatalf("the harness does not see the mesh as HTTPS")
	}
	// The harness trusts the mesh's CA and builds https URLs.
	c := m.Client(30 * time.Second)
	west, east := m.Locations["westus"], m.Locations["eastus"]
	targets := []string{west, east}
	for _, n := range m.Nodes {
		targets = append(targets, n.URL())
	}
	for _, base := range targets {
		if !strings.HasPrefix(base, "https://") {
			t.Fatalf("the harness gives %s for a mesh started with --tls", base)
		}
		err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
			_, _, err := c.Do(ctx, http.MethodGet, base, "/v2/", nil, nil, http.StatusOK)
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("GET %s/v2/: %v", base, err)
		}
	}
	// Plain HTTP is not served on these ports, and a client that does
	// not trust the mesh's CA refuses the certificate.
	for _, base := range []string{west, m.Nodes[0].URL()} {
		plain := ociclient.New(5 * time.Second)
		if _, _, err := plain.Do(ctx, http.MethodGet, "http://"+strings.TrimPrefix(base, "https://"), "/v2/", nil, nil, http.StatusOK, http.StatusUnauthorized); err == nil {
			t.Errorf("plain HTTP to %s answered", base)
		}
		if _, _, err := plain.Do(ctx, http.MethodGet, base, "/v2/", nil, nil, http.StatusOK, http.StatusUnauthorized); err == nil {
			t.Errorf("HTTPS to %s without trusting the mesh's CA answered", base)
		}
	}

	img := ociclient.NewImage("https", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(3, 3<<20)))
	if err := c.PushImage(ctx, west, "security/https", "1", img); err != nil {
		t.Fatal(err)
	}
	err := ociclient.Poll(ctx, 60*time.Second, 250*time.Millisecond, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := c.PullImage(cctx, east, "security/https", "1")
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("pull through eastus's location: %v", err)
	}
}
