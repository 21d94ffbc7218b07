// Command regiond runs one zone node of a georeg region: it serves the OCI
// Distribution API over HTTP from its own data directory.
//
//	regiond --region westus --zone 1 --zones 3 --http 127.0.0.1:5001 \
//	        --grpc 127.0.0.1:5101 --raft 127.0.0.1:5201 --gossip 127.0.0.1:5301 \
//	        --join 127.0.0.1:5302,127.0.0.1:5303 --data /var/lib/georeg/westus-1 \
//	        --tls-cert westus-1.crt --tls-key westus-1.key --tls-ca ca.crt \
//	        --gossip-key-file gossip.key
//
// Without --tls-cert, --tls-key and --tls-ca its internal ports (gRPC and
// the blob stream, Raft) accept anyone, and without --gossip-key-file so
// does the gossip; it says so in its log (docs/security.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/healthcheck"
	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/testclock"
	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/zone"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "regiond:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("regiond", flag.ContinueOnError)
	var cfg zone.Config
	var logLevel string
	var showVersion bool
	fs.StringVar(&cfg.Region, "region", "westus", "region this node belongs to")
	fs.IntVar(&cfg.Zone, "zone", 1, "zone number of this node within its region")
	fs.StringVar(&cfg.Home, "home", "", "home region, which holds the control plane (default: --region)")
	fs.IntVar(&cfg.Zones, "zones", 1, "number of zone nodes in the region (writes need a majority)")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:5000", "address of the distribution API")
	fs.StringVar(&cfg.GRPCAddr, "grpc", "127.0.0.1:5100", "address of the zone protocol (gRPC)")
	fs.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:5200", "address of the Raft transport")
	fs.StringVar(&cfg.GossipAddr, "gossip", "127.0.0.1:5300", "address of memberlist gossip (TCP and UDP)")
	fs.StringVar(&cfg.AdvertiseHost, "advertise", "", "`host` the other nodes and the traffic manager reach --http and --grpc at, when those bind a wildcard address such as 0.0.0.0 (a container on several networks)")
	var join string
	fs.StringVar(&join, "join", "", "comma-separated gossip addresses of other nodes of the mesh")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory (required)")
	fs.StringVar(&cfg.BlobStore, "blob-store", "fs", "blob store: fs or s3")
	fs.StringVar(&cfg.S3.Endpoint, "s3-endpoint", "", "S3 endpoint host:port")
	fs.StringVar(&cfg.S3.Bucket, "s3-bucket", "georeg", "S3 bucket")
	fs.StringVar(&cfg.S3.AccessKey, "s3-access-key", os.Getenv("GEOREG_S3_ACCESS_KEY"), "S3 access key (default $GEOREG_S3_ACCESS_KEY)")
	fs.StringVar(&cfg.S3.SecretKey, "s3-secret-key", os.Getenv("GEOREG_S3_SECRET_KEY"), "S3 secret key (default $GEOREG_S3_SECRET_KEY)")
	fs.StringVar(&cfg.S3.Region, "s3-region", "us-east-1", "S3 region")
	fs.BoolVar(&cfg.S3.Secure, "s3-tls", false, "use TLS to reach S3")
	fs.IntVar(&cfg.MinRegions, "geo-durability", 1, "regions that must hold a pushed manifest before the push is acknowledged")
	fs.IntVar(&cfg.OutboxMaxEvents, "outbox-max-events", 0, "drop a peer region's replication events once it lacks more than this many; it re-syncs by anti-entropy when back (default 100000, -1 no bound)")
	fs.DurationVar(&cfg.OutboxMaxAge, "outbox-max-age", 0, "drop a peer region's replication events once the oldest it lacks is older than this; it re-syncs by anti-entropy when back (default 24h, -1s no bound)")
	fs.Int64Var(&cfg.MaxManifestBytes, "max-manifest-bytes", 4<<20, "largest manifest accepted")
	fs.DurationVar(&cfg.RaftHeartbeatTimeout, "raft-heartbeat-timeout", 0, "how long a zone waits to hear from its region's Raft leader before it stands for election; the leader's lease is half of it (default 500ms: failover within about a second on one machine; give more across machines or on a loaded host)")
	fs.DurationVar(&cfg.UploadIdleTimeout, "upload-idle-timeout", 0, "expire upload sessions idle this long (default 1h)")
	fs.DurationVar(&cfg.BodyIdleTimeout, "body-idle-timeout", 0, "close the connection of a request whose body sends nothing this long; its upload session is left as it was (default 30s)")
	fs.IntVar(&cfg.MaxUploadSessions, "max-upload-sessions", 0, "open upload sessions allowed on this node (default 10000)")
	fs.IntVar(&cfg.MaxUploadSessionsPerClient, "max-upload-sessions-per-client", 0, "open upload sessions one client may hold on this node (default 1000)")
	var trusted string
	fs.StringVar(&trusted, "trusted-proxies", "127.0.0.0/8,::1/128", "comma-separated `CIDRs` whose X-Forwarded-For names the client (the traffic manager's addresses)")
	fs.StringVar(&cfg.BlobQuotaFile, "blob-quota-file", "", "`file` (relative to --data) holding the most bytes the blob store may hold, read while running; absent file: no limit")
	fs.BoolVar(&cfg.Auth.Required, "auth", false, "require authentication (tokens, the Docker token flow); a node refuses clients until it holds the registry's access state")
	var adminHashFile string
	fs.StringVar(&adminHashFile, "admin-password-hash-file", "", "`file` holding the bcrypt hash of the admin password, recorded when the registry's access state is first created (with --auth)")
	fs.BoolVar(&cfg.WebhookAllowPrivate, "webhook-allow-private", false, "let webhooks target loopback, private (RFC 1918, fc00::/7), link-local (cloud metadata), CGNAT, multicast and unspecified addresses; refused otherwise, when created and on every delivery (set it on every node)")
	var tlsFiles tlsconf.Files
	fs.StringVar(&tlsFiles.Cert, "tls-cert", "", "PEM `file` of this node's certificate, signed by the cluster CA: with --tls-key and --tls-ca, every internal port (gRPC, blob stream, Raft) is mutual TLS")
	fs.StringVar(&tlsFiles.Key, "tls-key", "", "PEM `file` of the key of --tls-cert")
	fs.StringVar(&tlsFiles.CA, "tls-ca", "", "PEM `file` of the cluster CA's certificate")
	fs.BoolVar(&cfg.HTTPS, "https", false, "serve the distribution API over HTTPS with --tls-cert (clients bring no certificate)")
	var gossipKeyFile string
	fs.StringVar(&gossipKeyFile, "gossip-key-file", "", "`file` of base64 gossip keys, one a line, the first encrypting; read again on SIGHUP (see docs/security.md to rotate)")
	fs.BoolVar(&cfg.DataEndpoints, "data-endpoints", true, "answer a blob GET the traffic manager asks to redirect with 307 to this node's data endpoint and a short-lived signed URL (with --wan, one listener per client location on a free port, behind that location's simulated link; else --data-http reached at --data-url; with neither, the bytes are relayed)")
	var dataHTTP string
	fs.StringVar(&dataHTTP, "data-http", "", "listen `address` of a data endpoint that serves signed blob downloads only (HTTPS with --tls); clients are redirected to it only through --data-url")
	fs.StringVar(&cfg.DataURL, "data-url", "", "base `URL` (scheme://host[:port]) at which clients reach --data-http, as they see it (not 0.0.0.0 or ::); clients outside a --wan mesh are redirected only with it")
	fs.Int64Var(&cfg.DataRedirectMinBytes, "data-redirect-min-bytes", 0, "smallest blob redirected to a data endpoint; smaller ones are relayed (default 1 MiB, -1 every blob)")
	var wanFile string
	fs.StringVar(&wanFile, "wan", "", "simulated WAN `file` of a local mesh (base/wan): links to other regions get its latency, caps and cuts")
	var connStr, connFile string
	fs.StringVar(&connStr, "connection-string", "", "run as a connected registry (docs/connected.md): the `string` georeg connected-registry get-settings printed; the node is a zone of a region named after it (one zone, or --zones N with --join among them), authentication on, syncing from its parent")
	fs.StringVar(&connFile, "connection-string-file", "", "`file` holding the connection string (keeps the sync token's password out of the process list)")
	fs.DurationVar(&cfg.SiteGCGrace, "site-gc-grace", 0, "at a connected registry's site: how long a blob stays unreferenced (deleted in the cloud, or outside the repositories synced) before the garbage collector frees it; longer than the longest push or image download (default 1h)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	var health healthcheck.Config
	healthCheck := fs.Bool("health-check", false, "probe a running node instead of starting one (a container image's HEALTHCHECK): GET --health-url, exit 0 on 200 or 401")
	fs.StringVar(&health.URL, "health-url", "", "`URL` --health-check probes (default $"+healthcheck.EnvURL+", then "+healthcheck.DefaultURL+")")
	fs.StringVar(&health.CA, "health-ca", "", "PEM `file` of the CA an HTTPS answer to --health-check must be signed by (default $"+healthcheck.EnvCA+")")
	err := fs.Parse(args)
	if err != nil {
		return err
	}
	if showVersion {
		fmt.Println("regiond", version)
		return nil
	}
	if *healthCheck {
		return healthcheck.Probe(context.Background(), health)
	}
	if join != "" {
		cfg.Join = strings.Split(join, ",")
	}
	for _, p := range strings.Split(trusted, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pfx)
	}
	if cfg.TrustedProxies == nil {
		cfg.TrustedProxies = []netip.Prefix{}
	}
	if cfg.DataDir == "" {
		return fmt.Errorf("--data is required")
	}
	if adminHashFile != "" {
		h, err := os.ReadFile(adminHashFile)
		if err != nil {
			return fmt.Errorf("--admin-password-hash-file: %w", err)
		}
		cfg.Auth.AdminHash = []byte(strings.TrimSpace(string(h)))
	}
	if tlsFiles.Enabled() {
		if cfg.TLS, err = tlsconf.Load(tlsFiles); err != nil {
			return fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err)
		}
	}
	if gossipKeyFile != "" {
		if cfg.GossipKeys, err = members.ReadKeyFile(gossipKeyFile); err != nil {
			return fmt.Errorf("--gossip-key-file: %w", err)
		}
	}
	if err := connectedFlags(fs, &cfg, connStr, connFile); err != nil {
		return err
	}
	if cfg.TestClock, err = testClock(os.Getenv, time.Now()); err != nil {
		return err
	}
	cfg.Version = version
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cfg.TestClock != nil {
		cfg.Logger.Warn("running on a test clock: sync windows and message TTLs do not follow the real time", "clock", cfg.TestClock.String())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if wanFile != "" {
		nw, err := wan.Open(ctx, wan.NetworkConfig{File: wanFile, Logger: cfg.Logger})
		if err != nil {
			return fmt.Errorf("--wan: %w", err)
		}
		dial := nw.Dialer(cfg.Region, true)
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }
		if cfg.DataEndpoints {
			if cfg.DataListeners, err = dataListeners(nw, cfg.HTTPAddr, cfg.Region); err != nil {
				return err
			}
		}
	}
	if cfg.DataURL != "" && dataHTTP == "" {
		return fmt.Errorf("--data-url needs --data-http: the listener it advertises")
	}
	if cfg.DataURL != "" {
		if err := zone.CheckDataURL(cfg.DataURL); err != nil {
			return fmt.Errorf("--data-url: %w", err)
		}
	}
	if dataHTTP != "" && cfg.DataEndpoints {
		ln, err := net.Listen("tcp", dataHTTP)
		if err != nil {
			return fmt.Errorf("--data-http: %w", err)
		}
		if cfg.DataListeners == nil {
			cfg.DataListeners = map[string]net.Listener{}
		}
		cfg.DataListeners[""] = ln
		if cfg.DataURL == "" {
			cfg.Logger.Warn("--data-http without --data-url: clients outside the --wan mesh get blobs through the relay")
		}
	}
	if len(cfg.GossipKeys) > 0 {
		// A secret every node of the mesh holds: the key of signed blob
		// URLs while authentication is off (never while it is on).
		cfg.URLKey = cfg.GossipKeys[0]
	}
	node, err := zone.NewNode(ctx, cfg)
	if err != nil {
		return err
	}
	if gossipKeyFile != "" {
		// SIGHUP reads the key file again: a rotation without restarts.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
				}
				keys, err := members.ReadKeyFile(gossipKeyFile)
				if err == nil {
					err = node.SetGossipKeys(keys)
				}
				if err == nil {
					// The URL key follows the gossip key it is derived from.
					node.SetURLKey(keys[0])
				}
				if err != nil {
					cfg.Logger.Error("gossip keys not reloaded", "file", gossipKeyFile, "err", err)
					continue
				}
				cfg.Logger.Info("gossip keys reloaded", "file", gossipKeyFile, "keys", len(keys))
			}
		}()
	}
	return node.Run(ctx)
}

// The test clock's environment: GEOREG_TEST_CLOCK is a base/testclock
// spec, which sync windows and message TTLs follow instead of the real
// time; regiond refuses it unless GEOREG_TESTING=1. It is an environment
// variable, not a flag, so that a test reaches every node of a local
// mesh through `georeg mesh up` unchanged.
const (
	testClockEnv = "GEOREG_TEST_CLOCK"
	testingEnv   = "GEOREG_TESTING"
)

// testClock returns the clock $GEOREG_TEST_CLOCK asks for, nil when
// unset.
func testClock(getenv func(string) string, now time.Time) (*testclock.Clock, error) {
	spec := getenv(testClockEnv)
	if spec == "" {
		return nil, nil
	}
	if getenv(testingEnv) != "1" {
		return nil, fmt.Errorf("$%s is for tests only (it moves the time of sync windows and message TTLs): unset it, or set %s=1 in a test", testClockEnv, testingEnv)
	}
	c, err := testclock.Parse(spec, now)
	if err != nil {
		return nil, fmt.Errorf("$%s: %w", testClockEnv, err)
	}
	return c, nil
}

// connectedFlags configures a connected registry's site from
// --connection-string or --connection-string-file: a region of its own,
// named after it, with authentication on and no peer regions. A site of
// several zones runs one node per zone (--zone, --zones and --join among
// them, each with the same connection string), like a region's.
func connectedFlags(fs *flag.FlagSet, cfg *zone.Config, str, file string) error {
	if str != "" && file != "" {
		return fmt.Errorf("--connection-string and --connection-string-file: give one")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--connection-string-file: %w", err)
		}
		str = string(b)
	}
	if str == "" {
		if cfg.SiteGCGrace != 0 {
			return fmt.Errorf("--site-gc-grace: only for a connected registry's site (with --connection-string or --connection-string-file)")
		}
		return nil
	}
	cs, err := connected.ParseConnectionString(str)
	if err != nil {
		return fmt.Errorf("--connection-string: %w", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["region"] && cfg.Region != cs.Name || set["home"] && cfg.Home != cs.Name {
		return fmt.Errorf("--connection-string: a connected registry's site is the region %s, its own home: drop --region and --home", cs.Name)
	}
	cfg.Region, cfg.Home = cs.Name, cs.Name
	cfg.Auth.Required = true
	if cfg.SiteGCGrace < 0 {
		return fmt.Errorf("--site-gc-grace %v: must not be negative", cfg.SiteGCGrace)
	}
	cfg.Connected = &cs
	return nil
}

// dataListeners opens one data endpoint per client location of the
// simulated WAN, on a free port of the HTTP address's host. Clients do not
// dial through the simulated WAN, so each listener applies its location's
// link to the connections it accepts: a redirected download pays the
// latency, caps and cuts between the client's location and this region,
// as a proxied one did between the traffic manager's listener and here.
func dataListeners(nw *wan.Network, httpAddr, region string) (map[string]net.Listener, error) {
	host, _, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	lns := map[string]net.Listener{}
	for _, loc := range nw.Current().Locations() {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("data endpoint for %s: %w", loc, err)
		}
		lns[loc] = nw.Listener(ln, loc, region)
	}
	return lns, nil
}
