package zone

import (
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/replication"
)

// The abilities replication looks for at run time, on the types a node
// wires: losing one would silently turn durable transfers off.
var (
	_ replication.TransferLog  = (*region.Group)(nil)
	_ interface{ Zones() int } = (*region.Blobs)(nil)
)
