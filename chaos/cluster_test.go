package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPlanCluster(t *testing.T) {
	dir := t.TempDir()
	m, err := PlanCluster(dir, ClusterConfig{Regions: []string{"eastus", "westus"}, Home: "westus", Zones: 3, Port: 7000, AdminHashFile: "/x/admin-password.hash"})
	if err != nil {
		t.Fatal(err)
	}
	d := m.Docker
	if d == nil || d.Project != DefaultProject || d.Regiond != DefaultRegiondImage {
		t.Fatalf("docker part %+v", d)
	}
	// The home region comes first: its network, its addresses, its port.
	wantNets := []DockerNetwork{
		{Name: "georeg-edge", Subnet: "10.213.0.0/24", Trafficmgr: "10.213.0.10"},
		{Name: "georeg-westus", Region: "westus", Subnet: "10.213.1.0/24", Trafficmgr: "10.213.1.5"},
		{Name: "georeg-eastus", Region: "eastus", Subnet: "10.213.2.0/24", Trafficmgr: "10.213.2.5"},
	}
	if !slices.Equal(d.Networks, wantNets) {
		t.Errorf("networks %+v, want %+v", d.Networks, wantNets)
	}
	if m.Endpoint != "127.0.0.1:7000" || m.Locations[1].Addr != "127.0.0.1:7001" || !m.HTTPS {
		t.Errorf("endpoint %s, locations %+v, https %v", m.Endpoint, m.Locations, m.HTTPS)
	}
	tests := []struct {
		node                 *Node
		container, ip, http  string
		grpc                 int
		wantArgs, absentArgs []string
	}{
		{&m.Regions[0].Zones[0], "georeg-westus-1", "10.213.1.11", "127.0.0.1:7002", 7008,
			[]string{"--advertise 10.213.1.11", "--raft 10.213.1.11:5200", "--gossip 10.213.1.11:5300", "--http 0.0.0.0:5000",
				"--trusted-proxies 10.213.1.5/32", "--https", "--auth --admin-password-hash-file /etc/georeg/admin-password.hash",
				"--join 10.213.1.12:5300,10.213.1.13:5300,10.213.2.11:5300,10.213.2.12:5300,10.213.2.13:5300",
				"--wan /etc/georeg/wan.json --data-endpoints=false", "--raft-heartbeat-timeout 1s"}, nil},
		{&m.Regions[1].Zones[2], "georeg-eastus-3", "10.213.2.13", "127.0.0.1:7007", 7013,
			[]string{"--advertise 10.213.2.13", "--trusted-proxies 10.213.2.5/32", "--home westus"}, nil},
	}
	for _, tc := range tests {
		n := tc.node
		if n.Container != tc.container || n.IP != tc.ip || n.HTTP != tc.http || n.Ports["grpc"] != tc.grpc || n.Scheme != "https" {
			t.Errorf("%s: container %s ip %s http %s grpc %d scheme %s", n.Name(), n.Container, n.IP, n.HTTP, n.Ports["grpc"], n.Scheme)
		}
		argv := " " + strings.Join(n.Argv, " ") + " "
		for _, a := range tc.wantArgs {
			if !strings.Contains(argv, " "+a+" ") {
				t.Errorf("%s: argv %q lacks %q", n.Name(), argv, a)
			}
		}
	}
	tmc := trafficmgrConfig(m)
	if tmc.Home != "westus" || len(tmc.Listeners) != 2 || tmc.Listeners[1].Addr != ":5001" || tmc.Regions[1].Nodes[0].HTTP != "10.213.2.11:5000" {
		t.Errorf("traffic manager config %+v", tmc)
	}
	if tm := m.TrafficManager; tm == nil || tm.Container != "georeg-trafficmgr" || !slices.Contains(tm.Argv, "--tls-cert") {
		t.Errorf("traffic manager %+v", tm)
	}

	plain, err := PlanCluster(dir, ClusterConfig{Regions: []string{"a"}, Zones: 1, Port: 7000, HTTP: true, Project: "p2", Subnet: "10.9.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	n := plain.Regions[0].Zones[0]
	if plain.HTTPS || n.Scheme != "" || slices.Contains(n.Argv, "--https") || slices.Contains(n.Argv, "--auth") || slices.Contains(n.Argv, "--join") {
		t.Errorf("plain HTTP, no auth, one node: %+v", n)
	}
	if n.IP != "10.9.1.11" || n.Container != "p2-a-1" {
		t.Errorf("node %s at %s", n.Container, n.IP)
	}
}

// TestClusterWAN checks a new cluster's simulated WAN: nothing added on
// any link, every node's HTTP and gRPC at its own address in its region,
// and the link changes a container cluster refuses before touching Docker
// or the file.
func TestClusterWAN(t *testing.T) {
	dir := t.TempDir()
	m, err := PlanCluster(dir, ClusterConfig{Regions: []string{"westus", "eastus"}, Zones: 2, Port: 7000})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clusterWAN(m)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Links) != 3 {
		t.Errorf("links %+v, want westus, eastus and the pair", cfg.Links)
	}
	for _, l := range cfg.Links {
		if l.RTT != 0 || l.Bandwidth != 0 || l.Loss != 0 || l.Cut {
			t.Errorf("link %+v adds to the real network", l)
		}
	}
	if len(cfg.Addresses) != 8 || cfg.Addresses["10.213.2.12:5100"] != "eastus" || cfg.Addresses["10.213.1.11:5000"] != "westus" {
		t.Errorf("addresses %v", cfg.Addresses)
	}
	if m.WAN != filepath.Join(dir, WANFile) {
		t.Errorf("WAN %q", m.WAN)
	}
	if err := cfg.Save(m.WAN); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rtt, cut := 300*time.Millisecond, true
	for _, tc := range []struct {
		ch   LinkChange
		want error
	}{
		{LinkChange{A: "westus", B: "eastus", Cut: &cut}, ErrInvalidConfig},
		{LinkChange{A: "westus", B: "westus", RTT: &rtt}, ErrInvalidConfig},
		{LinkChange{A: "westus", B: "nowhere", RTT: &rtt}, ErrUnknownTarget},
	} {
		if err := c.ChangeLink(context.Background(), tc.ch); !errors.Is(err, tc.want) {
			t.Errorf("ChangeLink %+v: %v, want %v", tc.ch, err, tc.want)
		}
	}
	neg := -time.Second
	if err := c.ChangeLink(context.Background(), LinkChange{A: "westus", B: "eastus", RTT: &neg}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ChangeLink with a negative latency: %v", err)
	}
	if got, err := os.ReadFile(m.WAN); err != nil || strings.Contains(string(got), "300ms") || strings.Contains(string(got), "-1s") {
		t.Errorf("a refused change wrote the file: %v\n%s", err, got)
	}
}

func TestClusterConfigValidate(t *testing.T) {
	ok := ClusterConfig{Regions: []string{"westus"}, Zones: 3, Port: 5000}
	for _, tc := range []struct {
		name   string
		change func(*ClusterConfig)
		want   string
	}{
		{"no regions", func(c *ClusterConfig) { c.Regions = nil }, "no regions"},
		{"bad project", func(c *ClusterConfig) { c.Project = "Bad_Name" }, "project"},
		{"bad subnet", func(c *ClusterConfig) { c.Subnet = "10.0.0.0/24" }, "subnet"},
		{"unmasked subnet", func(c *ClusterConfig) { c.Subnet = "10.0.3.0/16" }, "subnet"},
		{"not a subnet", func(c *ClusterConfig) { c.Subnet = "nope" }, "subnet"},
		{"ports past 65535", func(c *ClusterConfig) { c.Port = 65530 }, "port"},
		{"too many zones", func(c *ClusterConfig) { c.Zones = 17 }, "zones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig about %q", err, tc.want)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestClusterUpNoEngine: an engine that does not answer fails Up at once,
// before anything is written or created.
func TestClusterUpNoEngine(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCluster(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c.docker = dockerCLI{bin: dir + "/no-docker"}
	_, err = c.Up(context.Background(), ClusterConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000})
	if !errors.Is(err, ErrNoDocker) {
		t.Fatalf("Up: %v, want ErrNoDocker", err)
	}
	if _, err := LoadMesh(dir); !errors.Is(err, ErrNoMesh) {
		t.Fatalf("Up left a mesh.json behind: %v", err)
	}
}

// TestProcessCommandsRefuseContainers: the process launcher leaves a
// container cluster's directory alone.
func TestProcessCommandsRefuseContainers(t *testing.T) {
	dir := t.TempDir()
	m, err := PlanCluster(dir, ClusterConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	c, err := NewController(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Kill(ctx, Target{Region: "westus"}); !errors.Is(err, ErrContainerMesh) {
		t.Errorf("Kill: %v, want ErrContainerMesh", err)
	}
	if err := c.Down(ctx, DownConfig{Grace: DefaultGrace}); !errors.Is(err, ErrContainerMesh) {
		t.Errorf("Down: %v, want ErrContainerMesh", err)
	}
	if _, err := c.Up(ctx, UpConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000, Regiond: "/bin/true"}); !errors.Is(err, ErrContainerMesh) {
		t.Errorf("Up: %v, want ErrContainerMesh", err)
	}
}

func TestPair(t *testing.T) {
	if pair("westus", "eastus") != pair("eastus", "westus") || pair("a", "b") != [2]string{"a", "b"} {
		t.Fatal("pair is not symmetric and sorted")
	}
	d := &DockerMesh{Cuts: [][2]string{pair("westus", "eastus")}}
	if !d.cut("eastus", "westus") || d.cut("westus", "westeurope") {
		t.Fatal("cut")
	}
}

// TestBusyPorts: a taken host port of the plan is named with the node that
// would publish it, and the fix names the whole block.
func TestBusyPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	m, err := PlanCluster(t.TempDir(), ClusterConfig{Regions: []string{"eastus", "westus"}, Zones: 3, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if first, last := clusterPorts(m); first != port || last != port+2+2*6-1 {
		t.Errorf("cluster ports %d..%d, want %d..%d", first, last, port, port+13)
	}
	want := fmt.Sprintf("127.0.0.1:%d (for trafficmgr) is taken", port)
	if busy := busyPorts(m); !slices.Contains(busy, want) {
		t.Errorf("busy ports %q lack %q", busy, want)
	}
}

// TestStartError: Docker's words for a host port taken between the check
// and the start become ErrPortInUse with the fix; other failures stay as
// they are.
func TestStartError(t *testing.T) {
	taken := &DockerError{Args: []string{"start", "x"}, Err: errors.New("exit status 1"),
		Stderr: "Error response from daemon: driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:5004 failed: port is already allocated"}
	if err := startError("westus/2", taken); !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), "--port") {
		t.Errorf("port taken at start: %v, want ErrPortInUse naming --port", err)
	}
	other := &DockerError{Args: []string{"start", "x"}, Err: errors.New("exit status 1"), Stderr: "no such container"}
	if err := startError("westus/2", other); errors.Is(err, ErrPortInUse) || !errors.Is(err, other) {
		t.Errorf("other start failure: %v", err)
	}
}

// TestPingNoAnswer: an engine whose socket is gone, and one that accepts
// but never answers, fail ping with ErrNoDocker naming DOCKER_HOST, the
// second within the caller's bound rather than hanging.
func TestPingNoAnswer(t *testing.T) {
	bin, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI on PATH")
	}
	dir := t.TempDir()
	closed := filepath.Join(dir, "closed.sock")
	silent := filepath.Join(dir, "silent.sock")
	ln, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for _, sock := range []string{closed, silent} {
		t.Setenv("DOCKER_HOST", "unix://"+sock)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := dockerCLI{bin: bin}.ping(ctx)
		cancel()
		if !errors.Is(err, ErrNoDocker) || !strings.Contains(err.Error(), "DOCKER_HOST=unix://"+sock) {
			t.Errorf("engine at %s: %v, want ErrNoDocker naming DOCKER_HOST", sock, err)
		}
	}
}

// TestClusterNetworkRetries: a docker network connect or disconnect that
// fails is tried again, a container already in the state asked for is
// success, and an engine that keeps failing is reported after
// networkTries attempts.
func TestClusterNetworkRetries(t *testing.T) {
	// The fake docker counts its calls in $FAKE_CALLS and fails the first
	// $FAKE_FAILS of them, printing $FAKE_STDERR.
	const script = `#!/bin/sh
echo x >> "$FAKE_CALLS"
if [ "$(wc -l < "$FAKE_CALLS")" -le "$FAKE_FAILS" ]; then echo "$FAKE_STDERR" >&2; exit 1; fi
`
	bin := filepath.Join(t.TempDir(), "docker")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		fails  int
		stderr string
		calls  int
		ok     bool
	}{
		{"first try", 0, "", 1, true},
		{"one failure", 1, "Error response from daemon: failed to set gateway while updating gateway: file exists", 2, true},
		{"already connected", 5, "Error response from daemon: endpoint with name x already exists in network y", 1, true},
		{"not connected", 5, "Error response from daemon: container x is not connected to network y", 1, true},
		{"keeps failing", 5, "Error response from daemon: something broke", networkTries, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			calls := filepath.Join(dir, "calls")
			t.Setenv("FAKE_CALLS", calls)
			t.Setenv("FAKE_FAILS", strconv.Itoa(tc.fails))
			t.Setenv("FAKE_STDERR", tc.stderr)
			c, err := NewCluster(Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			c.docker, c.networkBackoff = dockerCLI{bin: bin}, time.Millisecond
			err = c.changeNetwork(context.Background(), "connect", "net", "ctr")
			if (err == nil) != tc.ok {
				t.Errorf("changeNetwork: %v, want ok=%v", err, tc.ok)
			}
			data, _ := os.ReadFile(calls)
			if got := strings.Count(string(data), "x"); got != tc.calls {
				t.Errorf("docker ran %d times, want %d", got, tc.calls)
			}
		})
	}
}
