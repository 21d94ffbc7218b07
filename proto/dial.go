package proto

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	}
}

// ServerOptions are the server options of every georeg gRPC server. They
// carry no credentials: a node's gRPC shares its port with the blob stream,
// so TLS is terminated by the listener (see ServerTLS) before the two are
// told apart.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes)}
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
