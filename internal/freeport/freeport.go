// Package freeport finds loopback ports for the processes and listeners a
// test starts and gives a fixed address: a mesh's nodes, a gossip or Raft
// node that must keep its port across a restart. An ephemeral port (":0")
// does not do for them.
//
// Ports come from 10000-32000, below Linux's ephemeral range (32768-60999),
// so that no outgoing connection of a parallel test takes one between the
// check and the bind. A port was free when checked; nothing holds it after.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// Block returns the first of n consecutive TCP ports on 127.0.0.1 that were
// all free a moment ago. The launcher gives each process of a mesh a port
// derived from the endpoint port, so a mesh needs a block.
func Block(t testing.TB, n int) int {
	t.Helper()
	for try := range 200 {
		// Spread by process and time, so that parallel test binaries
		// rarely try the same block.
		base := 10000 + (os.Getpid()*7919+try*131+int(time.Now().UnixNano()%9973))%22000
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = free("tcp", p)
		}
		if ok {
			return base
		}
	}
	t.Fatalf("freeport: no block of %d free ports", n)
	return 0
}

// TCPAndUDP returns n distinct ports on 127.0.0.1, each free for both TCP
// and UDP (gossip binds both) a moment ago.
func TCPAndUDP(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	seen := map[int]bool{}
	for try := 0; len(ports) < n; try++ {
		if try > 1000 {
			t.Fatalf("freeport: no %d free ports in 10000-32000", n)
		}
		p := 10000 + rand.IntN(22000)
		if seen[p] {
			continue
		}
		seen[p] = true
		if free("tcp", p) && free("udp", p) {
			ports = append(ports, p)
		}
	}
	return ports
}

func free(network string, port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if network == "udp" {
		l, err := net.ListenPacket(network, addr)
		if err != nil {
			return false
		}
		return l.Close() == nil
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return false
	}
	return l.Close() == nil
}
