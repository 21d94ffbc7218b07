package clients

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
)

// tokenCredentials is what `georeg token create --output json` prints.
type tokenCredentials struct {
	Name        string `json:"name"`
	Credentials struct {
		Username  string `json:"username"`
		Passwords []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"passwords"`
	} `json:"credentials"`
}

func (c tokenCredentials) password(name string) string {
	for _, p := range c.Credentials.Passwords {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// authMesh is a mesh started with --auth and its management CLI.
type authMesh struct {
	*harness.Mesh
	t         *testing.T
	listeners map[string]string // location name -> host:port
}

func (m *authMesh) georeg(args ...string) (string, error) {
	out, err := m.Georeg(context.Background(), append(args, "--dir", m.Dir)...)
	return string(out), err
}

func (m *authMesh) must(args ...string) string {
	m.t.Helper()
	out, err := m.georeg(args...)
	if err != nil {
		m.t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (m *authMesh) token(args ...string) tokenCredentials {
	m.t.Helper()
	out := m.must(append([]string{"token", "create", "--output", "json"}, args...)...)
	var c tokenCredentials
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		m.t.Fatalf("token create output: %v\n%s", err, out)
	}
	if c.password("password1") == "" || c.password("password2") == "" {
		m.t.Fatalf("token create printed no passwords:\n%s", out)
	}
	return c
}

// status sends one request with Basic credentials (none when user is
// empty) and returns the status code and the body.
func status(method, rawURL, user, pass string) (int, string, http.Header) {
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		return 0, err.Error(), nil
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), resp.Header
}

// TestAuth runs every real client against a 3-region mesh with
// authentication on: tokens with the built-in and a custom scope map,
// refusals, anonymous pull, changes reaching every region, and
// authentication while the home region is down.
func TestAuth(t *testing.T) {
	docker := newClient(t, lookPath(t, "docker", dockerInstall))
	skopeo := newClient(t, lookPath(t, "skopeo", "apt-get install -y skopeo (Debian package; .ci/run installs it)"))
	crane := newClient(t, harness.Tool(t, "crane"))
	regctl := newClient(t, harness.Tool(t, "regctl"))
	oras := newClient(t, harness.Tool(t, "oras"))

	start := time.Now()
	m := &authMesh{Mesh: harness.StartMesh(t, "--zones", "1", "--auth"), t: t, listeners: map[string]string{}}
	for loc, u := range m.Locations {
		m.listeners[loc] = strings.TrimPrefix(u, "http://")
	}
	t.Logf("mesh up (3 regions x 1 zone, --auth) in %v; listeners %v", time.Since(start).Round(time.Millisecond), m.listeners)
	host := m.Endpoint
	base := "http://" + host

	// Anonymous: /v2/ is a Bearer challenge naming the endpoint's token
	// realm; nothing is readable.
	code, _, hdr := status(http.MethodGet, base+"/v2/", "", "")
	if ch := hdr.Get("WWW-Authenticate"); code != http.StatusUnauthorized || !strings.HasPrefix(ch, `Bearer realm="http://`+host+`/oauth2/token"`) {
		t.Fatalf("anonymous GET /v2/: %d, challenge %q", code, ch)
	}

	pusher := m.token("--name", "pusher", "--scope-map", "_repositories_push")
	puller := m.token("--name", "puller", "--scope-map", "_repositories_pull")
	samples := m.token("--name", "samples", "--repository", "samples/*", "content/read", "content/write", "metadata/read", "metadata/write")
	user, pass := pusher.Name, pusher.password("password1")

	// Every client logs in and pushes with the pusher token, and pulls back.
	if _, err := docker.try(t, "login", host, "-u", user, "-p", "wrong-password"); err == nil {
		t.Fatal("docker login with a wrong password succeeded")
	}
	dockerLogin(t, docker, host, user, pass)
	dir := t.TempDir()
	tarball := filepath.Join(dir, "docker.tar")
	writeDockerTar(t, tarball, "georeg auth test "+runID+"\n")
	dref := host + "/" + repoName("auth-docker") + ":1"
	docker.run(t, "import", tarball, dref)
	docker.run(t, "push", dref)
	docker.run(t, "rmi", dref)
	docker.run(t, "pull", dref)

	crane.run(t, "auth", "login", host, "-u", user, "-p", pass)
	layer := filepath.Join(dir, "crane.tar")
	writeTar(t, layer, "layer.bin", 16<<10)
	cref := host + "/" + repoName("auth-crane") + ":1"
	crane.run(t, "append", "-f", layer, "-t", cref, "--insecure")
	crane.run(t, "manifest", cref, "--insecure")

	src := newLayout(t, filepath.Join(dir, "layout"))
	img := src.image("amd64", []int{24 << 10})
	src.tag(img, "1")
	src.write()
	sref := host + "/" + repoName("auth-skopeo") + ":1"
	skopeo.run(t, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", user+":"+pass, "oci:"+src.dir+":1", "docker://"+sref)
	skopeo.run(t, "inspect", "--raw", "--tls-verify=false", "--creds", user+":"+pass, "docker://"+sref)

	// regctl pings the registry after set and reports 401 as a failure,
	// though it keeps the setting; login then succeeds.
	regctl.try(t, "registry", "set", "--tls", "disabled", host)
	regctl.run(t, "registry", "login", host, "-u", user, "-p", pass)
	gref := host + "/" + repoName("auth-regctl") + ":1"
	regctl.run(t, "image", "copy", "ocidir://"+src.dir+":1", gref)
	regctl.run(t, "manifest", "get", gref)

	oras.run(t, "login", "--plain-http", host, "-u", user, "-p", pass)
	harness.Must(t, os.WriteFile(filepath.Join(oras.dir, "artifact.txt"), []byte("georeg auth "+runID+"\n"), 0o644))
	oref := host + "/" + repoName("auth-oras") + ":1"
	oras.run(t, "push", "--plain-http", "--artifact-type", "application/vnd.example.georeg.test", oref, "artifact.txt:text/plain")
	oras.run(t, "pull", "--plain-http", "-o", filepath.Join(oras.dir, "out"), oref)

	// A pull-only token pulls, and its push is DENIED with nothing stored.
	pullerDocker := newClient(t, docker.path)
	dockerLogin(t, pullerDocker, host, puller.Name, puller.password("password1"))
	pullerDocker.run(t, "pull", dref)
	denied := host + "/" + repoName("auth-denied") + ":1"
	pullerDocker.run(t, "tag", dref, denied)
	out, err := pullerDocker.try(t, "push", denied)
	if err == nil || !strings.Contains(out+err.Error(), "denied") {
		t.Fatalf("pull-only token pushed: %v\n%s", err, out)
	}
	deniedRepo := strings.TrimSuffix(strings.TrimPrefix(denied, host+"/"), ":1")
	if code, body, _ := status(http.MethodGet, base+"/v2/"+deniedRepo+"/tags/list", user, pass); code != http.StatusNotFound {
		t.Fatalf("after a refused push, %s/tags/list answers %d %s: want 404, nothing stored", deniedRepo, code, body)
	}

	// samples/* cannot read, list or mount what is outside it.
	sUser, sPass := samples.Name, samples.password("password1")
	other := strings.TrimSuffix(strings.TrimPrefix(cref, host+"/"), ":1")
	if code, _, _ := status(http.MethodGet, base+"/v2/"+other+"/manifests/1", sUser, sPass); code != http.StatusForbidden {
		t.Fatalf("samples token reading %s: %d, want 403 DENIED", other, code)
	}
	_, body, _ := status(http.MethodGet, base+"/v2/_catalog", sUser, sPass)
	if strings.Contains(body, other) {
		t.Fatalf("samples token's catalog lists %s: %s", other, body)
	}
	layerDigest := findLayerDigest(t, base, other, user, pass)
	mountURL := base + "/v2/samples/mounted/blobs/uploads/?" + url.Values{"mount": {layerDigest}, "from": {other}}.Encode()
	if code, _, _ := status(http.MethodPost, mountURL, sUser, sPass); code != http.StatusAccepted {
		t.Fatalf("samples token mounting from %s: %d, want 202 (a plain upload, no mount)", other, code)
	}
	if code, _, _ := status(http.MethodHead, base+"/v2/samples/mounted/blobs/"+layerDigest, sUser, sPass); code != http.StatusNotFound {
		t.Fatalf("the refused mount made the blob readable in samples/mounted: %d", code)
	}

	// Anonymous pull, only when the registry allows it.
	anonURL := base + "/v2/" + other + "/manifests/1"
	if code, _, _ := status(http.MethodGet, anonURL, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous pull with anonymous pull off: %d", code)
	}
	m.must("registry", "update", "--anonymous-pull-enabled", "true")
	waitStatus(t, "anonymous pull on", []string{anonURL}, "", "", http.StatusOK)
	anonCrane := newClient(t, crane.path)
	anonCrane.run(t, "manifest", cref, "--insecure")
	if _, err := anonCrane.try(t, "append", "-f", layer, "-t", host+"/"+repoName("auth-anon")+":1", "--insecure"); err == nil {
		t.Fatal("anonymous push succeeded with anonymous pull on")
	}
	m.must("registry", "update", "--anonymous-pull-enabled", "false")
	waitStatus(t, "anonymous pull off", []string{anonURL}, "", "", http.StatusUnauthorized)

	// Changes reach every region within 2 s.
	var regionURLs []string
	for _, loc := range []string{"westus", "eastus", "westeurope"} {
		regionURLs = append(regionURLs, "http://"+m.listeners[loc]+"/v2/"+other+"/manifests/1")
	}
	pUser, pPass := puller.Name, puller.password("password1")
	waitStatus(t, "puller before any change", regionURLs, pUser, pPass, http.StatusOK)
	m.must("token", "update", "--name", "puller", "--status", "disabled")
	if took := waitStatus(t, "disabled token", regionURLs, pUser, pPass, http.StatusUnauthorized); took > 2*time.Second {
		t.Errorf("a disabled token was refused in every region only after %v, want within 2 s", took)
	}
	m.must("token", "update", "--name", "puller", "--status", "enabled")
	waitStatus(t, "re-enabled token", regionURLs, pUser, pPass, http.StatusOK)
	m.must("token", "credential", "generate", "--name", "puller", "--password1")
	if took := waitStatus(t, "regenerated password1", regionURLs, pUser, pPass, http.StatusUnauthorized); took > 2*time.Second {
		t.Errorf("a regenerated password was refused in every region only after %v, want within 2 s", took)
	}
	waitStatus(t, "password2 while password1 is regenerated", regionURLs, pUser, puller.password("password2"), http.StatusOK)

	// Bad input: a clear error, nothing changed.
	for _, bad := range [][]string{
		{"scope-map", "create", "--name", "bad-action", "--repository", "a", "content/erase"},
		{"scope-map", "create", "--name", "bad-wild", "--repository", "de*mo", "content/read"},
		{"scope-map", "create", "--name", "bad-repo", "--repository", "Not/A/Name", "content/read"},
		{"token", "create", "--name", "orphan", "--scope-map", "no-such-map"},
		{"token", "create", "--name", "pusher", "--scope-map", "_repositories_pull"},
		{"scope-map", "delete", "--name", "samples-scope-map"},
		{"token", "create", "--name", "expired", "--scope-map", "_repositories_pull", "--expiration-in-days", "-1"},
	} {
		if out, err := m.georeg(bad...); err == nil {
			t.Errorf("georeg %s succeeded:\n%s", strings.Join(bad, " "), out)
		} else {
			t.Logf("georeg %s: refused: %s", strings.Join(bad, " "), strings.TrimSpace(out))
		}
	}

	// With the home region down, the other regions keep authenticating,
	// and management calls fail fast naming the home region.
	m.must("chaos", "kill-region", m.Home)
	var (
		mu       sync.Mutex
		failures []string
		pulls    int
	)
	var wg sync.WaitGroup
	for _, loc := range []string{"eastus", "westeurope"} {
		wg.Go(func() {
			u := "http://" + m.listeners[loc] + "/v2/" + other + "/manifests/1"
			for i := range 100 {
				code, body, _ := status(http.MethodGet, u, user, pass)
				mu.Lock()
				pulls++
				if code != http.StatusOK {
					failures = append(failures, fmt.Sprintf("%s #%d: %d %s", loc, i, code, body))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("home region %s down: %d authenticated pulls through eastus and westeurope, %d failures", m.Home, pulls, len(failures))
	for _, f := range failures {
		t.Error(f)
	}
	t0 := time.Now()
	out, err = m.georeg("token", "create", "--name", "during-outage", "--scope-map", "_repositories_pull")
	if took := time.Since(t0); err == nil || !strings.Contains(out, m.Home) || took > 10*time.Second {
		t.Errorf("token create with the home region down: err %v after %v, want a failure within 10 s naming %s:\n%s", err, took, m.Home, out)
	}
}

func dockerLogin(t *testing.T, c *client, host, user, pass string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.path, "login", host, "-u", user, "--password-stdin")
	cmd.Dir, cmd.Env, cmd.Stdin = c.dir, c.env, strings.NewReader(pass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker login %s as %s: %v\n%s", host, user, err, out)
	}
}

// waitStatus polls every URL with the credentials until each answers want
// (or 10 s pass, which fails the test) and returns how long that took.
func waitStatus(t *testing.T, what string, urls []string, user, pass string, want int) time.Duration {
	t.Helper()
	start := time.Now()
	pending := append([]string(nil), urls...)
	for len(pending) > 0 {
		var still []string
		for _, u := range pending {
			if code, _, _ := status(http.MethodGet, u, user, pass); code != want {
				still = append(still, u)
			}
		}
		pending = still
		if len(pending) > 0 {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: %v still not answering %d after 10 s", what, pending, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	took := time.Since(start)
	t.Logf("%s: every region answers %d after %v", what, want, took.Round(time.Millisecond))
	return took
}

// findLayerDigest returns the first layer of repo:1.
func findLayerDigest(t *testing.T, base, repo, user, pass string) string {
	t.Helper()
	code, body, _ := status(http.MethodGet, base+"/v2/"+repo+"/manifests/1", user, pass)
	if code != http.StatusOK {
		t.Fatalf("manifest of %s: %d %s", repo, code, body)
	}
	var mf struct {
		Layers []descriptor `json:"layers"`
	}
	harness.Must(t, json.Unmarshal([]byte(body), &mf))
	if len(mf.Layers) == 0 {
		t.Fatalf("manifest of %s has no layers: %s", repo, body)
	}
	return mf.Layers[0].Digest
}
