package region

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/storage"
)

// tlsStreamServer is streamServer behind a mutual TLS listener, as a node
// with --tls-cert serves its zone port.
func tlsStreamServer(t *testing.T, store storage.BlobStore, cfg *tlsconf.Config) string {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(raw, proto.ServerTLS(cfg.Server))
	srv := grpc.NewServer()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ln, srv, NewServer(nil, storage.NewChecked(storage.CheckedConfig{Store: store})), nil)
	}()
	t.Cleanup(func() {
		srv.Stop()
		ln.Close()
		<-done
	})
	return raw.Addr().String()
}

// testCluster returns a node's, an operator's and a stranger's (another
// CA's node) TLS configurations.
func testCluster(t *testing.T) (node, operator, stranger *tlsconf.Config) {
	t.Helper()
	mk := func(ca *tlsconf.CA, name, role string) *tlsconf.Config {
		c, k, err := ca.Issue(tlsconf.CertConfig{Name: name, Role: role})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := tlsconf.New(pair, ca.CertPEM())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ca, err := tlsconf.NewCA(tlsconf.CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsconf.NewCA(tlsconf.CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return mk(ca, "westus-1", tlsconf.RoleNode), mk(ca, "georeg", tlsconf.RoleOperator), mk(other, "westus-1", tlsconf.RoleNode)
}

// lie sends one blob over the blob stream protocol on c: the request names
// dgst, and the frames carry data with correct CRCs, whatever dgst is. It
// returns the receiver's status.
func lie(t *testing.T, c net.Conn, dgst digest.Digest, data []byte) (byte, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	d := dgst.String()
	msg := []byte(BlobStreamMagic)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(d)))
	msg = append(msg, d...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(data)))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(data)))
	msg = binary.BigEndian.AppendUint32(msg, crc32.Checksum(data, castagnoli))
	msg = append(msg, data...)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	var hdr [3]byte
	if _, err := io.ReadFull(bufio.NewReader(c), hdr[:]); err != nil {
		return 0, err
	}
	return hdr[0], nil
}

// TestBlobStreamTrust: the receiver takes a sender's word that its bytes
// match their digest only from a node of the cluster over mutual TLS.
// From anyone else it hashes them and refuses a mismatch, and a peer
// without a certificate of the cluster cannot connect at all; either way
// nothing is stored under a digest its bytes do not hash to.
func TestBlobStreamTrust(t *testing.T) {
	node, operator, stranger := testCluster(t)
	data, _ := randomBlob(t, 1000)
	_, claimed := randomBlob(t, 1000)
	honest, _ := randomBlob(t, 1000)
	dial := func(addr string, cfg *tls.Config) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			if cfg == nil {
				return net.Dial("tcp", addr)
			}
			c := cfg.Clone()
			c.NextProtos = []string{proto.ALPNBlobStream}
			return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		}
	}
	tests := []struct {
		name   string
		tls    bool               // the receiver runs with TLS
		client func() *tls.Config // the sender's; nil: plaintext
		want   byte               // status of the lie; 255: cannot connect
	}{
		{"plaintext receiver hashes", false, nil, statusDataLoss},
		{"operator over TLS is hashed", true, func() *tls.Config { return operator.Client }, statusDataLoss},
		{"node over TLS is trusted", true, func() *tls.Config { return node.Client }, statusOK},
		{"other CA cannot connect", true, func() *tls.Config { return stranger.Client }, 255},
		{"plaintext to TLS cannot connect", true, nil, 255},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newStore(t)
			addr := ""
			if tt.tls {
				addr = tlsStreamServer(t, store, node)
			} else {
				addr = streamServer(t, store)
			}
			var cfg *tls.Config
			if tt.client != nil {
				cfg = tt.client()
			}
			connect := dial(addr, cfg)
			c, err := connect()
			var status byte = 255
			if err == nil {
				status, err = lie(t, c, claimed, data)
				c.Close()
				if err != nil {
					status = 255
				}
			}
			if status != tt.want {
				t.Fatalf("status %d (err %v), want %d", status, err, tt.want)
			}
			_, serr := store.Stat(t.Context(), claimed)
			if stored := serr == nil; stored != (tt.want == statusOK) {
				t.Errorf("stored under the claimed digest: %v", stored)
			}
			if tt.want == 255 {
				return
			}
			// Honest bytes go through, from whoever may connect.
			c, err = connect()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			honestDgst := digest.FromBytes(honest)
			if status, err := lie(t, c, honestDgst, honest); err != nil || status != statusOK {
				t.Errorf("an honest copy: status %d, %v", status, err)
			}
			if err := storage.Verify(t.Context(), store, honestDgst); err != nil {
				t.Errorf("the honest copy: %v", err)
			}
		})
	}
}

// TestBlobStreamsTLS: the sender's copies over mutual TLS arrive and are
// stored; a sender without a certificate of the cluster gets none through.
func TestBlobStreamsTLS(t *testing.T) {
	node, _, stranger := testCluster(t)
	store := newStore(t)
	addr := tlsStreamServer(t, store, node)
	data, dgst := randomBlob(t, 2*frameBytes+3)
	bs := newBlobStreams(node.Client)
	t.Cleanup(bs.close)
	if err := bs.send(t.Context(), addr, dgst, int64(len(data)), queueOf(data)); err != nil {
		t.Fatal(err)
	}
	if err := storage.Verify(t.Context(), store, dgst); err != nil {
		t.Fatal(err)
	}
	bad := newBlobStreams(stranger.Client)
	t.Cleanup(bad.close)
	data2, dgst2 := randomBlob(t, 100)
	if err := bad.send(t.Context(), addr, dgst2, int64(len(data2)), queueOf(data2)); err == nil {
		t.Fatal("a stranger's copy went through")
	}
	if _, err := store.Stat(t.Context(), dgst2); err == nil {
		t.Error("a stranger's copy was stored")
	}
}

// BenchmarkBlobStreamTrust measures one copy of a 64 MiB blob over the
// blob stream, stored with fsync: from a plaintext peer and from an
// operator's certificate over mutual TLS (both hashed by the receiver), and
// from a node over mutual TLS (its word taken).
func BenchmarkBlobStreamTrust(b *testing.B) {
	t := &testing.T{}
	node, operator, _ := testCluster(t)
	data, dgst := randomBlob(t, 64<<20)
	for _, tc := range []struct {
		name   string
		sender *tlsconf.Config
	}{{"plaintext-hashed", nil}, {"mtls-hashed", operator}, {"mtls-vouched", node}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				b.StopTimer()
				store, err := storage.NewFS(storage.FSConfig{Root: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				var addr string
				var bs *blobStreams
				if tc.sender != nil {
					addr, bs = benchServer(b, store, node), newBlobStreams(tc.sender.Client)
				} else {
					addr, bs = benchServer(b, store, nil), newBlobStreams(nil)
				}
				b.StartTimer()
				if err := bs.send(b.Context(), addr, dgst, int64(len(data)), queueOf(data)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				bs.close()
				b.StartTimer()
			}
		})
	}
}

// benchServer serves the zone port over store, with cfg's TLS when set.
func benchServer(b *testing.B, store storage.BlobStore, cfg *tlsconf.Config) string {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ln := raw
	if cfg != nil {
		ln = tls.NewListener(raw, proto.ServerTLS(cfg.Server))
	}
	srv := grpc.NewServer()
	go Serve(ln, srv, NewServer(nil, storage.NewChecked(storage.CheckedConfig{Store: store})), nil)
	b.Cleanup(func() {
		srv.Stop()
		ln.Close()
	})
	return raw.Addr().String()
}
