package clients

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// runID keeps repository names and tags of one test binary apart from those
// of earlier runs when the tests share a long-lived registry
// (GEOREG_CLIENTS_URL) or the machine's Docker engine.
var runID = strconv.FormatInt(time.Now().UnixNano()%1e10, 36)

// commandTimeout bounds one client invocation. A client that hangs on a
// registry that never answers should fail the test, not the 25-minute
// `go test` deadline.
const commandTimeout = 2 * time.Minute

// registry is the registry a test drives: where it listens and the
// credential its clients present.
type registry struct {
	host string // host:port
	cred ociclient.Credential
	http *http.Client // sends cred
	// base is the scheme and host: https://HOST for a mesh started with
	// --tls, else http://HOST.
	base string
}

func newRegistry(host string, cred ociclient.Credential) *registry {
	return &registry{host: host, cred: cred, base: "http://" + host, http: &http.Client{Timeout: 30 * time.Second, Transport: cred.Transport(nil)}}
}

// meshRegistry is the endpoint of mesh m as a registry, over HTTPS when
// the mesh was started with --tls.
func meshRegistry(m *harness.Mesh) *registry {
	return &registry{host: m.Endpoint, cred: m.Cred, base: m.URL(), http: &http.Client{Timeout: 30 * time.Second, Transport: m.Transport(nil)}}
}

// startRegistry returns a registry for t: a fresh mesh of three regions of
// one zone, with authentication on, unless GEOREG_CLIENTS_URL (with
// GEOREG_CLIENTS_USER and GEOREG_CLIENTS_PASSWORD when it needs a login)
// or GEOREG_CLIENTS_TARGET says otherwise (see the package documentation).
func startRegistry(t *testing.T) *registry {
	t.Helper()
	if u := os.Getenv("GEOREG_CLIENTS_URL"); u != "" {
		u = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
		cred := ociclient.Credential{User: os.Getenv("GEOREG_CLIENTS_USER"), Password: os.Getenv("GEOREG_CLIENTS_PASSWORD")}
		return newRegistry(strings.TrimSuffix(u, "/"), cred)
	}
	switch target := os.Getenv("GEOREG_CLIENTS_TARGET"); target {
	case "", "georeg":
		// Three regions of one zone behind the traffic manager: the clients
		// push and pull through the endpoint, as users do.
		m := harness.StartMesh(t, "--zones", "1")
		r := newRegistry(m.Endpoint, m.Cred)
		waitRegistry(t, r)
		return r
	case "distribution":
		return newRegistry(startDistribution(t), ociclient.Credential{})
	default:
		t.Fatalf("GEOREG_CLIENTS_TARGET=%q: want georeg or distribution", target)
		return nil
	}
}

// login records r's credential in c's Docker configuration, as `docker
// login` does: docker, crane, regctl, oras and skopeo all read it from
// there. The registry is named both as 127.0.0.1:PORT and localhost:PORT,
// the two ways the tests spell it.
func (r *registry) login(t *testing.T, c *client) {
	t.Helper()
	if r.cred.IsZero() {
		return
	}
	file := filepath.Join(c.dir, ".docker", "config.json")
	cfg := map[string]map[string]map[string]string{"auths": {}}
	if b, err := os.ReadFile(file); err == nil {
		harness.Must(t, json.Unmarshal(b, &cfg))
	}
	auth := map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.cred.User + ":" + r.cred.Password))}
	_, port, _ := strings.Cut(r.host, ":")
	for _, h := range []string{r.host, "127.0.0.1:" + port, "localhost:" + port} {
		cfg["auths"][h] = auth
	}
	b, err := json.MarshalIndent(cfg, "", "\t")
	harness.Must(t, err)
	harness.Must(t, os.WriteFile(file, b, 0o600))
}

// startDistribution runs the CNCF distribution registry built by `make
// tools`, with filesystem storage and deletes enabled, for the life of t.
func startDistribution(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.Block(t, 1))
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfg := filepath.Join(dir, "config.yml")
	harness.Must(t, os.WriteFile(cfg, []byte(config), 0o644))
	harness.Start(t, filepath.Join(dir, "registry.log"), harness.Tool(t, "registry"), "serve", cfg)
	waitRegistry(t, newRegistry(addr, ociclient.Credential{}))
	return addr
}

// waitRegistry waits until GET /v2/ on r answers 200 to its credential.
func waitRegistry(t *testing.T, r *registry) {
	t.Helper()
	host := r.host
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := r.http.Get(r.base + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry at %s does not answer GET /v2/: %v", host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// repoName returns a repository name unique to this run, under "clients/".
func repoName(name string) string {
	return "clients/" + name + "-" + runID
}

// client runs one OCI client binary in an isolated environment.
type client struct {
	path string
	dir  string   // working directory
	env  []string // full environment
}

// newClient returns a client for the binary at path whose HOME, Docker and
// regctl configuration live under a temporary directory of t.
func newClient(t *testing.T, path string) *client {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"REGCTL_CONFIG=" + filepath.Join(home, ".regctl", "config.json"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_RUNTIME_DIR=" + filepath.Join(home, "run"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"DOCKER_CLI_HINTS=false",
		"NO_COLOR=1",
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "TMPDIR", "DOCKER_HOST", "GOCACHE", "GOPATH", "GOROOT", "GOMODCACHE", "GOPROXY", "GOFLAGS":
			env = append(env, kv)
		}
	}
	for _, d := range []string{"run", ".docker", ".config"} {
		harness.Must(t, os.MkdirAll(filepath.Join(home, d), 0o700))
	}
	return &client{path: path, dir: home, env: env}
}

// lookPath returns the path of an OCI client that comes from the machine
// rather than from bin/tools, failing t with install instructions when it is
// missing.
func lookPath(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: %s", name, install)
	}
	return p
}

// try runs the client with args and returns its standard output and, on
// failure, an error that quotes both output streams.
func (c *client) try(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return tryWithin(t, c, commandTimeout, args...)
}

// run is try that fails the test on error.
func (c *client) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.try(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// sha256Digest returns the OCI digest string of b.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// findDigest returns the first sha256 digest in s, failing t if there is none.
func findDigest(t *testing.T, what, s string) string {
	t.Helper()
	d := digestRE.FindString(s)
	if d == "" {
		t.Fatalf("%s: no sha256 digest in output:\n%s", what, s)
	}
	return d
}

// manifestAccept lists every manifest media type the tests push, so that the
// registry never has to convert.
var manifestAccept = strings.Join([]string{
	mediaTypeOCIManifest,
	mediaTypeOCIIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// getManifest fetches a manifest by tag or digest straight over HTTP,
// independently of any client, and checks that the registry's
// Docker-Content-Digest header is the digest of the bytes it served.
func getManifest(t *testing.T, r *registry, repo, ref string) (body []byte, mediaType, digest string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.base+"/v2/"+repo+"/manifests/"+ref, nil)
	harness.Must(t, err)
	req.Header.Set("Accept", manifestAccept)
	resp, err := r.http.Do(req)
	harness.Must(t, err)
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	harness.Must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/%s/manifests/%s: %s\n%s", repo, ref, resp.Status, body)
	}
	digest = sha256Digest(body)
	if h := resp.Header.Get("Docker-Content-Digest"); h != digest {
		t.Errorf("GET /v2/%s/manifests/%s: Docker-Content-Digest %q, body digest %s", repo, ref, h, digest)
	}
	if strings.HasPrefix(ref, "sha256:") && ref != digest {
		t.Errorf("GET /v2/%s/manifests/%s served bytes with digest %s", repo, ref, digest)
	}
	return body, resp.Header.Get("Content-Type"), digest
}

// manifestStatus returns the HTTP status of GET /v2/<repo>/manifests/<ref>.
func manifestStatus(t *testing.T, r *registry, repo, ref string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.base+"/v2/"+repo+"/manifests/"+ref, nil)
	harness.Must(t, err)
	req.Header.Set("Accept", manifestAccept)
	resp, err := r.http.Do(req)
	harness.Must(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// checkBlob fetches a blob over HTTP and checks that its bytes have digest d.
func checkBlob(t *testing.T, r *registry, repo, d string) {
	t.Helper()
	resp, err := r.http.Get(r.base + "/v2/" + repo + "/blobs/" + d)
	harness.Must(t, err)
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("GET blob %s in %s: %v", d, repo, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET blob %s in %s: %s", d, repo, resp.Status)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
		t.Fatalf("GET blob %s in %s served bytes with digest %s", d, repo, got)
	}
}

// checkTree checks over HTTP that repo holds the manifest d, with the given
// bytes, and everything it references: child manifests of an index, config
// and layers of an image, each under its own digest.
func checkTree(t *testing.T, r *registry, repo, d string, want map[string][]byte) {
	t.Helper()
	body, _, got := getManifest(t, r, repo, d)
	if got != d {
		t.Fatalf("manifest %s of %s: registry serves %s", d, repo, got)
	}
	if w, ok := want[d]; ok && !bytes.Equal(w, body) {
		t.Fatalf("manifest %s of %s: registry serves other bytes with that digest", d, repo)
	}
	var m struct {
		Manifests []descriptor `json:"manifests"`
		Config    *descriptor  `json:"config"`
		Layers    []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("manifest %s of %s: %v", d, repo, err)
	}
	for _, c := range m.Manifests {
		checkTree(t, r, repo, c.Digest, want)
	}
	if m.Config != nil {
		checkBlob(t, r, repo, m.Config.Digest)
	}
	for _, l := range m.Layers {
		checkBlob(t, r, repo, l.Digest)
	}
}
