package healthcheck

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestProbe(t *testing.T) {
	handler := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
	}
	for _, tc := range []struct {
		name    string
		code    int
		wantErr error
	}{
		{"ok", http.StatusOK, nil},
		{"auth", http.StatusUnauthorized, nil},
		{"unavailable", http.StatusServiceUnavailable, ErrUnhealthy},
		{"redirect", http.StatusFound, ErrUnhealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(handler(tc.code))
			defer srv.Close()
			err := Probe(context.Background(), Config{URL: srv.URL + "/v2/"})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Probe: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestProbeTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	// No CA: the server's certificate is not trusted, and the probe does
	// not skip verification.
	if err := Probe(context.Background(), Config{URL: srv.URL + "/v2/"}); err == nil {
		t.Fatal("Probe of an untrusted HTTPS server succeeded")
	}
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvURL, srv.URL+"/v2/")
	t.Setenv(EnvCA, ca)
	if err := Probe(context.Background(), Config{}); err != nil {
		t.Fatalf("Probe with the CA from the environment: %v", err)
	}
}

func TestProbeNoServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/v2/"
	srv.Close()
	if err := Probe(context.Background(), Config{URL: url}); err == nil {
		t.Fatal("Probe of a closed port succeeded")
	}
}
