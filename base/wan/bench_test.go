package wan

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// BenchmarkConnThroughput compares a connection over a link that adds
// nothing with a plain TCP connection, in the same run, in both directions;
// "wan-1ms" shows the cost of the queues on a link that delays, and
// "listener-1ms" the same link applied by a listener, as a node's data
// endpoint does (a folded connection: see conn).
//
//	go test -run '^$' -bench ConnThroughput ./base/wan/
func BenchmarkConnThroughput(b *testing.B) {
	file := filepath.Join(b.TempDir(), "wan.json")
	cfg := Config{Links: []Link{{A: "a", B: "b"}, {A: "a", B: "c", RTT: ms(1)}}, Addresses: map[string]string{}}
	sinks, sources := map[string]string{}, map[string]string{}
	for _, loc := range []string{"b", "c"} {
		sinks[loc] = startServer(b, func(c net.Conn) { io.Copy(io.Discard, c) })
		sources[loc] = startServer(b, func(c net.Conn) { io.Copy(c, zeros{}) })
		cfg.Addresses[sinks[loc]], cfg.Addresses[sources[loc]] = loc, loc
	}
	if err := cfg.Save(file); err != nil {
		b.Fatal(err)
	}
	n, err := Open(b.Context(), NetworkConfig{File: file, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	// The server side of a data endpoint: a plain client, the link
	// applied by the listener.
	listened := map[string]string{
		"write": listenVia(b, n, "a", "c", func(c net.Conn) { io.Copy(io.Discard, c) }),
		"read":  listenVia(b, n, "a", "c", func(c net.Conn) { io.Copy(c, zeros{}) }),
	}
	for _, bc := range []struct {
		name   string
		to     string
		listen bool
		dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	}{
		{"plain", "b", false, (&net.Dialer{}).DialContext},
		{"wan-zero", "b", false, n.Dialer("a", false)},
		{"wan-1ms", "c", false, n.Dialer("a", false)},
		{"listener-1ms", "", true, (&net.Dialer{}).DialContext},
	} {
		for _, dir := range []string{"write", "read"} {
			b.Run(bc.name+"/"+dir, func(b *testing.B) {
				addr := sinks[bc.to]
				if dir == "read" {
					addr = sources[bc.to]
				}
				if bc.listen {
					addr = listened[dir]
				}
				c, err := bc.dial(b.Context(), "tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, 32<<10)
				b.SetBytes(int64(len(buf)))
				b.ResetTimer()
				for b.Loop() {
					if dir == "write" {
						_, err = c.Write(buf)
					} else {
						_, err = io.ReadFull(c, buf)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCappedLink reads 64 MiB from a server 140 ms away behind a
// 100 MB/s cap over 4 connections at once, as a region fetches layers,
// and reports the share of the cap the link delivered ("cap%"). The cap is
// the simulator's promise: what it fails to deliver here, replication
// cannot reach either.
//
//	go test -run '^$' -bench CappedLink -benchtime 3x ./base/wan/
func BenchmarkCappedLink(b *testing.B) {
	const (
		capBps = 100e6
		total  = 64 << 20
		conns  = 4
	)
	file := filepath.Join(b.TempDir(), "wan.json")
	source := startServer(b, func(c net.Conn) { io.Copy(c, zeros{}) })
	cfg := Config{
		Links:     []Link{{A: "a", B: "c", RTT: ms(140), Bandwidth: capBps}},
		Addresses: map[string]string{source: "c"},
	}
	if err := cfg.Save(file); err != nil {
		b.Fatal(err)
	}
	n, err := Open(b.Context(), NetworkConfig{File: file, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	dial := n.Dialer("a", false)
	var share float64
	for b.Loop() {
		start := time.Now()
		var g errgroup.Group
		for range conns {
			g.Go(func() error {
				c, err := dial(b.Context(), "tcp", source)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = io.CopyN(io.Discard, c, total/conns)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		// The first bytes take one round trip for the dial and one
		// one-way delay; the rest is the cap's to deliver.
		took := time.Since(start) - 210*time.Millisecond
		share += total / capBps / took.Seconds()
	}
	b.ReportMetric(100*share/float64(b.N), "cap%")
}
