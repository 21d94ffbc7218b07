// Package healthcheck is the self-probe of georeg's container images.
//
// A container built FROM scratch has no shell and no curl, so the image's
// HEALTHCHECK runs the server binary itself in a probe mode
// (`regiond --health-check`, `trafficmgr --health-check`): it asks its own
// listener for GET /v2/ and exits 0 when the registry API is served (200,
// or 401 when authentication is on) and 1 otherwise. The URL and the CA the
// answer must be signed by come from flags or, as the image's fixed
// HEALTHCHECK line cannot carry per-container values, from the container's
// environment ([EnvURL], [EnvCA]).
package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Environment variables that configure a probe when its flags are not
// given.
const (
	// EnvURL is the URL probed, e.g. https://10.213.1.11:5000/v2/.
	EnvURL = "GEOREG_HEALTH_URL"
	// EnvCA is a PEM file of the CA an HTTPS answer must be signed by.
	EnvCA = "GEOREG_HEALTH_CA"
)

// DefaultURL is probed when neither a flag nor EnvURL names one.
const DefaultURL = "http://127.0.0.1:5000/v2/"

// DefaultTimeout bounds a probe when Config leaves it zero.
const DefaultTimeout = 2 * time.Second

// ErrUnhealthy is wrapped by the error of a probe that got an answer other
// than 200 or 401.
var ErrUnhealthy = errors.New("healthcheck: unhealthy")

// Config configures Probe.
type Config struct {
	// URL is probed with GET; empty means $GEOREG_HEALTH_URL, then
	// DefaultURL.
	URL string
	// CA is a PEM file of the CA an HTTPS server must present a
	// certificate of; empty means $GEOREG_HEALTH_CA. Without one an HTTPS
	// URL is refused: the probe never skips verification.
	CA string
	// Timeout bounds the whole probe; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Probe asks cfg.URL once and returns nil when it answers 200 or 401.
func Probe(ctx context.Context, cfg Config) error {
	if cfg.URL == "" {
		cfg.URL = os.Getenv(EnvURL)
	}
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	if cfg.CA == "" {
		cfg.CA = os.Getenv(EnvCA)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if cfg.CA != "" {
		pem, err := os.ReadFile(cfg.CA)
		if err != nil {
			return fmt.Errorf("healthcheck: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("healthcheck: no certificate in %s", cfg.CA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("%w: GET %s answered %s", ErrUnhealthy, cfg.URL, resp.Status)
	}
	return nil
}
