package proto

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testPool serves gRPC health checks on a loopback listener and returns a
// pool whose Dial counts the connections it makes.
func testPool(t *testing.T) (*Pool, string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	dials := new(atomic.Int32)
	var d net.Dialer
	p := NewPool(PoolConfig{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, "tcp", addr)
	}})
	t.Cleanup(func() { p.Close() })
	return p, l.Addr().String(), dials
}

func check(t *testing.T, c *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
}

func TestPoolConcurrentGetDialsOnce(t *testing.T) {
	p, addr, dials := testPool(t)
	const callers = 16
	conns := make([]*grpc.ClientConn, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			c, err := p.Get(addr)
			if err != nil {
				t.Error(err)
				return
			}
			conns[i] = c
			check(t, c)
		})
	}
	wg.Wait()
	for i, c := range conns {
		if c != conns[0] {
			t.Fatalf("caller %d got another connection than caller 0", i)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d callers dialed %d times, want once", callers, n)
	}
}

func TestPoolCloseClosesAll(t *testing.T) {
	p, addr, _ := testPool(t)
	_, other, _ := testPool(t)
	var conns []*grpc.ClientConn
	for _, a := range []string{addr, other} {
		c, err := p.Get(a)
		if err != nil {
			t.Fatal(err)
		}
		check(t, c)
		conns = append(conns, c)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if s := c.GetState(); s != connectivity.Shutdown {
			t.Errorf("connection %d is %v after Close, want %v", i, s, connectivity.Shutdown)
		}
	}
	if _, err := p.Get(addr); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("Get after Close: %v, want %v", err, ErrPoolClosed)
	}
}

func TestPoolReplacesShutDownConn(t *testing.T) {
	p, addr, dials := testPool(t)
	first, err := p.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	check(t, first)
	first.Close()
	second, err := p.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("Get returned the connection that was shut down")
	}
	check(t, second)
	if n := dials.Load(); n != 2 {
		t.Fatalf("dialed %d times, want 2 (the first connection and its replacement)", n)
	}
}

// TestPoolWakeAfterPeerRestart is a peer that was down when it was last
// called and listens again: a fail-fast call may still fail while the
// connection backs off, and Wake with a wait-for-ready call reaches it at
// once.
func TestPoolWakeAfterPeerRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down: connections are refused
	p := NewPool(PoolConfig{})
	t.Cleanup(func() { p.Close() })
	c, err := p.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Several refused attempts, so the backoff is near its maximum.
	for range 5 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("health check of a closed port succeeded")
		}
		time.Sleep(150 * time.Millisecond)
	}

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(l)
	t.Cleanup(srv.Stop)

	start := time.Now()
	p.Wake(addr)
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	defer wcancel()
	if _, err := hc.Check(wctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("health check after the peer came back and Wake: %v", err)
	}
	t.Logf("reached the restarted peer %v after Wake (state %v)", time.Since(start), c.GetState())
}
