package chaos

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/trafficmgr"
)

// DockerMesh describes the Docker side of a container cluster: the names it
// gave its networks and containers, and the cuts in force.
type DockerMesh struct {
	// Project prefixes every container, network and volume of the
	// cluster and is the value of their LabelProject label.
	Project string `json:"project"`
	// Subnet is the /16 the cluster's networks are carved from.
	Subnet string `json:"subnet"`
	// Images are the images of the zone nodes and the traffic manager.
	Regiond    string `json:"regiond"`
	Trafficmgr string `json:"trafficmgr"`
	// Networks are the cluster's networks: the edge (the traffic
	// manager's), then one per region.
	Networks []DockerNetwork `json:"networks"`
	// Cuts are the pairs of regions partitioned from each other, each
	// pair sorted.
	Cuts [][2]string `json:"cuts,omitempty"`
}

// DockerNetwork is one Docker network of a container cluster.
type DockerNetwork struct {
	Name string `json:"name"`
	// Region is the region whose nodes live on it; empty for the edge.
	Region string `json:"region,omitempty"`
	Subnet string `json:"subnet"`
	// Trafficmgr is the traffic manager's address on it.
	Trafficmgr string `json:"trafficmgr"`
}

// Labels on every container, network and volume of a container cluster.
const (
	LabelProject = "io.georeg.cluster"
	LabelRole    = "io.georeg.role"
)

// Ports every zone node listens on inside its container, on its own
// address; and the first of the traffic manager's listeners.
const (
	ContainerHTTP       = 5000
	ContainerGRPC       = 5100
	ContainerRaft       = 5200
	ContainerGossip     = 5300
	containerTrafficmgr = 5000
)

// containerEtc is where a container finds its credentials.
const containerEtc = "/etc/georeg"

// Defaults of ClusterConfig.
const (
	DefaultProject      = "georeg"
	DefaultSubnet       = "10.213.0.0/16"
	DefaultRegiondImage = "georeg/regiond:dev"
	DefaultTMImage      = "georeg/trafficmgr:dev"
)

// Errors of a container cluster callers branch on.
var (
	// ErrContainerMesh means a process command met a container cluster.
	ErrContainerMesh = errors.New("chaos: the directory holds a container cluster")
	// ErrNoImage means an image the cluster needs is not in the engine.
	ErrNoImage = errors.New("chaos: image not found")
	// ErrUnhealthy means a container did not become healthy in time.
	ErrUnhealthy = errors.New("chaos: container not healthy")
)

// ClusterConfig describes the container cluster Cluster.Up starts.
type ClusterConfig struct {
	// Regions, Home, Zones and Port are as in UpConfig; Port is published
	// on the host's 127.0.0.1.
	Regions []string
	Home    string
	Zones   int
	Port    int
	// Project names the cluster's containers, networks and volumes
	// (default DefaultProject).
	Project string
	// Subnet is a /16 for the cluster's networks, free on this host
	// (default DefaultSubnet): the edge takes its .0.0/24, region i its
	// .i.0/24.
	Subnet string
	// RegiondImage and TrafficmgrImage default to DefaultRegiondImage and
	// DefaultTMImage (make images).
	RegiondImage, TrafficmgrImage string
	// AdminHashFile, when set, turns authentication on: the file holds the
	// bcrypt hash of the admin password, copied into every node.
	AdminHashFile string
	// HTTP serves the endpoint and the nodes' API over plain HTTP; the
	// default is HTTPS with certificates of the cluster's CA.
	HTTP bool
	// NodeArgs are extra regiond arguments for every node.
	NodeArgs []string
	// Wait bounds how long Up waits for the containers to be healthy (0:
	// DefaultWait).
	Wait time.Duration
}

// Validate reports the first problem of c, wrapping ErrInvalidConfig.
func (c ClusterConfig) Validate() error {
	uc := UpConfig{Regions: c.Regions, Home: c.Home, Zones: c.Zones, Port: c.Port, Wait: c.Wait}
	if err := uc.Validate(); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if last := c.Port + len(c.Regions) + 2*len(c.Regions)*c.Zones - 1; last > 65535 {
		return bad("port %d: the cluster publishes ports %d..%d, within 1..65535", c.Port, c.Port, last)
	}
	if len(c.Regions) > 200 || c.Zones > 50 {
		return bad("at most 200 regions of 50 zones fit the cluster's address plan")
	}
	if c.Project != "" && !regionName.MatchString(c.Project) {
		return bad("project %q: use lower-case letters, digits and '-', starting with a letter", c.Project)
	}
	if c.Subnet != "" {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() || p.Bits() != 16 || p.Masked() != p {
			return bad("subnet %q: want an IPv4 /16 such as %s", c.Subnet, DefaultSubnet)
		}
	}
	return nil
}

// Cluster starts, inspects, stops and breaks a container cluster: the zone
// nodes and the traffic manager as containers of the local Docker engine,
// each region on its own network. Like Controller it keeps its state in
// DIR/mesh.json (with Mesh.Docker set), so the management commands of
// georeg find the cluster's home region there too.
type Cluster struct {
	*Controller
	docker dockerCLI
	// networkBackoff is the pause before the second try of a network
	// change; each later try waits one more of it.
	networkBackoff time.Duration
}

// NewCluster returns a Cluster for the directory cfg.Dir, driving the
// docker CLI found on PATH.
func NewCluster(cfg Config) (*Cluster, error) {
	c, err := NewController(cfg)
	if err != nil {
		return nil, err
	}
	return &Cluster{Controller: c, docker: dockerCLI{bin: "docker"}, networkBackoff: time.Second}, nil
}

// PlanCluster computes the cluster cfg describes in the absolute directory
// dir, without touching Docker.
//
// Address plan, from the /16 S: the edge network (the traffic manager's,
// where its ports are published) is S.0.0/24, region i (1 for the home
// region, then in the order given) S.i.0/24. Zone z of region i has the
// address S.i.(10+z), on which it binds every listener; the traffic manager
// has S.i.5 on every region's network and S.0.10 on the edge. Addresses
// Docker picks itself (a node's leg on another region's network) come from
// S.i.128/25. Host ports, all on 127.0.0.1: the traffic manager's
// listeners on Port and the next ones (home first), then each node's HTTP,
// then each node's gRPC (for the management commands).
func PlanCluster(dir string, cfg ClusterConfig) (*Mesh, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: cluster directory %q is not absolute", ErrInvalidConfig, dir)
	}
	if cfg.Project == "" {
		cfg.Project = DefaultProject
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.RegiondImage == "" {
		cfg.RegiondImage = DefaultRegiondImage
	}
	if cfg.TrafficmgrImage == "" {
		cfg.TrafficmgrImage = DefaultTMImage
	}
	home := cfg.Home
	if home == "" {
		home = cfg.Regions[0]
	}
	order := []string{home}
	for _, r := range cfg.Regions {
		if r != home {
			order = append(order, r)
		}
	}
	s := netip.MustParsePrefix(cfg.Subnet).Addr().As4()
	ip := func(third, fourth int) string {
		return netip.AddrFrom4([4]byte{s[0], s[1], byte(third), byte(fourth)}).String()
	}
	subnet := func(third int) string { return ip(third, 0) + "/24" }
	local := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	scheme := "https"
	if cfg.HTTP {
		scheme = ""
	}
	d := &DockerMesh{
		Project: cfg.Project, Subnet: cfg.Subnet, Regiond: cfg.RegiondImage, Trafficmgr: cfg.TrafficmgrImage,
		Networks: []DockerNetwork{{Name: cfg.Project + "-edge", Subnet: subnet(0), Trafficmgr: ip(0, 10)}},
	}
	m := &Mesh{Version: meshVersion, Dir: dir, Port: cfg.Port, Home: home, HTTPS: !cfg.HTTP, Docker: d, Created: time.Now().UTC(),
		WAN: filepath.Join(dir, WANFile)}
	total := len(order) * cfg.Zones
	httpPort, grpcPort := cfg.Port+len(order), cfg.Port+len(order)+total
	var gossip []string
	for i, r := range order {
		d.Networks = append(d.Networks, DockerNetwork{Name: cfg.Project + "-" + r, Region: r, Subnet: subnet(i + 1), Trafficmgr: ip(i+1, 5)})
		reg := Region{Name: r, Home: r == home}
		for z := 1; z <= cfg.Zones; z++ {
			name := cfg.Project + "-" + r + "-" + strconv.Itoa(z)
			n := Node{
				Region: r, Zone: z, HTTP: local(httpPort), Scheme: scheme,
				Ports:     map[string]int{"grpc": grpcPort},
				Data:      name, // the node's volume
				Log:       "docker logs " + name,
				Container: name,
				IP:        ip(i+1, 10+z),
			}
			httpPort++
			grpcPort++
			gossip = append(gossip, net.JoinHostPort(n.IP, strconv.Itoa(ContainerGossip)))
			reg.Zones = append(reg.Zones, n)
		}
		m.Regions = append(m.Regions, reg)
	}
	for ri, r := range m.Regions {
		for zi := range r.Zones {
			n := &m.Regions[ri].Zones[zi]
			at := func(port int) string { return net.JoinHostPort(n.IP, strconv.Itoa(port)) }
			var join []string
			for _, g := range gossip {
				if g != at(ContainerGossip) {
					join = append(join, g)
				}
			}
			n.Argv = []string{
				"--region", n.Region, "--zone", strconv.Itoa(n.Zone), "--zones", strconv.Itoa(cfg.Zones), "--home", home,
				// HTTP and gRPC listen on every network of the
				// container: Docker publishes ports on whichever
				// network it joins first at start, not always the
				// region's.
				"--http", wildcard(ContainerHTTP), "--grpc", wildcard(ContainerGRPC), "--advertise", n.IP,
				"--raft", at(ContainerRaft), "--gossip", at(ContainerGossip),
				"--data", "/var/lib/georeg",
				"--tls-cert", containerEtc + "/node.crt", "--tls-key", containerEtc + "/node.key", "--tls-ca", containerEtc + "/ca.crt",
				"--gossip-key-file", containerEtc + "/" + GossipKeyFile,
				// The traffic manager reaches the region from its
				// address on the region's network.
				"--trusted-proxies", d.Networks[ri+1].Trafficmgr + "/32",
				// Latency, bandwidth caps and loss between regions
				// are the simulated WAN's, in the dials of every node
				// (the kernels this runs on have no netem; see
				// docs/cluster.md). Its data endpoints would listen on
				// ports nothing publishes: blobs are relayed.
				"--wan", containerEtc + "/" + WANFile, "--data-endpoints=false",
				// Ten containers and their clients share this host's
				// cores: with the 500 ms default, a leader starved
				// for 250 ms stepped down, and the regions elected
				// every few seconds under a test's load.
				"--raft-heartbeat-timeout", ClusterRaftHeartbeatTimeout.String(),
			}
			if len(join) > 0 {
				n.Argv = append(n.Argv, "--join", strings.Join(join, ","))
			}
			if !cfg.HTTP {
				n.Argv = append(n.Argv, "--https")
			}
			if cfg.AdminHashFile != "" {
				n.Argv = append(n.Argv, "--auth", "--admin-password-hash-file", containerEtc+"/"+filepath.Base(cfg.AdminHashFile))
			}
			n.Argv = append(n.Argv, cfg.NodeArgs...)
		}
	}
	for i, r := range m.Regions {
		m.Locations = append(m.Locations, Location{Name: r.Name, Addr: local(cfg.Port + i)})
	}
	m.Endpoint = m.Locations[0].Addr
	tmName := cfg.Project + "-" + RoleTrafficmgr
	tm := &Node{
		Role: RoleTrafficmgr, HTTP: m.Endpoint, Scheme: scheme,
		Log: "docker logs " + tmName, Container: tmName, IP: d.Networks[0].Trafficmgr,
		Argv: []string{"--config", containerEtc + "/" + TrafficmgrFile},
	}
	if !cfg.HTTP {
		tm.Argv = append(tm.Argv, "--tls-cert", containerEtc+"/node.crt", "--tls-key", containerEtc+"/node.key", "--tls-ca", containerEtc+"/ca.crt")
	}
	m.TrafficManager = tm
	return m, nil
}

func wildcard(port int) string { return net.JoinHostPort("0.0.0.0", strconv.Itoa(port)) }

// trafficmgrConfig is the traffic manager's configuration inside its
// container: the nodes at their own addresses, one listener per location.
func trafficmgrConfig(m *Mesh) trafficmgr.Config {
	cfg := trafficmgr.Config{Home: m.Home}
	for i, r := range m.Regions {
		rc := trafficmgr.RegionConfig{Name: r.Name}
		for _, n := range r.Zones {
			rc.Nodes = append(rc.Nodes, trafficmgr.NodeConfig{Zone: n.Zone, HTTP: net.JoinHostPort(n.IP, strconv.Itoa(ContainerHTTP))})
		}
		cfg.Regions = append(cfg.Regions, rc)
		cfg.Listeners = append(cfg.Listeners, trafficmgr.ListenerConfig{Location: r.Name, Addr: ":" + strconv.Itoa(containerTrafficmgr+i)})
	}
	return cfg
}

// Up creates and starts the cluster cfg describes and returns once every
// container is healthy, every region has a Raft leader and the endpoint
// answers on the host. It checks what it can before creating anything (the
// engine answers, the images exist, the host ports are free, no cluster of
// the same project exists) and, when a later step fails, removes every
// container, network and volume it created before returning the error.
func (c *Cluster) Up(ctx context.Context, cfg ClusterConfig) (*Mesh, error) {
	start := time.Now()
	m, err := PlanCluster(c.dir, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.preflight(ctx, m); err != nil {
		return nil, err
	}
	d := m.Docker
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if left, err := c.resources(ctx, d.Project); err != nil {
		return nil, err
	} else if len(left) > 0 {
		return nil, fmt.Errorf("%w: Docker already has the cluster %q (%s): stop it first with `georeg cluster down --dir %s`",
			ErrRunning, d.Project, strings.Join(left, ", "), c.dir)
	}
	switch old, err := LoadMesh(c.dir); {
	case errors.Is(err, ErrNoMesh):
	case err != nil:
		return nil, err
	case old.Docker == nil && len(runningPIDs(old)) > 0:
		return nil, fmt.Errorf("%w in %s: a mesh of processes; stop it first with `georeg mesh down --dir %s`", ErrRunning, c.dir, c.dir)
	}
	if err := clusterWAN(m).Save(m.WAN); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	creds, err := clusterCredentials(m, cfg.AdminHashFile)
	if err != nil {
		return nil, err
	}
	if err := m.Save(); err != nil {
		return nil, err
	}
	fail := func(err error) (*Mesh, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*dockerTimeout)
		defer cancel()
		if rerr := c.remove(cctx, d.Project, true); rerr != nil {
			err = errors.Join(err, rerr)
		}
		os.Remove(filepath.Join(c.dir, MeshFile))
		return nil, err
	}
	for _, n := range d.Networks {
		fmt.Fprintf(c.progress, "creating network %s (%s)\n", n.Name, n.Subnet)
		s := netip.MustParsePrefix(n.Subnet).Addr().As4()
		ipRange := netip.AddrFrom4([4]byte{s[0], s[1], s[2], 128}).String() + "/25"
		if _, err := c.docker.run(ctx, nil, "network", "create", "--driver", "bridge", "--subnet", n.Subnet, "--ip-range", ipRange,
			"--label", LabelProject+"="+d.Project, n.Name); err != nil {
			return fail(fmt.Errorf("chaos: network %s: %w (is %s free? choose another with --subnet)", n.Name, err, d.Subnet))
		}
	}
	for _, n := range m.Processes() {
		if err := c.create(ctx, m, n, creds); err != nil {
			return fail(err)
		}
	}
	wait := cfg.Wait
	if wait == 0 {
		wait = DefaultWait
	}
	nodes := m.Nodes()
	if err := c.startContainers(ctx, m, nodes, wait); err != nil {
		return fail(err)
	}
	if err := c.waitLeaders(ctx, nodes, wait); err != nil {
		return fail(err)
	}
	if err := c.startContainers(ctx, m, []*Node{m.TrafficManager}, wait); err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.out, "cluster up: %d zone containers and the traffic manager in %v, endpoint %s\n",
		len(nodes), time.Since(start).Round(100*time.Millisecond), m.Endpoint)
	for _, l := range m.Locations {
		fmt.Fprintf(c.out, "  clients in %s: %s\n", l.Name, l.Addr)
	}
	return m, nil
}

// Check answers whether Up could start the cluster cfg describes without
// creating anything: the configuration is valid, the Docker engine
// answers, the images are there and the host ports are free. Up checks the
// same; a caller that prepares files for Up checks first so that bad input
// leaves nothing behind.
func (c *Cluster) Check(ctx context.Context, cfg ClusterConfig) error {
	m, err := PlanCluster(c.dir, cfg)
	if err != nil {
		return err
	}
	return c.preflight(ctx, m)
}

// preflight is Check for a planned cluster. Its errors name the cause and
// the fix: the engine to start, the images to build, the ports to free.
func (c *Cluster) preflight(ctx context.Context, m *Mesh) error {
	if err := c.docker.ping(ctx); err != nil {
		return err
	}
	d := m.Docker
	var missing []string
	for _, img := range []string{d.Regiond, d.Trafficmgr} {
		_, err := c.docker.run(ctx, nil, "image", "inspect", "--format", "{{.Id}}", img)
		var de *DockerError
		switch {
		case errors.As(err, &de) && strings.Contains(strings.ToLower(de.Stderr), "no such image"):
			missing = append(missing, img)
		case err != nil:
			return fmt.Errorf("chaos: image %s: %w", img, err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not in the Docker engine, which pulls nothing for the cluster: build the images with `make images` (%s, %s), "+
			"or load yours with `docker load` and name them with --regiond-image and --trafficmgr-image",
			ErrNoImage, strings.Join(missing, " and "), DefaultRegiondImage, DefaultTMImage)
	}
	if busy := busyPorts(m); len(busy) > 0 {
		first, last := clusterPorts(m)
		return fmt.Errorf("%w: %s; the cluster publishes 127.0.0.1:%d..%d: stop what listens there or choose another first port with --port",
			ErrPortInUse, strings.Join(busy, "; "), first, last)
	}
	return nil
}

// clusterPorts returns the first and last of the host ports the cluster
// m publishes: the traffic manager's locations, then every node's HTTP and
// gRPC (PlanCluster's plan).
func clusterPorts(m *Mesh) (first, last int) {
	return m.Port, m.Port + len(m.Locations) + 2*len(m.Nodes()) - 1
}

// busyPorts lists the host addresses of m that something already listens
// on, each with the node that would publish it there.
func busyPorts(m *Mesh) []string {
	var busy []string
	for _, p := range m.Processes() {
		addrs := []string{p.HTTP}
		if g, ok := p.Ports["grpc"]; ok {
			addrs = append(addrs, addr(g))
		}
		if p.Role == RoleTrafficmgr {
			addrs = nil
			for _, l := range m.Locations {
				addrs = append(addrs, l.Addr)
			}
		}
		for _, a := range addrs {
			switch err := portFree(a); {
			case errors.Is(err, syscall.EADDRINUSE):
				busy = append(busy, fmt.Sprintf("%s (for %s) is taken", a, p.Name()))
			case err != nil:
				busy = append(busy, fmt.Sprintf("%s (for %s): %v", a, p.Name(), err))
			}
		}
	}
	return busy
}

// startError names the cause of a container that would not start because
// its host port was taken after preflight looked, a race with another
// program that Docker reports in its own words.
func startError(name string, err error) error {
	var de *DockerError
	if errors.As(err, &de) && (strings.Contains(de.Stderr, "port is already allocated") || strings.Contains(de.Stderr, "address already in use")) {
		return fmt.Errorf("%w: start %s: %w; stop what listens there or choose another first port with --port", ErrPortInUse, name, err)
	}
	return fmt.Errorf("chaos: start %s: %w", name, err)
}

// clusterCredentials makes the cluster's CA (kept in DIR/tls, as a mesh's),
// a certificate per container naming its addresses and container name, the
// CLI's certificate and the gossip key, and returns the files each
// container gets, by container name.
func clusterCredentials(m *Mesh, adminHashFile string) (map[string][]file, error) {
	dir := filepath.Join(m.Dir, TLSDir)
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca, err := tlsconf.LoadCA(caCert, caKey)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = tlsconf.NewCA(tlsconf.CAConfig{Name: "georeg cluster CA"}); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(caKey, keyPEM, true); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(caCert, ca.CertPEM(), false); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("chaos: the cluster's CA: %w", err)
	}
	// The CLI reaches the nodes through the host's 127.0.0.1, which every
	// certificate names.
	cliCert, cliKey := filepath.Join(dir, CLICertName+".crt"), filepath.Join(dir, CLICertName+".key")
	if _, err := tls.LoadX509KeyPair(cliCert, cliKey); err != nil {
		certPEM, keyPEM, err := ca.Issue(tlsconf.CertConfig{Name: CLICertName, Role: tlsconf.RoleOperator})
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(cliKey, keyPEM, true); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(cliCert, certPEM, false); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	keyFile := filepath.Join(m.Dir, GossipKeyFile)
	if _, err := members.ReadKeyFile(keyFile); err != nil {
		key, err := members.NewKey()
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		content := "# gossip keys of this cluster, base64, one a line; the first encrypts (docs/security.md)\n" + key + "\n"
		if err := tlsconf.WriteFile(keyFile, []byte(content), true); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	gossipKey, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var adminHash []byte
	if adminHashFile != "" {
		if adminHash, err = os.ReadFile(adminHashFile); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	var wanFile []byte
	if m.WAN != "" {
		if wanFile, err = os.ReadFile(m.WAN); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	out := map[string][]file{}
	for _, n := range m.Processes() {
		role, hosts := tlsconf.RoleNode, []string{n.IP, n.Container}
		if n.Role == RoleTrafficmgr {
			role = tlsconf.RoleTrafficmgr
			for _, nw := range m.Docker.Networks {
				hosts = append(hosts, nw.Trafficmgr)
			}
		}
		// A fresh certificate at every up: the addresses are the plan's.
		certPEM, keyPEM, err := ca.Issue(tlsconf.CertConfig{Name: certName(n), Role: role, Hosts: hosts})
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(filepath.Join(dir, certName(n)+".crt"), certPEM, false); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		fs := []file{
			{name: "ca.crt", data: ca.CertPEM(), mode: 0o444},
			{name: "node.crt", data: certPEM, mode: 0o444},
			{name: "node.key", data: keyPEM, mode: 0o444},
		}
		if n.Role == RoleTrafficmgr {
			b, err := json.MarshalIndent(trafficmgrConfig(m), "", "  ")
			if err != nil {
				return nil, fmt.Errorf("chaos: traffic manager config: %w", err)
			}
			fs = append(fs, file{name: TrafficmgrFile, data: b, mode: 0o444})
		} else {
			fs = append(fs, file{name: GossipKeyFile, data: gossipKey, mode: 0o444})
			if adminHash != nil {
				fs = append(fs, file{name: filepath.Base(adminHashFile), data: adminHash, mode: 0o444})
			}
			if wanFile != nil {
				fs = append(fs, file{name: WANFile, data: wanFile, mode: 0o444})
			}
		}
		out[n.Container] = fs
	}
	return out, nil
}

// create creates n's container (and a zone node's volume) without starting
// it, copies its credentials in, and attaches it to the networks it needs
// besides its own: a zone node to every other region's network it is not
// cut from, the traffic manager to every region's.
func (c *Cluster) create(ctx context.Context, m *Mesh, n *Node, creds map[string][]file) error {
	d := m.Docker
	args := []string{"create", "--name", n.Container, "--hostname", strings.TrimPrefix(n.Container, d.Project+"-"),
		"--label", LabelProject + "=" + d.Project, "--restart", "no",
		"--env", "GEOREG_HEALTH_CA=" + containerEtc + "/ca.crt"}
	scheme := "https"
	if !m.HTTPS {
		scheme = "http"
	}
	var own DockerNetwork
	if n.Role == RoleTrafficmgr {
		own = d.Networks[0]
		args = append(args, "--label", LabelRole+"="+RoleTrafficmgr, "--network", own.Name, "--ip", n.IP,
			"--env", "GEOREG_HEALTH_URL="+scheme+"://127.0.0.1:"+strconv.Itoa(containerTrafficmgr)+"/v2/")
		for i, l := range m.Locations {
			_, port, _ := net.SplitHostPort(l.Addr)
			args = append(args, "--publish", "127.0.0.1:"+port+":"+strconv.Itoa(containerTrafficmgr+i))
		}
		args = append(args, d.Trafficmgr)
	} else {
		own = d.network(n.Region)
		if _, err := c.docker.run(ctx, nil, "volume", "create", "--label", LabelProject+"="+d.Project, n.Data); err != nil {
			return fmt.Errorf("chaos: volume of %s: %w", n.Name(), err)
		}
		_, httpPort, _ := net.SplitHostPort(n.HTTP)
		args = append(args, "--label", LabelRole+"=zone", "--network", own.Name, "--ip", n.IP,
			"--volume", n.Data+":/var/lib/georeg",
			"--publish", "127.0.0.1:"+httpPort+":"+strconv.Itoa(ContainerHTTP),
			"--publish", "127.0.0.1:"+strconv.Itoa(n.Ports["grpc"])+":"+strconv.Itoa(ContainerGRPC),
			"--env", "GEOREG_HEALTH_URL="+scheme+"://"+net.JoinHostPort(n.IP, strconv.Itoa(ContainerHTTP))+"/v2/",
			d.Regiond)
	}
	args = append(args, n.Argv...)
	if _, err := c.docker.run(ctx, nil, args...); err != nil {
		return fmt.Errorf("chaos: create %s: %w", n.Name(), err)
	}
	tarball, err := tarOf(creds[n.Container])
	if err != nil {
		return fmt.Errorf("chaos: credentials of %s: %w", n.Name(), err)
	}
	if _, err := c.docker.run(ctx, tarball, "cp", "-", n.Container+":"+containerEtc); err != nil {
		return fmt.Errorf("chaos: credentials of %s: %w", n.Name(), err)
	}
	for _, nw := range d.Networks[1:] {
		switch {
		case n.Role == RoleTrafficmgr:
			_, err = c.docker.run(ctx, nil, "network", "connect", "--ip", nw.Trafficmgr, nw.Name, n.Container)
		case nw.Region != n.Region && !d.cut(n.Region, nw.Region):
			_, err = c.docker.run(ctx, nil, "network", "connect", nw.Name, n.Container)
		}
		if err != nil {
			return fmt.Errorf("chaos: attach %s to %s: %w", n.Name(), nw.Name, err)
		}
	}
	fmt.Fprintf(c.progress, "created %s (%s)\n", n.Container, n.IP)
	return nil
}

func (d *DockerMesh) network(region string) DockerNetwork {
	for _, n := range d.Networks {
		if n.Region == region {
			return n
		}
	}
	return DockerNetwork{}
}

func (d *DockerMesh) cut(a, b string) bool {
	return slices.Contains(d.Cuts, pair(a, b))
}

func pair(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// startContainers starts the containers of nodes, a few at a time (the
// engine sets up each one's networks, which it does faster side by side),
// and waits until Docker calls each healthy.
func (c *Cluster) startContainers(ctx context.Context, m *Mesh, nodes []*Node, wait time.Duration) error {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Container
	}
	fmt.Fprintf(c.progress, "starting %s\n", strings.Join(names, " "))
	errs := make([]error, len(nodes))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, n := range nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := c.docker.runFor(ctx, wait, nil, "start", n.Container); err != nil {
				errs[i] = startError(n.Name(), err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.waitHealthy(ctx, nodes, wait)
}

// waitHealthy waits until Docker's health check passes for each of nodes.
func (c *Cluster) waitHealthy(ctx context.Context, nodes []*Node, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	pending := slices.Clone(nodes)
	for len(pending) > 0 {
		args := []string{"inspect", "--format", "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"}
		for _, n := range pending {
			args = append(args, n.Container)
		}
		out, err := c.docker.run(ctx, nil, args...)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("chaos: %w", err)
		}
		state := map[string][]string{}
		for _, l := range lines(out) {
			f := strings.Fields(l)
			state[strings.TrimPrefix(f[0], "/")] = f[1:]
		}
		var still []*Node
		for _, n := range pending {
			st := state[n.Container]
			switch {
			case len(st) >= 2 && st[1] == "healthy":
			case len(st) >= 1 && (st[0] == "exited" || st[0] == "dead"):
				return c.nodeError(n, fmt.Errorf("%w: its container %s", ErrNodeExited, st[0]))
			default:
				still = append(still, n)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return c.nodeError(pending[0], fmt.Errorf("%w: %w after %v", ErrUnhealthy, ErrNodeTimeout, wait))
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// nodeError wraps err with the last lines of n's container log.
func (c *Cluster) nodeError(n *Node, err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return &NodeError{Node: n.Name(), HTTP: n.HTTP, Log: n.Log, Tail: c.docker.logs(ctx, n.Container, 20), Err: err}
}

// resources lists the containers, networks and volumes labelled with
// project.
func (c *Cluster) resources(ctx context.Context, project string) ([]string, error) {
	filter := "label=" + LabelProject + "=" + project
	var out []string
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "--quiet", "--filter", filter}
		if kind == "container" {
			args = []string{"container", "ls", "--all", "--format", "{{.Names}}", "--filter", filter}
		} else if kind == "network" {
			args = []string{"network", "ls", "--format", "{{.Name}}", "--filter", filter}
		}
		s, err := c.docker.run(ctx, nil, args...)
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		for _, name := range lines(s) {
			out = append(out, kind+" "+name)
		}
	}
	return out, nil
}

// remove deletes every container and network of project, and its volumes
// when purge is set. Containers go a few at a time, each with a generous
// bound: removing one tears its networks down, which a busy host makes
// slow.
func (c *Cluster) remove(ctx context.Context, project string, purge bool) error {
	filter := "label=" + LabelProject + "=" + project
	var errs []error
	each := func(ids []string, args ...string) {
		errs2 := make([]error, len(ids))
		sem := make(chan struct{}, 4)
		var wg sync.WaitGroup
		for i, id := range ids {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_, errs2[i] = c.docker.runFor(ctx, 3*dockerTimeout, nil, append(args, id)...)
			})
		}
		wg.Wait()
		errs = append(errs, errs2...)
	}
	if s, err := c.docker.run(ctx, nil, "container", "ls", "--all", "--quiet", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else {
		each(lines(s), "rm", "--force", "--volumes")
	}
	if s, err := c.docker.run(ctx, nil, "network", "ls", "--quiet", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else {
		each(lines(s), "network", "rm")
	}
	if purge {
		if s, err := c.docker.run(ctx, nil, "volume", "ls", "--quiet", "--filter", filter); err != nil {
			errs = append(errs, err)
		} else {
			each(lines(s), "volume", "rm", "--force")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("chaos: remove the cluster %q: %w", project, err)
	}
	return nil
}

// lockCluster takes the directory's lock and reads a container cluster's
// mesh.json under it.
// lockSelect locks the cluster, as lockCluster, and selects the nodes t
// names; on an error nothing stays locked.
func (c *Cluster) lockSelect(ctx context.Context, t Target) (*Mesh, []*Node, func(), error) {
	m, unlock, err := c.lockCluster(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	nodes, err := m.Select(t)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return m, nodes, unlock, nil
}

func (c *Cluster) lockCluster(ctx context.Context) (*Mesh, func(), error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := LoadMesh(c.dir)
	if err == nil && m.Docker == nil {
		err = fmt.Errorf("chaos: %s holds a mesh of processes, not a container cluster (georeg mesh ...)", c.dir)
	}
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return m, unlock, nil
}

// Down removes the cluster's containers and networks, and with purge its
// volumes (the nodes' data). The CA and credentials in DIR stay, so clients
// that trust the CA keep trusting a cluster started again.
func (c *Cluster) Down(ctx context.Context, purge bool) error {
	m, unlock, err := c.lockCluster(ctx)
	if errors.Is(err, ErrNoMesh) {
		fmt.Fprintf(c.out, "no cluster in %s: nothing to stop\n", c.dir)
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.remove(ctx, m.Docker.Project, purge); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(c.dir, MeshFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("chaos: %w", err)
	}
	what := "containers and networks"
	if purge {
		what += " and volumes"
	}
	fmt.Fprintf(c.out, "cluster %q down: its %s are removed\n", m.Docker.Project, what)
	return nil
}

// containerStates returns the state and health of every container of m
// that exists, by name, and the host pid of the running ones.
func (c *Cluster) containerStates(ctx context.Context, m *Mesh) (map[string][3]string, error) {
	s, err := c.docker.run(ctx, nil, "container", "ls", "--all", "--format", "{{.Names}}", "--filter", "label="+LabelProject+"="+m.Docker.Project)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	names := lines(s)
	out := map[string][3]string{}
	if len(names) == 0 {
		return out, nil
	}
	s, err = c.docker.run(ctx, nil, append([]string{"inspect", "--format",
		"{{.Name}} {{.State.Status}} {{.State.Pid}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}"}, names...)...)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	for _, l := range lines(s) {
		if f := strings.Fields(l); len(f) == 4 {
			out[strings.TrimPrefix(f[0], "/")] = [3]string{f[1], f[3], f[2]}
		}
	}
	return out, nil
}

// dockerStatus is Status for a container cluster: a node is down when its
// container is not running, unresponsive when it runs but does not answer
// on its published port.
func (c *Controller) dockerStatus(ctx context.Context, m *Mesh) (*Status, error) {
	cl := &Cluster{Controller: c, docker: dockerCLI{bin: "docker"}}
	states, err := cl.containerStates(ctx, m)
	if err != nil {
		return nil, err
	}
	st := &Status{Endpoint: m.Endpoint, Dir: m.Dir, Home: m.Home}
	check := func(n *Node) (pid int, state, errText string) {
		s, ok := states[n.Container]
		if !ok || s[0] != "running" {
			return 0, StateDown, ""
		}
		pid, _ = strconv.Atoi(s[2])
		pctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
		defer cancel()
		if err := probe(pctx, c.client, n.URL()); err != nil {
			return pid, StateUnresponsive, err.Error()
		}
		return pid, StateUp, ""
	}
	for _, r := range m.Regions {
		rs := RegionStatus{Name: r.Name, Home: r.Home}
		for _, n := range r.Zones {
			zs := ZoneStatus{Zone: n.Zone, HTTP: n.HTTP, Data: n.Data, Log: n.Log}
			zs.PID, zs.State, zs.Error = check(&n)
			if zs.State == StateUp {
				pctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
				c.report(pctx, n.URL(), &zs)
				cancel()
			}
			rs.Zones = append(rs.Zones, zs)
		}
		st.Regions = append(st.Regions, rs)
	}
	if tm := m.TrafficManager; tm != nil {
		ts := &TrafficmgrStatus{HTTP: tm.HTTP, Log: tm.Log}
		ts.PID, ts.State, ts.Error = check(tm)
		if ts.State == StateUp {
			pctx, cancel := context.WithTimeout(ctx, c.probeTimeout)
			if rep, err := c.trafficmgrReport(pctx, tm.URL()); err == nil {
				ts.Routing = rep
			}
			cancel()
		}
		st.TrafficManager = ts
	}
	for _, cut := range m.Docker.Cuts {
		st.Cuts = append(st.Cuts, cut[0]+" | "+cut[1])
	}
	return st, nil
}

// Kill sends SIGKILL to the containers of the nodes t names (docker kill):
// a zone's or a region's crash. Volumes stay for Restart.
func (c *Cluster) Kill(ctx context.Context, t Target) error {
	m, nodes, unlock, err := c.lockSelect(ctx, t)
	if err != nil {
		return err
	}
	defer unlock()
	states, err := c.containerStates(ctx, m)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if states[n.Container][0] != "running" {
			fmt.Fprintf(c.out, "%s is already stopped\n", n.Name())
			continue
		}
		if _, err := c.docker.run(ctx, nil, "kill", "--signal", "KILL", n.Container); err != nil {
			return fmt.Errorf("chaos: kill %s: %w", n.Name(), err)
		}
		fmt.Fprintf(c.out, "killed %s (container %s)\n", n.Name(), n.Container)
	}
	return nil
}

// Restart starts the stopped containers of the nodes t names again, on
// their volumes, and waits until they are healthy.
func (c *Cluster) Restart(ctx context.Context, t Target, wait time.Duration) error {
	m, nodes, unlock, err := c.lockSelect(ctx, t)
	if err != nil {
		return err
	}
	defer unlock()
	states, err := c.containerStates(ctx, m)
	if err != nil {
		return err
	}
	var stopped []*Node
	for _, n := range nodes {
		if states[n.Container][0] == "running" {
			fmt.Fprintf(c.out, "%s is already running\n", n.Name())
			continue
		}
		stopped = append(stopped, n)
	}
	if len(stopped) == 0 {
		return nil
	}
	if err := c.startContainers(ctx, m, stopped, wait); err != nil {
		return err
	}
	for _, n := range stopped {
		fmt.Fprintf(c.out, "restarted %s (container %s)\n", n.Name(), n.Container)
	}
	return nil
}

// Replace removes a zone node's container and volume and starts a new,
// empty one with the same identity and address: the node must repair
// itself from the other zones of its region.
func (c *Cluster) Replace(ctx context.Context, t Target, adminHashFile string, wait time.Duration) error {
	if t.Zone == 0 || t.Region == RoleTrafficmgr {
		return fmt.Errorf("%w: replace takes one zone node, REGION/ZONE", ErrInvalidConfig)
	}
	m, nodes, unlock, err := c.lockSelect(ctx, t)
	if err != nil {
		return err
	}
	defer unlock()
	n := nodes[0]
	if _, err := c.docker.run(ctx, nil, "rm", "--force", n.Container); err != nil {
		return fmt.Errorf("chaos: replace %s: %w", n.Name(), err)
	}
	if _, err := c.docker.run(ctx, nil, "volume", "rm", "--force", n.Data); err != nil {
		return fmt.Errorf("chaos: replace %s: %w", n.Name(), err)
	}
	creds, err := clusterCredentials(m, adminHashFile)
	if err != nil {
		return err
	}
	if err := c.create(ctx, m, n, creds); err != nil {
		return err
	}
	if err := c.startContainers(ctx, m, []*Node{n}, wait); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "replaced %s with an empty container on a new volume\n", n.Name())
	return nil
}

// Partition cuts regions a and b apart: each region's zone containers are
// disconnected from the other's network, so packets between them go
// nowhere. Their links to other regions and the traffic manager's to both
// stay.
func (c *Cluster) Partition(ctx context.Context, a, b string) error {
	return c.setCut(ctx, a, b, true)
}

// Heal reconnects regions a and b; with both empty, every cut pair.
func (c *Cluster) Heal(ctx context.Context, a, b string) error {
	return c.setCut(ctx, a, b, false)
}

func (c *Cluster) setCut(ctx context.Context, a, b string, cut bool) error {
	m, unlock, err := c.lockCluster(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	d := m.Docker
	pairs := [][2]string{pair(a, b)}
	if !cut && a == "" && b == "" {
		pairs = slices.Clone(d.Cuts)
	}
	for _, p := range pairs {
		if p[0] == p[1] || d.network(p[0]).Name == "" || d.network(p[1]).Name == "" {
			return fmt.Errorf("%w: %s and %s: want two different regions of the cluster", ErrUnknownTarget, p[0], p[1])
		}
		for _, side := range [][2]string{{p[0], p[1]}, {p[1], p[0]}} {
			from, to := side[0], d.network(side[1])
			for _, r := range m.Regions {
				if r.Name != from {
					continue
				}
				for _, n := range r.Zones {
					verb := "connect"
					if cut {
						verb = "disconnect"
					}
					if err := c.changeNetwork(ctx, verb, to.Name, n.Container); err != nil {
						return fmt.Errorf("chaos: %s %s: %w", verb, n.Name(), err)
					}
				}
			}
		}
		d.Cuts = slices.DeleteFunc(d.Cuts, func(x [2]string) bool { return x == p })
		if cut {
			d.Cuts = append(d.Cuts, p)
			fmt.Fprintf(c.out, "partitioned %s from %s: their zone containers left each other's networks\n", p[0], p[1])
		} else {
			fmt.Fprintf(c.out, "healed %s - %s\n", p[0], p[1])
		}
		if err := m.Save(); err != nil {
			return err
		}
	}
	return nil
}

// ClusterRaftHeartbeatTimeout is the Raft heartbeat timeout of a container
// cluster's zones, hashicorp/raft's default, twice a process mesh's: on
// one host its ten containers share the cores with their clients, and
// across machines they talk over a real network. A region then elects a
// new leader within about two seconds.
const ClusterRaftHeartbeatTimeout = time.Second

// networkTries is how many times changeNetwork tries a docker network
// connect or disconnect before it gives up.
const networkTries = 3

// changeNetwork runs `docker network VERB NETWORK CONTAINER` (connect or
// disconnect). A container already in the state asked for is success, so
// a failed attempt is tried again: the engine's network setup has failed
// once in a while on a busy host, and a heal that stops halfway leaves a
// region cut off from some of its peers.
func (c *Cluster) changeNetwork(ctx context.Context, verb, network, container string) error {
	for try := 1; ; try++ {
		_, err := c.docker.run(ctx, nil, "network", verb, network, container)
		var de *DockerError
		if err == nil || (errors.As(err, &de) && (strings.Contains(de.Stderr, "already exists") || strings.Contains(de.Stderr, "is not connected"))) {
			return nil
		}
		if try == networkTries {
			return err
		}
		fmt.Fprintf(c.progress, "docker network %s %s %s failed (%v); trying again\n", verb, network, container, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last try: %v)", ctx.Err(), err)
		case <-time.After(time.Duration(try) * c.networkBackoff):
		}
	}
}

// clusterWAN returns the simulated WAN of a new cluster: every pair of
// regions linked with nothing added to the real network, and the address
// of every zone node's HTTP and gRPC listener at its own address (where the
// other nodes dial it), so each node knows which region a dial goes to.
func clusterWAN(m *Mesh) wan.Config {
	cfg := wan.Config{Version: wan.Version, Addresses: map[string]string{}, Links: []wan.Link{}}
	for i, a := range m.Regions {
		for _, b := range m.Regions[i:] {
			cfg.Links = append(cfg.Links, wan.Link{A: a.Name, B: b.Name})
		}
		for _, n := range a.Zones {
			for _, port := range []int{ContainerHTTP, ContainerGRPC} {
				cfg.Addresses[net.JoinHostPort(n.IP, strconv.Itoa(port))] = a.Name
			}
		}
	}
	return cfg
}

// ChangeLink sets the round trip, bandwidth cap or loss between two
// regions of the cluster in its simulated WAN (DIR/wan.json) and copies
// the file into every zone container, whose node reloads it within a
// fraction of a second: a node's dials to the other region are delayed,
// capped and made lossy, each direction by half the round trip. Cuts are
// real (Partition); the path from clients to their own region is not
// simulated on containers.
func (c *Cluster) ChangeLink(ctx context.Context, ch LinkChange) error {
	m, unlock, err := c.lockCluster(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case m.WAN == "":
		return fmt.Errorf("%w: this cluster was made without the simulated WAN (before latency on containers); make it again with cluster down and cluster up", ErrInvalidConfig)
	case ch.Cut != nil:
		return fmt.Errorf("%w: a container cluster's links are cut and healed by network (chaos partition, chaos heal), not in the simulated WAN", ErrInvalidConfig)
	case ch.A == ch.B:
		return fmt.Errorf("%w: %s and %s: on a container cluster only the links between two regions are simulated, not the path from clients to their region", ErrInvalidConfig, ch.A, ch.B)
	}
	for _, r := range []string{ch.A, ch.B} {
		if !m.hasRegion(r) {
			return fmt.Errorf("%w: %s (the cluster has %v)", ErrUnknownTarget, r, m.regionNames())
		}
	}
	cfg, err := wan.Load(m.WAN)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	before, after, err := changedLink(cfg, ch)
	if err != nil {
		return err
	}
	cfg.SetLink(after)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := cfg.Save(m.WAN); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	b, err := os.ReadFile(m.WAN)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	nodes := m.Nodes()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tarball, err := tarOf([]file{{name: WANFile, data: b, mode: 0o444}})
			if err == nil {
				_, err = c.docker.run(ctx, tarball, "cp", "-", n.Container+":"+containerEtc)
			}
			if err != nil {
				errs[i] = fmt.Errorf("chaos: simulated WAN of %s: %w", n.Name(), err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s <-> %s: %s -> %s (in the simulated WAN of every zone container)\n", ch.A, ch.B, describeLink(before), describeLink(after))
	return nil
}
