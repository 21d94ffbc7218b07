//go:build unix

package region

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// alive reports whether an idle connection is still open at the other end:
// a receiver that restarted or timed it out has closed it, and a copy
// started on it would fail after its first bytes. It peeks at the socket
// without blocking; the receiver never sends on an idle connection, so
// anything there (data, an end of stream, an error) means it is unusable.
func alive(c net.Conn) bool {
	// A TLS connection is checked on its socket: TLS sends nothing on an
	// idle connection either once the handshake's messages are read, and a
	// dead receiver shows there as on any TCP connection.
	for {
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = errors.Is(rerr, unix.EAGAIN)
		return true
	})
	return err == nil && open
}
