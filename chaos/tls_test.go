package chaos

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
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

func TestPlanHTTPS(t *testing.T) {
	m, err := Plan("/m", UpConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000, Regiond: "/r", Trafficmgr: "/t", HTTPS: true})
	if err != nil {
		t.Fatal(err)
	}
	n, tm := &m.Regions[0].Zones[0], m.TrafficManager
	if !m.HTTPS || n.URL() != "https://127.0.0.1:5001" || tm.URL() != "https://127.0.0.1:5000" {
		t.Errorf("HTTPS %v, node %s, traffic manager %s", m.HTTPS, n.URL(), tm.URL())
	}
	if !slices.Contains(n.Argv, "--https") {
		t.Errorf("node argv %v lacks --https", n.Argv)
	}
	if i := slices.Index(tm.Argv, "--tls-cert"); i < 0 || tm.Argv[i+1] != "/m/tls/trafficmgr.crt" {
		t.Errorf("traffic manager argv %v: want --tls-cert /m/tls/trafficmgr.crt", tm.Argv)
	}
	plain, err := Plan("/m", UpConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000, Regiond: "/r", Trafficmgr: "/t"})
	if err != nil {
		t.Fatal(err)
	}
	if n := &plain.Regions[0].Zones[0]; n.URL() != "http://127.0.0.1:5001" || slices.Contains(n.Argv, "--https") || slices.Contains(plain.TrafficManager.Argv, "--tls-cert") {
		t.Errorf("without HTTPS: %s %v %v", n.URL(), n.Argv, plain.TrafficManager.Argv)
	}
}
