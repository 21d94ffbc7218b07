package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/georeg/georeg/base/wan"
)

// ErrSiteExists means AddSite was asked for a site the mesh has.
var ErrSiteExists = errors.New("chaos: site already in the mesh")

// Site is a connected registry the mesh runs at a simulated site: one
// node forming a one-zone region of its own (it joins no gossip and no
// Raft group of the cloud), which reaches its parent through the traffic
// manager's listener for the site's location, so the simulated WAN's link
// between the site and each region (latency, bandwidth, cuts) applies to
// everything it syncs.
type Site struct {
	// Name is the connected registry's name; it is also the site's
	// location in the simulated WAN and the name of the node's region.
	Name string `json:"name"`
	// Location is the traffic manager's listener for the site: the
	// parent endpoint in the site's connection string.
	Location Location `json:"location"`
	// Node is the site's process.
	Node Node `json:"node"`
}

// SiteConfig describes a site AddSite starts.
type SiteConfig struct {
	// Name is the connected registry's name: lower-case letters and
	// digits, 5 to 40 of them (a region name and a connected registry
	// name at once).
	Name string
	// Parent is the connected registry's parent when it is another
	// connected registry (nesting), which must be a site of the mesh
	// already: the site syncs from that site's node, through the
	// simulated link between the two. "" is the cloud.
	Parent string
	// ConnectionString returns the connected registry's connection string
	// for a parent endpoint (host:port); AddSite calls it once it has
	// chosen the site's listener.
	ConnectionString func(ctx context.Context, parentEndpoint string) (string, error)
	// NodeArgs are extra arguments of the site's node.
	NodeArgs []string
	// HomeRTT is the simulated round trip between the site and the home
	// region (its parent site, when nested); 0 means DefaultSiteRTT.
	// Links to the other regions get the WAN's fallback.
	HomeRTT time.Duration
	// Wait bounds the wait for the node to answer; 0 means DefaultWait.
	Wait time.Duration
}

// DefaultSiteRTT is the round trip between a site and the home region
// when SiteConfig leaves it zero.
const DefaultSiteRTT = 70 * time.Millisecond

// SiteNodes returns pointers to the sites' nodes.
func (m *Mesh) SiteNodes() []*Node {
	out := make([]*Node, len(m.Sites))
	for i := range m.Sites {
		out[i] = &m.Sites[i].Node
	}
	return out
}

// maxPort returns the highest port the mesh's processes and listeners use.
func (m *Mesh) maxPort() int {
	next := 0
	see := func(hostport string) {
		if _, p, err := net.SplitHostPort(hostport); err == nil {
			port, _ := strconv.Atoi(p)
			next = max(next, port)
		}
	}
	for _, n := range append(m.Processes(), m.SiteNodes()...) {
		see(n.HTTP)
		for _, p := range n.Ports {
			next = max(next, p)
		}
	}
	for _, l := range m.Locations {
		see(l.Addr)
	}
	return next
}

// AddSite starts a connected registry's node at a new site of the running
// mesh: the traffic manager gets a listener for the site's location (and
// restarts to open it), the site's connection string goes to a file only
// its owner reads, and the node starts with it on ports after every port
// the mesh uses.
func (c *Controller) AddSite(ctx context.Context, cfg SiteConfig) error {
	if !regionName.MatchString(cfg.Name) || len(cfg.Name) < 5 || len(cfg.Name) > 40 {
		return fmt.Errorf("%w: site %q: a connected registry of the local mesh needs a name of 5 to 40 lower-case letters and digits (it names its region too)", ErrInvalidConfig, cfg.Name)
	}
	wait := cfg.Wait
	if wait <= 0 {
		wait = DefaultWait
	}
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	tm := m.TrafficManager
	if tm == nil {
		return fmt.Errorf("%w: sites reach the cloud through the traffic manager; this mesh runs without one", ErrInvalidConfig)
	}
	if m.HTTPS {
		return fmt.Errorf("%w: sites of a mesh started with --tls are not supported yet (the site would need the mesh's CA)", ErrInvalidConfig)
	}
	if m.hasRegion(cfg.Name) {
		return fmt.Errorf("%w: %s is a region of the mesh", ErrSiteExists, cfg.Name)
	}
	for _, s := range m.Sites {
		if s.Name == cfg.Name {
			return fmt.Errorf("%w: %s", ErrSiteExists, cfg.Name)
		}
	}
	next := m.maxPort() + 1
	site := Site{Name: cfg.Name, Location: Location{Name: cfg.Name, Addr: addr(next)}}
	if err := portFree(site.Location.Addr); err != nil {
		return fmt.Errorf("%w: the traffic manager cannot listen on %s for %s: %v", ErrPortInUse, site.Location.Addr, cfg.Name, err)
	}
	parentEndpoint, linked := site.Location.Addr, m.Home
	if cfg.Parent != "" {
		i := slices.IndexFunc(m.Sites, func(s Site) bool { return s.Name == cfg.Parent })
		if i < 0 {
			return fmt.Errorf("%w: %s's parent %s is not a site of this mesh: add it first (georeg mesh add-site --name %s)", ErrInvalidConfig, cfg.Name, cfg.Parent, cfg.Parent)
		}
		parentEndpoint, linked = m.Sites[i].Node.HTTP, cfg.Parent
	}
	cs, err := cfg.ConnectionString(ctx, parentEndpoint)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.dir, "sites")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	csFile := filepath.Join(dir, cfg.Name+".connection")
	if err := os.WriteFile(csFile, []byte(cs+"\n"), 0o600); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	n := Node{
		Region: cfg.Name, Zone: 1,
		HTTP:  addr(next + 1),
		Data:  filepath.Join(c.dir, DataDir, cfg.Name+"-1"),
		Log:   filepath.Join(c.dir, LogsDir, cfg.Name+"-1.log"),
		Ports: map[string]int{"grpc": next + 2, "raft": next + 3, "gossip": next + 4},
	}
	n.Argv = []string{m.Regiond,
		"--region", cfg.Name, "--zone", "1", "--zones", "1", "--home", cfg.Name,
		"--http", n.HTTP, "--grpc", addr(n.Ports["grpc"]), "--raft", addr(n.Ports["raft"]), "--gossip", addr(n.Ports["gossip"]),
		"--data", n.Data, "--connection-string-file", csFile,
	}
	if cfg.Parent != "" {
		// A nested site dials its parent site's node, not a listener
		// of the traffic manager: its own dials go through the
		// simulated link.
		n.Argv = append(n.Argv, "--wan", m.WAN)
	}
	n.Argv = append(n.Argv, cfg.NodeArgs...)
	if err := n.portsFree(0); err != nil {
		return err
	}
	site.Node = n
	m.Locations = append(m.Locations, site.Location)
	m.Sites = append(m.Sites, site)
	if err := writeWAN(m, ""); err != nil {
		return err
	}
	rtt := cfg.HomeRTT
	if rtt <= 0 {
		rtt = DefaultSiteRTT
	}
	if err := setLinkRTT(m, cfg.Name, linked, rtt); err != nil {
		return err
	}
	if err := c.reconfigureTrafficmgr(ctx, m, wait); err != nil {
		return err
	}
	node := &m.Sites[len(m.Sites)-1].Node
	if err := c.startAndWait(ctx, m, []*Node{node}, wait); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "site %s up: node %s (pid %d), reaching its parent through %s; its clients: %s\n", cfg.Name, node.HTTP, node.PID, parentEndpoint, node.HTTP)
	return nil
}

// setLinkRTT sets the round trip of the simulated link between a and b,
// keeping its other settings.
func setLinkRTT(m *Mesh, a, b string, rtt time.Duration) error {
	cfg, err := wan.Load(m.WAN)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	l := cfg.Link(a, b)
	l.RTT = wan.Duration(rtt)
	cfg.SetLink(l)
	if err := cfg.Save(m.WAN); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}
