package clients

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/test/harness"
)

// TestTLS pushes and pulls with every client through the HTTPS endpoint of
// a mesh started with --tls (three regions of one zone, authentication
// on), each client trusting the mesh's CA the way it is told of a private
// CA: docker through /etc/docker/certs.d/HOST/ca.crt, skopeo with
// --src-cert-dir/--dest-cert-dir, crane, regctl and oras through
// SSL_CERT_FILE. None of them is told to skip verification.
func TestTLS(t *testing.T) {
	docker := newClient(t, lookPath(t, "docker", dockerInstall))
	skopeo := newClient(t, lookPath(t, "skopeo", "apt-get install -y skopeo (Debian package; .ci/run installs it)"))
	crane := newClient(t, harness.Tool(t, "crane"))
	regctl := newClient(t, harness.Tool(t, "regctl"))
	oras := newClient(t, harness.Tool(t, "oras"))
	start := time.Now()
	m := harness.StartMesh(t, "--zones", "1", "--tls")
	reg := meshRegistry(m)
	if !strings.HasPrefix(reg.base, "https://") {
		t.Fatalf("a mesh started with --tls answers at %s", reg.base)
	}
	waitRegistry(t, reg)
	t.Logf("mesh up (3 regions x 1 zone, --tls) in %v, endpoint %s", time.Since(start).Round(time.Millisecond), reg.base)
	ca := filepath.Join(m.Dir, chaos.TLSDir, "ca.crt")
	for _, c := range []*client{docker, skopeo, crane, regctl, oras} {
		c.env = append(c.env, "SSL_CERT_FILE="+ca)
		reg.login(t, c)
	}

	// crane pushes an image of the OCI layout.
	l := newLayout(t, t.TempDir())
	img := l.image("amd64", []int{16 << 10, 2 << 20}) // the second is redirected to a data endpoint
	l.tag(img, "v1")
	l.write()
	repo := repoName("tls-crane")
	crane.run(t, "push", l.dir, reg.host+"/"+repo+":v1")
	checkTree(t, reg, repo, img.Digest, l.blobs)

	// regctl copies it, oras lists the copy's tags.
	copied := repoName("tls-regctl")
	regctl.run(t, "image", "copy", reg.host+"/"+repo+":v1", reg.host+"/"+copied+":v1")
	checkTree(t, reg, copied, img.Digest, l.blobs)
	if out := oras.run(t, "repo", "tags", reg.host+"/"+copied); !strings.Contains(out, "v1") {
		t.Errorf("oras repo tags %s: %q, want v1", copied, out)
	}

	// skopeo copies it again, with the CA in a certificate directory.
	certDir := t.TempDir()
	b, err := os.ReadFile(ca)
	harness.Must(t, err)
	harness.Must(t, os.WriteFile(filepath.Join(certDir, "ca.crt"), b, 0o644))
	skopeod := repoName("tls-skopeo")
	skopeo.run(t, "--insecure-policy", "copy", "--quiet", "--preserve-digests", "--src-cert-dir", certDir, "--dest-cert-dir", certDir,
		"docker://"+reg.host+"/"+repo+":v1", "docker://"+reg.host+"/"+skopeod+":v1")
	checkTree(t, reg, skopeod, img.Digest, l.blobs)

	// docker pulls it through the engine, with the CA for this registry in
	// /etc/docker/certs.d as a user would put it (the engine runs on this
	// host; the test runs as root in CI). The engine counts 127.0.0.0/8 as
	// an insecure registry, so here it would also accept a certificate it
	// cannot verify: what this shows is docker over the HTTPS endpoint.
	certs := filepath.Join("/etc/docker/certs.d", reg.host)
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatalf("docker needs the mesh's CA in %s: %v (run as root, as CI does)", certs, err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	harness.Must(t, os.WriteFile(filepath.Join(certs, "ca.crt"), b, 0o644))
	ref := reg.host + "/" + repo + ":v1"
	t.Cleanup(func() { docker.try(t, "rmi", "-f", ref) })
	docker.run(t, "pull", ref)
	if out := docker.run(t, "image", "inspect", "--format", "{{join .RepoDigests \" \"}}", ref); !strings.Contains(out, img.Digest) {
		t.Errorf("docker pulled %s as %q, want the digest %s", ref, out, img.Digest)
	}
	// Every client above pulled the 2 MiB layer from a node's HTTPS data
	// endpoint, trusting the mesh's CA there too.
	mt, err := m.Client(10*time.Second).Metrics(context.Background(), reg.base)
	harness.Must(t, err)
	redirects := 0.0
	for series, v := range mt {
		if strings.HasPrefix(series, "georeg_trafficmgr_blob_redirects_total{") {
			redirects += v
		}
	}
	if redirects == 0 {
		t.Errorf("no blob download was redirected to a data endpoint")
	}
	t.Logf("blob downloads redirected to a data endpoint: %v", redirects)
}
