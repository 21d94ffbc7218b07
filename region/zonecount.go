package region

// Zones returns the number of zones in the region, as configured: what a
// majority is counted against. Replication asks it to tell a one-zone
// region, where progress kept on the only node is as durable as the region.
func (b *Blobs) Zones() int { return b.cfg.Zones }
