//go:build !linux

package trafficmgr

import (
	"context"
	"net"
)

// listen binds addr. Only Linux shares listeners between an old and a new
// traffic manager (SO_REUSEPORT with steering); elsewhere a restart
// refuses connections for a moment.
func listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

func takeOver(net.Listener) error { return nil }
