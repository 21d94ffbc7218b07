package security

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
	"github.com/georeg/georeg/zone"
)

// stranger is a way to connect without the cluster's certificate.
type stranger struct {
	name string
	// tls is nil for plaintext.
	tls *tls.Config
}

// strangers returns the ways of connecting that must all be refused: in
// the clear; over TLS trusting the mesh's CA but offering no certificate;
// and offering a node certificate of another CA.
func strangers(t *testing.T, dir string) []stranger {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, chaos.TLSDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("the mesh's ca.crt holds no certificate")
	}
	other, err := tlsconf.NewCA(tlsconf.CAConfig{Name: "not the mesh's CA"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := other.Issue(tlsconf.CertConfig{Name: "westus-1", Role: tlsconf.RoleNode})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return []stranger{
		{"plaintext", nil},
		{"no certificate", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}},
		{"another CA's certificate", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{pair}}},
	}
}

// state is a node's GET /_georeg/state and /_georeg/status.
func state(t *testing.T, ctx context.Context, c *ociclient.Client, httpAddr string) (zone.State, zone.Status) {
	t.Helper()
	var st zone.State
	var status zone.Status
	for path, v := range map[string]any{"/_georeg/state": &st, "/_georeg/status": &status} {
		_, body, err := c.Do(ctx, http.MethodGet, "http://"+httpAddr, path, nil, nil, http.StatusOK)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatal(err)
		}
	}
	return st, status
}

func dialGRPC(t *testing.T, addr string, s stranger) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if s.tls != nil {
		creds = credentials.NewTLS(s.tls)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// wantRefused fails t unless err is the failure of a connection the server
// would not complete.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded", what)
		return
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable {
		t.Errorf("%s: %v, want the connection refused (Unavailable)", what, err)
	}
}

// lie sends one blob over the blob stream protocol on c: a request naming
// claimed, then data (which does not hash to it) in a frame with a correct
// CRC, then the frame that vouches for it. It returns the receiver's status
// byte.
func lie(c net.Conn, claimed digest.Digest, data []byte) (byte, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	d := claimed.String()
	msg := []byte(region.BlobStreamMagic)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(d)))
	msg = append(msg, d...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(data)))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(data)))
	msg = binary.BigEndian.AppendUint32(msg, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	msg = append(msg, data...)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	var hdr [3]byte
	if _, err := io.ReadFull(bufio.NewReader(c), hdr[:]); err != nil {
		return 0, err
	}
	return hdr[0], nil
}

// dialerLayer is a raft.StreamLayer that only dials, with cfg (nil:
// plaintext), for a transport that sends RPCs and serves none.
type dialerLayer struct {
	net.Listener
	cfg *tls.Config
}

func (d dialerLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if d.cfg == nil {
		return net.DialTimeout("tcp", string(addr), timeout)
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), d.cfg)
}

// TestUnauthenticatedPeers: from a process without the cluster's
// certificate or gossip key, Zone.Apply, a control call, the blob stream,
// a Raft RPC and a gossip join each fail; with the operator's certificate
// only the control plane answers and forged blob bytes are refused after
// hashing. Nothing is stored: the
// node's metadata, Raft term, blobs and members are as before. Then a
// client pushes through the API the blob whose digest the blob stream
// frame claimed, and reads back its own bytes: a frame from an
// unauthenticated peer is never served.
func TestUnauthenticatedPeers(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1", "--no-trafficmgr")
	ctx := t.Context()
	if err := m.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mf, err := chaos.LoadMesh(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	node := mf.Regions[0].Zones[0]
	addr := func(purpose string) string { return "127.0.0.1:" + strconv.Itoa(node.Ports[purpose]) }
	c := m.Client(10 * time.Second)
	// The node writes a few entries of its own as it starts (the control
	// plane's): take the state once it has stopped moving.
	before, statusBefore := state(t, ctx, c, node.HTTP)
	for deadline := time.Now().Add(20 * time.Second); ; {
		time.Sleep(time.Second)
		st, status := state(t, ctx, c, node.HTTP)
		if st.AppliedIndex == before.AppliedIndex && st.Meta == before.Meta {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's state still moves: applied %d, then %d", before.AppliedIndex, st.AppliedIndex)
		}
		before, statusBefore = st, status
	}

	// The bytes a client will push, and the bytes an attacker sends under
	// their digest.
	genuine := ociclient.RandomBytes(1, 64<<10)
	claimed := digest.FromBytes(genuine)
	forged := ociclient.RandomBytes(2, 64<<10)
	const repo = "security/target"
	cmd, err := meta.Encode(meta.LinkBlob{Repo: repo, Digest: claimed, Size: int64(len(forged))})
	if err != nil {
		t.Fatal(err)
	}
	const hugeTerm = 1 << 40

	for _, s := range strangers(t, m.Dir) {
		t.Run(s.name, func(t *testing.T) {
			conn := dialGRPC(t, addr("grpc"), s)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := zonepb.NewZoneClient(conn).Apply(cctx, &zonepb.ApplyRequest{Command: cmd})
			wantRefused(t, "Zone.Apply", err)
			_, err = controlpb.NewControlClient(conn).CreateWebhook(cctx, &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{
				Name: "intruder", Uri: "http://127.0.0.1:9/", Actions: []string{"push"},
			}})
			wantRefused(t, "Control.CreateWebhook", err)

			// The blob stream, on the same port.
			var bc net.Conn
			if s.tls == nil {
				bc, err = net.DialTimeout("tcp", addr("grpc"), 5*time.Second)
			} else {
				cfg := s.tls.Clone()
				cfg.NextProtos = []string{"georeg-blob"}
				bc, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr("grpc"), cfg)
			}
			if err == nil {
				var st byte
				st, err = lie(bc, claimed, forged)
				bc.Close()
				if err == nil {
					err = fmt.Errorf("the receiver answered status %d", st)
				}
			}
			if err == nil {
				t.Error("the blob stream took a copy")
			}

			// A vote request of a huge term: were it heard, the node
			// would step up to that term.
			trans := raft.NewNetworkTransport(dialerLayer{Listener: newDummyListener(t), cfg: s.tls}, 1, 5*time.Second, io.Discard)
			defer trans.Close()
			var resp raft.RequestVoteResponse
			err = trans.RequestVote("westus-1", raft.ServerAddress(addr("raft")), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("127.0.0.1:9")},
				Term:      hugeTerm, LastLogIndex: hugeTerm, LastLogTerm: hugeTerm,
			}, &resp)
			if err == nil {
				t.Errorf("Raft RequestVote answered: %+v", resp)
			}
		})
	}

	t.Run("gossip", func(t *testing.T) {
		port := freeport.TCPAndUDP(t, 2)
		var lists []*members.List
		for i, keys := range [][][]byte{nil, {make([]byte, 32)}} {
			l, err := members.Start(ctx, members.Config{
				Self:     members.Member{ID: fmt.Sprintf("intruder-%d", i+1), Region: "westus", Zone: 9 + i, HTTP: "127.0.0.1:9", GRPC: "127.0.0.1:9", Raft: "127.0.0.1:9"},
				BindAddr: "127.0.0.1:" + strconv.Itoa(port[i]),
				Join:     []string{addr("gossip")},
				Keys:     keys,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Leave(time.Second)
			lists = append(lists, l)
		}
		// Joins are retried every 100 ms to 2 s: give them a few tries.
		time.Sleep(3 * time.Second)
		for _, l := range lists {
			if n := len(l.Alive()); n != 1 {
				t.Errorf("%s sees %d members: %v", l.Self().ID, n, l.Alive())
			}
		}
	})

	// The operator's certificate (the CLI's) reaches the control plane,
	// but may not commit metadata, and its blob copies are hashed.
	t.Run("operator", func(t *testing.T) {
		cli, err := chaos.ClientTLS(m.Dir)
		if err != nil || cli == nil {
			t.Fatalf("the CLI's certificate: %v", err)
		}
		conn := dialGRPC(t, addr("grpc"), stranger{"operator", cli})
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := controlpb.NewControlClient(conn).ListWebhooks(cctx, &controlpb.ListWebhooksRequest{}); err != nil {
			t.Errorf("Control.ListWebhooks: %v", err)
		}
		_, err = zonepb.NewZoneClient(conn).Apply(cctx, &zonepb.ApplyRequest{Command: cmd})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Zone.Apply with the operator's certificate: %v, want PermissionDenied", err)
		}
		cfg := cli.Clone()
		cfg.NextProtos = []string{"georeg-blob"}
		bc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr("grpc"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer bc.Close()
		if st, err := lie(bc, claimed, forged); err != nil || st == 0 {
			t.Errorf("the forged copy from the operator: status %d, %v; want it refused after hashing", st, err)
		}
	})

	after, statusAfter := state(t, ctx, c, node.HTTP)
	if after.Meta != before.Meta || after.AppliedIndex != before.AppliedIndex {
		t.Errorf("metadata changed: %s at %d, then %s at %d", before.Meta, before.AppliedIndex, after.Meta, after.AppliedIndex)
	}
	if len(after.Blobs) != len(before.Blobs) {
		t.Errorf("blobs: %v, then %v", before.Blobs, after.Blobs)
	}
	if statusAfter.Raft.Term != statusBefore.Raft.Term || statusAfter.Raft.Term >= hugeTerm {
		t.Errorf("Raft term %d, then %d", statusBefore.Raft.Term, statusAfter.Raft.Term)
	}
	if fmt.Sprint(statusAfter.Members) != fmt.Sprint(statusBefore.Members) {
		t.Errorf("members %v, then %v", statusBefore.Members, statusAfter.Members)
	}
	out, err := m.Georeg(ctx, "webhook", "list", "--dir", m.Dir, "--json")
	if err != nil {
		t.Fatalf("webhook list with the CLI's certificate: %v\n%s", err, out)
	}
	var hooks []any
	if err := json.Unmarshal(out, &hooks); err != nil || len(hooks) != 0 {
		t.Errorf("webhooks: %s (%v), want none", out, err)
	}

	// The digest the frames claimed is unknown, and once a client pushes
	// it, the node serves the client's bytes.
	if ok, err := c.HasBlob(ctx, "http://"+node.HTTP, repo, claimed); err != nil || ok {
		t.Fatalf("HEAD %s before any push: %v, %v", claimed, ok, err)
	}
	if err := c.PushBlob(ctx, "http://"+node.HTTP, repo, ociclient.NewBlob("application/octet-stream", genuine)); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetBlob(ctx, "http://"+node.HTTP, repo, claimed)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(got) != claimed {
		t.Fatalf("GET %s served bytes of digest %s", claimed, digest.FromBytes(got))
	}
}

// newDummyListener returns a loopback listener nobody dials: the raft
// transport of the tests above sends RPCs and serves none.
func newDummyListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
