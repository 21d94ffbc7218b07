package wan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ms(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    Config // compared when wantErr is empty
		wantErr string // substring of the error
	}{
		{
			name: "links only",
			file: `{"links":[{"a":"westus","b":"eastus","rtt":"70ms"}]}`,
			want: Config{Version: 1, Links: []Link{{A: "westus", B: "eastus", RTT: ms(70)}}},
		},
		{
			name: "every field",
			file: `{"version":1,"addresses":{"127.0.0.1:5001":"westus"},
				"links":[{"a":"westus","b":"eastus","rtt":"1.5s","bandwidthBytesPerSecond":1000,"loss":0.25,"cut":true}],
				"defaultRTT":"90ms","defaultLocalRTT":"2ms"}`,
			want: Config{
				Version:   1,
				Addresses: map[string]string{"127.0.0.1:5001": "westus"},
				Links: []Link{{A: "westus", B: "eastus", RTT: Duration(1500 * time.Millisecond),
					Bandwidth: 1000, Loss: 0.25, Cut: true}},
				DefaultRTT: ms(90), DefaultLocalRTT: ms(2),
			},
		},
		{name: "empty object", file: `{}`, want: Config{Version: 1, Links: []Link{}}},
		{name: "not json", file: `links: []`, wantErr: "invalid character"},
		{name: "not an object", file: `[]`, wantErr: "want a JSON object"},
		{name: "unknown top-level field", file: `{"link":[]}`, wantErr: `link: unknown field`},
		{name: "unknown link field", file: `{"links":[{"a":"x","b":"y","latency":"5ms"}]}`, wantErr: `links[0].latency: unknown field`},
		{name: "bad duration", file: `{"links":[{"a":"x","b":"y","rtt":"70 ms"}]}`, wantErr: `links[0].rtt: want a duration`},
		{name: "duration as number", file: `{"links":[{"a":"x","b":"y","rtt":70}]}`, wantErr: `links[0].rtt: want a duration string`},
		{name: "negative rtt", file: `{"links":[{"a":"x","b":"y","rtt":"-1ms"}]}`, wantErr: `links[0].rtt: must not be negative`},
		{name: "negative bandwidth", file: `{"links":[{"a":"x","b":"y","bandwidthBytesPerSecond":-1}]}`, wantErr: `links[0].bandwidthBytesPerSecond: must not be negative`},
		{name: "bandwidth as string", file: `{"links":[{"a":"x","b":"y","bandwidthBytesPerSecond":"1MB/s"}]}`, wantErr: `links[0].bandwidthBytesPerSecond: want int64`},
		{name: "loss above 1", file: `{"links":[{"a":"x","b":"y","loss":1.5}]}`, wantErr: `links[0].loss: must be in [0, 1], got 1.5`},
		{name: "negative loss", file: `{"links":[{"a":"x","b":"y"},{"a":"x","b":"z","loss":-0.1}]}`, wantErr: `links[1].loss: must be in [0, 1]`},
		{name: "missing a", file: `{"links":[{"b":"y"}]}`, wantErr: `links[0].a: empty location`},
		{name: "duplicate pair", file: `{"links":[{"a":"x","b":"y"},{"a":"y","b":"x"}]}`, wantErr: `links[1]: second link between y and x (first is links[0])`},
		{name: "future version", file: `{"version":2,"links":[]}`, wantErr: `version: this build reads version 1, got 2`},
		{name: "negative default", file: `{"defaultRTT":"-5ms"}`, wantErr: `defaultRTT: must not be negative`},
		{name: "bad address", file: `{"addresses":{"nohost":"westus"}}`, wantErr: `addresses["nohost"]: want host:port`},
		{name: "empty address location", file: `{"addresses":{"127.0.0.1:1":""}}`, wantErr: `addresses["127.0.0.1:1"]: empty location`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "wan.json")
			if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load: error %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("Load: error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Load:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want a not-exist error", err)
	}
}

func TestDefault(t *testing.T) {
	cfg := Default([]string{"westus", "eastus", "westeurope", "eastus", "centralindia"})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// 4 distinct locations: 4 diagonal links and 6 pairs.
	if len(cfg.Links) != 10 {
		t.Errorf("Default has %d links, want 10: %+v", len(cfg.Links), cfg.Links)
	}
	tests := []struct {
		a, b string
		rtt  Duration
	}{
		{"westus", "eastus", ms(70)},
		{"eastus", "westus", ms(70)},
		{"eastus", "westeurope", ms(80)},
		{"westeurope", "westus", ms(140)},
		{"westus", "westus", ms(1)},
		{"centralindia", "centralindia", ms(1)},
		{"centralindia", "westus", ms(100)},
	}
	for _, tt := range tests {
		// Every pair must be spelt out in the file, not left to defaults.
		found := false
		for _, l := range cfg.Links {
			if (l.A == tt.a && l.B == tt.b) || (l.A == tt.b && l.B == tt.a) {
				found = true
				if l.RTT != tt.rtt {
					t.Errorf("link %s-%s: rtt %v, want %v", tt.a, tt.b, l.RTT, tt.rtt)
				}
			}
		}
		if !found {
			t.Errorf("Default has no link %s-%s", tt.a, tt.b)
		}
	}
}

func TestConfigLink(t *testing.T) {
	cfg := Config{
		Links: []Link{
			{A: "westus", B: "eastus", RTT: ms(70), Bandwidth: 5, Loss: 0.1},
			{A: "eastus", B: "eastus", RTT: ms(3)},
		},
	}
	custom := cfg
	custom.DefaultRTT, custom.DefaultLocalRTT = ms(250), ms(7)
	tests := []struct {
		name string
		cfg  Config
		a, b string
		want Link
	}{
		{"listed", cfg, "westus", "eastus", Link{A: "westus", B: "eastus", RTT: ms(70), Bandwidth: 5, Loss: 0.1}},
		{"listed reversed", cfg, "eastus", "westus", Link{A: "eastus", B: "westus", RTT: ms(70), Bandwidth: 5, Loss: 0.1}},
		{"listed diagonal", cfg, "eastus", "eastus", Link{A: "eastus", B: "eastus", RTT: ms(3)}},
		{"default pair", cfg, "westus", "westeurope", Link{A: "westus", B: "westeurope", RTT: ms(100)}},
		{"default diagonal", cfg, "westus", "westus", Link{A: "westus", B: "westus", RTT: ms(1)}},
		{"custom default pair", custom, "westus", "westeurope", Link{A: "westus", B: "westeurope", RTT: ms(250)}},
		{"custom default diagonal", custom, "westus", "westus", Link{A: "westus", B: "westus", RTT: ms(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Link(tt.a, tt.b); got != tt.want {
				t.Fatalf("Link(%s, %s) = %+v, want %+v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestSetLink(t *testing.T) {
	cfg := Default([]string{"westus", "eastus"})
	n := len(cfg.Links)
	cfg.SetLink(Link{A: "eastus", B: "westus", RTT: ms(5), Cut: true})
	if len(cfg.Links) != n {
		t.Fatalf("SetLink of an existing pair added a link: %+v", cfg.Links)
	}
	if got := cfg.Link("westus", "eastus"); got.RTT != ms(5) || !got.Cut {
		t.Fatalf("after SetLink: %+v", got)
	}
	cfg.SetLink(Link{A: "westus", B: "westeurope", RTT: ms(9)})
	if len(cfg.Links) != n+1 || cfg.Link("westeurope", "westus").RTT != ms(9) {
		t.Fatalf("SetLink of a new pair: %+v", cfg.Links)
	}
}

func TestAddLocations(t *testing.T) {
	cfg := Default([]string{"westus"})
	cfg.SetLink(Link{A: "westus", B: "westus", RTT: ms(7)}) // changed by hand: kept
	cfg.AddLocations([]string{"westus", "eastus", "westeurope"})
	for _, tc := range []struct {
		a, b string
		rtt  Duration
	}{
		{"westus", "westus", ms(7)},
		{"westus", "eastus", ms(70)},
		{"eastus", "westeurope", ms(80)},
		{"westeurope", "westus", ms(140)},
		{"eastus", "eastus", ms(1)},
	} {
		if got := cfg.Link(tc.a, tc.b).RTT; got != tc.rtt {
			t.Errorf("Link(%s, %s).RTT = %v, want %v", tc.a, tc.b, got, tc.rtt)
		}
	}
	n := len(cfg.Links)
	cfg.AddLocations([]string{"eastus", "westus"})
	if len(cfg.Links) != n {
		t.Errorf("AddLocations of known locations added links: %d -> %d", n, len(cfg.Links))
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wan.json")
	cfg := Default([]string{"westus", "eastus", "westeurope"})
	cfg.Addresses = map[string]string{"127.0.0.1:5001": "westus", "127.0.0.1:5002": "eastus"}
	cfg.SetLink(Link{A: "westus", B: "eastus", RTT: ms(70), Bandwidth: 10 << 20, Loss: 0.01, Cut: true})
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Fatalf("Load after Save:\n got %+v\nwant %+v", got, cfg)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"rtt": "70ms"`) {
		t.Errorf("durations are not written as strings:\n%s", data)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("Save left files behind: %v", entries)
	}

	bad := cfg
	bad.Links = append([]Link{{A: "x", B: "y", Loss: 2}}, cfg.Links...)
	if err := bad.Save(path); err == nil || !strings.Contains(err.Error(), "links[0].loss") {
		t.Fatalf("Save of an invalid config: %v", err)
	}
	if again, _ := Load(path); !reflect.DeepEqual(again, cfg) {
		t.Fatal("a refused Save changed the file")
	}
}
