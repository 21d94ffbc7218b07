package zone

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// batchBytes is how much a batching connection gathers before it writes.
// crypto/tls seals at most 16 KiB per record and hands each record to the
// socket with a system call of its own; a blob download over HTTPS then
// costs a system call, and a wake-up of the reader, per 16 KiB, where
// plain HTTP hands the file to sendfile. Gathered into 256 KiB writes,
// HTTPS downloads from a 3-zone mesh cost its nodes 14 % less CPU per GiB
// (docs/measured.md).
const batchBytes = 256 << 10

// batchListener wraps every connection it accepts in a batchConn, for a
// TLS listener on top of it.
type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c}, nil
}

// batchConn is the transport under a TLS connection. Between batch and
// unbatch its writes are gathered and sent batchBytes at a time; otherwise
// (the handshake, small answers, alerts) they go straight through. The
// bytes and their order are unchanged either way.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte // non-nil while batching
}

// Write sends p, or gathers it while batching. An error of the socket is
// that of the write that found it; the connection is useless after it.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) < batchBytes {
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// batch starts gathering writes.
func (c *batchConn) batch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		// One record more than batchBytes: a write sends the buffer
		// once it holds batchBytes, and a TLS record is at most 16 KiB
		// and its overhead.
		c.buf = make([]byte, 0, batchBytes+17<<10)
	}
}

// unbatch sends what was gathered and lets later writes through.
func (c *batchConn) unbatch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return nil
	}
	err := c.flushLocked()
	c.buf = nil
	return err
}

// flushLocked sends what was gathered. Close does not: a connection
// closed in the middle of an answer has lost it anyway, and a flush could
// wait on a client that stopped reading.
func (c *batchConn) flushLocked() error {
	b := c.buf
	c.buf = b[:0]
	if len(b) == 0 {
		return nil
	}
	_, err := c.Conn.Write(b)
	return err
}

// batchConnKey is the context key of a request's batchConn.
type batchConnKey struct{}

// withBatchConn is an http.Server's ConnContext: it makes the batchConn
// under a TLS connection known to the requests served on it.
func withBatchConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		if bc, ok := tc.NetConn().(*batchConn); ok {
			return context.WithValue(ctx, batchConnKey{}, bc)
		}
	}
	return ctx
}

// batched serves each request with the writes of its TLS connection
// gathered (see batchBytes): for a data endpoint, whose every answer is a
// blob. Without a batchConn under the request it is h.
func batched(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bc, _ := r.Context().Value(batchConnKey{}).(*batchConn)
		if bc == nil {
			h.ServeHTTP(w, r)
			return
		}
		bc.batch()
		defer bc.unbatch()
		h.ServeHTTP(w, r)
		// What net/http still buffers goes out after the handler returns,
		// straight through once unbatched, after the gathered bytes.
	})
}
