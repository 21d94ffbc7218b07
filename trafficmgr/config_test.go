package trafficmgr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	valid := `{
  "home": "westus",
  "regions": [
    {"name": "westus", "nodes": [{"zone": 1, "http": "127.0.0.1:5001"}, {"zone": 2, "http": "127.0.0.1:5002"}]},
    {"name": "eastus", "nodes": [{"zone": 1, "http": "127.0.0.1:5011"}]}
  ],
  "listeners": [{"location": "westus", "addr": "127.0.0.1:5000"}, {"location": "eastus", "addr": "127.0.0.1:5010"}]
`
	tests := []struct {
		name    string
		json    string
		check   func(t *testing.T, c Config)
		wantErr []string // substrings of the error, all required
	}{
		{name: "defaults", json: valid + "}", check: func(t *testing.T, c Config) {
			if c.ProbeInterval != Duration(250*time.Millisecond) || c.SteadyProbeInterval != Duration(time.Second) || c.IdleProbeInterval != Duration(5*time.Second) || c.ProbeTimeout != Duration(800*time.Millisecond) ||
				c.FailThreshold != 2 || c.RiseThreshold != 2 || c.Hysteresis != 0.2 {
				t.Errorf("defaults not applied: %+v", c)
			}
			if len(c.Regions) != 2 || c.Regions[0].Nodes[1].HTTP != "127.0.0.1:5002" || c.Listeners[1].Location != "eastus" {
				t.Errorf("config read wrong: %+v", c)
			}
		}},
		{name: "tunables", json: valid + `, "probeInterval": "100ms", "steadyProbeInterval": "3s", "probeTimeout": 2000000000, "failThreshold": 3, "riseThreshold": 1, "hysteresis": 0.5}`,
			check: func(t *testing.T, c Config) {
				if c.ProbeInterval != Duration(100*time.Millisecond) || c.SteadyProbeInterval != Duration(3*time.Second) || c.ProbeTimeout != Duration(2*time.Second) ||
					c.FailThreshold != 3 || c.RiseThreshold != 1 || c.Hysteresis != 0.5 {
					t.Errorf("tunables not read: %+v", c)
				}
			}},
		{name: "field names are case-insensitive", json: `{"Home": "a", "Regions": [{"Name": "a", "Nodes": [{"Zone": 0, "HTTP": "h:1"}]}], "Listeners": [{"Location": "a", "Addr": ":5000"}]}`},
		{name: "unknown field", json: valid + `, "probeIntervall": "1s"}`, wantErr: []string{"probeIntervall"}},
		{name: "bad duration", json: valid + `, "probeInterval": "soon"}`, wantErr: []string{"soon"}},
		{name: "steady interval shorter", json: valid + `, "probeInterval": "2s", "steadyProbeInterval": "1s"}`, wantErr: []string{"steadyProbeInterval", "shorter than probeInterval"}},
		{name: "a long probe interval raises the steady default", json: valid + `, "probeInterval": "5s"}`,
			check: func(t *testing.T, c Config) {
				if c.SteadyProbeInterval != Duration(5*time.Second) {
					t.Errorf("steadyProbeInterval = %v, want the probe interval 5s", time.Duration(c.SteadyProbeInterval))
				}
			}},
		{name: "idle interval shorter", json: valid + `, "steadyProbeInterval": "2s", "idleProbeInterval": "1s"}`, wantErr: []string{"idleProbeInterval", "shorter than steadyProbeInterval"}},
		{name: "a long steady interval raises the idle default", json: valid + `, "steadyProbeInterval": "9s"}`,
			check: func(t *testing.T, c Config) {
				if c.IdleProbeInterval != Duration(9*time.Second) {
					t.Errorf("idleProbeInterval = %v, want the steady interval 9s", time.Duration(c.IdleProbeInterval))
				}
			}},
		{name: "not json", json: `home: westus`, wantErr: []string{"invalid"}},
		{name: "everything missing", json: `{}`, wantErr: []string{"regions: at least one", "home: the home region is required", "listeners: at least one"}},
		{name: "every problem reported", json: `{
  "home": "northpole",
  "regions": [
    {"name": "west.us", "nodes": [{"zone": 1, "http": "127.0.0.1"}]},
    {"name": "eastus", "nodes": [{"zone": 1, "http": "127.0.0.1:5011"}, {"zone": 1, "http": "127.0.0.1:5011"}]},
    {"name": "eastus", "nodes": []}
  ],
  "listeners": [{"location": "", "addr": "127.0.0.1:99999"}, {"location": "x", "addr": "127.0.0.1:5000"}, {"location": "x", "addr": "127.0.0.1:5000"}],
  "failThreshold": -1, "hysteresis": 1.5, "probeTimeout": "-1s"
}`, wantErr: []string{
			`home: "northpole" is not one of the regions`,
			`regions[0].name: "west.us": a region name cannot contain '.'`,
			"regions[0].nodes[0].http: address 127.0.0.1: missing port",
			"regions[1].nodes[1].zone: zone 1 of region \"eastus\" listed twice",
			"regions[1].nodes[1].http: 127.0.0.1:5011 is also eastus/1",
			`regions[2].name: region "eastus" listed twice`,
			`regions[2].nodes: region "eastus" has no nodes`,
			"listeners[0].location: empty",
			"listeners[0].addr: \"127.0.0.1:99999\": bad port",
			`listeners[2].location: location "x" has two listeners`,
			"listeners[2].addr: 127.0.0.1:5000 is used by two listeners",
			"failThreshold: must be at least 1",
			"hysteresis: 1.5 is outside [0, 1)",
			"probeTimeout: must be positive",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tm.json")
			if err := os.WriteFile(path, []byte(tt.json), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("LoadConfig succeeded, want an error with %q", tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "none.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig of a missing file = %v, want os.ErrNotExist", err)
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := Duration(1500 * time.Millisecond).MarshalJSON()
	if err != nil || string(b) != `"1.5s"` {
		t.Fatalf("MarshalJSON = %s, %v", b, err)
	}
	var d Duration
	if err := d.UnmarshalJSON(b); err != nil || d != Duration(1500*time.Millisecond) {
		t.Fatalf("UnmarshalJSON = %v, %v", d, err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New(Config{}) = %v, want ErrInvalidConfig", err)
	}
}

func TestNextProbe(t *testing.T) {
	cfg := Config{ProbeInterval: Duration(250 * time.Millisecond)}.withDefaults()
	n := &node{}
	healthy := nodeHealth{probed: true, healthy: true, rises: 5}
	for _, tc := range []struct {
		name string
		h    nodeHealth
		// lastRequest is how long ago a listener last took a request.
		lastRequest time.Duration
		want        time.Duration
		wantAwake   bool
	}{
		{"not probed yet", nodeHealth{}, time.Second, 250 * time.Millisecond, false},
		{"healthy, last probe answered", healthy, time.Second, time.Second, false},
		{"healthy, endpoint idle", healthy, 5 * time.Second, 5 * time.Second, true},
		{"healthy, just started", healthy, -1, 5 * time.Second, true},
		{"healthy, last probe failed", nodeHealth{probed: true, healthy: true, fails: 1}, time.Second, 250 * time.Millisecond, false},
		{"last probe failed, endpoint idle", nodeHealth{probed: true, healthy: true, fails: 1}, time.Minute, 250 * time.Millisecond, false},
		{"down", nodeHealth{probed: true, fails: 3}, time.Second, 250 * time.Millisecond, false},
		{"down, endpoint idle", nodeHealth{probed: true, fails: 3}, time.Minute, 250 * time.Millisecond, false},
		{"coming back", nodeHealth{probed: true, rises: 1}, time.Second, 250 * time.Millisecond, false},
	} {
		m, err := New(testConfig(cfg), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if tc.lastRequest >= 0 {
			m.lastRequest.Store(m.sinceStart() - int64(tc.lastRequest))
		}
		h := tc.h
		l := &location{health: map[*node]*nodeHealth{n: &h}}
		got, awake := m.nextProbe(l, n)
		if got != tc.want || (awake != nil) != tc.wantAwake {
			t.Errorf("%s: nextProbe = %v, awake channel %v; want %v, %v", tc.name, got, awake != nil, tc.want, tc.wantAwake)
		}
	}
}

// TestNoteRequestWakesProbes: the first request after an idle spell ends
// the idle waits, later ones within the spell do not touch the channel.
func TestNoteRequestWakesProbes(t *testing.T) {
	m, err := New(testConfig(Config{}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := m.awake
	m.noteRequest()
	select {
	case <-first:
	default:
		t.Fatal("the first request did not wake the probe loops")
	}
	if m.idle() {
		t.Fatal("idle right after a request")
	}
	second := m.awake
	m.lastRequest.Store(m.sinceStart() - int64(time.Second))
	m.noteRequest()
	select {
	case <-second:
		t.Fatal("a request within the busy spell woke the probe loops again")
	default:
	}
	m.lastRequest.Store(m.sinceStart() - int64(time.Minute))
	m.noteRequest()
	select {
	case <-second:
	default:
		t.Fatal("a request after a second idle spell did not wake the probe loops")
	}
}

// testConfig is cfg with the one region, node and listener New requires.
func testConfig(cfg Config) Config {
	cfg.Home = "westus"
	cfg.Regions = []RegionConfig{{Name: "westus", Nodes: []NodeConfig{{Zone: 1, HTTP: "127.0.0.1:1"}}}}
	cfg.Listeners = []ListenerConfig{{Location: "westus", Addr: "127.0.0.1:0"}}
	return cfg
}
