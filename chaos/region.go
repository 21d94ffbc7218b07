package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrRegionExists means AddRegion was asked for a region the mesh has.
var ErrRegionExists = errors.New("chaos: region already in the mesh")

// AddRegion starts the nodes of a new region in the running mesh (as many
// zones as the mesh's other regions), on ports after every port the mesh
// uses, joined to the existing gossip, and waits until they answer and see a
// Raft leader.
func (c *Controller) AddRegion(ctx context.Context, region string, wait time.Duration) error {
	if !regionName.MatchString(region) {
		return fmt.Errorf("%w: region name %q", ErrInvalidConfig, region)
	}
	if wait <= 0 {
		wait = DefaultWait
	}
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if len(m.Regions) == 0 || len(m.Regions[0].Zones) == 0 {
		return fmt.Errorf("%w: the mesh has no node to copy settings from", ErrInvalidConfig)
	}
	next := 0
	var gossip []string
	for _, r := range m.Regions {
		if r.Name == region {
			return fmt.Errorf("%w: %s", ErrRegionExists, region)
		}
		for _, n := range r.Zones {
			if _, p, err := net.SplitHostPort(n.HTTP); err == nil {
				port, _ := strconv.Atoi(p)
				next = max(next, port)
			}
			for _, p := range n.Ports {
				next = max(next, p)
			}
			if g, ok := n.Ports["gossip"]; ok {
				gossip = append(gossip, addr(g))
			}
		}
	}
	for _, l := range m.Locations {
		if _, p, err := net.SplitHostPort(l.Addr); err == nil {
			port, _ := strconv.Atoi(p)
			next = max(next, port)
		}
	}
	next++
	template := m.Regions[0].Zones[0].Argv
	zones := len(m.Regions[0].Zones)
	reg := Region{Name: region}
	for z := 1; z <= zones; z++ {
		base := region + "-" + strconv.Itoa(z)
		n := Node{
			Region: region, Zone: z, Scheme: m.Regions[0].Zones[0].Scheme,
			HTTP:  addr(next + z - 1),
			Data:  filepath.Join(c.dir, DataDir, base),
			Log:   filepath.Join(c.dir, LogsDir, base+".log"),
			Ports: map[string]int{},
		}
		p := next + zones + 3*(z-1)
		n.Ports = map[string]int{"grpc": p, "raft": p + 1, "gossip": p + 2}
		n.Argv = append([]string(nil), template...)
		n.Env = slices.Clone(m.Regions[0].Zones[0].Env)
		for flag, v := range map[string]string{
			"--region": region, "--zone": strconv.Itoa(z), "--http": n.HTTP,
			"--grpc": addr(p), "--raft": addr(p + 1), "--gossip": addr(p + 2), "--data": n.Data,
			"--join": strings.Join(gossip, ","),
		} {
			n.Argv = setArg(n.Argv, flag, v)
		}
		if slices.Contains(template, "--tls-cert") {
			for flag, v := range tlsArgs(c.dir, &n) {
				n.Argv = setArg(n.Argv, flag, v)
			}
		}
		if err := n.portsFree(0); err != nil {
			return err
		}
		reg.Zones = append(reg.Zones, n)
	}
	m.Regions = append(m.Regions, reg)
	nodes := m.Regions[len(m.Regions)-1].Nodes()
	if slices.Contains(template, "--tls-cert") {
		if err := writeCredentials(m); err != nil {
			return err
		}
	}
	tm := m.TrafficManager
	if tm != nil {
		// The new region's location gets a listener after every port in use.
		loc := Location{Name: region, Addr: addr(next + 4*zones)}
		if err := portFree(loc.Addr); err != nil {
			return fmt.Errorf("%w: the traffic manager cannot listen on %s for %s: %v", ErrPortInUse, loc.Addr, region, err)
		}
		m.Locations = append(m.Locations, loc)
		if err := writeWAN(m, ""); err != nil {
			return err
		}
	}
	if err := c.startAndWait(ctx, m, nodes, wait); err != nil {
		return err
	}
	if err := c.waitLeaders(ctx, nodes, wait); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "region %s up: %d node(s)\n", region, len(nodes))
	if tm != nil {
		if err := c.reconfigureTrafficmgr(ctx, m, wait); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "traffic manager restarted: clients in %s: %s\n", region, m.Locations[len(m.Locations)-1].Addr)
	}
	return nil
}

// RemoveRegion stops the nodes of a region and removes it from the mesh;
// its data and logs are kept.
func (c *Controller) RemoveRegion(ctx context.Context, region string) error {
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	for i, r := range m.Regions {
		if r.Name != region {
			continue
		}
		if r.Home {
			return fmt.Errorf("%w: %s is the home region", ErrInvalidConfig, region)
		}
		err := c.stopNodes(ctx, m.Regions[i].Nodes(), DefaultGrace, c.out)
		m.Regions = append(m.Regions[:i], m.Regions[i+1:]...)
		return errors.Join(err, m.Save())
	}
	return fmt.Errorf("%w: %s", ErrUnknownTarget, region)
}

// Nodes returns pointers to the region's nodes.
func (r *Region) Nodes() []*Node {
	out := make([]*Node, len(r.Zones))
	for i := range r.Zones {
		out[i] = &r.Zones[i]
	}
	return out
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// setArg sets the value of "--flag value" in argv, appending it when absent.
func setArg(argv []string, flag, value string) []string {
	for i := 0; i < len(argv)-1; i++ {
		if argv[i] == flag {
			argv[i+1] = value
			return argv
		}
	}
	return append(argv, flag, value)
}

// reconfigureTrafficmgr writes the traffic manager's configuration for m
// and restarts it: it reads the configuration when it starts, so this is
// how it learns of a new region to route to or a new location to listen
// for.
func (c *Controller) reconfigureTrafficmgr(ctx context.Context, m *Mesh, wait time.Duration) error {
	tm := m.TrafficManager
	if err := writeTrafficmgrConfig(m); err != nil {
		return err
	}
	if err := c.stopNodes(ctx, []*Node{tm}, DefaultGrace, c.out); err != nil {
		return errors.Join(err, m.Save())
	}
	if err := tm.portsFree(5 * time.Second); err != nil {
		return errors.Join(err, m.Save())
	}
	return c.startAndWait(ctx, m, []*Node{tm}, wait)
}
