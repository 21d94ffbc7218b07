package chaos

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PortsPerNode is how many ports each node of a local mesh takes: HTTP,
// gRPC, Raft and gossip.
const PortsPerNode = 4

// MaxZones is the largest number of zones a region may have in a local mesh.
const MaxZones = 16

// ErrInvalidConfig is wrapped by every error that rejects a mesh
// configuration before anything is started.
var ErrInvalidConfig = errors.New("chaos: invalid mesh configuration")

// regionName is the grammar of region names: they appear in file names and in
// "region/zone" targets, so no slashes, dots or upper case.
var regionName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// UpConfig describes the mesh Controller.Up starts.
type UpConfig struct {
	// Regions are the region names, in order. Each gets Zones nodes.
	Regions []string
	// Home is the home region; empty means the first of Regions.
	Home string
	// Zones is the number of zone nodes per region.
	Zones int
	// Port is the endpoint port; node ports are derived from it (see Plan).
	Port int
	// Regiond is the path of the regiond binary.
	Regiond string
	// Trafficmgr is the path of the trafficmgr binary. When set, the mesh
	// gets a traffic manager with one listener per region's location, the
	// home region's on Port, and the simulated WAN; when empty, the home
	// region's first zone node listens on Port and is the endpoint.
	Trafficmgr string
	// WAN is a file of link settings (latency, bandwidth, loss, cuts) that
	// replaces the default latency matrix; empty means wan.Default. Used
	// only with a traffic manager.
	WAN string
	// NodeArgs are extra arguments appended to every node's command line,
	// for example "--max-manifest-bytes=1000".
	NodeArgs []string
	// TrafficmgrEnv is added to the environment the traffic manager
	// starts with ("GOMAXPROCS=1"); it is recorded with the process, so
	// restarts get it too.
	TrafficmgrEnv []string
	// Wait bounds how long Up waits for every node to answer; 0 means
	// DefaultWait.
	Wait time.Duration
	// HTTPS makes the endpoint (the traffic manager's listeners) and the
	// nodes' HTTP serve HTTPS with certificates of the mesh's CA.
	HTTPS bool
}

// DefaultWait is how long Up and Restart wait for nodes to answer when the
// configuration leaves it zero.
const DefaultWait = 60 * time.Second

// Validate reports the first problem of c, wrapping ErrInvalidConfig.
func (c UpConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Regions) == 0 {
		return bad("no regions")
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if !regionName.MatchString(r) {
			return bad("region name %q: use lower-case letters, digits and '-', starting with a letter", r)
		}
		if r == RoleTrafficmgr {
			return bad("%q names the traffic manager; choose another region name", r)
		}
		if seen[r] {
			return bad("region %q given twice", r)
		}
		seen[r] = true
	}
	if c.Home != "" && !seen[c.Home] {
		return bad("home region %q is not one of the regions %v", c.Home, c.Regions)
	}
	if c.Zones < 1 || c.Zones > MaxZones {
		return bad("zones must be between 1 and %d, not %d", MaxZones, c.Zones)
	}
	last := c.Port + PortsPerNode*len(c.Regions)*c.Zones - 1
	if c.Trafficmgr != "" {
		last += len(c.Regions)
	}
	if c.Port < 1 || last > 65535 {
		return bad("port %d: the mesh needs ports %d..%d, within 1..65535", c.Port, c.Port, last)
	}
	if c.Wait < 0 {
		return bad("negative wait %v", c.Wait)
	}
	return nil
}

// Plan computes the mesh that c describes in the absolute directory dir,
// without starting anything: node addresses, data and log paths, and argv.
//
// Port plan: the endpoint port is c.Port. With a traffic manager, it
// listens on one port per location (region), the home region's location on
// c.Port and the others on the ports after it, in region order (home
// first); the nodes' HTTP ports follow. Without one, the home region's first
// zone listens on c.Port and is the endpoint. Node HTTP ports go home region
// first, then the others in the order given, zone by zone. After the N HTTP
// ports come each node's gRPC, Raft and gossip ports, three per node in
// node order, recorded in Node.Ports: a mesh of R regions and N nodes uses
// ports P..P+4N-1, or P..P+R+4N-1 with a traffic manager.
func Plan(dir string, c UpConfig) (*Mesh, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: mesh directory %q is not absolute", ErrInvalidConfig, dir)
	}
	home := c.Home
	if home == "" {
		home = c.Regions[0]
	}
	m := &Mesh{
		Version: meshVersion,
		Dir:     dir,
		Port:    c.Port,
		Home:    home,
		Regiond: c.Regiond,
		HTTPS:   c.HTTPS,
		Created: time.Now().UTC(),
	}
	total := len(c.Regions) * c.Zones
	next := c.Port
	if c.Trafficmgr != "" {
		next += len(c.Regions)
	}
	extra := next + total
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	var gossip []string
	// The home region comes first: its first zone is the endpoint.
	order := []string{home}
	for _, r := range c.Regions {
		if r != home {
			order = append(order, r)
		}
	}
	for _, r := range order {
		reg := Region{Name: r, Home: r == home}
		for z := 1; z <= c.Zones; z++ {
			base := r + "-" + strconv.Itoa(z)
			n := Node{
				Region: r,
				Zone:   z,
				HTTP:   addr(next),
				Data:   filepath.Join(dir, DataDir, base),
				Log:    filepath.Join(dir, LogsDir, base+".log"),
				Ports:  map[string]int{"grpc": extra, "raft": extra + 1, "gossip": extra + 2},
			}
			next++
			extra += 3
			gossip = append(gossip, addr(n.Ports["gossip"]))
			reg.Zones = append(reg.Zones, n)
		}
		m.Regions = append(m.Regions, reg)
	}
	for ri := range m.Regions {
		for zi := range m.Regions[ri].Zones {
			n := &m.Regions[ri].Zones[zi]
			var join []string
			for _, g := range gossip {
				if g != addr(n.Ports["gossip"]) {
					join = append(join, g)
				}
			}
			n.Argv = []string{c.Regiond,
				"--region", n.Region,
				"--zone", strconv.Itoa(n.Zone),
				"--zones", strconv.Itoa(c.Zones),
				"--home", home,
				"--http", n.HTTP,
				"--grpc", addr(n.Ports["grpc"]),
				"--raft", addr(n.Ports["raft"]),
				"--gossip", addr(n.Ports["gossip"]),
				"--data", n.Data,
			}
			if len(join) > 0 {
				n.Argv = append(n.Argv, "--join", strings.Join(join, ","))
			}
			for _, f := range []string{"--tls-cert", "--tls-key", "--tls-ca", "--gossip-key-file"} {
				n.Argv = append(n.Argv, f, tlsArgs(dir, n)[f])
			}
			if c.HTTPS {
				n.Argv = append(n.Argv, "--https")
				n.Scheme = "https"
			}
			n.Argv = append(n.Argv, c.NodeArgs...)
		}
	}
	m.Endpoint = m.Regions[0].Zones[0].HTTP
	if c.Trafficmgr != "" {
		for i, r := range m.Regions {
			m.Locations = append(m.Locations, Location{Name: r.Name, Addr: addr(c.Port + i)})
		}
		m.Endpoint = m.Locations[0].Addr
		m.WAN = filepath.Join(dir, WANFile)
		tm := &Node{
			Role: RoleTrafficmgr,
			HTTP: m.Endpoint,
			Data: filepath.Join(dir, DataDir, RoleTrafficmgr),
			Log:  filepath.Join(dir, LogsDir, RoleTrafficmgr+".log"),
			Argv: []string{c.Trafficmgr, "--config", filepath.Join(dir, TrafficmgrFile), "--wan", m.WAN},
			Env:  slices.Clone(c.TrafficmgrEnv),
		}
		if c.HTTPS {
			tm.Scheme = "https"
			for _, f := range []string{"--tls-cert", "--tls-key", "--tls-ca"} {
				tm.Argv = append(tm.Argv, f, tlsArgs(dir, tm)[f])
			}
		}
		m.TrafficManager = tm
		for _, n := range m.Nodes() {
			n.Argv = append(n.Argv, "--wan", m.WAN)
		}
	}
	return m, nil
}
