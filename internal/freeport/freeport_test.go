package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestBlockIsFree(t *testing.T) {
	base := Block(t, 4)
	for p := base; p < base+4; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d of block %d: %v", p, base, err)
		}
		l.Close()
	}
}

func TestTCPAndUDPAreDistinctAndFree(t *testing.T) {
	ports := TCPAndUDP(t, 5)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		if p < 10000 || p >= 32000 {
			t.Errorf("port %d is outside 10000-32000", p)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("udp %s: %v", addr, err)
		}
		u.Close()
	}
}
