package region

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/georeg/georeg/base/tlsconf"
)

// TestTLSStreamLayer: Raft's transport accepts only nodes of the cluster.
func TestTLSStreamLayer(t *testing.T) {
	node, operator, stranger := testCluster(t)
	layer, err := newTLSStreamLayer("127.0.0.1:0", node, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	addr := raft.ServerAddress(layer.Addr().String())
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	tests := []struct {
		name   string
		client *tlsconf.Config // nil: plain TCP
		ok     bool
	}{
		{"node", node, true},
		{"operator", operator, false},
		{"other CA", stranger, false},
		{"plain TCP", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c net.Conn
			var err error
			if tt.client == nil {
				c, err = net.Dial("tcp", string(addr))
				if err == nil {
					c.Write([]byte("\x00 an AppendEntries RPC, in the clear"))
				}
			} else {
				from := &tlsStreamLayer{client: tt.client.Client}
				c, err = from.Dial(addr, 5*time.Second)
			}
			if err == nil {
				defer c.Close()
				// The server sends nothing: a read ends in an error when
				// it refused the connection, and times out otherwise.
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				_, rerr := c.Read(make([]byte, 1))
				if ne, ok := rerr.(net.Error); !ok || !ne.Timeout() {
					err = rerr
				}
			}
			if ok := err == nil; ok != tt.ok {
				t.Fatalf("connected: %v (%v), want %v", ok, err, tt.ok)
			}
			select {
			case s := <-accepted:
				s.Close()
				if !tt.ok {
					t.Fatal("the layer accepted it")
				}
				if tc, isTLS := s.(*tls.Conn); !isTLS || tlsconf.Role(tc.ConnectionState()) != tlsconf.RoleNode {
					t.Errorf("accepted %T, want a node's *tls.Conn", s)
				}
			case <-time.After(200 * time.Millisecond):
				if tt.ok {
					t.Fatal("the layer did not accept it")
				}
			}
		})
	}
}

func TestMayCall(t *testing.T) {
	tests := []struct {
		role, method string
		want         bool
	}{
		{tlsconf.RoleNode, "/georeg.zone.v1.Zone/Apply", true},
		{tlsconf.RoleNode, "/georeg.replication.v1.Replication/Offer", true},
		{tlsconf.RoleNode, "/georeg.control.v1.Control/State", true},
		{tlsconf.RoleOperator, "/georeg.control.v1.Control/CreateWebhook", true},
		{tlsconf.RoleOperator, "/georeg.zone.v1.Zone/Apply", false},
		{tlsconf.RoleOperator, "/georeg.replication.v1.Replication/Offer", false},
		{tlsconf.RoleOperator, "/georeg.control.v1.ControlX/State", false},
		{tlsconf.RoleTrafficmgr, "/georeg.control.v1.Control/State", false},
		{"", "/georeg.control.v1.Control/State", false},
	}
	for _, tt := range tests {
		if got := mayCall(tt.role, tt.method); got != tt.want {
			t.Errorf("mayCall(%q, %s) = %v, want %v", tt.role, tt.method, got, tt.want)
		}
	}
}
