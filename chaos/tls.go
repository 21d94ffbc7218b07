package chaos

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/tlsconf"
)

// Files of a mesh's credentials, under its directory. TLSDir holds the
// cluster CA (ca.crt, and ca.key readable by the owner only) and one
// certificate and key per process: <region>-<zone>.crt/.key for the zone
// nodes, trafficmgr.crt/.key, and georeg.crt/.key for the CLI.
const (
	TLSDir = "tls"
	// GossipKeyFile holds the gossip key (members.ReadKeyFile).
	GossipKeyFile = "gossip.key"
	// CLICertName is the file name (without extension) of the CLI's
	// certificate.
	CLICertName = "georeg"
)

// certName is the file name (without extension) of n's certificate.
func certName(n *Node) string {
	if n.Role != "" {
		return n.Role
	}
	return n.Region + "-" + fmt.Sprint(n.Zone)
}

// tlsArgs are the command-line flags that give node n the mesh's
// credentials in dir.
func tlsArgs(dir string, n *Node) map[string]string {
	p := func(name string) string { return filepath.Join(dir, TLSDir, name) }
	return map[string]string{
		"--tls-cert":        p(certName(n) + ".crt"),
		"--tls-key":         p(certName(n) + ".key"),
		"--tls-ca":          p("ca.crt"),
		"--gossip-key-file": filepath.Join(dir, GossipKeyFile),
	}
}

// writeCredentials makes sure m.Dir holds the mesh's CA, gossip key and a
// certificate for every process of m and for the CLI. Existing ones are
// kept, so a mesh started again in the same directory keeps the CA its
// clients may already trust.
func writeCredentials(m *Mesh) error {
	dir := filepath.Join(m.Dir, TLSDir)
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca, err := tlsconf.LoadCA(caCert, caKey)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = tlsconf.NewCA(tlsconf.CAConfig{Name: "georeg local mesh CA"}); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(caKey, keyPEM, true); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(caCert, ca.CertPEM(), false); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("chaos: the mesh's CA: %w", err)
	}
	issue := func(name, role string) error {
		certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
			return nil
		}
		certPEM, keyPEM, err := ca.Issue(tlsconf.CertConfig{Name: name, Role: role})
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		if err := tlsconf.WriteFile(keyFile, keyPEM, true); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		return tlsconf.WriteFile(certFile, certPEM, false)
	}
	for _, n := range m.Processes() {
		role := tlsconf.RoleNode
		if n.Role == RoleTrafficmgr {
			role = tlsconf.RoleTrafficmgr
		}
		if err := issue(certName(n), role); err != nil {
			return err
		}
	}
	if err := issue(CLICertName, tlsconf.RoleOperator); err != nil {
		return err
	}
	keyFile := filepath.Join(m.Dir, GossipKeyFile)
	if _, err := members.ReadKeyFile(keyFile); err != nil {
		key, err := members.NewKey()
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		content := "# gossip keys of this mesh, base64, one a line; the first encrypts (docs/security.md)\n" + key + "\n"
		if err := tlsconf.WriteFile(keyFile, []byte(content), true); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
	}
	return nil
}

// ClientTLS returns the mutual TLS client configuration of the CLI for the
// mesh in dir, or nil when the mesh has no credentials (one started by an
// older georeg).
func ClientTLS(dir string) (*tls.Config, error) {
	p := func(name string) string { return filepath.Join(dir, TLSDir, name) }
	if _, err := os.Stat(p("ca.crt")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	cfg, err := tlsconf.Load(tlsconf.Files{Cert: p(CLICertName + ".crt"), Key: p(CLICertName + ".key"), CA: p("ca.crt")})
	if err != nil {
		return nil, fmt.Errorf("chaos: the CLI's certificate in %s: %w", strings.TrimSuffix(p(""), "/"), err)
	}
	return cfg.Client, nil
}
