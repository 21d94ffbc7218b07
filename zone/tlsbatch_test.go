package zone

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georeg/georeg/base/tlsconf"
)

// writeRecorder is a net.Conn that keeps what is written to it, one entry
// per Write, and fails writes once failAfter of them succeeded (when set).
type writeRecorder struct {
	net.Conn
	writes    [][]byte
	failAfter int
}

var errBroken = errors.New("broken pipe")

func (w *writeRecorder) Write(p []byte) (int, error) {
	if w.failAfter > 0 && len(w.writes) >= w.failAfter {
		return 0, errBroken
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *writeRecorder) joined() []byte { return bytes.Join(w.writes, nil) }

func TestBatchConn(t *testing.T) {
	record := bytes.Repeat([]byte("r"), 16<<10+22) // a full TLS record
	for _, tc := range []struct {
		name    string
		batch   bool
		records int
		// wantWrites is the number of writes the socket sees.
		wantWrites int
	}{
		{"not batching: each write goes through", false, 5, 5},
		// 16 records fill a batch: two batches, and the 8 left at unbatch.
		{"batching: gathered into writes of batchBytes", true, 40, 3},
		{"batching, less than one batch: sent at unbatch", true, 3, 1},
		{"batching, nothing written: nothing sent", true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &writeRecorder{}
			c := &batchConn{Conn: rec}
			if tc.batch {
				c.batch()
			}
			var want []byte
			for i := range tc.records {
				p := append(bytes.Clone(record), byte(i))
				want = append(want, p...)
				if n, err := c.Write(p); n != len(p) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := c.unbatch(); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != tc.wantWrites {
				t.Errorf("%d socket writes, want %d", len(rec.writes), tc.wantWrites)
			}
			for i, w := range rec.writes[:max(0, len(rec.writes)-1)] {
				if tc.batch && len(w) < batchBytes {
					t.Errorf("socket write %d of %d bytes before the last, want at least %d", i, len(w), batchBytes)
				}
			}
			if !bytes.Equal(rec.joined(), want) {
				t.Error("the socket got other bytes, or in another order")
			}
			// Unbatched again: straight through.
			before := len(rec.writes)
			c.Write([]byte("after"))
			if len(rec.writes) != before+1 || string(rec.writes[before]) != "after" {
				t.Error("a write after unbatch did not go straight through")
			}
		})
	}
}

func TestBatchConnErrors(t *testing.T) {
	rec := &writeRecorder{failAfter: 1}
	c := &batchConn{Conn: rec}
	c.batch()
	big := make([]byte, batchBytes)
	if _, err := c.Write(big); err != nil {
		t.Fatalf("first batch: %v", err)
	}
	if _, err := c.Write(big); !errors.Is(err, errBroken) {
		t.Fatalf("Write whose batch the socket refused = %v, want %v", err, errBroken)
	}
	c.Write([]byte("x"))
	if err := c.unbatch(); !errors.Is(err, errBroken) {
		t.Fatalf("unbatch whose flush the socket refused = %v, want %v", err, errBroken)
	}
}

// countingListener counts the writes to the connections it accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestBatchedDownload serves a 4 MiB body over HTTPS as a data endpoint
// does: the client gets every byte, and the socket sees a write per batch,
// not per 16 KiB record.
func TestBatchedDownload(t *testing.T) {
	body := make([]byte, 4<<20)
	rand.Read(body)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	cert, pool := selfSigned(t)
	tlsLn := tls.NewListener(batchListener{countingListener{ln, &writes}}, &tls.Config{Certificates: []tls.Certificate{cert}})
	var sawBatchConn atomic.Bool
	srv := &http.Server{
		Handler: batched(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, ok := r.Context().Value(batchConnKey{}).(*batchConn)
			sawBatchConn.Store(ok)
			http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(body))
		})),
		ConnContext: withBatchConn,
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(tlsLn) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	for range 2 { // the second on the same connection, batching again
		before := writes.Load()
		resp, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read %d bytes (%v), want the %d bytes served", len(got), err, len(body))
		}
		if !sawBatchConn.Load() {
			t.Fatal("the handler's request carries no batchConn: ConnContext did not find it under the TLS connection")
		}
		// 256 records of 16 KiB; the handshake adds a few writes.
		if n := writes.Load() - before; n > 30 {
			t.Errorf("%d socket writes for a 4 MiB answer, want about %d", n, len(body)/batchBytes+1)
		}
	}
}

// selfSigned returns a certificate for 127.0.0.1 from a fresh CA of
// base/tlsconf, and a pool trusting the CA.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca, err := tlsconf.NewCA(tlsconf.CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(tlsconf.CertConfig{Name: "data endpoint"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return cert, pool
}
