package wan

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The clients the mesh runs over the simulated WAN: net/http (the traffic
// manager's proxy) and gRPC (replication between regions).

func TestHTTPClient(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(40)})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rw.Write(make([]byte, 300<<10))
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	w.update(func(c *Config) { c.Addresses[addr] = "eastus" })

	tr := &http.Transport{DialContext: w.n.Dialer("westus", false)}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i, least := range []time.Duration{80 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond} {
		start := time.Now()
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != 300<<10 {
			t.Fatalf("body: %d bytes, %v", n, err)
		}
		// The first request dials: the handshake costs one more round trip.
		if d := time.Since(start); d < least-5*time.Millisecond {
			t.Errorf("request %d took %v, want at least %v", i, d, least)
		}
	}
}

func TestGRPCClient(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(30)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	addr := ln.Addr().String()
	w.update(func(c *Config) { c.Addresses[addr] = "eastus" })

	dial := w.n.Dialer("westus", false)
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return dial(ctx, "tcp", a)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start := time.Now()
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 25*time.Millisecond {
			t.Errorf("gRPC call over 30ms took %v", d)
		}
	}
}
