package region

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"

	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/proto/controlpb"
)

// PeerAuthOptions are the gRPC server options of a zone port whose
// listener terminates mutual TLS (see zone.Config.TLS): they hand each
// call the peer's verified certificate and let a call through only if the
// peer's role may make it. The control plane takes operators (the georeg
// CLI's certificate) and nodes; every other service (the zone protocol,
// replication) takes nodes only, so the operator's certificate cannot
// commit a metadata command or feed a replica.
func PeerAuthOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(listenerTLS{}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := authorizePeer(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := authorizePeer(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	}
}

// mayCall reports whether a peer of role may call method ("/pkg.Service/Method").
func mayCall(role, method string) bool {
	switch role {
	case tlsconf.RoleNode:
		return true
	case tlsconf.RoleOperator:
		return strings.HasPrefix(method, "/"+controlpb.Control_ServiceDesc.ServiceName+"/")
	}
	return false
}

func authorizePeer(ctx context.Context, method string) error {
	role := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			role = tlsconf.Role(ti.State)
		}
	}
	if !mayCall(role, method) {
		return status.Errorf(codes.PermissionDenied, "a certificate of role %q may not call %s", role, method)
	}
	return nil
}

// tlsConn returns the TLS connection under c (which cmux may have
// wrapped), or nil when c is not one.
func tlsConn(c net.Conn) *tls.Conn {
	if mc, ok := c.(*cmux.MuxConn); ok {
		c = mc.Conn
	}
	tc, _ := c.(*tls.Conn)
	return tc
}

// listenerTLS is the gRPC transport credentials of a server whose listener
// already did the TLS handshake: it performs none, and reports the
// connection's TLS state as the call's AuthInfo.
type listenerTLS struct{}

var errNotTLS = errors.New("region: a zone port connection without TLS")

func (listenerTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc := tlsConn(c)
	if tc == nil {
		return nil, nil, errNotTLS
	}
	return c, credentials.TLSInfo{
		State:          tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (listenerTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("region: listenerTLS is for servers")
}

func (listenerTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (l listenerTLS) Clone() credentials.TransportCredentials { return l }

func (listenerTLS) OverrideServerName(string) error { return nil }
