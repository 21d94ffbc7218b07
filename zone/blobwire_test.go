package zone

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

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
	go func() { done <- Serve(ln, srv, NewServer(nil, store, nil), nil) }()
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
	bs := newBlobStreams()
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

func TestBlobStreamRefusals(t *testing.T) {
	data, dgst := randomBlob(t, 2*frameBytes+7)
	_, other := randomBlob(t, 10)
	cases := []struct {
		name  string
		store func(*storage.FS) storage.BlobStore
		dgst  digest.Digest
		size  int64
		want  error
	}{
		{"wrong digest", func(s *storage.FS) storage.BlobStore { return s }, other, int64(len(data)), storage.ErrDigestMismatch},
		{"wrong size", func(s *storage.FS) storage.BlobStore { return s }, dgst, int64(len(data)) - 1, storage.ErrDigestMismatch},
		{"store full", func(s *storage.FS) storage.BlobStore { return fullStore{s} }, dgst, int64(len(data)), storage.ErrNoSpace},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := newStore(t)
			addr := streamServer(t, tc.store(fs))
			bs := newBlobStreams()
			defer bs.close()
			err := bs.send(t.Context(), addr, tc.dgst, tc.size, bytes.NewReader(data))
			if !errors.Is(err, errCopyRefused) || !errors.Is(err, tc.want) {
				t.Fatalf("send = %v, want errCopyRefused and %v", err, tc.want)
			}
			checkNothingStored(t, fs)
			// The refusal left the connection usable for the next copy.
			if tc.name != "store full" {
				if err := bs.send(t.Context(), addr, dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
					t.Fatalf("the next copy: %v", err)
				}
			}
		})
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
	bs := newBlobStreams()
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
		b := []byte(BlobStreamMagic)
		b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
		b = append(b, d...)
		b = binary.BigEndian.AppendUint64(b, uint64(size))
		for _, f := range frames {
			b = append(b, f...)
		}
		return b
	}
	frame := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cases := []struct {
		name  string
		input []byte
	}{
		{"bad digest", req("sha256:nothex", 10)},
		{"size below -1", req(dgst.String(), -2)},
		{"frame too large", req(dgst.String(), 10, frame(frameBytes+1))},
		{"ends inside a frame", req(dgst.String(), 10, frame(10), []byte("abc"))},
		{"ends before the last frame", req(dgst.String(), 10, frame(3), []byte("abc"))},
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
	bs := newBlobStreams()
	defer bs.close()
	data, good := randomBlob(t, 1000)
	if err := bs.send(t.Context(), addr, good, 1000, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// FuzzBlobStream feeds arbitrary bytes after the magic to a receiver: it
// must neither panic nor keep anything that does not match its digest.
func FuzzBlobStream(f *testing.F) {
	data := []byte("fuzzed blob")
	dgst := digest.FromBytes(data)
	good := binary.BigEndian.AppendUint16(nil, uint16(len(dgst.String())))
	good = append(good, dgst.String()...)
	good = binary.BigEndian.AppendUint64(good, uint64(len(data)))
	good = binary.BigEndian.AppendUint32(good, uint32(len(data)))
	good = append(good, data...)
	good = binary.BigEndian.AppendUint32(good, 0)
	f.Add(good)
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 1, 2, 3})
	root := f.TempDir()
	store, err := storage.NewFS(storage.FSConfig{Root: root})
	if err != nil {
		f.Fatal(err)
	}
	srv := NewServer(nil, store, nil)
	f.Fuzz(func(t *testing.T, input []byte) {
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
		err := store.Walk(t.Context(), func(d digest.Digest, _ int64) error {
			return storage.Verify(t.Context(), store, d)
		})
		if err != nil {
			t.Fatalf("stored a blob that does not verify: %v", err)
		}
	})
}

// TestBlobStreamReceiverRestarts: a pooled connection the receiver has
// closed (it restarted) is noticed before a copy starts on it.
func TestBlobStreamReceiverRestarts(t *testing.T) {
	store := newStore(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) (stop func()) {
		srv := grpc.NewServer()
		done := make(chan struct{})
		go func() { Serve(ln, srv, NewServer(nil, store, nil), nil); close(done) }()
		return func() { srv.Stop(); ln.Close(); <-done }
	}
	stop := serve(ln)
	bs := newBlobStreams()
	defer bs.close()
	for i := range 2 {
		data, dgst := randomBlob(t, 1000)
		if err := bs.send(t.Context(), addr, dgst, 1000, bytes.NewReader(data)); err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if i == 0 {
			// Restart the receiver on the same address; the sender holds
			// a pooled connection to the old one.
			stop()
			if ln, err = net.Listen("tcp", addr); err != nil {
				t.Fatal(err)
			}
			stop = serve(ln)
		}
	}
	stop()
}
