package region

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/georeg/georeg/base/tlsconf"
)

// handshakeTimeout bounds a TLS handshake on the Raft port: a peer that
// connects and says nothing holds a goroutine no longer than this.
const handshakeTimeout = 10 * time.Second

// tlsStreamLayer is a raft.StreamLayer over mutual TLS: it accepts only
// connections from holders of a node certificate of the cluster, and
// dials its peers verifying theirs. Handshakes run on their own
// goroutines, so a peer that stalls one does not hold up the others.
type tlsStreamLayer struct {
	ln     net.Listener
	client *tls.Config
	log    *slog.Logger
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// newTLSStreamLayer listens on addr.
func newTLSStreamLayer(addr string, cfg *tlsconf.Config, log *slog.Logger) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &tlsStreamLayer{ln: ln, client: cfg.Client, log: log, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop(cfg.Server)
	return s, nil
}

func (s *tlsStreamLayer) acceptLoop(server *tls.Config) {
	backoff := time.Duration(0)
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			s.Close()
			return
		}
		if err != nil {
			// Out of file descriptors and the like: wait and try again,
			// as net/http's servers do, rather than leave Raft deaf.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("raft: accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			continue
		}
		backoff = 0
		go s.handshake(tls.Server(c, server))
	}
}

func (s *tlsStreamLayer) handshake(c *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	err := c.HandshakeContext(ctx)
	if err == nil {
		if role := tlsconf.Role(c.ConnectionState()); role != tlsconf.RoleNode {
			err = fmt.Errorf("certificate of a %q, not a node", role)
		}
	}
	if err != nil {
		s.log.Warn("raft: refused a connection", "from", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	select {
	case s.conns <- c:
	case <-s.done:
		c.Close()
	}
}

// Accept returns the next authenticated connection.
func (s *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening.
func (s *tlsStreamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

// Addr is the address peers reach this node at.
func (s *tlsStreamLayer) Addr() net.Addr { return s.ln.Addr() }

// Dial connects to a peer and completes the handshake within timeout.
func (s *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(address))
}
