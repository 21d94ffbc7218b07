package proto

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageBytes bounds a message on any georeg link. A forwarded metadata
// command carries a manifest (up to the registry's manifest limit) in JSON,
// so gRPC's default of 4 MiB is too small.
const MaxMessageBytes = 64 << 20

// DialOptions are the client options of every link between georeg nodes.
// Reconnection backs off to at most one second, not gRPC's default two
// minutes: a zone or region that restarts is reachable again as soon as it
// listens. With tlsConfig (a mutual TLS client configuration, see
// base/tlsconf) the links are TLS and the server must prove it holds a
// certificate of the cluster; nil dials in plaintext.
//
// An idle link is pinged every KeepaliveTime and dropped when a ping goes
// unanswered for KeepaliveTimeout: a real partition sends no reset, and a
// connection whose peer vanished (or whose own address went away with a
// network, as a container's does when disconnected) would otherwise hang
// until TCP gives up, some fifteen minutes later, long after the network
// healed.
func DialOptions(tlsConfig *tls.Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if tlsConfig != nil {
		creds = credentials.NewTLS(tlsConfig)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout, PermitWithoutStream: true}),
	}
}

// Keepalive of the links between nodes (DialOptions). The timeout is
// generous: a node starved of CPU must not have its links cut for answering
// a ping late.
const (
	KeepaliveTime    = 15 * time.Second
	KeepaliveTimeout = 10 * time.Second
)

// ServerOptions are the server options of every georeg gRPC server. They
// carry no credentials: a node's gRPC shares its port with the blob stream,
// so TLS is terminated by the listener (see ServerTLS) before the two are
// told apart.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		// Accept the clients' keepalive pings (DialOptions); gRPC's
		// default answers pings more often than every 5 minutes with
		// GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2, PermitWithoutStream: true}),
	}
}

// ALPN protocol names of the zone port, where gRPC and the blob stream
// share a TLS listener.
const (
	// ALPNGRPC is HTTP/2, which gRPC's TLS credentials insist on.
	ALPNGRPC = "h2"
	// ALPNBlobStream names the blob stream protocol.
	ALPNBlobStream = "georeg-blob"
)

// ServerTLS returns a copy of server (a mutual TLS server configuration)
// for a listener that serves gRPC and the blob stream.
func ServerTLS(server *tls.Config) *tls.Config {
	c := server.Clone()
	c.NextProtos = []string{ALPNGRPC, ALPNBlobStream}
	return c
}
