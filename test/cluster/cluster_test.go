// Package cluster tests the container cluster end to end: `georeg cluster
// up` on this host's Docker engine (images from `make images`) and its bad
// input, the conformance suite (test/conformance) and docker, crane and
// skopeo pushing and pulling through the published endpoint with TLS and
// authentication on, a loop of pushes losing none while a zone container
// is killed and restarted, a loop of pulls failing none while a region is
// cut off from the others by disconnecting networks and healed, a zone
// container replaced by an empty one repairing itself from the other
// zones, every region serving the same tag map after each fault, and
// `cluster down --purge` leaving no container, network or volume behind,
// also when the test fails.
package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// commandTimeout bounds one command the test runs; cluster up gets more.
const commandTimeout = 6 * time.Minute

// run runs a command and returns its standard output, failing the test
// with everything it printed when it fails.
func run(t *testing.T, env []string, stdin string, name string, args ...string) string {
	t.Helper()
	return runFor(t, commandTimeout, env, stdin, name, args...)
}

func runFor(t *testing.T, timeout time.Duration, env []string, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := try(env, stdin, timeout, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func try(env []string, stdin string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// keepLogs writes the logs of every container of project to files in a
// directory that outlives the test (the cluster down that follows
// removes the containers), under $CI_LOG_DIR when CI set it, and logs one
// line naming it. Printed in the test's output instead, their lines
// pushed the failure that mattered out of the tail a CI summary shows.
func keepLogs(t *testing.T, project string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names, err := exec.CommandContext(ctx, "docker", "ps", "--all", "--filter", "label="+chaos.LabelProject+"="+project, "--format", "{{.Names}}").Output()
	if err != nil {
		t.Logf("keeping container logs: docker ps: %v", err)
		return
	}
	dir, err := os.MkdirTemp(os.Getenv("CI_LOG_DIR"), project+"-logs-")
	if err != nil {
		t.Logf("keeping container logs: %v", err)
		return
	}
	for _, c := range strings.Fields(string(names)) {
		out, _ := exec.CommandContext(ctx, "docker", "logs", c).CombinedOutput()
		if err := os.WriteFile(filepath.Join(dir, c+".log"), out, 0o644); err != nil {
			t.Logf("keeping container logs: %v", err)
		}
	}
	t.Logf("logs of the containers kept in %s", dir)
}

// labelled lists what Docker still has of project: containers, networks,
// volumes.
func labelled(t *testing.T, project string) []string {
	t.Helper()
	filter := "label=" + chaos.LabelProject + "=" + project
	var left []string
	for _, args := range [][]string{
		{"container", "ls", "--all", "--format", "container {{.Names}}", "--filter", filter},
		{"network", "ls", "--format", "network {{.Name}}", "--filter", filter},
		{"volume", "ls", "--format", "volume {{.Name}}", "--filter", filter},
	} {
		out, err := try(nil, "", time.Minute, "docker", args...)
		if err != nil {
			t.Errorf("listing what is left: %v", err)
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" {
				left = append(left, l)
			}
		}
	}
	return left
}

// busy returns a port of 127.0.0.1 that something listens on until the
// test ends.
func busy(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	harness.Must(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// image makes a one-layer image of random bytes named ref in the host's
// engine (docker import: nothing is pulled).
func image(t *testing.T, ref string) {
	t.Helper()
	run(t, nil, string(layerTar(t, 256<<10)), "docker", "import", "-", ref)
}

// layerTar returns a tar of one file of size random bytes: a layer no
// registry holds yet.
func layerTar(t *testing.T, size int) []byte {
	t.Helper()
	payload := make([]byte, size)
	rand.Read(payload)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	harness.Must(t, tw.WriteHeader(&tar.Header{Name: "payload", Mode: 0o644, Size: int64(len(payload)), ModTime: time.Now()}))
	_, err := tw.Write(payload)
	harness.Must(t, err)
	harness.Must(t, tw.Close())
	return buf.Bytes()
}

// TestCluster brings a 3x3 cluster up in containers and drives it through
// the endpoint published on 127.0.0.1, then faults it one way after
// another: a killed zone, a region cut off, a zone replaced.
func TestCluster(t *testing.T) {
	if _, err := try(nil, "", 30*time.Second, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("the Docker engine does not answer (the container cluster needs it): %v", err)
	}
	georeg := harness.Bin(t, "georeg")
	for _, img := range []string{chaos.DefaultRegiondImage, chaos.DefaultTMImage} {
		if _, err := try(nil, "", time.Minute, "docker", "image", "inspect", img); err != nil {
			t.Fatalf("image %s is missing: run `make images` (make test does)", img)
		}
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	project := "e2e-" + hex.EncodeToString(suffix)
	// A /16 of its own, so a cluster someone runs on the default one, or
	// another run of this test, does not collide with it.
	octet, _ := rand.Int(rand.Reader, big.NewInt(40))
	subnet := fmt.Sprintf("10.%d.0.0/16", 160+octet.Int64())
	dir := t.TempDir()
	const regions, zones = 3, 3
	port := freeport.Block(t, regions+2*regions*zones)
	endpoint := "127.0.0.1:" + strconv.Itoa(port)
	eastus := "127.0.0.1:" + strconv.Itoa(port+1)

	t.Cleanup(func() {
		if t.Failed() {
			keepLogs(t, project)
		}
		start := time.Now()
		if out, err := try(nil, "", 8*time.Minute, georeg, "cluster", "down", "--dir", dir, "--purge"); err != nil {
			t.Errorf("cluster down: %v", err)
		} else {
			t.Logf("cluster down --purge in %v: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(out))
		}
		if left := labelled(t, project); len(left) > 0 {
			t.Errorf("left behind after cluster down: %v", left)
			for _, l := range left {
				kind, name, _ := strings.Cut(l, " ")
				args := map[string][]string{"container": {"rm", "--force"}, "network": {"network", "rm"}, "volume": {"volume", "rm", "--force"}}[kind]
				try(nil, "", time.Minute, "docker", append(args, name)...)
			}
		}
	})

	// The conformance suite compiles while the cluster comes up.
	root := harness.RepoRoot(t)
	conformanceBin := buildConformance(t, t.TempDir())

	start := time.Now()
	// Bad input fails at once, before anything is created or written, with
	// an error that names the cause and the fix. An engine that does not
	// answer is a socket nothing listens on.
	closed := filepath.Join(t.TempDir(), "closed.sock")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"a missing image", nil, []string{"--port", strconv.Itoa(port), "--regiond-image", "georeg/none:absent"},
			[]string{"georeg/none:absent not in the Docker engine", "make images"}},
		{"a port in use", nil, []string{"--port", strconv.Itoa(busy(t))}, []string{"is taken", "--port"}},
		{"an engine that does not answer", []string{"DOCKER_HOST=unix://" + closed}, []string{"--port", strconv.Itoa(port)},
			[]string{"Docker engine does not answer", "DOCKER_HOST=unix://" + closed}},
	} {
		upDir := t.TempDir()
		began := time.Now()
		out, err := try(tc.env, "", time.Minute, georeg, append([]string{"cluster", "up", "--dir", upDir, "--project", project, "--subnet", subnet}, tc.args...)...)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("cluster up with %s: %v %s, want an error naming %q", tc.name, err, out, want)
			}
		}
		t.Logf("cluster up with %s failed in %v", tc.name, time.Since(began).Round(time.Millisecond))
		if ps := run(t, nil, "", "docker", "ps", "--all", "--quiet", "--filter", "name="+project); ps != "" {
			t.Errorf("cluster up with %s left containers of %s: %s", tc.name, project, ps)
		}
		if left := labelled(t, project); len(left) > 0 {
			t.Fatalf("cluster up with %s left %v", tc.name, left)
		}
		if files, _ := os.ReadDir(upDir); len(files) > 0 {
			t.Errorf("cluster up with %s wrote %d files in its directory", tc.name, len(files))
		}
	}

	// Generous bounds: a host busy with other work starts ten containers
	// slowly; on a quiet one it takes well under a minute.
	runFor(t, 8*time.Minute, nil, "", georeg, "cluster", "up", "--dir", dir, "--port", strconv.Itoa(port), "--project", project,
		"--subnet", subnet, "--wait", "5m")
	t.Logf("cluster up: %d zone containers and the traffic manager healthy, leaders elected, in %v", regions*zones, time.Since(start).Round(100*time.Millisecond))
	status := func() chaos.Status {
		var st chaos.Status
		harness.Must(t, json.Unmarshal([]byte(run(t, nil, "", georeg, "cluster", "status", "--dir", dir, "--json")), &st))
		return st
	}
	st := status()
	for _, r := range st.Regions {
		for _, z := range r.Zones {
			if z.State != chaos.StateUp {
				t.Errorf("%s/%d is %s after cluster up: %s", r.Name, z.Zone, z.State, z.Error)
			}
		}
	}

	// A push token for the clients, and one with the admin scope map for
	// the conformance suite (which deletes) and for reading the nodes'
	// state, through the home region's control plane, reached on its
	// published gRPC port with the CLI's certificate.
	token := func(name, scopeMap string) ociclient.Credential {
		t.Helper()
		var tok struct {
			Credentials struct {
				Username  string `json:"username"`
				Passwords []struct {
					Value string `json:"value"`
				} `json:"passwords"`
			} `json:"credentials"`
		}
		harness.Must(t, json.Unmarshal([]byte(run(t, nil, "", georeg, "token", "create", "--dir", dir, "--name", name,
			"--scope-map", scopeMap, "--output", "json")), &tok))
		return ociclient.Credential{User: tok.Credentials.Username, Password: tok.Credentials.Passwords[0].Value}
	}
	pusher := token("e2e-push", "_repositories_push")
	ep := published{host: endpoint, ca: filepath.Join(dir, chaos.TLSDir, "ca.crt"), dockerConfig: filepath.Join(dir, "docker"), cred: pusher}
	admin := ep
	admin.cred = token("e2e-admin", "_repositories_admin")

	// The conformance suite runs through the endpoint while docker, crane
	// and skopeo push and pull (each works in repositories of its own).
	bin := conformanceBin()
	conformance, conformanceDone := "", make(chan struct{})
	conformanceStart := time.Now()
	go func() {
		defer close(conformanceDone)
		conformance = runConformance(t, root, bin, ep, admin.cred)
	}()
	t.Cleanup(func() { <-conformanceDone })

	docker := []string{"DOCKER_CONFIG=" + ep.dockerConfig}
	for _, host := range []string{endpoint, eastus} {
		run(t, docker, pusher.Password, "docker", "login", host, "-u", pusher.User, "--password-stdin")
	}
	repo := endpoint + "/e2e/app"
	var refs []string
	t.Cleanup(func() {
		for _, r := range refs {
			try(nil, "", time.Minute, "docker", "rmi", "--force", r)
		}
	})
	push := func(tag string) {
		t.Helper()
		ref := repo + ":" + tag
		refs = append(refs, ref)
		image(t, ref)
		start := time.Now()
		run(t, docker, "", "docker", "push", ref)
		t.Logf("docker push %s: %v", ref, time.Since(start).Round(time.Millisecond))
	}
	// pull drops the local copy first, so the bytes come through the
	// endpoint again.
	pull := func(ref string) {
		t.Helper()
		try(nil, "", time.Minute, "docker", "rmi", "--force", ref)
		start := time.Now()
		run(t, docker, "", "docker", "pull", ref)
		t.Logf("docker pull %s: %v", ref, time.Since(start).Round(time.Millisecond))
	}
	push("v1")
	pull(repo + ":v1")
	refs = append(refs, eastus+"/e2e/app:v1")

	craneAndSkopeo(t, ep)
	<-conformanceDone
	t.Logf("%s; through the endpoint in %v, while docker, crane and skopeo pushed and pulled", conformance, time.Since(conformanceStart).Round(100*time.Millisecond))

	// The home region's Raft leader dies under a loop of pushes through
	// the endpoint: the region still takes pushes (two of three zones are
	// a majority) and serves pulls, and no push it acknowledged is lost.
	// The longest gap between acknowledgements is logged, not asserted: it
	// depends on how busy the host is.
	victim := ""
	for _, r := range status().Regions {
		for _, z := range r.Zones {
			if r.Home && z.RaftRole == "Leader" {
				victim = r.Name + "/" + strconv.Itoa(z.Zone)
			}
		}
	}
	if victim == "" {
		victim = "westus/1"
	}
	oc := ep.client(t, 30*time.Second)
	loop := startPushLoop(oc, "https://"+endpoint, "e2e/loop")
	t.Cleanup(func() {
		select {
		case <-loop.stop:
		default:
			loop.halt()
		}
	})
	loop.waitAcks(t, 3, 2*time.Minute)
	killed := time.Now()
	run(t, nil, "", georeg, "chaos", "kill-zone", victim, "--dir", dir)
	push("v2")
	pull(repo + ":v1")
	start = time.Now()
	run(t, nil, "", georeg, "chaos", "restart", victim, "--dir", dir, "--wait", "3m")
	t.Logf("%s restarted and healthy in %v (restart from %v to %v after the kill)", victim, time.Since(start).Round(100*time.Millisecond),
		start.Sub(killed).Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))
	loop.waitAcks(t, 3, 2*time.Minute)
	loop.halt()
	loop.mu.Lock()
	acked, failed, gap, gapEnded, lastErr := maps.Clone(loop.acked), loop.failed, loop.gap, loop.gapEnded, loop.lastErr
	loop.mu.Unlock()
	t.Logf("push loop while %s was killed and restarted: %d pushes acknowledged, %d failed (last: %v); longest gap between acknowledgements %v, ending %v after the kill",
		victim, len(acked), failed, lastErr, gap.Round(time.Millisecond), gapEnded.Sub(killed).Round(time.Millisecond))
	lost := 0
	for tag, d := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		got, err := oc.PullImage(ctx, "https://"+endpoint, "e2e/loop", d.String())
		cancel()
		if err != nil || got != d {
			lost++
			t.Errorf("acknowledged push e2e/loop:%s (%s) not pullable by digest: %v %s", tag, d, err, got)
		}
	}
	t.Logf("every one of the %d acknowledged pushes pulled by digest through the endpoint (%d lost)", len(acked), lost)

	// Once the killed zone is back, every region serves the same tag map
	// (holding every acknowledged push) and the zones of each region the
	// same metadata.
	opMesh, err := chaos.LoadMesh(dir)
	harness.Must(t, err)
	op := operator{mesh: opMesh, c: admin.client(t, 30*time.Second)}
	rm, took, err := op.waitConverged(2 * time.Minute)
	if err != nil {
		t.Fatalf("not converged 2m after %s restarted: %v", victim, err)
	}
	t.Logf("after the restart every region serves the same %d tags of %d repositories (and each region's zones the same metadata) within %v",
		rm.Tags(), len(rm), took.Round(100*time.Millisecond))
	checkAcked(t, rm, "e2e/loop", acked)

	cutOff(t, georeg, dir, op, oc, endpoint, eastus, rm, push, status)
	replaced(t, georeg, dir, op, status)
	slowed(t, georeg, dir, op, 400*time.Millisecond)

	// Every region agrees at the end too, and every acknowledged push is
	// in it.
	rm, took, err = op.waitConverged(time.Minute)
	if err != nil {
		t.Fatalf("not converged at the end: %v", err)
	}
	t.Logf("at the end every region serves the same %d tags of %d repositories within %v", rm.Tags(), len(rm), took.Round(100*time.Millisecond))
	checkAcked(t, rm, "e2e/loop", acked)
}

// checkAcked fails t for every acknowledged push (tag: digest) of repo
// that rm does not hold with its digest.
func checkAcked(t *testing.T, rm ociclient.RepoMap, repo string, acked map[string]digest.Digest) {
	t.Helper()
	for tag, d := range acked {
		if got := rm[repo][tag]; got != d {
			t.Errorf("acknowledged push %s:%s (%.19s) is %q in the agreed tag map", repo, tag, d, got)
		}
	}
}
