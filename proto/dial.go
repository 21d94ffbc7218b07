package proto

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// MaxMessageBytes bounds a message on any georeg link. A forwarded metadata
// command carries a manifest (up to the registry's manifest limit) in JSON,
// so gRPC's default of 4 MiB is too small.
const MaxMessageBytes = 64 << 20

// DialOptions are the client options of every link between georeg nodes.
// Reconnection backs off to at most one second, not gRPC's default two
// minutes: a zone or region that restarts is reachable again as soon as it
// listens.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}
}

// ServerOptions are the server options of every georeg gRPC server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes)}
}
