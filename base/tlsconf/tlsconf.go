package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Roles a certificate can name in its Organizational Unit.
const (
	// RoleNode is a zone node (regiond).
	RoleNode = "node"
	// RoleOperator is the operator's CLI (georeg).
	RoleOperator = "operator"
	// RoleTrafficmgr is the traffic manager.
	RoleTrafficmgr = "trafficmgr"
)

// DefaultValidity is how long an issued certificate or a CA stays valid
// when its config leaves it zero.
const DefaultValidity = 5 * 365 * 24 * time.Hour

// ErrNoCertificate means a PEM file held no certificate or key.
var ErrNoCertificate = errors.New("tlsconf: no PEM certificate or key")

// CA is a certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CAConfig configures NewCA.
type CAConfig struct {
	// Name is the CA's common name (default "georeg cluster CA").
	Name string
	// Validity is how long the CA is valid (default DefaultValidity).
	Validity time.Duration
	// Now is the start of validity (default time.Now).
	Now time.Time
}

// NewCA creates a CA with a fresh key.
func NewCA(cfg CAConfig) (*CA, error) {
	if cfg.Name == "" {
		cfg.Name = "georeg cluster CA"
	}
	if cfg.Validity == 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Now.IsZero() {
		cfg.Now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cfg.Name},
		// An hour of slack for clocks a little behind the CA's.
		NotBefore:             cfg.Now.Add(-time.Hour),
		NotAfter:              cfg.Now.Add(cfg.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertConfig configures CA.Issue.
type CertConfig struct {
	// Name is the certificate's common name, e.g. "westus-1".
	Name string
	// Role goes in the Organizational Unit (RoleNode, RoleOperator, ...).
	Role string
	// Hosts are the extra IP addresses and DNS names the certificate is
	// valid for; 127.0.0.1, ::1 and localhost are always included, as
	// every process of a local mesh is reached through them.
	Hosts []string
	// Validity is how long the certificate is valid (default
	// DefaultValidity, capped at the CA's own expiry).
	Validity time.Duration
	// Now is the start of validity (default time.Now).
	Now time.Time
}

// Issue returns a new key and a certificate for it signed by the CA, both
// PEM-encoded. The certificate serves and authenticates as a client.
func (ca *CA) Issue(cfg CertConfig) (certPEM, keyPEM []byte, err error) {
	if cfg.Name == "" {
		return nil, nil, errors.New("tlsconf: a certificate needs a Name")
	}
	if cfg.Validity == 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Now.IsZero() {
		cfg.Now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cfg.Name},
		NotBefore:    cfg.Now.Add(-time.Hour),
		NotAfter:     cfg.Now.Add(cfg.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	if cfg.Role != "" {
		tmpl.Subject.OrganizationalUnit = []string{cfg.Role}
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	for _, h := range cfg.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: certificate %s: %w", cfg.Name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: key: %w", err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kder), nil
}

// CertPEM returns the CA's certificate, PEM-encoded: the file every process
// of the cluster is given as its CA.
func (ca *CA) CertPEM() []byte { return pemBlock("CERTIFICATE", ca.Cert.Raw) }

// KeyPEM returns the CA's key, PEM-encoded.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// LoadCA reads a CA written with WriteFile(CertPEM) and KeyPEM.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: load CA: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("tlsconf: load CA: key of type %T cannot sign", pair.PrivateKey)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tlsconf: load CA: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("tlsconf: load CA: %s is not a CA certificate", certFile)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// WriteFile writes data to path, readable by its owner only when private
// (keys) and by everyone otherwise; it creates the directory. It replaces
// the file atomically.
func WriteFile(path string, data []byte, private bool) error {
	mode := os.FileMode(0o644)
	if private {
		mode = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tlsconf: write %s: %w", path, err)
	}
	return nil
}

// Files names the PEM files of one process: its certificate, its key and
// the cluster CA's certificate.
type Files struct {
	Cert, Key, CA string
}

// Enabled reports whether any of the files is set.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Config is the TLS configuration of one process.
type Config struct {
	// Server is for its listeners: TLS 1.3, and a client certificate
	// signed by the CA is required.
	Server *tls.Config
	// Client is for its connections: TLS 1.3, the server's certificate
	// must be signed by the CA and name the address dialled; the
	// process's certificate is offered to the server.
	Client *tls.Config
}

// Load reads the files into a Config. All three files are required.
func Load(f Files) (*Config, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("tlsconf: a certificate, its key and the CA are all required")
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %w", err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %w", err)
	}
	return New(pair, caPEM)
}

// New returns the Config of a process holding pair, in a cluster whose CA
// certificate is caPEM.
func New(pair tls.Certificate, caPEM []byte) (*Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w in the CA file", ErrNoCertificate)
	}
	return &Config{
		Server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		Client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{pair},
			RootCAs:      pool,
		},
	}, nil
}

// Role returns the role named in the Organizational Unit of the peer's
// certificate on a verified connection, or "" when there is none.
func Role(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	if ou := cs.VerifiedChains[0][0].Subject.OrganizationalUnit; len(ou) > 0 {
		return ou[0]
	}
	return ""
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: serial number: %w", err)
	}
	return n, nil
}
