package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// issue returns the Config of a process holding a certificate of ca.
func issue(t *testing.T, ca *CA, name, role string) *Config {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(CertConfig{Name: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := New(pair, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA(CAConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// handshake runs one TLS handshake between server and client over a pipe
// and returns the role the server saw and each side's error.
func handshake(server, client *tls.Config, serverName string) (role string, serr, cerr error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(a, server)
		s.SetDeadline(time.Now().Add(5 * time.Second))
		serr = s.Handshake()
		role = Role(s.ConnectionState())
		if serr != nil {
			a.Close()
		} else {
			// TLS 1.3 clients learn of a refused certificate on
			// their first read.
			s.Write([]byte("x"))
		}
	}()
	c := tls.Client(b, withName(client, serverName))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = io.ReadFull(c, make([]byte, 1))
	}
	if cerr != nil {
		b.Close()
	}
	<-done
	return role, serr, cerr
}

func withName(c *tls.Config, name string) *tls.Config {
	c = c.Clone()
	c.ServerName = name
	return c
}

func TestHandshake(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	node := issue(t, ca, "westus-1", RoleNode)
	peer := issue(t, ca, "westus-2", RoleNode)
	cli := issue(t, ca, "georeg", RoleOperator)
	stranger := issue(t, other, "westus-1", RoleNode)
	noCert := withName(peer.Client, "")
	noCert.Certificates = nil
	old := peer.Client.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name     string
		server   *tls.Config
		client   *tls.Config
		host     string
		ok       bool
		wantRole string
	}{
		{"peer to node", node.Server, peer.Client, "127.0.0.1", true, RoleNode},
		{"by name localhost", node.Server, peer.Client, "localhost", true, RoleNode},
		{"operator to node", node.Server, cli.Client, "127.0.0.1", true, RoleOperator},
		{"host not in the certificate", node.Server, peer.Client, "10.1.2.3", false, ""},
		{"client of another CA", node.Server, stranger.Client, "127.0.0.1", false, ""},
		{"server of another CA", stranger.Server, peer.Client, "127.0.0.1", false, ""},
		{"client without a certificate", node.Server, noCert, "127.0.0.1", false, ""},
		{"TLS 1.2", node.Server, old, "127.0.0.1", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role, serr, cerr := handshake(tt.server, tt.client, tt.host)
			if ok := serr == nil && cerr == nil; ok != tt.ok {
				t.Fatalf("handshake ok = %v (server: %v, client: %v), want %v", ok, serr, cerr, tt.ok)
			}
			if tt.ok && role != tt.wantRole {
				t.Errorf("role = %q, want %q", role, tt.wantRole)
			}
		})
	}
}

func TestIssueHosts(t *testing.T) {
	ca := newCA(t)
	certPEM, _, err := ca.Issue(CertConfig{Name: "n", Hosts: []string{"10.0.0.7", "node7.example", "127.0.0.1", ""}})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "10.0.0.7", "node7.example"} {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%s): %v", h, err)
		}
	}
	if len(cert.IPAddresses) != 3 || len(cert.DNSNames) != 2 {
		t.Errorf("SANs: %v %v, want 3 IPs and 2 names without duplicates", cert.IPAddresses, cert.DNSNames)
	}
	if !cert.NotAfter.After(time.Now().Add(365*24*time.Hour)) || cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("NotAfter %v: want about DefaultValidity, within the CA's %v", cert.NotAfter, ca.Cert.NotAfter)
	}
	if _, _, err := ca.Issue(CertConfig{}); err == nil {
		t.Error("Issue without a Name succeeded")
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, "tls", name) }
	if err := WriteFile(p("ca.crt"), ca.CertPEM(), false); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p("ca.key"), keyPEM, true); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(p("ca.crt"), p("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, nodeKey, err := loaded.Issue(CertConfig{Name: "westus-1", Role: RoleNode})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p("westus-1.crt"), certPEM, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p("westus-1.key"), nodeKey, true); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "westus-1.key": 0o600} {
		fi, err := os.Stat(p(name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	files := Files{Cert: p("westus-1.crt"), Key: p("westus-1.key"), CA: p("ca.crt")}
	cfg, err := Load(files)
	if err != nil {
		t.Fatal(err)
	}
	// The certificate issued by the reloaded CA is trusted by the original.
	if _, serr, cerr := handshake(cfg.Server, issue(t, ca, "x", RoleNode).Client, "localhost"); serr != nil || cerr != nil {
		t.Errorf("handshake with loaded files: %v, %v", serr, cerr)
	}
	tests := []struct {
		name  string
		files Files
		want  error
	}{
		{"no CA", Files{Cert: files.Cert, Key: files.Key}, nil},
		{"key is not the certificate's", Files{Cert: files.Cert, Key: p("ca.key"), CA: files.CA}, nil},
		{"CA file without a certificate", Files{Cert: files.Cert, Key: files.Key, CA: files.Key}, ErrNoCertificate},
		{"missing file", Files{Cert: p("nope.crt"), Key: files.Key, CA: files.CA}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.files)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Load: %v, want an error wrapping %v", err, tt.want)
			}
		})
	}
	if _, err := LoadCA(files.Cert, files.Key); err == nil {
		t.Error("LoadCA accepted a node certificate")
	}
}

// twoNodes returns the Configs of two nodes of a new cluster.
func twoNodes(b *testing.B) (srv, cli *Config) {
	ca, err := NewCA(CAConfig{})
	if err != nil {
		b.Fatal(err)
	}
	mk := func(name string) *Config {
		c, k, err := ca.Issue(CertConfig{Name: name, Role: RoleNode})
		if err != nil {
			b.Fatal(err)
		}
		pair, _ := tls.X509KeyPair(c, k)
		cfg, _ := New(pair, ca.CertPEM())
		return cfg
	}
	return mk("a"), mk("b")
}

// BenchmarkHandshake measures one mutual TLS 1.3 handshake (both sides, on
// one goroutine each) over a pipe.
func BenchmarkHandshake(b *testing.B) {
	srv, cli := twoNodes(b)
	for b.Loop() {
		if _, serr, cerr := handshake(srv.Server, cli.Client, "127.0.0.1"); serr != nil || cerr != nil {
			b.Fatal(serr, cerr)
		}
	}
}

// BenchmarkStream sends a 64 MiB file over loopback TCP to a reader that
// hashes every byte, as a node serves a blob to a client: "plain" with
// sendfile (io.CopyN of the file to the socket), "tls" through this
// package's mutual TLS 1.3. Both in one run, so their ratio is the
// ceiling of what TLS can cost a pull on this machine, with server and
// client on its cores.
//
//	go test -run '^$' -bench Stream -benchtime 5x ./base/tlsconf/
func BenchmarkStream(b *testing.B) {
	const size = 64 << 20
	file := filepath.Join(b.TempDir(), "blob")
	if err := os.WriteFile(file, make([]byte, size), 0o600); err != nil {
		b.Fatal(err)
	}
	srv, cli := twoNodes(b)
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[secure]
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					if secure {
						c = tls.Server(c, srv.Server)
					}
					go func() {
						defer c.Close()
						f, err := os.Open(file)
						if err != nil {
							return
						}
						defer f.Close()
						io.CopyN(c, f, size)
					}()
				}
			}()
			b.SetBytes(size)
			for b.Loop() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if secure {
					c = tls.Client(c, withName(cli.Client, "127.0.0.1"))
				}
				h := sha256.New()
				n, err := io.CopyBuffer(h, c, make([]byte, 32<<10))
				c.Close()
				if err != nil || n != size {
					b.Fatalf("read %d of %d bytes: %v", n, size, err)
				}
			}
		})
	}
}
