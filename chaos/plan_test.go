package chaos

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPlanPorts(t *testing.T) {
	tests := []struct {
		name     string
		cfg      UpConfig
		endpoint string
		nodes    []string // name=http
		home     string
	}{
		{
			name:     "one node serves the endpoint port",
			cfg:      UpConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000},
			endpoint: "127.0.0.1:5000",
			nodes:    []string{"westus/1=127.0.0.1:5000"},
			home:     "westus",
		},
		{
			name:     "the first zone is the endpoint, the others follow",
			cfg:      UpConfig{Regions: []string{"westus"}, Zones: 3, Port: 5000},
			endpoint: "127.0.0.1:5000",
			nodes:    []string{"westus/1=127.0.0.1:5000", "westus/2=127.0.0.1:5001", "westus/3=127.0.0.1:5002"},
			home:     "westus",
		},
		{
			name:     "home region first, then region by region, zone by zone",
			cfg:      UpConfig{Regions: []string{"eastus", "westus"}, Home: "westus", Zones: 2, Port: 7000},
			endpoint: "127.0.0.1:7000",
			nodes:    []string{"westus/1=127.0.0.1:7000", "westus/2=127.0.0.1:7001", "eastus/1=127.0.0.1:7002", "eastus/2=127.0.0.1:7003"},
			home:     "westus",
		},
		{
			name:     "several regions of one zone",
			cfg:      UpConfig{Regions: []string{"westus", "eastus", "westeurope"}, Zones: 1, Port: 5000},
			endpoint: "127.0.0.1:5000",
			nodes:    []string{"westus/1=127.0.0.1:5000", "eastus/1=127.0.0.1:5001", "westeurope/1=127.0.0.1:5002"},
			home:     "westus",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Regiond = "/opt/bin/regiond"
			m, err := Plan("/m", tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if m.Endpoint != tt.endpoint {
				t.Errorf("endpoint = %s, want %s", m.Endpoint, tt.endpoint)
			}
			if m.Home != tt.home {
				t.Errorf("home = %s, want %s", m.Home, tt.home)
			}
			var got []string
			for _, n := range m.Nodes() {
				got = append(got, n.Name()+"="+n.HTTP)
			}
			if !reflect.DeepEqual(got, tt.nodes) {
				t.Errorf("nodes = %v, want %v", got, tt.nodes)
			}
			for _, r := range m.Regions {
				if r.Home != (r.Name == tt.home) {
					t.Errorf("region %s: home = %v", r.Name, r.Home)
				}
			}
		})
	}
}

func TestPlanNode(t *testing.T) {
	m, err := Plan("/m", UpConfig{
		Regions:  []string{"westus", "eastus"},
		Home:     "eastus",
		Zones:    2,
		Port:     5000,
		Regiond:  "/opt/bin/regiond",
		NodeArgs: []string{"--max-manifest-bytes=1000", "--log-level", "debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := m.Regions[0].Zones[1]
	want := Node{
		Region: "eastus",
		Zone:   2,
		HTTP:   "127.0.0.1:5001",
		Data:   "/m/data/eastus-2",
		Log:    "/m/logs/eastus-2.log",
		// Four nodes, the home region first: HTTP on 5000-5003, then three
		// ports per node from 5004.
		Ports: map[string]int{"grpc": 5007, "raft": 5008, "gossip": 5009},
		Argv: []string{"/opt/bin/regiond", "--region", "eastus", "--zone", "2", "--zones", "2", "--home", "eastus",
			"--http", "127.0.0.1:5001", "--grpc", "127.0.0.1:5007", "--raft", "127.0.0.1:5008",
			"--gossip", "127.0.0.1:5009", "--data", "/m/data/eastus-2",
			"--join", "127.0.0.1:5006,127.0.0.1:5012,127.0.0.1:5015",
			// The mesh's credentials (writeCredentials makes them).
			"--tls-cert", "/m/tls/eastus-2.crt", "--tls-key", "/m/tls/eastus-2.key", "--tls-ca", "/m/tls/ca.crt",
			"--gossip-key-file", "/m/gossip.key",
			"--max-manifest-bytes=1000", "--log-level", "debug"},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("node =\n%+v\nwant\n%+v", n, want)
	}
}

func TestValidate(t *testing.T) {
	ok := UpConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000}
	tests := []struct {
		name   string
		change func(*UpConfig)
		want   string // substring of the error, "" for valid
	}{
		{"valid", func(*UpConfig) {}, ""},
		{"no regions", func(c *UpConfig) { c.Regions = nil }, "no regions"},
		{"upper case", func(c *UpConfig) { c.Regions = []string{"WestUS"} }, "region name"},
		{"slash", func(c *UpConfig) { c.Regions = []string{"west/us"} }, "region name"},
		{"dots", func(c *UpConfig) { c.Regions = []string{".."} }, "region name"},
		{"twice", func(c *UpConfig) { c.Regions = []string{"a", "b", "a"} }, "twice"},
		{"unknown home", func(c *UpConfig) { c.Home = "eastus" }, "home region"},
		{"zero zones", func(c *UpConfig) { c.Zones = 0 }, "zones"},
		{"too many zones", func(c *UpConfig) { c.Zones = MaxZones + 1 }, "zones"},
		{"zero port", func(c *UpConfig) { c.Port = 0 }, "port"},
		{"ports overflow", func(c *UpConfig) { c.Port = 65535; c.Zones = 2 }, "port"},
		{"last port fits", func(c *UpConfig) { c.Port = 65535 - 2*PortsPerNode; c.Zones = 2 }, ""},
		{"negative wait", func(c *UpConfig) { c.Wait = -1 }, "wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestPlanRelativeDir(t *testing.T) {
	_, err := Plan(".georeg", UpConfig{Regions: []string{"westus"}, Zones: 1, Port: 5000})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Plan with a relative dir = %v, want ErrInvalidConfig", err)
	}
}

func TestMeshRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, err := Plan(dir, UpConfig{Regions: []string{"westus", "eastus"}, Zones: 3, Port: 6000, Regiond: "/x/regiond", NodeArgs: []string{"--a=b"}})
	if err != nil {
		t.Fatal(err)
	}
	n := m.Nodes()[4]
	n.PID, n.PIDStart = 4242, 99
	n.Ports = map[string]int{"grpc": 6100, "gossip": 6200}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	got, err := LoadMesh(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("LoadMesh after Save =\n%+v\nwant\n%+v", got, m)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, MeshFile+".tmp*")); len(leftovers) > 0 {
		t.Errorf("Save left temporary files: %v", leftovers)
	}
}

func TestLoadMeshErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" means no file
		noMesh  bool
		want    string
	}{
		{name: "missing", noMesh: true, want: "mesh up --dir"},
		{name: "not json", content: "{", want: "not a mesh description"},
		{name: "other version", content: `{"version": 99}`, want: "format version 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != "" {
				if err := os.WriteFile(filepath.Join(dir, MeshFile), []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadMesh(dir)
			if err == nil || errors.Is(err, ErrNoMesh) != tt.noMesh || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadMesh = %v, want an error mentioning %q (ErrNoMesh: %v)", err, tt.want, tt.noMesh)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{in: "westus", want: Target{Region: "westus"}},
		{in: "westus/2", want: Target{Region: "westus", Zone: 2}},
		{in: "west-europe/12", want: Target{Region: "west-europe", Zone: 12}},
		{in: "", wantErr: true},
		{in: "westus/", wantErr: true},
		{in: "westus/0", wantErr: true},
		{in: "westus/x", wantErr: true},
		{in: "WestUS/1", wantErr: true},
		{in: "/1", wantErr: true},
		{in: "westus/1/2", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseTarget(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestSelect(t *testing.T) {
	m, err := Plan("/m", UpConfig{Regions: []string{"westus", "eastus"}, Zones: 2, Port: 5000})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target string
		want   []string
	}{
		{"westus", []string{"westus/1", "westus/2"}},
		{"eastus/2", []string{"eastus/2"}},
		{"eastus/3", nil},
		{"northeurope", nil},
	}
	for _, tt := range tests {
		target, _ := ParseTarget(tt.target)
		nodes, err := m.Select(target)
		var got []string
		for _, n := range nodes {
			got = append(got, n.Name())
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Select(%s) = %v, want %v", tt.target, got, tt.want)
		}
		if tt.want == nil && !errors.Is(err, ErrUnknownTarget) {
			t.Errorf("Select(%s) error = %v, want ErrUnknownTarget", tt.target, err)
		}
	}
}

func TestLogTail(t *testing.T) {
	long := strings.Repeat("x", 100) + "\n"
	tests := []struct {
		name    string
		content string
		offset  int64
		want    string
	}{
		{"empty", "", 0, "(the log is empty)"},
		{"whole", "a\nb\n", 0, "a\nb"},
		{"only this run", "old run\nnew run\n", 8, "new run"},
		{"nothing this run", "old run\n", 8, "(the log is empty)"},
		{"last lines", strings.Repeat("line\n", 100) + "end\n", 0, strings.Repeat("line\n", tailLines-1) + "end"},
		{"cut first line dropped", strings.Repeat(long, 200), 0, strings.TrimSuffix(strings.Repeat(long, tailLines), "\n")},
		{"truncated since", "short\n", 1000, "short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "n.log")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := logTail(p, tt.offset); got != tt.want {
				t.Errorf("logTail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPlanTrafficmgr(t *testing.T) {
	m, err := Plan("/m", UpConfig{
		Regions: []string{"westus", "eastus", "westeurope"}, Zones: 2, Port: 5000,
		Regiond: "/opt/bin/regiond", Trafficmgr: "/opt/bin/trafficmgr",
		TrafficmgrEnv: []string{"GOMAXPROCS=1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.TrafficManager.Env; !reflect.DeepEqual(got, []string{"GOMAXPROCS=1"}) {
		t.Errorf("traffic manager env = %v", got)
	}
	for _, n := range m.Nodes() {
		if n.Env != nil {
			t.Errorf("%s env = %v, want none", n.Name(), n.Env)
		}
	}
	// One listener per location, the home region's on the endpoint port;
	// the nodes' HTTP ports follow, then three ports per node.
	wantLocs := []Location{{"westus", "127.0.0.1:5000"}, {"eastus", "127.0.0.1:5001"}, {"westeurope", "127.0.0.1:5002"}}
	if !reflect.DeepEqual(m.Locations, wantLocs) {
		t.Errorf("locations = %v, want %v", m.Locations, wantLocs)
	}
	if m.Endpoint != "127.0.0.1:5000" || m.TrafficManager == nil || m.TrafficManager.HTTP != m.Endpoint {
		t.Fatalf("endpoint %s, traffic manager %+v", m.Endpoint, m.TrafficManager)
	}
	if got := m.Regions[0].Zones[0].HTTP; got != "127.0.0.1:5003" {
		t.Errorf("westus/1 HTTP = %s, want 127.0.0.1:5003", got)
	}
	if got := m.Regions[2].Zones[1].Ports["gossip"]; got != 5003+6+3*5+2 {
		t.Errorf("westeurope/2 gossip port = %d", got)
	}
	wantTM := []string{"/opt/bin/trafficmgr", "--config", "/m/trafficmgr.json", "--wan", "/m/wan.json"}
	if !reflect.DeepEqual(m.TrafficManager.Argv, wantTM) || m.TrafficManager.Name() != "trafficmgr" {
		t.Errorf("traffic manager argv %v name %s", m.TrafficManager.Argv, m.TrafficManager.Name())
	}
	for _, n := range m.Nodes() {
		if a := n.Argv; a[len(a)-2] != "--wan" || a[len(a)-1] != "/m/wan.json" {
			t.Errorf("%s argv lacks --wan: %v", n.Name(), a)
		}
	}
	if len(m.Processes()) != 7 {
		t.Errorf("processes = %d, want 6 nodes and the traffic manager", len(m.Processes()))
	}
	sel, err := m.Select(Target{Region: RoleTrafficmgr})
	if err != nil || len(sel) != 1 || sel[0] != m.TrafficManager {
		t.Errorf("Select(trafficmgr) = %v, %v", sel, err)
	}
	if err := (UpConfig{Regions: []string{"trafficmgr"}, Zones: 1, Port: 5000}).Validate(); err == nil {
		t.Error("a region named trafficmgr is accepted")
	}
}
