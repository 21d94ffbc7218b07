package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

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

// client returns an OCI client over HTTPS that trusts only the cluster's
// CA and sends the credential with every request.
func (e published) client(t *testing.T, timeout time.Duration) *ociclient.Client {
	t.Helper()
	pem, err := os.ReadFile(e.ca)
	harness.Must(t, err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", e.ca)
	}
	c := ociclient.New(timeout)
	c.HTTP.Transport = e.cred.Transport(&http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16,
		TLSClientConfig: &tls.Config{RootCAs: pool}})
	return c
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
	harness.Must(t, os.WriteFile(layer, layerTar(t, 128<<10), 0o644))

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
	retry503(t, skopeoEnv, "skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests",
		"--src-cert-dir", certDir, "--src-creds", creds, "docker://"+craneRef, layout)
	retry503(t, skopeoEnv, "skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests",
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

// pushLoop pushes small images one after another through the endpoint
// until stopped, recording each push the registry acknowledged and the
// longest time between two acknowledgements.
type pushLoop struct {
	c    *ociclient.Client
	base string // https://HOST
	repo string

	mu       sync.Mutex
	acked    map[string]digest.Digest // tag: digest
	failed   int
	lastErr  error
	last     time.Time // of the last acknowledgement
	gap      time.Duration
	gapEnded time.Time
	stop     chan struct{}
	done     chan struct{}
}

func startPushLoop(c *ociclient.Client, base, repo string) *pushLoop {
	l := &pushLoop{c: c, base: base, repo: repo, acked: map[string]digest.Digest{}, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *pushLoop) run() {
	defer close(l.done)
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		tag := fmt.Sprintf("p%04d", i)
		img := ociclient.NewImage(l.repo+":"+tag, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(uint64(i)+1, 4<<10)))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := l.c.PushImage(ctx, l.base, l.repo, tag, img)
		cancel()
		now := time.Now()
		l.mu.Lock()
		if err != nil {
			l.failed++
			l.lastErr = err
		} else {
			l.acked[tag] = img.Digest
			if !l.last.IsZero() && now.Sub(l.last) > l.gap {
				l.gap, l.gapEnded = now.Sub(l.last), now
			}
			l.last = now
		}
		l.mu.Unlock()
		if err != nil {
			// A refused push is retried soon, not at once: a node
			// that is gone refuses fast.
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// acks returns how many pushes the registry has acknowledged so far.
func (l *pushLoop) acks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitAcks waits until n more pushes than now are acknowledged, or fails t
// after timeout (a bound for a stuck cluster, not a figure measured).
func (l *pushLoop) waitAcks(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	want := l.acks() + n
	deadline := time.Now().Add(timeout)
	for l.acks() < want {
		if time.Now().After(deadline) {
			l.mu.Lock()
			err := l.lastErr
			l.mu.Unlock()
			t.Fatalf("push loop: %d of %d pushes acknowledged after %v; last error: %v", l.acks(), want, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// halt stops the loop and waits for its push in flight.
func (l *pushLoop) halt() {
	close(l.stop)
	<-l.done
}

// retry503 runs a client command as run does, and runs it again (up to
// three times in all, after 2 s and then 4 s) when it failed on a 503, as
// a user's script would. docker and crane retry a 503 themselves; this
// skopeo (Debian 12's 1.9) does not by default, and a region electing a
// new leader answers writes 503 for a moment: on this host, ten
// containers beside the conformance suite and three clients starve
// Raft's heartbeats now and then.
func retry503(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	const tries = 3
	for n := 1; ; n++ {
		out, err := try(env, "", commandTimeout, name, args...)
		if err == nil {
			return out
		}
		if n == tries || !strings.Contains(err.Error(), "503 Service Unavailable") {
			t.Fatal(err)
		}
		pause := time.Duration(n) * 2 * time.Second
		t.Logf("%s answered 503 (try %d of %d); again in %v: %v", name, n, tries, pause, err)
		time.Sleep(pause)
	}
}
