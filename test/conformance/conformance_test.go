package conformance

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestConformance runs every check against one registry, started once and
// shared by all of them. Groups run in order because later checks read what
// earlier ones wrote; every group works in its own repositories under a
// prefix unique to this run, so reruns against a long-lived registry do not
// collide.
func TestConformance(t *testing.T) {
	target, raw, cred := targetURL(t)
	s := newSuite(t, target, raw, cred, nil)
	defer func() { fmt.Println(s.summary(t)) }()
	s.groups(t)
}

// groups runs every group of checks as subtests of t.
func (s *suite) groups(t *testing.T) {
	s.root = t.Name() + "/"
	t.Run("base", s.baseGroup)
	t.Run("pull", s.pullGroup)
	t.Run("push", s.pushGroup)
	t.Run("digests", s.digestsGroup)
	t.Run("content-discovery", s.discoveryGroup)
	t.Run("content-management", s.managementGroup)
	t.Run("errors", s.errorsGroup)
}

// suite is what every check needs: the registry under test, the run's
// repository prefix and the tally printed at the end.
type suite struct {
	base   *url.URL
	target string
	run    string
	// root is the name of the test the groups run under, with a trailing
	// slash: check names are relative to it.
	root   string
	client *http.Client
	// known maps a check name to the reason the target is known to deviate
	// from the spec there; such checks are reported, not failed.
	known map[string]string
	tally tally
	// redirects counts blob GETs answered 307 and followed.
	redirects int
}

type tally struct {
	checks, failures, warnings, deviations int
	failed, warned                         []string
}

// targetURL returns the registry the environment names (see the package
// documentation), its URL and the credential to send it, starting it when
// no URL is given.
func targetURL(t *testing.T) (target, raw string, cred ociclient.Credential) {
	t.Helper()
	target = os.Getenv("GEOREG_CONFORMANCE_TARGET")
	if target == "" {
		target = "georeg"
	}
	raw = os.Getenv("GEOREG_CONFORMANCE_URL")
	// The official conformance tool's names for a registry that needs a
	// login.
	cred = ociclient.Credential{User: os.Getenv("OCI_USERNAME"), Password: os.Getenv("OCI_PASSWORD")}
	if raw == "" {
		switch target {
		case "georeg":
			m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
			raw, cred = m.URL(), m.Cred
		case "distribution":
			raw = startDistribution(t)
		default:
			t.Fatalf("GEOREG_CONFORMANCE_TARGET=%q: want georeg or distribution, or set GEOREG_CONFORMANCE_URL", target)
		}
	}
	return target, raw, cred
}

// newSuite returns a suite for the registry at raw, whose known deviations
// are those of target, with a repository prefix of its own. Every request
// carries cred (HTTP Basic) unless it is zero; tlsConfig, when set, is the
// client TLS configuration for an https URL (the CA it trusts).
func newSuite(t *testing.T, target, raw string, cred ociclient.Credential, tlsConfig *tls.Config) *suite {
	t.Helper()
	base, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		t.Fatalf("registry URL %q: want scheme://host:port", raw)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	s := &suite{
		base:   base,
		target: target,
		run:    "conformance-" + hex.EncodeToString(id[:]),
		client: &http.Client{
			Timeout: 30 * time.Second,
			// Redirects are answers to check, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			// Compression would hide Content-Length and the exact bytes.
			Transport: cred.Transport(&http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4, TLSClientConfig: tlsConfig}),
		},
		known: knownDeviations[target],
	}
	s.waitReady(t)
	t.Logf("conformance: target %s at %s, repositories under %s/", target, base, s.run)
	return s
}

// waitReady polls /v2/ until the registry answers, so the first check does
// not race the registry's start.
func (s *suite) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := s.client.Get(s.base.String() + "/v2/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry at %s never answered /v2/: %v", s.base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// repo returns a repository name unique to this run.
func (s *suite) repo(name string) string { return s.run + "/" + name }

// summary logs the tally and the checks that failed or missed a SHOULD,
// and returns the tally's line.
func (s *suite) summary(t *testing.T) string {
	tl := s.tally
	line := fmt.Sprintf("conformance: %d checks, %d failures, %d SHOULD warnings", tl.checks, tl.failures, tl.warnings)
	if tl.deviations > 0 {
		line += fmt.Sprintf(", %d known deviations of %s", tl.deviations, s.target)
	}
	if s.redirects > 0 {
		line += fmt.Sprintf(", %d blob GETs redirected and followed", s.redirects)
	}
	t.Log(line)
	for _, name := range tl.failed {
		t.Logf("  FAIL %s", name)
	}
	for _, name := range tl.warned {
		t.Logf("  SHOULD %s", name)
	}
	return line
}

// errStop unwinds a check after Fatalf, the way t.FailNow does.
var errStop = errors.New("check stopped")

// C is the state of one check: what went wrong and which SHOULDs were not
// met. Checks record instead of failing the test directly so that a
// known deviation of the reference implementation can be reported without
// failing the run.
type C struct {
	name  string
	errs  []string
	warns []string
}

// Errorf records that a MUST was not met.
func (c *C) Errorf(format string, args ...any) { c.errs = append(c.errs, fmt.Sprintf(format, args...)) }

// Fatalf records that a MUST was not met and ends the check.
func (c *C) Fatalf(format string, args ...any) {
	c.Errorf(format, args...)
	panic(errStop)
}

// Warnf records that a SHOULD was not met.
func (c *C) Warnf(format string, args ...any) {
	c.warns = append(c.warns, fmt.Sprintf(format, args...))
}

// check runs fn as a subtest named name and reports whether every MUST in
// it held. Names start with the spec section the check comes from.
func (s *suite) check(t *testing.T, name string, fn func(c *C)) bool {
	t.Helper()
	passed := true
	t.Run(name, func(t *testing.T) {
		c := &C{name: strings.TrimPrefix(t.Name(), s.root)}
		func() {
			defer func() {
				if r := recover(); r != nil && r != errStop {
					panic(r)
				}
			}()
			fn(c)
		}()
		s.tally.checks++
		if len(c.warns) > 0 {
			s.tally.warnings++
			s.tally.warned = append(s.tally.warned, c.name)
			for _, w := range c.warns {
				t.Logf("SHOULD not met: %s", w)
			}
		}
		if len(c.errs) == 0 {
			return
		}
		passed = false
		if reason, ok := s.known[c.name]; ok {
			s.tally.deviations++
			t.Logf("known deviation of %s (%s):\n%s", s.target, reason, strings.Join(c.errs, "\n"))
			return
		}
		s.tally.failures++
		s.tally.failed = append(s.tally.failed, c.name)
		t.Error(strings.Join(c.errs, "\n"))
	})
	return passed
}

// startDistribution runs the CNCF distribution registry built by `make
// tools` with filesystem storage in a temporary directory and deletes
// enabled, and returns its URL.
func startDistribution(t *testing.T) string {
	t.Helper()
	bin := harness.Tool(t, "registry")
	dir := t.TempDir()
	port := freeport.Block(t, 1)
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
`, filepath.Join(dir, "data"), port)
	cfgPath := filepath.Join(dir, "config.yml")
	harness.Must(t, os.WriteFile(cfgPath, []byte(config), 0o600))
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	harness.Must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	harness.Must(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("---- distribution log (tail) ----\n%s", b)
		}
	})
	return "http://127.0.0.1:" + strconv.Itoa(port)
}
