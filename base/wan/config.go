package wan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Version is the format version of wan.json that this package reads and
// writes.
const Version = 1

// Round trips used when a Config leaves its defaults at zero.
const (
	FallbackRTT      = 100 * time.Millisecond
	FallbackLocalRTT = 1 * time.Millisecond
)

// Config is the content of wan.json: where each node listener is, and how
// every link between locations behaves. The chaos launcher writes it; every
// process of the mesh watches it through a [Network]. Its methods do no
// locking: a caller that loads, changes and saves the file holds its own
// lock around that sequence.
type Config struct {
	// Version is the format version; 0 (absent) is read as [Version].
	Version int `json:"version"`
	// Addresses maps "host:port" of node listeners (HTTP and gRPC) to the
	// location they are in. A dial to an address not listed is not
	// simulated.
	Addresses map[string]string `json:"addresses,omitempty"`
	// Links holds one entry per unordered pair of locations; A == B
	// describes paths inside a location.
	Links []Link `json:"links"`
	// DefaultRTT applies to pairs of different locations with no Link;
	// 0 means [FallbackRTT].
	DefaultRTT Duration `json:"defaultRTT,omitempty"`
	// DefaultLocalRTT applies to A == B pairs with no Link; 0 means
	// [FallbackLocalRTT].
	DefaultLocalRTT Duration `json:"defaultLocalRTT,omitempty"`
}

// Link describes the path between two locations, the same in both
// directions.
type Link struct {
	A string `json:"a"`
	B string `json:"b"`
	// RTT is the round trip; each direction is delayed by RTT/2.
	RTT Duration `json:"rtt"`
	// Bandwidth caps each direction in bytes per second; 0 is uncapped.
	Bandwidth int64 `json:"bandwidthBytesPerSecond,omitempty"`
	// Loss is the probability, 0..1, that a chunk of data is lost once and
	// retransmitted (see the package documentation).
	Loss float64 `json:"loss,omitempty"`
	// Cut partitions the two locations: dials fail and open connections
	// are closed.
	Cut bool `json:"cut,omitempty"`
}

// Duration is a time.Duration written in JSON as a string such as "70ms".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string ("70ms", "1.5s", "0").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"70ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"70ms\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// published holds published round trips between Azure regions, keyed by the
// pair in lexical order.
var published = map[[2]string]time.Duration{
	{"eastus", "westus"}:         70 * time.Millisecond,
	{"eastus", "westeurope"}:     80 * time.Millisecond,
	{"westeurope", "westus"}:     140 * time.Millisecond,
	{"eastus", "eastus"}:         1 * time.Millisecond,
	{"westus", "westus"}:         1 * time.Millisecond,
	{"westeurope", "westeurope"}: 1 * time.Millisecond,
}

// Default returns a config with a link for every pair of locations,
// including each location with itself, so that the file written from it
// describes the whole mesh: published round trips where known (westus–eastus
// 70ms, eastus–westeurope 80ms, westus–westeurope 140ms), 1ms inside a
// location and 100ms for any other pair.
func Default(locations []string) Config {
	cfg := Config{
		Version:         Version,
		DefaultRTT:      Duration(FallbackRTT),
		DefaultLocalRTT: Duration(FallbackLocalRTT),
		Links:           []Link{},
	}
	var locs []string
	for _, l := range locations {
		if !slices.Contains(locs, l) {
			locs = append(locs, l)
		}
	}
	for i, a := range locs {
		for _, b := range locs[i:] {
			rtt, ok := published[pairKey(a, b)]
			switch {
			case ok:
			case a == b:
				rtt = FallbackLocalRTT
			default:
				rtt = FallbackRTT
			}
			cfg.Links = append(cfg.Links, Link{A: a, B: b, RTT: Duration(rtt)})
		}
	}
	return cfg
}

// pairKey is the unordered pair {a, b} as a map key.
func pairKey(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Link returns the link between a and b in either order, with A = a and
// B = b. A pair with no entry in Links gets the default round trip and no
// other impairment.
func (c Config) Link(a, b string) Link {
	for _, l := range c.Links {
		if (l.A == a && l.B == b) || (l.A == b && l.B == a) {
			l.A, l.B = a, b
			return l
		}
	}
	return c.defaultLink(a, b)
}

func (c Config) defaultLink(a, b string) Link {
	rtt := c.DefaultRTT
	if a == b {
		rtt = c.DefaultLocalRTT
		if rtt == 0 {
			rtt = Duration(FallbackLocalRTT)
		}
	} else if rtt == 0 {
		rtt = Duration(FallbackRTT)
	}
	return Link{A: a, B: b, RTT: rtt}
}

// SetLink replaces the entry for the pair {l.A, l.B}, in either order, or
// adds one.
func (c *Config) SetLink(l Link) {
	for i, old := range c.Links {
		if (old.A == l.A && old.B == l.B) || (old.A == l.B && old.B == l.A) {
			c.Links[i] = l
			return
		}
	}
	c.Links = append(c.Links, l)
}

// AddLocations adds, for every pair of locations (each location with
// itself included) that has no link yet, the link Default would give it,
// so that a location added to a running mesh gets its published round
// trips rather than DefaultRTT. Links already present are kept.
func (c *Config) AddLocations(locations []string) {
	for _, l := range Default(locations).Links {
		if !slices.ContainsFunc(c.Links, func(old Link) bool { return pairKey(old.A, old.B) == pairKey(l.A, l.B) }) {
			c.Links = append(c.Links, l)
		}
	}
}

// Locations returns every location named by a link or an address, sorted.
func (c Config) Locations() []string {
	set := map[string]bool{}
	for _, l := range c.Links {
		set[l.A], set[l.B] = true, true
	}
	for _, loc := range c.Addresses {
		set[loc] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// clone returns a copy of c that shares no map or slice with it.
func (c Config) clone() Config {
	c.Addresses = maps.Clone(c.Addresses)
	c.Links = slices.Clone(c.Links)
	return c
}

// Validate reports the first problem of c, naming the field
// ("links[2].loss: ...").
func (c Config) Validate() error {
	if c.Version < 0 || c.Version > Version {
		return fmt.Errorf("version: this build reads version %d, got %d", Version, c.Version)
	}
	if d := c.DefaultRTT; d < 0 {
		return fmt.Errorf("defaultRTT: must not be negative, got %s", d)
	}
	if d := c.DefaultLocalRTT; d < 0 {
		return fmt.Errorf("defaultLocalRTT: must not be negative, got %s", d)
	}
	for _, addr := range slices.Sorted(maps.Keys(c.Addresses)) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("addresses[%q]: want host:port: %w", addr, err)
		}
		if c.Addresses[addr] == "" {
			return fmt.Errorf("addresses[%q]: empty location", addr)
		}
	}
	seen := map[[2]string]int{}
	for i, l := range c.Links {
		switch {
		case l.A == "":
			return fmt.Errorf("links[%d].a: empty location", i)
		case l.B == "":
			return fmt.Errorf("links[%d].b: empty location", i)
		case l.RTT < 0:
			return fmt.Errorf("links[%d].rtt: must not be negative, got %s", i, l.RTT)
		case l.Bandwidth < 0:
			return fmt.Errorf("links[%d].bandwidthBytesPerSecond: must not be negative, got %d", i, l.Bandwidth)
		case math.IsNaN(l.Loss) || l.Loss < 0 || l.Loss > 1:
			return fmt.Errorf("links[%d].loss: must be in [0, 1], got %v", i, l.Loss)
		}
		k := pairKey(l.A, l.B)
		if j, dup := seen[k]; dup {
			return fmt.Errorf("links[%d]: second link between %s and %s (first is links[%d])", i, l.A, l.B, j)
		}
		seen[k] = i
	}
	return nil
}

// Load reads and validates a wan.json. The file may hold as little as a
// list of links; unknown fields are errors, so a misspelt field is not
// silently ignored.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("wan: %w", err)
	}
	cfg, err := parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("wan: %s: %w", path, err)
	}
	return cfg, nil
}

// parse decodes and validates the content of a wan.json.
func parse(data []byte) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	if cfg.Version == 0 {
		cfg.Version = Version
	}
	return cfg, nil
}

// UnmarshalJSON decodes c strictly: unknown fields are errors, and every
// error names the field it is about.
func (c *Config) UnmarshalJSON(data []byte) error {
	var rawLinks []json.RawMessage
	var out Config
	err := decodeObject(data, map[string]any{
		"version":         &out.Version,
		"addresses":       &out.Addresses,
		"links":           &rawLinks,
		"defaultRTT":      &out.DefaultRTT,
		"defaultLocalRTT": &out.DefaultLocalRTT,
	})
	if err != nil {
		return err
	}
	out.Links = make([]Link, len(rawLinks))
	for i, raw := range rawLinks {
		if err := json.Unmarshal(raw, &out.Links[i]); err != nil {
			return nest(fmt.Sprintf("links[%d]", i), err)
		}
	}
	*c = out
	return nil
}

// UnmarshalJSON decodes l strictly, like [Config.UnmarshalJSON].
func (l *Link) UnmarshalJSON(data []byte) error {
	var out Link
	err := decodeObject(data, map[string]any{
		"a":                       &out.A,
		"b":                       &out.B,
		"rtt":                     &out.RTT,
		"bandwidthBytesPerSecond": &out.Bandwidth,
		"loss":                    &out.Loss,
		"cut":                     &out.Cut,
	})
	if err != nil {
		return err
	}
	*l = out
	return nil
}

// fieldError is an error about one field of a JSON object; nested objects
// prefix their field names, so the outermost error reads "links[2].rtt: ...".
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// nest returns err as an error about field, prefixing the path of a nested
// field error.
func nest(field string, err error) error {
	if fe, ok := errors.AsType[*fieldError](err); ok {
		return &fieldError{field + "." + fe.field, fe.err}
	}
	return &fieldError{field, err}
}

// decodeObject decodes the JSON object data into the targets named by field,
// refusing fields it does not know.
func decodeObject(data []byte, fields map[string]any) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("want a JSON object, got %s", abbreviate(data))
	}
	keys := slices.Collect(maps.Keys(obj))
	sort.Strings(keys)
	for _, k := range keys {
		target, ok := fields[k]
		if !ok {
			known := slices.Sorted(maps.Keys(fields))
			return &fieldError{k, fmt.Errorf("unknown field (known: %s)", strings.Join(known, ", "))}
		}
		if err := json.Unmarshal(obj[k], target); err != nil {
			if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
				err = fmt.Errorf("want %s, got JSON %s", te.Type, te.Value)
			}
			return nest(k, err)
		}
	}
	return nil
}

func abbreviate(b []byte) string {
	s := string(bytes.TrimSpace(b))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// Save writes c to path atomically (a temporary file in the same directory,
// fsynced, then renamed over path), so a process polling the file never
// reads half of it. It refuses an invalid config.
func (c Config) Save(path string) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("wan: save %s: %w", path, err)
	}
	if c.Version == 0 {
		c.Version = Version
	}
	if c.Links == nil {
		c.Links = []Link{}
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("wan: save %s: %w", path, err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("wan: save: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if _, err = f.Write(data); err == nil {
		if err = f.Chmod(0o644); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wan: save %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("wan: save: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		// The rename is durable only once the directory is synced; a
		// failure here loses nothing the next save would not rewrite.
		_ = d.Sync()
		d.Close()
	}
	return nil
}
