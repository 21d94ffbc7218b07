package region

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"

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

// clients keeps one gRPC connection per peer address.
type clients struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newClients() *clients { return &clients{conns: map[string]*grpc.ClientConn{}} }

func (c *clients) get(addr string) (zonepb.ZoneClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, ok := c.conns[addr]
	if !ok {
		var err error
		conn, err = grpc.NewClient(addr, proto.DialOptions()...)
		if err != nil {
			return nil, fmt.Errorf("zone: dial %s: %w", addr, err)
		}
		c.conns[addr] = conn
	}
	return zonepb.NewZoneClient(conn), nil
}

func (c *clients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
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
