package chaos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// newProbeClient returns the HTTP client used to ask nodes whether they are
// up. It never goes through a proxy and keeps no idle connections, so probes
// of many short-lived nodes leave nothing behind.
//
// An HTTPS node must present a certificate of the mesh's CA in dir; the CA
// is read at each handshake, since Up makes it after the client exists.
func newProbeClient(dir string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				// Verified by VerifyConnection, against the mesh's CA.
				InsecureSkipVerify: true,
				VerifyConnection:   func(cs tls.ConnectionState) error { return verifyMeshCert(dir, cs) },
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// verifyMeshCert checks that the server of cs presented a certificate of
// the mesh's CA valid for the name or address dialled.
func verifyMeshCert(dir string, cs tls.ConnectionState) error {
	caPEM, err := os.ReadFile(filepath.Join(dir, TLSDir, "ca.crt"))
	if err != nil {
		return fmt.Errorf("chaos: the mesh's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("chaos: no certificate in the mesh's ca.crt")
	}
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("chaos: the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: pool, Intermediates: inter})
	return err
}

// probe asks the node at base (its URL) for GET /v2/. A node is up when it answers 200
// (no authentication) or 401 (authentication required): both mean the
// registry API is being served.
func probe(ctx context.Context, client *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("GET /v2/ answered %s", resp.Status)
	}
	return nil
}

// portFree reports whether addr can be listened on now.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// tailLines is how much of a log an error quotes.
const (
	tailLines = 30
	tailBytes = 8 << 10
)

// logTail returns the last lines of the log at path written after offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	from := max(offset, fi.Size()-tailBytes, 0)
	if from > fi.Size() {
		from = 0 // truncated since
	}
	b, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return "(the log is empty)"
	}
	lines := strings.Split(string(b), "\n")
	if from > offset && len(lines) > 1 {
		lines = lines[1:] // the first line is cut
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return strings.Join(lines, "\n")
}
