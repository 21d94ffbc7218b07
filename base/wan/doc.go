// Package wan simulates the wide-area network between the locations of a
// local mesh, in process and without root: every process dials through a
// [Network], whose connections delay, meter and cut the data they carry
// according to the link between the dialer's location and the address's.
//
// # Basics
//
// The settings live in one file, wan.json ([Config]): the location of every
// node listener (Addresses) and one [Link] per unordered pair of locations,
// with a round trip, an optional bandwidth cap, an optional loss rate and a
// cut flag. A location paired with itself describes paths inside it. The
// chaos launcher writes the file ([Default], [Config.SetLink],
// [Config.Save]); every regiond and the traffic manager [Open] it and poll it,
// so a change applies to the whole mesh within a poll interval, to open
// connections as well as new ones.
//
// [Network.Dialer] returns a dial function for one location. A dial to a
// listed address gets a connection that delays each direction by half the
// link's round trip, so a request and its response cost one round trip, and
// the dial itself costs one more, as a TCP handshake would. The delay is
// pipelined, not stop-and-wait: written data is queued with a timestamp and
// put on the socket when due, and arriving data is taken off the socket at
// once and handed to Read when due, with up to 4 MiB queued each way (the
// part the kernel's socket buffers play in real TCP). A bulk transfer
// therefore runs at up to 4 MiB per one-way delay, whatever the round trip.
// While a link adds nothing, reads and writes go straight to the socket.
//
// A cut makes new dials fail at once with an error wrapping [ErrCut]
// ("simulated partition between westus and eastus") and closes the link's open
// connections within a poll interval; their reads and writes then fail with
// such an error too. Healing the link lets new dials through.
//
// # Caveats
//
// Bandwidth caps are token buckets per direction of a link, shared by the
// connections of one [Network], that is of one process: nine nodes each
// dialing over a 10 MB/s link may together send 90 MB/s.
// A bucket holds 10 ms of its cap (one 64 KiB chunk at least), as a
// router's buffer would: a link idle for a moment sends that much at once,
// and a reader woken late by a loaded machine's timers does not lose what
// the link could have carried meanwhile (with a one-chunk bucket, a 100 MB/s
// link delivered 70-78 MB/s to two regions fetching at once on 2 cores).
//
// Loss is modeled as TCP shows it to applications: nothing is dropped, but
// with probability Loss a chunk of data (up to 64 KiB) arrives one
// retransmission timeout late, max(200ms, 2×RTT), holding up what follows it
// on the connection.
//
// Only the dialing side is wrapped, and only TCP: connections a process
// accepts are plain (except through [Network.Listener], which applies a
// link to a server's accepted connections, the whole round trip on what
// the server reads), memberlist's gossip (UDP and its own TCP) is not
// simulated, and neither is UDP in general. Addresses are matched as written
// in the file, except that localhost, the loopback addresses and the
// unspecified host all count as 127.0.0.1.
//
// Close returns at once; data written before it is delivered in the
// background, for at most 10 seconds, before the socket closes.
package wan
