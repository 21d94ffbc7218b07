package proto

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// ErrPoolClosed is returned by Pool.Get after Pool.Close.
var ErrPoolClosed = errors.New("proto: connection pool closed")

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Dial, when set, makes the network connections (the local mesh's
	// simulated WAN); nil dials directly.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, is the mutual TLS client configuration of the
	// connections; nil connects in plaintext.
	TLS *tls.Config
	// WindowBytes, when positive, is the flow-control window of each
	// stream (the connection's is twice that) instead of gRPC's, which
	// starts at 64 KiB and grows with its bandwidth-delay estimate: on a
	// long link that ramp costs a bulk transfer seconds.
	WindowBytes int32
}

// Pool keeps one gRPC client connection per address, made with
// DialOptions, for a node's links to its peers: zones of its region, other
// regions, the home region's control plane. Its methods are safe for
// concurrent use.
type Pool struct {
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// NewPool returns an empty pool.
func NewPool(cfg PoolConfig) *Pool {
	opts := DialOptions(cfg.TLS)
	if cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Dial))
	}
	if cfg.WindowBytes > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(cfg.WindowBytes), grpc.WithInitialConnWindowSize(2*cfg.WindowBytes))
	}
	return &Pool{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to addr, making it on first use. Making one
// does not touch the network: it connects on its first call. A connection
// that fails reconnects by itself, backing off as DialOptions says, so it
// stays in the pool; one that was shut down never recovers, so Get
// replaces it.
func (p *Pool) Get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	if c, ok := p.conns[addr]; ok && c.GetState() != connectivity.Shutdown {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("proto: connect to %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// Close closes every connection of the pool; Get fails from then on.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	clear(p.conns)
	return errors.Join(errs...)
}

// Wake ends the backoff of the connection to addr, if one is waiting to
// reconnect, so that it tries at once. A fail-fast call to a peer that was
// down fails until the backoff runs out even when the peer listens again;
// a caller that has reason to believe it is back (gossip says so, or the
// call matters) wakes the connection and retries with grpc.WaitForReady.
func (p *Pool) Wake(addr string) {
	p.mu.Lock()
	c := p.conns[addr]
	p.mu.Unlock()
	if c != nil {
		c.ResetConnectBackoff()
	}
}
