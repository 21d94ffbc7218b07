//go:build linux

package trafficmgr

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listen binds addr with SO_REUSEPORT, so that a new traffic manager can
// bind the same listeners while the old one still serves: the launcher's
// rolling restart starts the new process, waits until it serves, then
// stops the old one, and no client sees a refused connection.
func listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(ctx, "tcp", addr)
}

// takeOver makes the kernel hand every new connection on ln's port to ln
// rather than spreading them over every socket bound with SO_REUSEPORT.
// Without it, connections the kernel gave to the old process but that it
// had not accepted yet would be reset when it closes its listener.
//
// The steering program returns socket index 1, which is the newer socket
// while two processes share the port; with one socket the index is out of
// range and the kernel falls back to its hash, which has only that socket
// to choose.
func takeOver(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	})
	if err != nil {
		return err
	}
	return serr
}
