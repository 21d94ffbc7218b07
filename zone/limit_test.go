package zone

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLimitListener: at most n connections at a time, a slot freed by
// Close, an Accept waiting for a slot woken by the listener's Close, and
// the TCP connection's ReadFrom (sendfile) kept.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(raw, 2)
	defer ln.Close()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with two open")
	case <-time.After(100 * time.Millisecond):
	}
	if _, ok := first.(io.ReaderFrom); !ok {
		t.Fatal("accepted connection has no ReadFrom")
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("blob bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.CopyN(first, f, 10); n != 10 || err != nil {
		t.Fatalf("copy of a file: %d, %v", n, err)
	}
	got := make([]byte, 10)
	if _, err := io.ReadFull(clients[0], got); err != nil || string(got) != "blob bytes" {
		t.Fatalf("client read %q, %v", got, err)
	}

	first.Close()
	first.Close() // a second Close frees nothing more
	third := <-accepted
	if third == nil {
		t.Fatal("no third connection after one closed")
	}
	third.Close()
	second.Close()

	ln.Close()
	if c, ok := <-accepted; ok {
		t.Fatalf("accepted %v after Close", c.RemoteAddr())
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
