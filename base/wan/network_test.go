package wan

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/syncbuf"
)

// testPoll is the poll interval of test networks: short, so file changes
// apply quickly.
const testPoll = 20 * time.Millisecond

// testWAN is a Network over a file in a temporary directory, with servers
// placed in locations.
type testWAN struct {
	t    *testing.T
	file string
	cfg  Config
	n    *Network
	logs *syncbuf.Buffer
}

// newTestWAN starts a network whose config has the given links and no
// addresses yet; add servers with serve before dialing them.
func newTestWAN(t *testing.T, links ...Link) *testWAN {
	t.Helper()
	w := &testWAN{t: t, file: filepath.Join(t.TempDir(), "wan.json"), logs: &syncbuf.Buffer{}}
	w.cfg = Config{Version: Version, Links: links, Addresses: map[string]string{}}
	if err := w.cfg.Save(w.file); err != nil {
		t.Fatal(err)
	}
	n, err := Open(t.Context(), NetworkConfig{
		File:         w.file,
		PollInterval: testPoll,
		Logger:       slog.New(slog.NewTextHandler(w.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.n = n
	return w
}

// update changes the config through the file and waits until the network
// has loaded it.
func (w *testWAN) update(change func(*Config)) {
	w.t.Helper()
	change(&w.cfg)
	if err := w.cfg.Save(w.file); err != nil {
		w.t.Fatal(err)
	}
	want, err := Load(w.file)
	if err != nil {
		w.t.Fatal(err)
	}
	w.waitFor(func(cur Config) bool { return reflect.DeepEqual(cur, want) })
}

func (w *testWAN) waitFor(ok func(Config) bool) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(w.n.Current()) {
		if time.Now().After(deadline) {
			w.t.Fatalf("the network did not load the expected config; has %+v\nlog:\n%s", w.n.Current(), w.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serve starts a TCP server in location loc running handle on every
// connection, and returns its address.
func (w *testWAN) serve(loc string, handle func(net.Conn)) string {
	w.t.Helper()
	addr := startServer(w.t, handle)
	w.update(func(c *Config) { c.Addresses[addr] = loc })
	return addr
}

func (w *testWAN) dial(from, addr string) net.Conn {
	w.t.Helper()
	c, err := w.n.Dialer(from, false)(w.t.Context(), "tcp", addr)
	if err != nil {
		w.t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	w.t.Cleanup(func() { c.Close() })
	return c
}

// startServer listens on 127.0.0.1 and runs handle on each connection, then
// closes it. Cleanup stops the listener and waits for the handlers.
func startServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func echo(c net.Conn) { io.Copy(c, c) }

// roundTrip writes a short message and reads its echo, returning the time
// it took.
func roundTrip(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	msg := []byte("ping")
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
	return time.Since(start)
}

// exchange sends size random bytes through an echo server, writing and
// reading concurrently, and checks they come back unchanged.
func exchange(t *testing.T, c net.Conn, size int) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data came back changed")
	}
}

func TestRoundTripCostsRTT(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(60)})
	addr := w.serve("eastus", echo)
	start := time.Now()
	c := w.dial("westus", addr)
	if d := time.Since(start); d < 55*time.Millisecond {
		t.Errorf("dial took %v, want at least the 60ms handshake", d)
	}
	for i := range 3 {
		if d := roundTrip(t, c); d < 55*time.Millisecond {
			t.Errorf("round trip %d took %v, want >= 55ms", i, d)
		}
	}
}

func TestLatencyChangesLive(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(20)})
	addr := w.serve("eastus", echo)
	c := w.dial("westus", addr)
	if d := roundTrip(t, c); d < 18*time.Millisecond {
		t.Errorf("round trip at 20ms took %v", d)
	}
	w.update(func(cfg *Config) { cfg.SetLink(Link{A: "eastus", B: "westus", RTT: ms(150)}) })
	if d := roundTrip(t, c); d < 140*time.Millisecond {
		t.Errorf("round trip after the change to 150ms took %v", d)
	}
	// Switching to a link that adds nothing hands the socket back to
	// direct reads and writes; switching back starts the pumps again.
	// Data must survive every switch.
	for _, rtt := range []int{0, 10, 0} {
		w.update(func(cfg *Config) { cfg.SetLink(Link{A: "eastus", B: "westus", RTT: ms(rtt)}) })
		exchange(t, c, 1<<20)
		roundTrip(t, c)
	}
}

// TestBandwidthCap sends more than a bucket's burst over capped links: it
// takes at least what the cap allows for all but the burst (a 10 ms burst
// at 100 MB/s is 1 MB; at 4 MiB/s, one 64 KiB chunk).
func TestBandwidthCap(t *testing.T) {
	tests := []struct {
		bw   int64
		size int
	}{
		{4 << 20, 2 << 20},
		{100e6, 24 << 20},
	}
	for _, tt := range tests {
		t.Run(FormatRate(tt.bw), func(t *testing.T) {
			w := newTestWAN(t, Link{A: "westus", B: "eastus", Bandwidth: tt.bw})
			addr := w.serve("eastus", echo)
			c := w.dial("westus", addr)
			start := time.Now()
			exchange(t, c, tt.size)
			least := time.Duration(float64(tt.size-burst(tt.bw)) / float64(tt.bw) * float64(time.Second))
			if d := time.Since(start); d < least {
				t.Errorf("%d bytes at %s took %v, want at least %v", tt.size, FormatRate(tt.bw), d, least)
			}
		})
	}
}

func TestBurst(t *testing.T) {
	tests := []struct {
		bw   int64
		want int
	}{
		{1 << 10, chunkSize},
		{4 << 20, chunkSize},
		{100e6, 1e6},
		{1e9, 10e6},
	}
	for _, tt := range tests {
		if got := burst(tt.bw); got != tt.want {
			t.Errorf("burst(%d) = %d, want %d", tt.bw, got, tt.want)
		}
	}
}

func TestLossDelaysByRTO(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(10), Loss: 1})
	addr := w.serve("eastus", echo)
	c := w.dial("westus", addr)
	// Both the request and the response are lost once: each direction
	// pays the 200ms minimum retransmission timeout.
	if d := roundTrip(t, c); d < 400*time.Millisecond {
		t.Errorf("round trip with loss 1 took %v, want >= 400ms", d)
	}
}

func TestCutAndHeal(t *testing.T) {
	for _, rtt := range []int{0, 10} {
		t.Run(ms(rtt).String(), func(t *testing.T) {
			w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(rtt)})
			addr := w.serve("eastus", echo)
			c := w.dial("westus", addr)
			roundTrip(t, c)
			readErr := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				readErr <- err
			}()

			w.update(func(cfg *Config) { cfg.SetLink(Link{A: "eastus", B: "westus", RTT: ms(rtt), Cut: true}) })
			_, err := w.n.Dialer("westus", false)(t.Context(), "tcp", addr)
			if !errors.Is(err, ErrCut) || !strings.Contains(err.Error(), "simulated partition between westus and eastus") {
				t.Fatalf("dial across a cut: %v, want ErrCut naming the link", err)
			}
			select {
			case err := <-readErr:
				if !errors.Is(err, ErrCut) {
					t.Errorf("read on a cut connection: %v, want ErrCut", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("an open connection survived the cut")
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, ErrCut) {
				t.Errorf("write on a cut connection: %v, want ErrCut", err)
			}
			// Other links are not affected.
			other := w.serve("westeurope", echo)
			roundTrip(t, w.dial("westus", other))

			w.update(func(cfg *Config) { cfg.SetLink(Link{A: "eastus", B: "westus", RTT: ms(rtt)}) })
			roundTrip(t, w.dial("westus", addr))
		})
	}
}

func TestPlainDials(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "westus", RTT: ms(1)}, Link{A: "westus", B: "eastus", RTT: ms(10)})
	west := w.serve("westus", echo)
	east := w.serve("eastus", echo)
	unknown := startServer(t, echo)
	tests := []struct {
		name      string
		from      string
		skip      bool
		network   string
		addr      string
		simulated bool
	}{
		{"other location", "westus", true, "tcp", east, true},
		{"same location, skipped", "westus", true, "tcp", west, false},
		{"same location, not skipped", "westus", false, "tcp", west, true},
		{"unknown address", "westus", false, "tcp", unknown, false},
		{"tcp4", "westus", false, "tcp4", east, true},
		{"no location", "", false, "tcp", east, false},
		{"localhost spelling", "westus", false, "tcp", strings.Replace(east, "127.0.0.1", "localhost", 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := w.n.Dialer(tt.from, tt.skip)(t.Context(), tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, simulated := c.(*conn); simulated != tt.simulated {
				t.Fatalf("dial %s from %q (skip %v): simulated = %v, want %v", tt.addr, tt.from, tt.skip, simulated, tt.simulated)
			}
			roundTrip(t, c)
		})
	}
	if loc, ok := w.n.Location(east); !ok || loc != "eastus" {
		t.Errorf("Location(%s) = %q, %v", east, loc, ok)
	}
	if _, ok := w.n.Location(unknown); ok {
		t.Errorf("Location of an unlisted address is known")
	}
}

func TestPipelined(t *testing.T) {
	// Stop-and-wait with 32 KiB per 70ms round trip would take 72s for
	// 32 MiB; a pipelined link takes a fraction of that.
	const size = 32 << 20
	const stopAndWait = size / (32 << 10) * 70 * time.Millisecond
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(70)})
	sink := w.serve("eastus", func(c net.Conn) {
		n, _ := io.CopyN(io.Discard, c, size)
		binary.Write(c, binary.BigEndian, n)
	})
	source := w.serve("eastus", func(c net.Conn) {
		io.CopyN(c, zeros{}, size)
	})
	t.Run("write", func(t *testing.T) {
		c := w.dial("westus", sink)
		start := time.Now()
		buf := make([]byte, 32<<10)
		for range size / len(buf) {
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		var got int64
		if err := binary.Read(c, binary.BigEndian, &got); err != nil || got != size {
			t.Fatalf("sink got %d bytes, %v", got, err)
		}
		if d := time.Since(start); d > stopAndWait/10 {
			t.Errorf("writing 32 MiB over 70ms took %v, want under %v", d, stopAndWait/10)
		} else {
			t.Logf("wrote 32 MiB over 70ms in %v", d)
		}
	})
	t.Run("read", func(t *testing.T) {
		c := w.dial("westus", source)
		start := time.Now()
		n, err := io.CopyBuffer(io.Discard, c, make([]byte, 32<<10))
		if err != nil || n != size {
			t.Fatalf("read %d bytes, %v", n, err)
		}
		if d := time.Since(start); d > stopAndWait/10 {
			t.Errorf("reading 32 MiB over 70ms took %v, want under %v", d, stopAndWait/10)
		} else {
			t.Logf("read 32 MiB over 70ms in %v", d)
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestReload(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(20)})
	w.update(func(cfg *Config) { cfg.SetLink(Link{A: "westus", B: "eastus", RTT: ms(30), Bandwidth: 1 << 20}) })
	if l := w.n.Current().Link("eastus", "westus"); l.RTT != ms(30) || l.Bandwidth != 1<<20 {
		t.Fatalf("after reload: %+v", l)
	}

	// A bad file is logged and ignored; the last good config stays.
	good := w.n.Current()
	if err := os.WriteFile(w.file, []byte(`{"links":[{"a":"westus","b":"eastus","loss":7}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(w.logs.String(), "links[0].loss") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the bad file; log:\n%s", w.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(3 * testPoll)
	if cur := w.n.Current(); !reflect.DeepEqual(cur, good) {
		t.Fatalf("a bad file changed the config: %+v", cur)
	}
	if c := strings.Count(w.logs.String(), "links[0].loss"); c != 1 {
		t.Errorf("the bad file was reported %d times, want once", c)
	}

	// A removed file is reported and ignored too.
	os.Remove(w.file)
	time.Sleep(3 * testPoll)
	if cur := w.n.Current(); !reflect.DeepEqual(cur, good) {
		t.Fatalf("a removed file changed the config: %+v", cur)
	}

	// A good file written in place, not renamed, is picked up.
	if err := os.WriteFile(w.file, []byte(`{"links":[{"a":"westus","b":"eastus","rtt":"45ms"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitFor(func(c Config) bool { return c.Link("westus", "eastus").RTT == ms(45) })
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"links":[{"a":"x"}]}`), 0o644)
	for _, file := range []string{filepath.Join(dir, "missing.json"), bad} {
		if _, err := Open(t.Context(), NetworkConfig{File: file}); err == nil {
			t.Errorf("Open(%s) succeeded", file)
		}
	}
}

func TestDeadlines(t *testing.T) {
	for _, rtt := range []int{0, 20} {
		t.Run(ms(rtt).String(), func(t *testing.T) {
			w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(rtt)})
			addr := w.serve("eastus", echo)
			c := w.dial("westus", addr)

			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			start := time.Now()
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
			if d := time.Since(start); d < 45*time.Millisecond {
				t.Errorf("read timed out after %v, before its deadline", d)
			}
			// A deadline in the past wakes a blocked Read at once (net/http
			// relies on that to abort a background read).
			c.SetReadDeadline(time.Time{})
			readErr := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				readErr <- err
			}()
			time.Sleep(20 * time.Millisecond)
			c.SetReadDeadline(aLongTimeAgo)
			select {
			case err := <-readErr:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read woken by a past deadline: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a past deadline did not wake a blocked read")
			}
			c.SetWriteDeadline(aLongTimeAgo)
			if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write past the deadline: %v, want a timeout", err)
			}
			// Cleared deadlines: the connection works and lost nothing.
			c.SetDeadline(time.Time{})
			roundTrip(t, c)
			exchange(t, c, 256<<10)

			// A write deadline that passes with data still queued does
			// not lose the data: it goes out once the deadline moves.
			data := make([]byte, 256<<10)
			rand.Read(data)
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			c.SetWriteDeadline(time.Now().Add(time.Millisecond))
			time.Sleep(50 * time.Millisecond)
			c.SetWriteDeadline(time.Time{})
			got := make([]byte, len(data))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo after a passed write deadline: %v, equal %v", err, bytes.Equal(got, data))
			}
		})
	}
}

func TestCloseDrains(t *testing.T) {
	const size = 1 << 20
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(100)})
	got := make(chan int64, 1)
	addr := w.serve("eastus", func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	c := w.dial("westus", addr)
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
	if err := c.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline after close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	select {
	case n := <-got:
		if n != size {
			t.Fatalf("server got %d bytes written before Close, want %d", n, size)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the socket was not closed after draining")
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	w := newTestWAN(t,
		Link{A: "westus", B: "eastus", RTT: ms(4)},
		Link{A: "westus", B: "westeurope"},
		Link{A: "westus", B: "centralus", RTT: ms(4)})
	east := w.serve("eastus", echo)
	europe := w.serve("westeurope", echo)
	cut := w.serve("centralus", echo)
	base := runtime.NumGoroutine()

	var conns []net.Conn
	for i := range 40 {
		addr := east
		switch i % 4 {
		case 1:
			addr = europe
		case 2:
			addr = cut
		}
		c := w.dial("westus", addr)
		conns = append(conns, c)
		roundTrip(t, c)
		if i%4 == 3 {
			// Leave data queued at Close, and a reader blocked.
			c.Write(make([]byte, 256<<10))
			go c.Read(make([]byte, 1))
		}
	}
	w.update(func(cfg *Config) { cfg.SetLink(Link{A: "westus", B: "centralus", RTT: ms(4), Cut: true}) })
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the connections:\n%s",
				runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDialContext(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(500)})
	addr := w.serve("eastus", echo)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := w.n.Dialer("westus", false)(ctx, "tcp", addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with a context shorter than the handshake: %v", err)
	}
}

// TestListener: a server-side listener applies the client's link to the
// connections it accepts: latency on each direction, and cuts.
func TestListener(t *testing.T) {
	w := newTestWAN(t, Link{A: "westus", B: "eastus", RTT: ms(60)})
	addr := listenVia(t, w.n, "westus", "eastus", echo)
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i := range 2 {
		if rt := roundTrip(t, c); rt < 55*time.Millisecond {
			t.Errorf("round trip %d took %v, want >= 55ms", i, rt)
		}
	}
	w.update(func(cfg *Config) { cfg.SetLink(Link{A: "westus", B: "eastus", RTT: ms(60), Cut: true}) })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection whose link was cut: %v, want it closed", err)
	}
	c2, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection accepted across a cut: %v, want it closed", err)
	}
}

// TestListenerSends: a server behind a Listener answers a request with a
// file as net/http does (io.CopyN, which reaches ReadFrom). The client
// gets the first byte one round trip after its request, as over a dialed
// connection, the bytes unchanged, and a cap on the link still holds.
func TestListenerSends(t *testing.T) {
	const size = 3 << 20
	data := make([]byte, size)
	rand.Read(data)
	file := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		link      Link
		leastTook time.Duration // from the request to the last byte
	}{
		{"latency", Link{A: "westus", B: "eastus", RTT: ms(60)}, 55 * time.Millisecond},
		{"capped", Link{A: "westus", B: "eastus", RTT: ms(10), Bandwidth: 8 << 20}, time.Duration(float64(size-burst(8<<20)) / (8 << 20) * float64(time.Second))},
		{"lossy", Link{A: "westus", B: "eastus", RTT: ms(10), Loss: 1}, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newTestWAN(t, tt.link)
			addr := listenVia(t, w.n, "westus", "eastus", func(c net.Conn) {
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					return
				}
				f, err := os.Open(file)
				if err != nil {
					return
				}
				defer f.Close()
				io.CopyN(c, f, size)
			})
			var d net.Dialer
			c, err := d.DialContext(t.Context(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			if _, err := c.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < tt.leastTook {
				t.Errorf("request to last byte took %v, want at least %v", took, tt.leastTook)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, not the file's %d", len(got), size)
			}
		})
	}
}

// listenVia serves handle, on a connection of its own each (closed when
// handle returns), behind n's Listener for clients of location from
// reaching at, and returns the address.
func listenVia(t testing.TB, n *Network, from, at string, handle func(net.Conn)) string {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := n.Listener(raw, from, at)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return raw.Addr().String()
}
