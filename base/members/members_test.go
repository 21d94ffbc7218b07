package members

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/internal/syncbuf"
)

// waitTimeout bounds every wait for gossip to converge. Failure detection
// takes about a second on loopback; the margin is for a loaded machine.
const waitTimeout = 15 * time.Second

func TestNodeID(t *testing.T) {
	tests := []struct {
		region string
		zone   int
		want   string
	}{
		{"westus", 1, "westus-1"},
		{"eastus", 3, "eastus-3"},
		{"r", 12, "r-12"},
	}
	for _, tt := range tests {
		if got := NodeID(tt.region, tt.zone); got != tt.want {
			t.Errorf("NodeID(%q, %d) = %q, want %q", tt.region, tt.zone, got, tt.want)
		}
	}
}

func TestStartRejectsBadBindAddress(t *testing.T) {
	tests := []struct{ name, addr string }{
		{"no port", "127.0.0.1"},
		{"port not a number", "127.0.0.1:gossip"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Start(t.Context(), Config{Self: Member{ID: "r-1", Region: "r", Zone: 1}, BindAddr: tt.addr})
			if err == nil {
				l.Leave(time.Second)
				t.Fatalf("Start with bind address %q succeeded", tt.addr)
			}
		})
	}
}

// TestListsFindEachOther starts three nodes of two regions and checks that
// each one learns every other's announced record exactly.
func TestListsFindEachOther(t *testing.T) {
	ports := freeport.TCPAndUDP(t, 3)
	self := []Member{
		testMember("westus", 1, ports[0]),
		testMember("westus", 2, ports[1]),
		testMember("eastus", 1, ports[2]),
	}
	var lists []*List
	for i, m := range self {
		var join []string
		if i > 0 {
			join = []string{gossipAddr(ports[0])}
		}
		lists = append(lists, startList(t, m, ports[i], join))
	}
	for _, l := range lists {
		waitFor(t, fmt.Sprintf("%s to see 3 members", l.Self().ID), func() bool { return len(l.Alive()) == 3 })
	}

	for _, l := range lists {
		if l.Self() != self[indexOf(lists, l)] {
			t.Errorf("Self() = %+v", l.Self())
		}
		alive := l.Alive()
		want := []string{"eastus-1", "westus-1", "westus-2"}
		for i, m := range alive {
			if m.ID != want[i] {
				t.Errorf("%s: Alive()[%d] = %s, want %s (sorted by ID)", l.Self().ID, i, m.ID, want[i])
			}
		}
		for _, m := range self {
			got, ok := l.Get(m.ID)
			if !ok {
				t.Errorf("%s: Get(%s) found nothing", l.Self().ID, m.ID)
				continue
			}
			if got != m {
				t.Errorf("%s: Get(%s) = %+v, want %+v", l.Self().ID, m.ID, got, m)
			}
		}
		if _, ok := l.Get("westus-9"); ok {
			t.Errorf("%s: Get of an unknown id found a member", l.Self().ID)
		}
		west := l.Region("westus")
		if len(west) != 2 || west[0].ID != "westus-1" || west[1].ID != "westus-2" {
			t.Errorf("%s: Region(westus) = %+v", l.Self().ID, west)
		}
		if east := l.Region("eastus"); len(east) != 1 || east[0] != self[2] {
			t.Errorf("%s: Region(eastus) = %+v", l.Self().ID, east)
		}
		if none := l.Region("northeurope"); len(none) != 0 {
			t.Errorf("%s: Region(northeurope) = %+v", l.Self().ID, none)
		}
	}
}

// TestChanged follows one node's view as others join, leave and die.
func TestChanged(t *testing.T) {
	ports := freeport.TCPAndUDP(t, 3)
	seed := gossipAddr(ports[0])
	a := startList(t, testMember("westus", 1, ports[0]), ports[0], nil)
	waitFor(t, "a to see itself", func() bool { return len(a.Alive()) == 1 })

	changed := a.Changed()
	b := startList(t, testMember("westus", 2, ports[1]), ports[1], []string{seed})
	waitClosed(t, changed, "Changed() on a join")
	waitFor(t, "a to see b", func() bool { _, ok := a.Get("westus-2"); return ok })

	c := startList(t, testMember("westus", 3, ports[2]), ports[2], []string{seed})
	waitFor(t, "a to see c", func() bool { return len(a.Alive()) == 3 })

	changed = a.Changed()
	if err := b.Leave(time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitClosed(t, changed, "Changed() on a leave")
	waitFor(t, "a to drop b after it left", func() bool { _, ok := a.Get("westus-2"); return !ok })

	// A crash: no leave message, so the others must notice by probing.
	changed = a.Changed()
	start := time.Now()
	if err := c.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, changed, "Changed() on a death")
	waitFor(t, "a to drop c after it died", func() bool { _, ok := a.Get("westus-3"); return !ok })
	t.Logf("a dead member disappeared after %v", time.Since(start).Round(time.Millisecond))
	if alive := a.Alive(); len(alive) != 1 || alive[0].ID != "westus-1" {
		t.Fatalf("Alive() = %+v, want only westus-1", alive)
	}
	// Known still lists the members that left or died.
	known := a.Known("westus")
	if len(known) != 3 || known[0].ID != "westus-1" || known[1].ID != "westus-2" || known[2].ID != "westus-3" {
		t.Fatalf("Known(westus) = %+v, want westus-1, westus-2 and westus-3", known)
	}
	if k := a.Known("eastus"); len(k) != 0 {
		t.Fatalf("Known(eastus) = %+v, want none", k)
	}
}

// TestRestartOnSameAddress is what a zone node does after a crash: the same
// name on the same address comes back and is seen alive again.
func TestRestartOnSameAddress(t *testing.T) {
	ports := freeport.TCPAndUDP(t, 2)
	seed := gossipAddr(ports[0])
	a := startList(t, testMember("westus", 1, ports[0]), ports[0], nil)
	bm := testMember("westus", 2, ports[1])
	b := startList(t, bm, ports[1], []string{seed})
	waitFor(t, "a to see b", func() bool { return len(a.Alive()) == 2 })

	if err := b.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to drop b", func() bool { _, ok := a.Get(bm.ID); return !ok })

	changed := a.Changed()
	bm.HTTP = "127.0.0.1:1" // a restarted node may announce new addresses
	b2 := startList(t, bm, ports[1], []string{seed})
	waitClosed(t, changed, "Changed() on a rejoin")
	waitFor(t, "a to see b again", func() bool { m, ok := a.Get(bm.ID); return ok && m == bm })
	waitFor(t, "b to see a again", func() bool { return len(b2.Alive()) == 2 })
}

// TestJoinRetries starts a node whose seed is not up yet: it keeps trying
// until the seed answers.
func TestJoinRetries(t *testing.T) {
	ports := freeport.TCPAndUDP(t, 2)
	b := startList(t, testMember("westus", 2, ports[1]), ports[1], []string{gossipAddr(ports[0])})
	time.Sleep(300 * time.Millisecond) // let a few joins fail
	a := startList(t, testMember("westus", 1, ports[0]), ports[0], nil)
	waitFor(t, "b to join a once a is up", func() bool { return len(b.Alive()) == 2 && len(a.Alive()) == 2 })
}

func TestStartFailsOnBusyPort(t *testing.T) {
	ports := freeport.TCPAndUDP(t, 1)
	startList(t, testMember("westus", 1, ports[0]), ports[0], nil)
	l, err := Start(t.Context(), Config{Self: testMember("westus", 2, ports[0]), BindAddr: gossipAddr(ports[0])})
	if err == nil {
		l.Leave(time.Second)
		t.Fatal("a second List bound the same gossip port")
	}
}

func testMember(region string, zone, port int) Member {
	return Member{
		ID:     NodeID(region, zone),
		Region: region,
		Zone:   zone,
		HTTP:   "127.0.0.1:" + strconv.Itoa(port+1),
		GRPC:   "127.0.0.1:" + strconv.Itoa(port+2),
		Raft:   "127.0.0.1:" + strconv.Itoa(port+3),
	}
}

func gossipAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// startList starts a List and stops it when the test ends. Stopping twice is
// harmless: a test may crash the node itself.
func startList(t *testing.T, self Member, port int, join []string) *List {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Start(ctx, Config{Self: self, BindAddr: gossipAddr(port), Join: join, Logger: testLogger(t).With("node", self.ID)})
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", self.ID, err)
	}
	t.Cleanup(func() {
		cancel()
		l.ml.Shutdown()
	})
	return l
}

func indexOf(lists []*List, l *List) int {
	for i, x := range lists {
		if x == l {
			return i
		}
	}
	return -1
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
	}
}

// testLogger keeps the logs of a test and prints them only if it fails.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	var buf syncbuf.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
