//go:build linux

package trafficmgr

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTakeOver: a second listener on the same port that takes over gets
// every new connection, so the first can close without resetting any.
func TestTakeOver(t *testing.T) {
	ctx := context.Background()
	old, err := listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	addr := old.Addr().String()
	newer, err := listen(ctx, addr)
	if err != nil {
		t.Fatalf("second listener on %s: %v", addr, err)
	}
	defer newer.Close()
	steered := true
	if err := takeOver(newer); errors.Is(err, unix.EOPNOTSUPP) {
		// Some kernels (this CI's) lack reuseport steering: both
		// listeners then share new connections until the old one closes.
		t.Logf("reuseport steering: %v; checking only that both listeners share the port", err)
		steered = false
	} else if err != nil {
		t.Fatal(err)
	}
	var toOld, toNew atomic.Int64
	count := func(ln net.Listener, n *atomic.Int64) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}
	go count(old, &toOld)
	go count(newer, &toNew)
	const dials = 50
	for range dials {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for toNew.Load()+toOld.Load() < dials && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !steered {
		if toOld.Load()+toNew.Load() != dials {
			t.Fatalf("connections: %d to the old listener, %d to the new one; want %d in all", toOld.Load(), toNew.Load(), dials)
		}
	} else if toOld.Load() != 0 || toNew.Load() != dials {
		t.Fatalf("connections: %d to the old listener, %d to the new one; want all %d to the new", toOld.Load(), toNew.Load(), dials)
	}
	// With the old one gone, the remaining listener still gets everything.
	old.Close()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial after the old listener closed: %v", err)
	}
	c.Close()
}
