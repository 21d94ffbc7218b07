package chaos

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/tlsconf"
)

func TestWriteCredentials(t *testing.T) {
	dir := t.TempDir()
	m, err := Plan(dir, UpConfig{Regions: []string{"westus", "eastus"}, Zones: 2, Port: 5000, Regiond: "/r", Trafficmgr: "/t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeCredentials(m); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, TLSDir)
	modes := map[string]os.FileMode{
		"ca.crt": 0o644, "ca.key": 0o600, "georeg.crt": 0o644, "georeg.key": 0o600,
		"trafficmgr.crt": 0o644, "trafficmgr.key": 0o600,
	}
	for _, n := range m.Nodes() {
		modes[certName(n)+".crt"], modes[certName(n)+".key"] = 0o644, 0o600
		// Every node's command line names files that load.
		args := tlsArgs(dir, n)
		if _, err := tlsconf.Load(tlsconf.Files{Cert: args["--tls-cert"], Key: args["--tls-key"], CA: args["--tls-ca"]}); err != nil {
			t.Errorf("%s: %v", n.Name(), err)
		}
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(tlsDir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	keyFile := filepath.Join(dir, GossipKeyFile)
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("gossip key: %v %v, want mode 0600", fi, err)
	}
	if _, err := members.ReadKeyFile(keyFile); err != nil {
		t.Error(err)
	}
	if cfg, err := ClientTLS(dir); err != nil || cfg == nil || len(cfg.Certificates) != 1 {
		t.Errorf("ClientTLS: %v, %v", cfg, err)
	}
	if cfg, err := ClientTLS(t.TempDir()); cfg != nil || err != nil {
		t.Errorf("ClientTLS of a mesh without credentials: %v, %v; want nil, nil", cfg, err)
	}
	// Written again (mesh up in the same directory), the CA and the
	// gossip key stay: clients that trust the CA keep trusting it.
	before, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	key, _ := os.ReadFile(keyFile)
	if err := writeCredentials(m); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	key2, _ := os.ReadFile(keyFile)
	if !bytes.Equal(before, after) || !bytes.Equal(key, key2) {
		t.Error("writing the credentials again replaced the CA or the gossip key")
	}
}
