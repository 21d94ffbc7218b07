package chaos

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/georeg/georeg/base/wan"
)

// ErrNoWAN means a WAN command found a mesh without a simulated WAN (one
// started without a traffic manager).
var ErrNoWAN = errors.New("chaos: this mesh has no simulated WAN (it was started without the traffic manager)")

// writeWAN writes the mesh's wan.json: the links of userFile (or the default
// latency matrix), and the address of every node listener, so that each
// process knows which location a connection goes to. An existing wan.json
// of an earlier run of the same mesh keeps its links.
func writeWAN(m *Mesh, userFile string) error {
	var regions []string
	for _, r := range m.Regions {
		regions = append(regions, r.Name)
	}
	cfg := wan.Default(regions)
	switch {
	case userFile != "":
		c, err := wan.Load(userFile)
		if err != nil {
			return fmt.Errorf("chaos: --wan: %w", err)
		}
		cfg = c
	default:
		c, err := wan.Load(m.WAN)
		if err == nil {
			// A region added since (replication create) gets its
			// published round trips, not the default one.
			c.AddLocations(regions)
			cfg = c
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("chaos: %w", err)
		}
	}
	cfg.Addresses = map[string]string{}
	for _, n := range append(m.Nodes(), m.SiteNodes()...) {
		cfg.Addresses[n.HTTP] = n.Region
		if p, ok := n.Ports["grpc"]; ok {
			cfg.Addresses[addr(p)] = n.Region
		}
	}
	if err := cfg.Save(m.WAN); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}

// LinkChange changes the simulated link between two locations.
type LinkChange struct {
	// A and B are the locations (region names); A == B is the path from
	// clients in a location to its own region.
	A, B string
	// RTT, when non-nil, sets the round-trip time.
	RTT *time.Duration
	// Bandwidth, when non-nil, sets the cap in bytes per second (0: none).
	Bandwidth *int64
	// Loss, when non-nil, sets the loss rate (0..1).
	Loss *float64
	// Cut, when non-nil, cuts (true) or heals (false) the link.
	Cut *bool
}

// ChangeLink applies ch to the mesh's wan.json, which every process of the
// mesh reloads within a fraction of a second, and prints the link before and
// after. With ch.A and ch.B empty and only Cut set to false, it heals every
// link.
func (c *Controller) ChangeLink(ctx context.Context, ch LinkChange) error {
	m, unlock, err := c.lockMesh(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m.WAN == "" {
		return ErrNoWAN
	}
	cfg, err := wan.Load(m.WAN)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if ch.A == "" && ch.B == "" {
		if ch.Cut == nil || *ch.Cut || ch.RTT != nil || ch.Bandwidth != nil || ch.Loss != nil {
			return fmt.Errorf("%w: name the two locations of the link", ErrInvalidConfig)
		}
		healed := 0
		for i := range cfg.Links {
			if cfg.Links[i].Cut {
				cfg.Links[i].Cut = false
				healed++
				fmt.Fprintf(c.out, "healed %s <-> %s\n", cfg.Links[i].A, cfg.Links[i].B)
			}
		}
		if healed == 0 {
			fmt.Fprintln(c.out, "no link was cut")
			return nil
		}
		return cfg.Save(m.WAN)
	}
	for _, loc := range []string{ch.A, ch.B} {
		if !m.hasLocation(loc) {
			return fmt.Errorf("%w: %s (the mesh has %v)", ErrUnknownTarget, loc, m.regionNames())
		}
	}
	before, after, err := changedLink(cfg, ch)
	if err != nil {
		return err
	}
	cfg.SetLink(after)
	if err := cfg.Save(m.WAN); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	fmt.Fprintf(c.out, "%s <-> %s: %s -> %s\n", ch.A, ch.B, describeLink(before), describeLink(after))
	return nil
}

// changedLink returns the link between ch.A and ch.B in cfg and that link
// with ch applied, refusing values out of range.
func changedLink(cfg wan.Config, ch LinkChange) (before, after wan.Link, err error) {
	before = cfg.Link(ch.A, ch.B)
	after = before
	after.A, after.B = ch.A, ch.B
	if ch.RTT != nil {
		if *ch.RTT < 0 {
			return before, after, fmt.Errorf("%w: negative latency %v", ErrInvalidConfig, *ch.RTT)
		}
		after.RTT = wan.Duration(*ch.RTT)
	}
	if ch.Bandwidth != nil {
		if *ch.Bandwidth < 0 {
			return before, after, fmt.Errorf("%w: negative bandwidth", ErrInvalidConfig)
		}
		after.Bandwidth = *ch.Bandwidth
	}
	if ch.Loss != nil {
		if *ch.Loss < 0 || *ch.Loss > 1 {
			return before, after, fmt.Errorf("%w: loss %v is not between 0 and 1", ErrInvalidConfig, *ch.Loss)
		}
		after.Loss = *ch.Loss
	}
	if ch.Cut != nil {
		after.Cut = *ch.Cut
	}
	return before, after, nil
}

// Links returns the mesh's current simulated links.
func (c *Controller) Links() (wan.Config, error) {
	m, err := LoadMesh(c.dir)
	if err != nil {
		return wan.Config{}, err
	}
	if m.WAN == "" {
		return wan.Config{}, ErrNoWAN
	}
	return wan.Load(m.WAN)
}

func describeLink(l wan.Link) string {
	s := "rtt " + time.Duration(l.RTT).String()
	if l.Bandwidth > 0 {
		s += ", bandwidth " + wan.FormatRate(l.Bandwidth)
	}
	if l.Loss > 0 {
		s += ", loss " + strconv.FormatFloat(l.Loss*100, 'g', 4, 64) + "%"
	}
	if l.Cut {
		s += ", CUT"
	}
	return s
}

func (m *Mesh) hasRegion(name string) bool {
	for _, r := range m.Regions {
		if r.Name == name {
			return true
		}
	}
	return false
}

// hasLocation reports whether name is a region or a site of the mesh: a
// place the simulated WAN links.
func (m *Mesh) hasLocation(name string) bool {
	for _, s := range m.Sites {
		if s.Name == name {
			return true
		}
	}
	return m.hasRegion(name)
}

func (m *Mesh) regionNames() []string {
	var out []string
	for _, r := range m.Regions {
		out = append(out, r.Name)
	}
	return out
}
