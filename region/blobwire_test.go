package region

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/storage"
)

// streamServer serves the zone port (gRPC with nothing registered, and the
// blob stream protocol) over store, and returns its address.
func streamServer(t *testing.T, store storage.BlobStore) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ln, srv, NewServer(nil, storage.NewChecked(storage.CheckedConfig{Store: store})), nil)
	}()
	t.Cleanup(func() {
		srv.Stop()
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func newStore(t *testing.T) *storage.FS {
	s, _ := newStoreAt(t)
	return s
}

// newStoreAt returns an FS and its root directory.
func newStoreAt(t *testing.T) (*storage.FS, string) {
	t.Helper()
	root := t.TempDir()
	s, err := storage.NewFS(storage.FSConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// queueOf returns a chunkQueue holding data, closed, as the streamed copy
// of a local write reads it.
func queueOf(data []byte) *chunkQueue {
	q := newChunkQueue()
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 100_000)
			q.put(p[:n])
			p = p[n:]
		}
		q.closeWrite(nil)
	}()
	return q
}

func TestBlobStreamCopies(t *testing.T) {
	store := newStore(t)
	addr := streamServer(t, store)
	bs := newBlobStreams(nil)
	t.Cleanup(bs.close)
	sizes := []int{0, 1, frameBytes - 1, frameBytes, 3*frameBytes + 5}
	for _, size := range sizes {
		for _, src := range []string{"reader", "queue"} {
			for _, known := range []bool{true, false} {
				data, dgst := randomBlob(t, size)
				declared := int64(size)
				if !known {
					declared = -1
				}
				var r io.Reader = bytes.NewReader(data)
				if src == "queue" {
					r = queueOf(data)
				}
				if err := bs.send(t.Context(), addr, dgst, declared, r); err != nil {
					t.Fatalf("send(size %d, %s, declared %d): %v", size, src, declared, err)
				}
				if err := storage.Verify(t.Context(), store, dgst); err != nil {
					t.Fatalf("size %d: the receiver's copy: %v", size, err)
				}
			}
		}
	}
	// Every copy above went over one connection, taken back after each.
	bs.mu.Lock()
	idle := len(bs.idle[addr])
	bs.mu.Unlock()
	if idle != 1 {
		t.Errorf("%d idle connections to the receiver, want 1 (reused)", idle)
	}
}

// fullStore refuses every write as out of space.
type fullStore struct{ storage.BlobStore }

func (fullStore) Put(context.Context, digest.Digest, int64, io.Reader) (int64, error) {
	return 0, storage.ErrNoSpace
}

// TestBlobStreamRefusals: a copy whose bytes the sender cannot vouch for
// (read back from a file, they do not match the digest or the size) fails
// at the sender, which never sends the frame that ends the blob; a copy
// the receiver cannot store is refused by the receiver. Either way the
// receiver keeps nothing and the next copy goes through.
func TestBlobStreamRefusals(t *testing.T) {
	data, dgst := randomBlob(t, 2*frameBytes+7)
	_, other := randomBlob(t, 10)
	cases := []struct {
		name    string
		store   func(*storage.FS) storage.BlobStore
		dgst    digest.Digest
		size    int64
		want    error
		refused bool // by the receiver, rather than caught by the sender
	}{
		{"wrong digest", func(s *storage.FS) storage.BlobStore { return s }, other, int64(len(data)), storage.ErrDigestMismatch, false},
		{"wrong size", func(s *storage.FS) storage.BlobStore { return s }, dgst, int64(len(data)) - 1, storage.ErrSizeMismatch, false},
		{"store full", func(s *storage.FS) storage.BlobStore { return fullStore{s} }, dgst, int64(len(data)), storage.ErrNoSpace, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := newStore(t)
			addr := streamServer(t, tc.store(fs))
			bs := newBlobStreams(nil)
			defer bs.close()
			err := bs.send(t.Context(), addr, tc.dgst, tc.size, bytes.NewReader(data))
			if !errors.Is(err, tc.want) || errors.Is(err, errCopyRefused) != tc.refused {
				t.Fatalf("send = %v, want %v (refused by the receiver: %v)", err, tc.want, tc.refused)
			}
			checkNothingStored(t, fs)
			if !tc.refused {
				if err := bs.send(t.Context(), addr, dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
					t.Fatalf("the next copy: %v", err)
				}
			}
		})
	}
}

// rawRequest is a blob stream request as bytes: the digest, the size and
// the frames (each from frameOf, or hand-made), then the end frame.
func rawRequest(d string, size int64, frames ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(d)))
	b = append(b, d...)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

// frameOf is data as one frame, with its CRC.
func frameOf(data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(data, castagnoli))
	return append(b, data...)
}

var endFrame = []byte{0, 0, 0, 0}

// TestBlobStreamCorruptFrame: a frame whose bytes do not match its CRC
// (damaged on the way) fails the copy with a data-loss answer, the
// receiver keeps nothing, and the connection carries the next copy.
func TestBlobStreamCorruptFrame(t *testing.T) {
	fs := newStore(t)
	addr := streamServer(t, fs)
	data, dgst := randomBlob(t, 3000)
	bad := frameOf(data[1000:2000])
	bad[8+17] ^= 0x40 // one bit flipped in the frame's data
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := &streamConn{Conn: c, r: bufio.NewReader(c)}
	if _, err := c.Write(append([]byte(BlobStreamMagic), rawRequest(dgst.String(), 3000, frameOf(data[:1000]), bad, frameOf(data[2000:]), endFrame)...)); err != nil {
		t.Fatal(err)
	}
	if err := readResponse(sc); !errors.Is(err, errCopyRefused) || !errors.Is(err, storage.ErrDigestMismatch) || !strings.Contains(err.Error(), errFrameCRC.Error()) {
		t.Fatalf("answer to a corrupt frame: %v, want a refused copy (digest mismatch, %v)", err, errFrameCRC)
	}
	checkNothingStored(t, fs)
	if _, err := c.Write(rawRequest(dgst.String(), 3000, frameOf(data[:1000]), frameOf(data[1000:]), endFrame)); err != nil {
		t.Fatal(err)
	}
	if err := readResponse(sc); err != nil {
		t.Fatalf("the next copy on the connection: %v", err)
	}
	if err := storage.Verify(t.Context(), fs, dgst); err != nil {
		t.Fatalf("the receiver's copy: %v", err)
	}
}

func checkNothingStored(t *testing.T, fs *storage.FS) {
	t.Helper()
	n := 0
	if err := fs.Walk(t.Context(), func(digest.Digest, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d blobs stored, want none", n)
	}
}

// TestBlobStreamCancel: a sender that gives up mid-blob gets its context's
// error, and the receiver keeps nothing.
func TestBlobStreamCancel(t *testing.T) {
	fs, root := newStoreAt(t)
	addr := streamServer(t, fs)
	bs := newBlobStreams(nil)
	defer bs.close()
	data, dgst := randomBlob(t, 3*frameBytes)
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(data[:frameBytes+3])
		cancel()
		// The rest is there, but the cancelled copy must not send it.
		pw.Write(data[frameBytes+3:])
		pw.Close()
	}()
	err := bs.send(ctx, addr, dgst, int64(len(data)), pr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("send = %v, want context.Canceled", err)
	}
	// The receiver sees the connection end and removes its temporary file.
	deadline := time.Now().Add(waitTimeout)
	for {
		entries, _ := os.ReadDir(filepath.Join(root, "tmp"))
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporary files left on the receiver: %d", len(entries))
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkNothingStored(t, fs)
}

// TestBlobStreamBadInput: a connection that breaks the protocol is closed
// without storing anything, and the port keeps serving.
func TestBlobStreamBadInput(t *testing.T) {
	_, dgst := randomBlob(t, 10)
	req := func(d string, size int64, frames ...[]byte) []byte {
		return append([]byte(BlobStreamMagic), rawRequest(d, size, frames...)...)
	}
	frame := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cases := []struct {
		name  string
		input []byte
	}{
		{"bad digest", req("sha256:nothex", 10)},
		{"size below -1", req(dgst.String(), -2)},
		{"frame too large", req(dgst.String(), 10, frame(frameBytes+1))},
		{"ends inside a frame's header", req(dgst.String(), 10, frame(10), []byte("abc"))},
		{"ends inside a frame", req(dgst.String(), 10, frameOf([]byte("abcdefghij"))[:10])},
		{"ends before the last frame", req(dgst.String(), 10, frameOf([]byte("abc")))},
	}
	fs := newStore(t)
	addr := streamServer(t, fs)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
				t.Fatalf("the receiver answered %d bytes (%v), want it to close the connection", n, err)
			}
			checkNothingStored(t, fs)
		})
	}
	// And a well-formed copy still works.
	bs := newBlobStreams(nil)
	defer bs.close()
	data, good := randomBlob(t, 1000)
	if err := bs.send(t.Context(), addr, good, 1000, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// FuzzBlobStream feeds arbitrary bytes after the magic to a receiver: it
// must neither panic nor keep anything but the bytes of a request whose
// frames all matched their CRCs, whose size was the one declared, and
// that ended with the end frame (vouchedBlobs, a second reading of the
// protocol, says what those are).
func FuzzBlobStream(f *testing.F) {
	data := []byte("fuzzed blob")
	dgst := digest.FromBytes(data)
	f.Add(rawRequest(dgst.String(), int64(len(data)), frameOf(data), endFrame))
	f.Add(rawRequest(dgst.String(), -1, frameOf(data[:4]), frameOf(data[4:]), endFrame))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, input []byte) {
		store, err := storage.NewFS(storage.FSConfig{Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		srv := NewServer(nil, storage.NewChecked(storage.CheckedConfig{Store: store}))
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.serveBlobStream(server, slog.New(slog.DiscardHandler))
			close(done)
		}()
		go func() {
			client.Write([]byte(BlobStreamMagic))
			client.Write(input)
			client.Close()
		}()
		go io.Copy(io.Discard, client)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the receiver did not finish")
		}
		want := vouchedBlobs(input)
		err = store.Walk(t.Context(), func(d digest.Digest, _ int64) error {
			rc, err := store.Open(t.Context(), d, 0)
			if err != nil {
				return err
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				return err
			}
			if w, ok := want[d]; !ok || !bytes.Equal(got, w) {
				return fmt.Errorf("stored %d bytes as %s, which no well-formed request vouched for", len(got), d)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// vouchedBlobs reads input as a sequence of blob stream requests and
// returns, by digest, the bytes of the first request for each digest that
// a receiver may store: every frame's CRC matched, the size was the one
// declared (or -1) and the end frame came.
func vouchedBlobs(input []byte) map[digest.Digest][]byte {
	out := map[digest.Digest][]byte{}
	for len(input) >= 2 {
		n := int(binary.BigEndian.Uint16(input))
		input = input[2:]
		if len(input) < n+8 {
			break
		}
		d, err := digest.Parse(string(input[:n]))
		size := int64(binary.BigEndian.Uint64(input[n:]))
		input = input[n+8:]
		if err != nil || size < -1 {
			break
		}
		var data []byte
		intact, ended := true, false
		for len(input) >= 4 {
			fl := int(binary.BigEndian.Uint32(input))
			input = input[4:]
			if fl == 0 {
				ended = true
				break
			}
			if fl > frameBytes || len(input) < 4+fl {
				return out
			}
			if crc32.Checksum(input[4:4+fl], castagnoli) != binary.BigEndian.Uint32(input) {
				intact = false
			}
			data = append(data, input[4:4+fl]...)
			input = input[4+fl:]
		}
		if !ended {
			break
		}
		if _, seen := out[d]; !seen && intact && (size < 0 || int64(len(data)) == size) {
			out[d] = data
		}
	}
	return out
}

// TestBlobStreamReceiverRestarts: a pooled connection the receiver has
// closed (it restarted) is noticed before a copy starts on it.
func TestBlobStreamReceiverRestarts(t *testing.T) {
	node, _, _ := testCluster(t)
	for _, tc := range []struct {
		name   string
		server *tls.Config // nil: plaintext
		client *tls.Config
	}{
		{"plaintext", nil, nil},
		{"mutual TLS", proto.ServerTLS(node.Server), node.Client},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			serve := func(ln net.Listener) (stop func()) {
				if tc.server != nil {
					ln = tls.NewListener(ln, tc.server)
				}
				srv := grpc.NewServer()
				done := make(chan struct{})
				go func() {
					Serve(ln, srv, NewServer(nil, storage.NewChecked(storage.CheckedConfig{Store: store})), nil)
					close(done)
				}()
				return func() { srv.Stop(); ln.Close(); <-done }
			}
			stop := serve(ln)
			bs := newBlobStreams(tc.client)
			defer bs.close()
			for i := range 2 {
				data, dgst := randomBlob(t, 1000)
				if err := bs.send(t.Context(), addr, dgst, 1000, bytes.NewReader(data)); err != nil {
					t.Fatalf("copy %d: %v", i, err)
				}
				if i == 0 {
					// The pooled connection is seen alive while its
					// receiver runs (a TLS one too: its handshake left
					// nothing unread)...
					bs.mu.Lock()
					idle := bs.idle[addr]
					bs.mu.Unlock()
					if len(idle) != 1 || !alive(idle[0].conn.Conn) {
						t.Fatalf("after one copy: %d idle connections, want 1 alive", len(idle))
					}
					// ...and dead once it restarted on the same address.
					stop()
					if ln, err = net.Listen("tcp", addr); err != nil {
						t.Fatal(err)
					}
					stop = serve(ln)
				}
			}
			stop()
		})
	}
}
