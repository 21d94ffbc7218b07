package region

import (
	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
)

// Membership is what the zone needs of gossip: the alive members of the
// mesh, and the ones seen alive before. *members.List implements it.
type Membership interface {
	Self() members.Member
	Region(region string) []members.Member
	Known(region string) []members.Member
	Get(id string) (members.Member, bool)
	Changed() <-chan struct{}
}

// zoneClient returns the Zone service of the node at addr, over pool's
// connection to it.
func zoneClient(pool *proto.Pool, addr string) (zonepb.ZoneClient, error) {
	conn, err := pool.Get(addr)
	if err != nil {
		return nil, err
	}
	return zonepb.NewZoneClient(conn), nil
}

// suspectZones returns the members of this node's region, itself excepted,
// that were seen alive before but that gossip does not report alive now:
// dead, or only slow to answer its probes.
func suspectZones(m Membership) []members.Member {
	self := m.Self()
	alive := map[string]bool{}
	for _, p := range m.Region(self.Region) {
		alive[p.ID] = true
	}
	var out []members.Member
	for _, p := range m.Known(self.Region) {
		if p.ID != self.ID && !alive[p.ID] {
			out = append(out, p)
		}
	}
	return out
}

// otherZones returns the alive members of this node's region except itself.
func otherZones(m Membership) []members.Member {
	self := m.Self()
	var out []members.Member
	for _, p := range m.Region(self.Region) {
		if p.ID != self.ID {
			out = append(out, p)
		}
	}
	return out
}
