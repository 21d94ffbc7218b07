package connected

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// runnableImage is an image docker accepts: one gzip'd tar layer holding
// one file, and a config whose diff_ids name the uncompressed layer.
func runnableImage(t *testing.T, name string) ociclient.Image {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	content := []byte("hello from " + name + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(content)
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	layer := ociclient.NewBlob("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes())
	cfg := fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"test":%q}},"rootfs":{"type":"layers","diff_ids":[%q]}}`,
		name, digest.FromBytes(tarBuf.Bytes()))
	img := ociclient.Image{Config: ociclient.NewBlob(ociclient.MediaConfig, []byte(cfg)), Layers: []ociclient.Blob{layer}}
	img.Manifest = ociclient.Manifest(img.Config, img.Layers, nil)
	img.Digest = digest.FromBytes(img.Manifest)
	return img
}

// dockerPull logs the machine's Docker engine in at host with cred (in a
// configuration of its own), pulls ref and checks its digest, then removes
// the image again.
func dockerPull(t *testing.T, host string, cred ociclient.Credential, ref string, want digest.Digest) {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Fatalf("docker is not on PATH: the site must be pullable with docker (Debian: apt-get install -y docker.io)")
	}
	cfg := t.TempDir()
	run := func(stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, docker, append([]string{"--config", cfg}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(cred.Password, "login", host, "-u", cred.User, "--password-stdin"); err != nil {
		t.Fatalf("docker login %s: %v\n%s", host, err, out)
	}
	t.Cleanup(func() { run("", "rmi", "-f", ref) })
	if out, err := run("", "pull", ref); err != nil {
		t.Fatalf("docker pull %s: %v\n%s", ref, err, out)
	}
	out, err := run("", "image", "inspect", "--format", "{{join .RepoDigests \" \"}}", ref)
	if err != nil || !strings.Contains(out, want.String()) {
		t.Errorf("docker image inspect %s: %v %q, want the digest %s", ref, err, out, want)
	}
}
