// Package hlc is a hybrid logical clock: timestamps that follow wall time
// closely, never go backwards on one node, and are greater than every
// timestamp the node has seen from others. Tags are last-writer-wins across
// regions on (timestamp, region), so a write made after observing another
// always wins over it, whatever the regions' clocks say.
//
// A timestamp is a uint64: milliseconds since the Unix epoch in the high 48
// bits and a logical counter in the low 16.
package hlc
