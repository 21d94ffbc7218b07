package chaos

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnknownTarget means a target names no node of the mesh.
var ErrUnknownTarget = errors.New("chaos: no such region or zone in the mesh")

// Target names the nodes a fault acts on: one zone node ("westus/2"), every
// node of a region ("westus", Zone 0), or the traffic manager
// ("trafficmgr").
type Target struct {
	Region string
	// Zone is the zone number, or 0 for every zone of Region.
	Zone int
}

// ParseTarget parses "region" or "region/zone".
func ParseTarget(s string) (Target, error) {
	region, zone, hasZone := strings.Cut(s, "/")
	if !regionName.MatchString(region) {
		return Target{}, fmt.Errorf("chaos: target %q: want REGION or REGION/ZONE, for example westus/1", s)
	}
	t := Target{Region: region}
	if hasZone {
		z, err := strconv.Atoi(zone)
		if err != nil || z < 1 {
			return Target{}, fmt.Errorf("chaos: target %q: zone must be a number from 1", s)
		}
		t.Zone = z
	}
	return t, nil
}

// String returns the target as ParseTarget reads it.
func (t Target) String() string {
	if t.Zone == 0 {
		return t.Region
	}
	return t.Region + "/" + strconv.Itoa(t.Zone)
}

// Select returns the nodes of m that t names, or an error wrapping
// ErrUnknownTarget listing what the mesh has.
func (m *Mesh) Select(t Target) ([]*Node, error) {
	if t.Region == RoleTrafficmgr && t.Zone == 0 && m.TrafficManager != nil {
		return []*Node{m.TrafficManager}, nil
	}
	var out []*Node
	for _, n := range append(m.Nodes(), m.SiteNodes()...) {
		if n.Region == t.Region && (t.Zone == 0 || n.Zone == t.Zone) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		var names []string
		for _, n := range m.Nodes() {
			names = append(names, n.Name())
		}
		return nil, fmt.Errorf("%w: %s (the mesh has %s)", ErrUnknownTarget, t, strings.Join(names, ", "))
	}
	return out, nil
}
