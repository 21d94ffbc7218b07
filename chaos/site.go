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
	"strings"
	"time"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/tlsconf"
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
	// Zones are the site's processes, one per zone.
	Zones []Node `json:"zones"`
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
	// Zones is the number of the site's zones (0 means 1, at most
	// MaxSiteZones): its nodes form a Raft group of their own, with
	// mutual TLS and a gossip key of the site's own (DIR/sites/NAME).
	Zones int
}

// MaxSiteZones bounds SiteConfig.Zones.
const MaxSiteZones = 5

// DefaultSiteRTT is the round trip between a site and the home region
// when SiteConfig leaves it zero.
const DefaultSiteRTT = 70 * time.Millisecond

// SiteNodes returns pointers to the sites' nodes.
func (m *Mesh) SiteNodes() []*Node {
	var out []*Node
	for i := range m.Sites {
		for j := range m.Sites[i].Zones {
			out = append(out, &m.Sites[i].Zones[j])
		}
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
	zones := max(cfg.Zones, 1)
	if zones > MaxSiteZones {
		return fmt.Errorf("%w: site %s: %d zones, at most %d", ErrInvalidConfig, cfg.Name, zones, MaxSiteZones)
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
		// Its first zone: a child dials one address, like a site's
		// clients.
		parentEndpoint, linked = m.Sites[i].Zones[0].HTTP, cfg.Parent
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
	for z := 1; z <= zones; z++ {
		p := next + 1 + (z-1)*4
		name := cfg.Name + "-" + strconv.Itoa(z)
		site.Zones = append(site.Zones, Node{
			Region: cfg.Name, Zone: z,
			HTTP:  addr(p),
			Data:  filepath.Join(c.dir, DataDir, name),
			Log:   filepath.Join(c.dir, LogsDir, name+".log"),
			Ports: map[string]int{"grpc": p + 1, "raft": p + 2, "gossip": p + 3},
		})
	}
	var creds map[int]map[string]string
	if zones > 1 {
		if creds, err = siteCredentials(filepath.Join(dir, cfg.Name), site.Zones); err != nil {
			return err
		}
	}
	for i := range site.Zones {
		n := &site.Zones[i]
		n.Argv = []string{m.Regiond,
			"--region", cfg.Name, "--zone", strconv.Itoa(n.Zone), "--zones", strconv.Itoa(zones), "--home", cfg.Name,
			"--http", n.HTTP, "--grpc", addr(n.Ports["grpc"]), "--raft", addr(n.Ports["raft"]), "--gossip", addr(n.Ports["gossip"]),
			"--data", n.Data, "--connection-string-file", csFile,
		}
		var join []string
		for _, o := range site.Zones {
			if o.Zone != n.Zone {
				join = append(join, addr(o.Ports["gossip"]))
			}
		}
		if len(join) > 0 {
			n.Argv = append(n.Argv, "--join", strings.Join(join, ","))
		}
		for _, f := range []string{"--tls-cert", "--tls-key", "--tls-ca", "--gossip-key-file"} {
			if v, ok := creds[n.Zone][f]; ok {
				n.Argv = append(n.Argv, f, v)
			}
		}
		if cfg.Parent != "" {
			// A nested site dials its parent site's node, not a
			// listener of the traffic manager: its own dials go
			// through the simulated link.
			n.Argv = append(n.Argv, "--wan", m.WAN)
		}
		n.Argv = append(n.Argv, cfg.NodeArgs...)
		if err := n.portsFree(0); err != nil {
			return err
		}
	}
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
	added := &m.Sites[len(m.Sites)-1]
	var nodes []*Node
	var addrs []string
	for i := range added.Zones {
		nodes = append(nodes, &added.Zones[i])
		addrs = append(addrs, added.Zones[i].HTTP)
	}
	if err := c.startAndWait(ctx, m, nodes, wait); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "site %s up: %d zone(s), reaching its parent through %s; its clients: %s\n", cfg.Name, len(nodes), parentEndpoint, strings.Join(addrs, " "))
	return nil
}

// siteCredentials makes dir hold a CA of the site's own, a certificate per
// zone node and a gossip key, and returns each zone's flags: the zones of
// a site trust each other, not the cloud's nodes (another registry).
func siteCredentials(dir string, zones []Node) (map[int]map[string]string, error) {
	tlsDir := filepath.Join(dir, TLSDir)
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	ca, err := tlsconf.NewCA(tlsconf.CAConfig{Name: "georeg local site CA " + filepath.Base(dir)})
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	caFile := filepath.Join(tlsDir, "ca.crt")
	if err := tlsconf.WriteFile(caFile, ca.CertPEM(), false); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	key, err := members.NewKey()
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	keyFile := filepath.Join(dir, GossipKeyFile)
	if err := tlsconf.WriteFile(keyFile, []byte(key+"\n"), true); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	out := map[int]map[string]string{}
	for _, n := range zones {
		name := certName(&n)
		certPEM, keyPEM, err := ca.Issue(tlsconf.CertConfig{Name: name, Role: tlsconf.RoleNode})
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		cert, priv := filepath.Join(tlsDir, name+".crt"), filepath.Join(tlsDir, name+".key")
		if err := tlsconf.WriteFile(priv, keyPEM, true); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(cert, certPEM, false); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		out[n.Zone] = map[string]string{"--tls-cert": cert, "--tls-key": priv, "--tls-ca": caFile, "--gossip-key-file": keyFile}
	}
	return out, nil
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
