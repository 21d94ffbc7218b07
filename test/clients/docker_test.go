package clients

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// dockerInstall says how to get a working docker CLI and engine.
const dockerInstall = "the docker CLI talking to this machine's Docker engine is required " +
	"(Debian: apt-get install -y docker.io; the engine must run on this host, " +
	"where it treats 127.0.0.0/8 as insecure registries)"

// TestDocker builds a tiny image FROM scratch around a static Go binary,
// pushes it with the docker CLI through the machine's Docker engine, removes
// it locally, pulls it back by tag and by digest, checks the digests and
// runs it.
//
// The engine's daemon does the pushing and pulling, so it must reach the
// registry: it runs on this host, and 127.0.0.1:PORT is an insecure (plain
// HTTP) registry for it by default.
func TestDocker(t *testing.T) {
	t.Parallel()
	docker := newClient(t, lookPath(t, "docker", dockerInstall))
	// The daemon socket is the one outside piece; say so plainly when it
	// is not there.
	if out, err := docker.try(t, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("docker cannot reach the Docker engine: %v\n%s", err, dockerInstall)
	} else {
		t.Logf("Docker engine %s", strings.TrimSpace(out))
	}
	// As users do (`docker push localhost:5000/...`): the engine counts
	// localhost as an insecure registry too.
	reg := startRegistry(t)
	reg.host = strings.Replace(reg.host, "127.0.0.1:", "localhost:", 1)
	reg.base = strings.Replace(reg.base, "127.0.0.1:", "localhost:", 1)
	reg.login(t, docker)
	host := reg.host

	token := "georeg-" + runID + "-" + time.Now().Format("150405.000000")
	repo := repoName("docker-hello")
	ref := host + "/" + repo + ":" + strings.ReplaceAll(token, ".", "-")
	ctxDir := t.TempDir()
	buildHello(t, ctxDir, token)

	t.Cleanup(func() {
		// Untag everything this test made, whatever happened; errors only
		// mean there was nothing left to remove.
		out, _ := docker.try(t, "image", "ls", "--quiet", "--no-trunc", host+"/"+repo)
		ids := strings.Fields(out)
		docker.try(t, append([]string{"image", "rm", "--force"}, append(ids, ref)...)...)
	})

	buildImage(t, docker, ctxDir, ref)

	// docker push prints "<tag>: digest: sha256:... size: N" once the
	// manifest is accepted.
	out := docker.run(t, "push", ref)
	pushed := findDigest(t, "docker push", out)
	body, mediaType, digest := getManifest(t, reg, repo, ref[strings.LastIndex(ref, ":")+1:])
	if digest != pushed {
		t.Fatalf("registry serves the pushed tag with digest %s, docker push reported %s", digest, pushed)
	}
	t.Logf("pushed %s (%s, %d bytes)", pushed, mediaType, len(body))
	checkTree(t, reg, repo, pushed, nil)

	imageID := strings.TrimSpace(docker.run(t, "image", "inspect", "--format", "{{.Id}}", ref))
	docker.run(t, "image", "rm", ref)
	if _, err := docker.try(t, "image", "inspect", imageID); err == nil {
		t.Fatalf("image %s still present locally after docker image rm", imageID)
	}

	out = docker.run(t, "pull", ref)
	if got := findDigest(t, "docker pull", out); got != pushed {
		t.Fatalf("docker pull %s: digest %s, pushed %s", ref, got, pushed)
	}
	repoDigests := docker.run(t, "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", ref)
	if want := host + "/" + repo + "@" + pushed; !slices.Contains(strings.Fields(repoDigests), want) {
		t.Fatalf("docker image inspect RepoDigests: %q, want %s", repoDigests, want)
	}
	if got := strings.TrimSpace(docker.run(t, "image", "inspect", "--format", "{{.Id}}", ref)); got != imageID {
		t.Fatalf("pulled image ID %s, pushed image ID %s", got, imageID)
	}

	out = docker.run(t, "run", "--rm", "--network", "none", ref)
	if want := "hello from " + token; strings.TrimSpace(out) != want {
		t.Fatalf("docker run %s printed %q, want %q", ref, out, want)
	}

	// By digest too, after removing the tag again.
	docker.run(t, "image", "rm", ref)
	byDigest := host + "/" + repo + "@" + pushed
	docker.run(t, "pull", byDigest)
	out = docker.run(t, "run", "--rm", "--network", "none", byDigest)
	if want := "hello from " + token; strings.TrimSpace(out) != want {
		t.Fatalf("docker run %s printed %q, want %q", byDigest, out, want)
	}
}

// buildHello writes a static hello binary, unique to this run so that its
// layer is new to the registry, and a Dockerfile into dir.
func buildHello(t *testing.T, dir, token string) {
	t.Helper()
	src := t.TempDir()
	harness.Must(t, os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644))
	harness.Must(t, os.WriteFile(filepath.Join(src, "main.go"), []byte(`package main

import "fmt"

var token string

func main() { fmt.Println("hello from " + token) }
`), 0o644))
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: the docker test builds its image's binary with it")
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -X main.token="+token, "-o", filepath.Join(dir, "hello"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the hello binary: %v\n%s", err, out)
	}
	// 2 MiB of incompressible padding: a layer above the nodes' redirect
	// threshold, so the engine pulls it from a data endpoint.
	harness.Must(t, os.WriteFile(filepath.Join(dir, "pad"), ociclient.RandomBytes(uint64(len(token)), 2<<20), 0o644))
	harness.Must(t, os.WriteFile(filepath.Join(dir, "Dockerfile"),
		[]byte("FROM scratch\nCOPY hello pad /\nENTRYPOINT [\"/hello\"]\n"), 0o644))
}

// buildImage builds the image in dir as ref with docker build, falling back
// to docker import of a tarball of the binary when the engine cannot build
// (no builder available).
func buildImage(t *testing.T, docker *client, dir, ref string) {
	t.Helper()
	// The classic builder needs no buildx plugin and works with old
	// engines; FROM scratch needs nothing from a registry.
	build := *docker
	build.env = append(slices.Clip(docker.env), "DOCKER_BUILDKIT=0")
	_, err := build.try(t, "build", "--quiet", "--tag", ref, dir)
	if err == nil {
		return
	}
	t.Logf("docker build failed, falling back to docker import: %v", err)
	bin, err := os.ReadFile(filepath.Join(dir, "hello"))
	harness.Must(t, err)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	harness.Must(t, tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}))
	_, err = tw.Write(bin)
	harness.Must(t, err)
	pad, err := os.ReadFile(filepath.Join(dir, "pad"))
	harness.Must(t, err)
	harness.Must(t, tw.WriteHeader(&tar.Header{Name: "pad", Mode: 0o644, Size: int64(len(pad)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}))
	_, err = tw.Write(pad)
	harness.Must(t, err)
	harness.Must(t, tw.Close())
	tarball := filepath.Join(t.TempDir(), "hello.tar")
	harness.Must(t, os.WriteFile(tarball, buf.Bytes(), 0o644))
	out := docker.run(t, "import", "--change", `ENTRYPOINT ["/hello"]`, tarball, ref)
	t.Logf("docker import: %s", strings.TrimSpace(out))
}
