package trafficmgr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Config.withDefaults to zero fields.
const (
	DefaultProbeInterval       = 250 * time.Millisecond
	DefaultSteadyProbeInterval = time.Second
	DefaultIdleProbeInterval   = 5 * time.Second
	DefaultProbeTimeout        = 800 * time.Millisecond
	DefaultFailThreshold       = 2
	DefaultRiseThreshold       = 2
	DefaultHysteresis          = 0.2
	// DefaultBodyIdleTimeout: see Config.BodyIdleTimeout.
	DefaultBodyIdleTimeout = 25 * time.Second
)

// ErrInvalidConfig is wrapped by every error LoadConfig, Config.Validate and
// New return for a configuration that cannot work.
var ErrInvalidConfig = errors.New("invalid traffic manager config")

// Config is the traffic manager's configuration, read from JSON by
// LoadConfig. Zero durations, thresholds and hysteresis take the defaults.
type Config struct {
	// Home is the home region; its nodes' view of the region endpoint flags
	// is preferred over other regions' copies.
	Home    string         `json:"home"`
	Regions []RegionConfig `json:"regions"`
	// Listeners are the client endpoints, one per client location.
	// Listeners[0] is the default endpoint (localhost:5000 in a local mesh).
	Listeners []ListenerConfig `json:"listeners"`
	// ProbeInterval is how often a node in doubt is probed from every
	// location: one not yet probed, down, or whose last probe failed.
	ProbeInterval Duration `json:"probeInterval"`
	// SteadyProbeInterval is how often a healthy node whose last probe
	// answered is probed: most of an idle mesh's probes, so a longer
	// interval costs the nodes less (failover does not wait for it: a
	// request that fails is retried elsewhere at once, and the first
	// failed probe switches the node to ProbeInterval). It is never
	// shorter than ProbeInterval.
	SteadyProbeInterval Duration `json:"steadyProbeInterval"`
	// IdleProbeInterval replaces SteadyProbeInterval while the endpoint is
	// idle: no request (a /metrics scrape aside) has reached any listener
	// for this long. An idle mesh then costs its nodes a probe per
	// location every few seconds instead of every second. The first
	// request after a quiet spell probes every node at once and brings
	// back the steady pace; until those answers are in, it is routed on
	// the last ones and, like any request, retried elsewhere when its
	// node cannot be reached. It is never shorter than
	// SteadyProbeInterval; equal turns idling off.
	IdleProbeInterval Duration `json:"idleProbeInterval"`
	// ProbeTimeout bounds one probe, connection included.
	ProbeTimeout Duration `json:"probeTimeout"`
	// FailThreshold and RiseThreshold are the consecutive probe failures
	// that mark a healthy node down and the consecutive successes that
	// bring a down node back.
	FailThreshold int `json:"failThreshold"`
	RiseThreshold int `json:"riseThreshold"`
	// Hysteresis keeps a location on its current healthy region unless
	// another is faster by this fraction of the current latency (and by
	// at least 2 ms), so that measurement noise does not flap routes.
	Hysteresis float64 `json:"hysteresis"`
	// BodyIdleTimeout is how long a client's request body may go without
	// delivering a byte before the request fails with 408 and the client's
	// connection is closed (default 25 s: shorter than the nodes' 30 s, so
	// the endpoint, which sees the client, cuts it first and the node only
	// sees the request end; a node cutting the endpoint's connection could
	// be taken for a node failing).
	BodyIdleTimeout Duration `json:"bodyIdleTimeout"`
	// DataEndpoints, on unless set to false, has a blob GET answered 307 to
	// the serving node's data endpoint with a short-lived signed URL, so
	// that the bytes flow from the node to the client and not through this
	// proxy (see DataLocationHeader). Off, every blob is relayed.
	DataEndpoints *bool `json:"dataEndpoints,omitempty"`
}

// dataEndpoints reports whether blob downloads are redirected.
func (c Config) dataEndpoints() bool { return c.DataEndpoints == nil || *c.DataEndpoints }

// RegionConfig names a region and its zone nodes.
type RegionConfig struct {
	Name  string       `json:"name"`
	Nodes []NodeConfig `json:"nodes"`
}

// NodeConfig is one zone node (a regiond) of a region.
type NodeConfig struct {
	Zone int `json:"zone"`
	// HTTP is the host:port of the node's distribution API.
	HTTP string `json:"http"`
}

// ListenerConfig is one client endpoint. Clients connected to it present as
// Location: probes and proxied requests for them go through Options.Dial
// with that location, and routing picks the best region from there.
type ListenerConfig struct {
	Location string `json:"location"`
	Addr     string `json:"addr"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms"); a bare JSON number is taken as nanoseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "250ms".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "250ms" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string such as \"250ms\"", b)
	}
	*d = Duration(n)
	return nil
}

// LoadConfig reads a JSON Config from path, applies the defaults and
// validates it. Unknown fields are errors, so a misspelt key is not
// silently ignored.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load traffic manager config: %w", err)
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, path, err)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// withDefaults returns cfg with every zero tunable set to its default.
func (c Config) withDefaults() Config {
	if c.ProbeInterval == 0 {
		c.ProbeInterval = Duration(DefaultProbeInterval)
	}
	if c.SteadyProbeInterval == 0 {
		c.SteadyProbeInterval = Duration(max(DefaultSteadyProbeInterval, time.Duration(c.ProbeInterval)))
	}
	if c.IdleProbeInterval == 0 {
		c.IdleProbeInterval = Duration(max(DefaultIdleProbeInterval, time.Duration(c.SteadyProbeInterval)))
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = Duration(DefaultProbeTimeout)
	}
	if c.FailThreshold == 0 {
		c.FailThreshold = DefaultFailThreshold
	}
	if c.RiseThreshold == 0 {
		c.RiseThreshold = DefaultRiseThreshold
	}
	if c.Hysteresis == 0 {
		c.Hysteresis = DefaultHysteresis
	}
	if c.BodyIdleTimeout == 0 {
		c.BodyIdleTimeout = Duration(DefaultBodyIdleTimeout)
	}
	return c
}

// Validate reports every problem of a configuration (after defaults) at
// once, each naming the field it is about. The error wraps
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Regions) == 0 {
		bad("regions", "at least one region is required")
	}
	regions := map[string]bool{}
	nodeAddrs := map[string]string{}
	for i, r := range c.Regions {
		field := fmt.Sprintf("regions[%d]", i)
		switch {
		case r.Name == "":
			bad(field+".name", "empty")
		case strings.ContainsAny(r.Name, "./ "):
			// Upload session ids are "<region>.<zone>.<uuid>".
			bad(field+".name", "%q: a region name cannot contain '.', '/' or spaces", r.Name)
		case regions[r.Name]:
			bad(field+".name", "region %q listed twice", r.Name)
		}
		regions[r.Name] = true
		if len(r.Nodes) == 0 {
			bad(field+".nodes", "region %q has no nodes", r.Name)
		}
		zones := map[int]bool{}
		for j, n := range r.Nodes {
			nf := fmt.Sprintf("%s.nodes[%d]", field, j)
			if n.Zone < 0 {
				bad(nf+".zone", "negative zone %d", n.Zone)
			}
			if zones[n.Zone] {
				bad(nf+".zone", "zone %d of region %q listed twice", n.Zone, r.Name)
			}
			zones[n.Zone] = true
			if err := checkHostPort(n.HTTP); err != nil {
				bad(nf+".http", "%v", err)
			} else if prev, ok := nodeAddrs[n.HTTP]; ok {
				bad(nf+".http", "%s is also %s", n.HTTP, prev)
			}
			nodeAddrs[n.HTTP] = fmt.Sprintf("%s/%d", r.Name, n.Zone)
		}
	}
	if c.Home == "" {
		bad("home", "the home region is required")
	} else if len(c.Regions) > 0 && !regions[c.Home] {
		bad("home", "%q is not one of the regions", c.Home)
	}
	if len(c.Listeners) == 0 {
		bad("listeners", "at least one listener is required")
	}
	locs, addrs := map[string]bool{}, map[string]bool{}
	for i, l := range c.Listeners {
		field := fmt.Sprintf("listeners[%d]", i)
		if l.Location == "" {
			bad(field+".location", "empty")
		} else if locs[l.Location] {
			bad(field+".location", "location %q has two listeners", l.Location)
		}
		locs[l.Location] = true
		if err := checkHostPort(l.Addr); err != nil {
			bad(field+".addr", "%v", err)
		} else if addrs[l.Addr] && !strings.HasSuffix(l.Addr, ":0") {
			bad(field+".addr", "%s is used by two listeners", l.Addr)
		}
		addrs[l.Addr] = true
	}
	if c.ProbeInterval <= 0 {
		bad("probeInterval", "must be positive")
	}
	if c.SteadyProbeInterval < c.ProbeInterval {
		bad("steadyProbeInterval", "%v is shorter than probeInterval %v", time.Duration(c.SteadyProbeInterval), time.Duration(c.ProbeInterval))
	}
	if c.IdleProbeInterval < c.SteadyProbeInterval {
		bad("idleProbeInterval", "%v is shorter than steadyProbeInterval %v", time.Duration(c.IdleProbeInterval), time.Duration(c.SteadyProbeInterval))
	}
	if c.ProbeTimeout <= 0 {
		bad("probeTimeout", "must be positive")
	}
	if c.FailThreshold < 1 {
		bad("failThreshold", "must be at least 1")
	}
	if c.RiseThreshold < 1 {
		bad("riseThreshold", "must be at least 1")
	}
	if c.Hysteresis < 0 || c.Hysteresis >= 1 {
		bad("hysteresis", "%g is outside [0, 1)", c.Hysteresis)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

func checkHostPort(addr string) error {
	if addr == "" {
		return errors.New("empty address, want host:port")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}
