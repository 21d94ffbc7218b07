package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// published is the cluster's published endpoint as its clients see it: an
// HTTPS host of the cluster's CA, and a push token's credential.
type published struct {
	host string // 127.0.0.1:PORT
	ca   string // the CA certificate's file
	cred ociclient.Credential
	// dockerConfig is the DOCKER_CONFIG directory `docker login` wrote
	// the credential to; crane reads it there too.
	dockerConfig string
}

// craneAndSkopeo pushes an image with crane and pulls it, then pulls it
// with skopeo into an OCI layout and pushes that to another repository,
// every client verifying the endpoint's certificate with the cluster's CA
// (crane through SSL_CERT_FILE, skopeo through a certificate directory, as
// test/clients drives them over TLS) and logging in with the push token.
// The digests must survive every leg.
func craneAndSkopeo(t *testing.T, ep published) {
	t.Helper()
	crane := harness.Tool(t, "crane")
	craneEnv := []string{"DOCKER_CONFIG=" + ep.dockerConfig, "SSL_CERT_FILE=" + ep.ca}
	work := t.TempDir()

	layer := filepath.Join(work, "layer.tar")
	payload := make([]byte, 128<<10)
	rand.Read(payload)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	harness.Must(t, tw.WriteHeader(&tar.Header{Name: "payload", Mode: 0o644, Size: int64(len(payload)), ModTime: time.Now()}))
	_, err := tw.Write(payload)
	harness.Must(t, err)
	harness.Must(t, tw.Close())
	harness.Must(t, os.WriteFile(layer, buf.Bytes(), 0o644))

	craneRef := ep.host + "/e2e/crane:v1"
	start := time.Now()
	out := run(t, craneEnv, "", crane, "append", "--oci-empty-base", "-f", layer, "-t", craneRef)
	pushed := strings.TrimSpace(out)
	_, want, ok := strings.Cut(pushed, "@")
	if !ok {
		t.Fatalf("crane append printed %q, want REF@DIGEST", pushed)
	}
	// crane pull checks every blob against its digest as it reads it.
	run(t, craneEnv, "", crane, "pull", craneRef, filepath.Join(work, "crane.tar"))
	if got := strings.TrimSpace(run(t, craneEnv, "", crane, "digest", craneRef)); got != want {
		t.Errorf("crane digest %s: %s, crane pushed %s", craneRef, got, want)
	}
	t.Logf("crane push and pull of %s (%s) in %v", craneRef, want, time.Since(start).Round(time.Millisecond))

	certDir := filepath.Join(work, "certs")
	harness.Must(t, os.MkdirAll(certDir, 0o755))
	b, err := os.ReadFile(ep.ca)
	harness.Must(t, err)
	harness.Must(t, os.WriteFile(filepath.Join(certDir, "ca.crt"), b, 0o644))
	creds := ep.cred.User + ":" + ep.cred.Password
	skopeoRef := ep.host + "/e2e/skopeo:v1"
	layout := "oci:" + filepath.Join(work, "layout") + ":v1"
	start = time.Now()
	skopeoEnv := []string{"HOME=" + work, "XDG_RUNTIME_DIR=" + work}
	run(t, skopeoEnv, "", "skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests",
		"--src-cert-dir", certDir, "--src-creds", creds, "docker://"+craneRef, layout)
	run(t, skopeoEnv, "", "skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests",
		"--dest-cert-dir", certDir, "--dest-creds", creds, layout, "docker://"+skopeoRef)
	raw := run(t, skopeoEnv, "", "skopeo", "inspect", "--raw", "--cert-dir", certDir, "--creds", creds, "docker://"+skopeoRef)
	sum := sha256.Sum256([]byte(raw))
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Errorf("skopeo pushed %s with digest %s, pulled %s", skopeoRef, got, want)
	}
	if got := strings.TrimSpace(run(t, craneEnv, "", crane, "digest", skopeoRef)); got != want {
		t.Errorf("crane digest %s: %s, skopeo pushed %s", skopeoRef, got, want)
	}
	t.Logf("skopeo pull and push of %s in %v", skopeoRef, time.Since(start).Round(time.Millisecond))
}
