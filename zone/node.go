package zone

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/testclock"
	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/region/control"
	"github.com/georeg/georeg/region/webhook"
	"github.com/georeg/georeg/replication"
	"github.com/georeg/georeg/replication/site"
	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/zone/api"
	"github.com/georeg/georeg/zone/auth"
	"github.com/georeg/georeg/zone/gateway"
	"github.com/georeg/georeg/zone/upload"
)

// Config configures a Node.
type Config struct {
	// Region and Zone name this node ("westus", 1).
	Region string
	Zone   int
	// Zones is the number of zone nodes in the region (default 1). Writes are
	// acknowledged once a majority of them hold them.
	Zones int
	// Home is the home region, which holds the control plane (default:
	// this node's region).
	Home string
	// HTTPAddr is the address of the distribution API.
	HTTPAddr string
	// GRPCAddr, RaftAddr and GossipAddr are the node's other listeners: the
	// zone protocol, the Raft transport and memberlist. They must stay the
	// same across restarts.
	GRPCAddr, RaftAddr, GossipAddr string
	// AdvertiseHost, when set, replaces the host of HTTPAddr and GRPCAddr
	// in what this node announces to the others: the address they reach
	// it at while those listeners bind a wildcard address (a container on
	// several networks, whose published ports arrive on any of them).
	AdvertiseHost string
	// Join are gossip addresses of other nodes of the mesh.
	Join []string
	// DataDir holds everything the node stores: metadata, the Raft log,
	// staged uploads and, with the filesystem blob store, the blobs.
	DataDir string
	// BlobStore is "fs" (default) or "s3".
	BlobStore string
	// S3 configures the S3 blob store.
	S3 storage.S3Config
	// MaxManifestBytes bounds a manifest body (default 4 MiB).
	MaxManifestBytes int64
	// UploadIdleTimeout expires idle upload sessions (default 1h).
	UploadIdleTimeout time.Duration
	// BodyIdleTimeout is how long a request body may go without delivering
	// a byte before the request fails with 408 and its connection is
	// closed, leaving the upload session as it was (default 30 s; negative:
	// no limit).
	BodyIdleTimeout time.Duration
	// MaxUploadSessions bounds the node's open upload sessions (default 10,000).
	MaxUploadSessions int
	// MaxUploadSessionsPerClient bounds the open upload sessions of one
	// client (default 1,000); over it a client gets 429 with Retry-After.
	MaxUploadSessionsPerClient int
	// Auth is how the node authenticates clients (off by default).
	Auth control.AuthConfig
	// TrustedProxies are the addresses whose X-Forwarded-For names the
	// client (default: loopback, where a local mesh's traffic manager is).
	TrustedProxies []netip.Prefix
	// OutboxMaxEvents and OutboxMaxAge bound the outbox events kept for a
	// peer region that does not acknowledge them (replication.Config).
	OutboxMaxEvents int
	OutboxMaxAge    time.Duration
	// MinRegions is how many regions must hold a pushed manifest before the
	// push is acknowledged (default 1: this region's zones only). A push can
	// ask for more with the Georeg-Geo-Durability header.
	MinRegions int
	// RepairInterval is the time between repair passes (default 5 s).
	RepairInterval time.Duration
	// RaftHeartbeatTimeout is the region's Raft heartbeat timeout
	// (region.GroupConfig.HeartbeatTimeout; default 500 ms).
	RaftHeartbeatTimeout time.Duration
	// BlobQuotaFile, when set, names a file (relative to DataDir unless
	// absolute) holding the most bytes the blob store may hold: a disk
	// quota of the registry's own, set and lifted at run time. A node over
	// its quota refuses writes with ErrNoSpace and answers its health probe
	// with 503, so the traffic manager sends clients to the other zones.
	BlobQuotaFile string
	// WebhookAllowPrivate lets webhooks target loopback, private,
	// link-local, CGNAT, multicast and unspecified addresses, refused
	// otherwise when a webhook is created and on every delivery (see
	// webhook.Refused). A local mesh sets it: its receivers are on loopback.
	WebhookAllowPrivate bool
	// Dial, when set, makes this node's connections to other regions; a
	// local mesh passes its simulated WAN here. Nil dials directly.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, makes every internal port mutual TLS with the
	// cluster's CA: the zone port (gRPC and the blob stream) and Raft
	// accept only holders of a certificate of the cluster, and every link
	// this node makes verifies its peer's. Nil leaves them plaintext, open
	// to anyone who reaches them.
	TLS *tlsconf.Config
	// HTTPS serves the distribution API over TLS with TLS's certificate
	// (which must be set), for any client: no client certificate is asked
	// for.
	HTTPS bool
	// GossipKeys encrypt and authenticate the gossip (members.Config.Keys);
	// nil gossips in the clear.
	GossipKeys [][]byte
	// Connected, when set, makes the node a connected registry's site
	// (issue 17): the Raft leader syncs the repositories it syncs from its
	// parent (replication/site) and, in ReadOnly mode, clients may only
	// pull. The region must be the connected registry's name, its own home.
	Connected *connected.ConnectionString
	// SiteGCGrace is how long a blob of a connected registry's site stays
	// unreferenced before its garbage collector frees it (zero:
	// site.DefaultGCGrace).
	SiteGCGrace time.Duration
	// TestClock, when set, is the time a site's sync windows follow and
	// the age of the notices the gateway hands to connected registries is
	// measured by (their message TTL), instead of the real time: for
	// end-to-end tests only (regiond's GEOREG_TEST_CLOCK).
	TestClock *testclock.Clock
	// DataEndpoints makes the node answer a blob GET that the traffic
	// manager asks to redirect (api.DataLocationHeader) with 307 to a data
	// endpoint of this node and a short-lived URL signed for the caller,
	// so that the bytes go from node to client without the relay. The
	// data endpoint of a client location is its DataListeners entry (a
	// local mesh's), else DataURL; with neither, the bytes are relayed.
	// Never the HTTP address: it serves the whole API, and its bind
	// address means nothing to a remote client.
	DataEndpoints bool
	// DataListeners serve signed blob downloads and nothing else, by
	// client location; the node owns and closes them. A local mesh gives
	// each location one, wrapped in that location's simulated WAN link;
	// the "" entry (regiond --data-http) is reached through DataURL only.
	DataListeners map[string]net.Listener
	// DataURL is the base URL (scheme://host[:port]) clients are
	// redirected to for the "" data listener, as they reach it (a public
	// name, a load balancer): the data endpoint of every client location
	// without a listener of its own. Empty: those clients are relayed.
	DataURL string
	// DataRedirectMinBytes is the smallest blob redirected (default
	// api.DefaultDataRedirectMinBytes; negative: every blob).
	DataRedirectMinBytes int64
	// URLKey is a secret every node of the cluster holds, from which the
	// key of signed blob URLs is derived while authentication is off (never
	// while it is on; auth.Config.URLKey). SetURLKey replaces it.
	URLKey []byte
	// Version is the node's georeg version, told to a connected
	// registry's parent.
	Version string
	Logger  *slog.Logger
}

// Node is one running zone node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	members  *members.List
	group    *region.Group
	local    storage.BlobStore
	quota    *storage.Quota // nil without BlobQuotaFile
	blobs    *region.Blobs
	repairer *region.Repairer
	uploads  *upload.Manager
	repl     *replication.Replicator
	control  *control.Plane
	auth     *auth.Authenticator
	gateway  *gateway.Gateway // connected registries' sync calls
	webhooks *webhook.Dispatcher
	syncer   *site.Syncer // nil unless Config.Connected
	// toLeader carries children's relayed calls from a follower zone of
	// a site to the zone that leads it (nil unless Config.Connected).
	toLeader http.RoundTripper
	metrics  *prometheus.Registry
	handler  *api.Handler
	grpc     *grpc.Server
	zoneSrv  *region.Server
	httpLn   net.Listener
	grpcLn   net.Listener
	// ready is set once the node has caught up with its region's Raft log
	// after starting; until then clients get 503 and go elsewhere.
	ready atomic.Bool
	// metaDigest caches the digest of the metadata per applied index.
	metaDigest digestCache
}

// digestCache keeps the metadata's digest until the applied index moves:
// every write of a node's metadata is a Raft entry, applied with its index
// in one transaction, so the digest of an index never changes. Hashing the
// whole metadata took every GET /_georeg/state, which checkers poll; now
// only the first after a change pays, and concurrent ones share its work.
type digestCache struct {
	mu    sync.Mutex
	index uint64
	d     digest.Digest
}

// get returns the digest of the metadata and the applied index it is of.
func (c *digestCache) get(r interface {
	AppliedIndex() uint64
	DigestAt() (digest.Digest, uint64, error)
}) (digest.Digest, uint64, error) {
	idx := r.AppliedIndex()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.d != "" && c.index == idx {
		return c.d, c.index, nil
	}
	d, at, err := r.DigestAt()
	if err != nil {
		return "", 0, err
	}
	c.d, c.index = d, at
	return d, at, nil
}

// NewNode opens the node's stores, joins the gossip and the region's Raft
// group, and binds its listeners. Call Run to serve.
func NewNode(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg.Region == "" || cfg.Zone <= 0 || cfg.DataDir == "" || cfg.HTTPAddr == "" {
		return nil, fmt.Errorf("zone: Region, Zone (>0), DataDir and HTTPAddr are required")
	}
	if cfg.GRPCAddr == "" || cfg.RaftAddr == "" || cfg.GossipAddr == "" {
		return nil, fmt.Errorf("zone: GRPCAddr, RaftAddr and GossipAddr are required")
	}
	if cfg.Zones == 0 {
		cfg.Zones = 1
	}
	if cfg.Home == "" {
		cfg.Home = cfg.Region
	}
	if cfg.TrustedProxies == nil {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if cfg.DataURL != "" {
		if err := CheckDataURL(cfg.DataURL); err != nil {
			return nil, fmt.Errorf("zone: DataURL: %w", err)
		}
		if _, ok := cfg.DataListeners[""]; !ok && cfg.DataEndpoints {
			return nil, fmt.Errorf("zone: DataURL %s names no data listener (DataListeners[\"\"])", cfg.DataURL)
		}
	}
	if cfg.HTTPS && cfg.TLS == nil {
		return nil, fmt.Errorf("zone: HTTPS needs TLS (a certificate)")
	}
	if c := cfg.Connected; c != nil && (cfg.Region != c.Name || cfg.Home != c.Name) {
		return nil, fmt.Errorf("zone: a connected registry's site is the region %s, its own home (region %s, home %s)", c.Name, cfg.Region, cfg.Home)
	}
	if cfg.Zone > cfg.Zones {
		return nil, fmt.Errorf("zone: zone %d of a region of %d zones", cfg.Zone, cfg.Zones)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("region", cfg.Region, "zone", cfg.Zone)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	n = &Node{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	switch cfg.BlobStore {
	case "", "fs":
		n.local, err = storage.NewFS(storage.FSConfig{Root: filepath.Join(cfg.DataDir, "blobs"), Logger: log})
	case "s3":
		s3cfg := cfg.S3
		s3cfg.Logger = log
		n.local, err = storage.NewS3(ctx, s3cfg)
	default:
		err = fmt.Errorf("unknown blob store %q (want fs or s3)", cfg.BlobStore)
	}
	if err != nil {
		return nil, fmt.Errorf("zone: blob store: %w", err)
	}
	if cfg.BlobQuotaFile != "" {
		qf := cfg.BlobQuotaFile
		if !filepath.IsAbs(qf) {
			qf = filepath.Join(cfg.DataDir, qf)
		}
		if n.quota, err = storage.NewQuota(ctx, storage.QuotaConfig{Store: n.local, LimitFile: qf, Logger: log}); err != nil {
			return nil, fmt.Errorf("zone: blob store quota: %w", err)
		}
		n.local = n.quota
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("zone: listen: %w", err)
	}
	if n.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("zone: listen: %w", err)
	}
	var clientTLS *tls.Config
	if cfg.TLS != nil {
		// TLS ends at the listener: gRPC and the blob stream share the
		// port and are told apart by what the peer sends once inside.
		n.grpcLn = tls.NewListener(n.grpcLn, proto.ServerTLS(cfg.TLS.Server))
		clientTLS = cfg.TLS.Client
	} else {
		log.Warn("INSECURE: no --tls-cert/--tls-key/--tls-ca: the zone port (metadata writes, blob copies, management calls) and Raft accept anyone who can connect; give every node a certificate of the cluster (georeg mesh up does)")
	}
	if cfg.GossipKeys == nil {
		log.Warn("INSECURE: no --gossip-key-file: anyone who reaches the gossip port can join the mesh and announce node addresses")
	}
	self := members.Member{
		ID: members.NodeID(cfg.Region, cfg.Zone), Region: cfg.Region, Zone: cfg.Zone,
		HTTP: advertised(cfg.HTTPAddr, cfg.AdvertiseHost), GRPC: advertised(cfg.GRPCAddr, cfg.AdvertiseHost), Raft: cfg.RaftAddr,
	}
	if n.members, err = members.Start(ctx, members.Config{Self: self, BindAddr: cfg.GossipAddr, Join: cfg.Join, Keys: cfg.GossipKeys, Logger: log}); err != nil {
		return nil, err
	}
	n.group, err = region.NewGroup(ctx, region.GroupConfig{
		RaftAddr: cfg.RaftAddr, Dir: filepath.Join(cfg.DataDir, "raft"), MetaPath: filepath.Join(cfg.DataDir, "meta.db"),
		Zones: cfg.Zones, Members: n.members, TLS: cfg.TLS, HeartbeatTimeout: cfg.RaftHeartbeatTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	// The one owner of the integrity of this node's copies: the zone's
	// Blobs and Server write and check through it, and the API asks Blobs.
	checked := storage.NewChecked(storage.CheckedConfig{Store: n.local, Logger: log})
	n.blobs = region.NewBlobs(region.BlobsConfig{Local: checked, Zones: cfg.Zones, Members: n.members, TLS: clientTLS, Logger: log})
	n.repairer = region.NewRepairer(region.RepairerConfig{Index: n.group, Blobs: n.blobs, Interval: cfg.RepairInterval, Members: n.members, Logger: log})
	n.metrics = prometheus.NewRegistry()
	n.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.repl, err = replication.New(replication.Config{
		Meta: n.group, Blobs: n.blobs, Members: n.members, Dir: filepath.Join(cfg.DataDir, "replication"),
		Metrics: replication.NewMetrics(n.metrics), Logger: log, Dial: cfg.Dial, TLS: clientTLS,
		// A site's outbox drains to its parent (replication/site), not
		// to a peer region.
		Exclude:         func(region string) bool { return region == site.OutboxPeer || n.control.Deleted(region) },
		OutboxMaxEvents: cfg.OutboxMaxEvents, OutboxMaxAge: cfg.OutboxMaxAge,
	})
	if err != nil {
		return nil, err
	}
	n.control = control.New(control.Config{
		Home: cfg.Home, Meta: n.group, Members: n.members, Replication: n.repl, Webhooks: n.group,
		Dir: cfg.DataDir, Logger: log, Dial: cfg.Dial, TLS: clientTLS, Auth: cfg.Auth, WebhookAllowPrivate: cfg.WebhookAllowPrivate,
	})
	acfg := auth.Config{
		Directory:  n.control,
		ClientAddr: n.clientAddr,
		Realm:      n.realm,
		URLKey:     cfg.URLKey,
		Logger:     log,
	}
	if cfg.Connected != nil {
		// n.syncer is made below, before the node serves anything.
		acfg.Ready = func() error { return n.syncer.Ready() }
	}
	n.auth, err = auth.New(acfg)
	if err != nil {
		return nil, err
	}
	conflicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "georeg_connected_tag_conflicts_total",
		Help: "Tags a ReadWrite connected registry synced up that had been written here meanwhile (whichever write won), by connected registry.",
	}, []string{"connected"})
	n.metrics.MustRegister(conflicts)
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "georeg_webhook_deliveries_total", Help: "Webhook delivery attempts by outcome.",
	}, []string{"outcome"})
	n.metrics.MustRegister(deliveries)
	n.webhooks = webhook.New(webhook.Config{
		Region: cfg.Region, Meta: n.group, Webhooks: n.control.Webhooks, Deliveries: deliveries, Logger: log,
		AllowPrivate: cfg.WebhookAllowPrivate,
	})
	opts := proto.ServerOptions()
	if cfg.TLS != nil {
		opts = append(opts, region.PeerAuthOptions()...)
	}
	n.grpc = grpc.NewServer(opts...)
	n.zoneSrv = region.NewServer(n.group, checked)
	zonepb.RegisterZoneServer(n.grpc, n.zoneSrv)
	n.repl.Register(n.grpc)
	n.control.Register(n.grpc)
	// Staged uploads sit beside the blobs so that finishing one is a rename.
	n.uploads, err = upload.New(upload.Config{
		Dir:          filepath.Join(cfg.DataDir, "blobs", "uploads"),
		IdleTimeout:  cfg.UploadIdleTimeout,
		MaxSessions:  cfg.MaxUploadSessions,
		MaxPerClient: cfg.MaxUploadSessionsPerClient,
		IDPrefix:     cfg.Region + "." + strconv.Itoa(cfg.Zone) + ".",
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	var authz api.Authorizer = n.auth
	if cfg.Connected != nil {
		if n.syncer, err = n.newSyncer(*cfg.Connected, clientTLS); err != nil {
			return nil, err
		}
		authz = siteAuthorizer{Authenticator: n.auth, mode: n.syncer.Mode, syncs: n.syncer.Syncs}
	}
	gw := gateway.Config{Region: cfg.Region, Auth: n.auth, Access: n.control, Notices: n.group, Home: n.control,
		Writer: n.group, Conflict: func(name string) { conflicts.WithLabelValues(name).Inc() }, Logger: log}
	if cfg.TestClock != nil {
		gw.Since = cfg.TestClock.Since
	}
	if n.syncer != nil {
		// A connected registry serves the registries below it (nesting).
		gw.Home, gw.Lineage, gw.Refresh = siteHome{n.syncer}, n.syncer, n.syncer.Refresh
		n.toLeader = n.relayTransport(clientTLS)
	}
	n.gateway = gateway.New(gw)
	n.handler, err = api.New(api.Config{
		Meta:                 n.group,
		Blobs:                n.apiBlobs(),
		Uploads:              n.uploads,
		MaxManifestBytes:     cfg.MaxManifestBytes,
		ReadThrough:          n.repl,
		EarlyReplication:     n.repl,
		GeoDurability:        n.repl,
		MinRegions:           cfg.MinRegions,
		TrustedProxies:       cfg.TrustedProxies,
		BodyIdleTimeout:      cfg.BodyIdleTimeout,
		Authorizer:           authz,
		Signer:               n.auth,
		DataEndpoints:        n.dataEndpoints(),
		DataRedirectMinBytes: cfg.DataRedirectMinBytes,
		Logger:               log,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// dataEndpoints returns the base URL of each of the node's data endpoints
// by client location, or nil when blob GETs are never redirected.
func (n *Node) dataEndpoints() map[string]string {
	if !n.cfg.DataEndpoints {
		return nil
	}
	return dataEndpointURLs(n.cfg.HTTPS, n.cfg.DataListeners, n.cfg.DataURL, n.log)
}

// dataEndpointURLs returns where clients of each location are redirected:
// a local mesh's listener of that location at its address, and, under "",
// the advertised dataURL of the --data-http listener. A listener bound to
// an unspecified address (0.0.0.0, ::) is not advertised: a client cannot
// dial it. The node's API address never is: a location missing here gets
// the bytes through the relay.
func dataEndpointURLs(https bool, lns map[string]net.Listener, dataURL string, log *slog.Logger) map[string]string {
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	eps := map[string]string{}
	for loc, ln := range lns {
		if loc == "" {
			continue
		}
		addr := ln.Addr().String()
		if host, _, err := net.SplitHostPort(addr); err != nil || unspecified(host) {
			log.Warn("data endpoint not advertised: bound to an unspecified address", "location", loc, "addr", addr)
			continue
		}
		eps[loc] = scheme + addr
	}
	if dataURL != "" {
		eps[""] = strings.TrimSuffix(dataURL, "/")
	}
	return eps
}

// unspecified reports whether host is empty or an unspecified IP address.
func unspecified(host string) bool {
	ip, err := netip.ParseAddr(host)
	return host == "" || (err == nil && ip.IsUnspecified())
}

// CheckDataURL checks an advertised data endpoint URL (Config.DataURL):
// http or https, a host a client can dial (not 0.0.0.0 or ::), and nothing
// after it, since the node's path, digest and signature follow.
func CheckDataURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an http or https URL", s)
	case unspecified(u.Hostname()):
		return fmt.Errorf("%q: want a host clients can reach, not an unspecified address", s)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("%q: want scheme://host[:port] and nothing more", s)
	}
	return nil
}

// dataMaxConns bounds the open connections of each data listener: a
// client past it waits for its connection to be accepted.
const dataMaxConns = 1024

// dataMaxHeaderBytes bounds a data endpoint request's line and headers:
// a signed URL and a client's usual headers fit many times over.
const dataMaxHeaderBytes = 16 << 10

// dataHandler serves a data endpoint: signed blob downloads only.
func (n *Node) dataHandler() http.Handler {
	h := n.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !api.IsSignedBlobRead(r) || strings.HasPrefix(r.URL.Path, "/_georeg/") {
			w.Header().Set("Georeg-Region", n.cfg.Region)
			w.Header().Set("Georeg-Zone", strconv.Itoa(n.cfg.Zone))
			api.ServeError(w, r, api.ErrNotFound().WithDetail("a data endpoint serves signed blob downloads only; use the registry endpoint"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// clientAddr names the client of r for the failed-login limiter.
func (n *Node) clientAddr(r *http.Request) string {
	addr, _ := api.ClientAddr(r, n.cfg.TrustedProxies)
	return addr
}

// realm is the token endpoint's URL as the client of r reaches it: through
// a trusted proxy (the traffic manager) the Host it forwarded, else this
// node's.
func (n *Node) realm(r *http.Request) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if _, proxied := api.ClientAddr(r, n.cfg.TrustedProxies); proxied {
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			host = h
		}
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
	}
	return scheme + "://" + host + auth.TokenPath
}

// SetGossipKeys replaces the gossip keys while the node runs
// (members.List.SetKeys): how a key is rotated without restarts.
func (n *Node) SetGossipKeys(keys [][]byte) error { return n.members.SetKeys(keys) }

// SetURLKey replaces Config.URLKey while the node runs, as the gossip key
// it comes from is rotated.
func (n *Node) SetURLKey(key []byte) { n.auth.SetURLKey(key) }

// Addr returns the address the API listens on.
func (n *Node) Addr() string { return n.httpLn.Addr().String() }

// Handler returns the node's HTTP handler: the distribution API under /v2/
// and the node's own status under /_georeg/.
func (n *Node) Handler() http.Handler {
	// Not a ServeMux: it cleans paths with redirects, and the API must see
	// "a//b" to refuse it as an invalid name.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer names the node that gave it, so a client behind the
		// traffic manager can tell which region served it.
		w.Header().Set("Georeg-Region", n.cfg.Region)
		w.Header().Set("Georeg-Zone", strconv.Itoa(n.cfg.Zone))
		switch {
		case r.URL.Path == "/_georeg/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			n.serveHealth(w, r)
		case r.URL.Path == "/_georeg/status" && r.Method == http.MethodGet:
			n.serveStatus(w, r)
		case r.URL.Path == "/_georeg/state" && r.Method == http.MethodGet:
			n.serveState(w, r)
		case r.URL.Path == "/metrics" && r.Method == http.MethodGet:
			promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		case r.URL.Path == auth.TokenPath:
			n.auth.ServeHTTP(w, r)
		case !n.ready.Load():
			w.Header().Set("Retry-After", "1")
			api.ServeError(w, r, api.ErrUnavailable.WithDetail("this zone is catching up with its region; try another zone or retry"))
		case strings.HasPrefix(r.URL.Path, connected.APIPrefix+"/"):
			if !n.forwardRelay(w, r) {
				n.gateway.ServeHTTP(w, r)
			}
		default:
			n.handler.ServeHTTP(w, r)
		}
	})
}

// catchUp marks the node ready once it has applied what its region's leader
// had committed, checking a few times a second.
func (n *Node) catchUp(ctx context.Context) {
	for !n.ready.Load() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if n.group.CaughtUp(cctx) {
			n.ready.Store(true)
			n.log.Info("caught up with the region; serving clients", "applied", n.group.Status().AppliedIndex)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Run serves until ctx is cancelled, then drains requests for up to 10 s,
// leaves the gossip and closes the stores.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	srv := &http.Server{
		Handler:           n.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	go n.catchUp(ctx)
	go n.uploads.Run(ctx)
	go n.repairer.Run(ctx)
	go n.repl.Run(ctx)
	go n.control.Run(ctx)
	go n.webhooks.Run(ctx)
	if n.syncer != nil {
		go n.runSyncer(ctx)
	}
	errc := make(chan error, 2+len(n.cfg.DataListeners))
	httpLn := n.httpLn
	if n.cfg.HTTPS {
		httpLn = tls.NewListener(httpLn, &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: n.cfg.TLS.Server.Certificates,
			NextProtos:   []string{"http/1.1"},
		})
	}
	go func() { errc <- srv.Serve(httpLn) }()
	go func() { errc <- region.Serve(n.grpcLn, n.grpc, n.zoneSrv, n.log) }()
	var dataSrvs []*http.Server
	for loc, ln := range n.cfg.DataListeners {
		// A data endpoint faces clients directly and takes only signed
		// GETs: small headers, and at most dataMaxConns connections at a
		// time, so a flood of them cannot exhaust the node's files.
		ln = newLimitListener(ln, dataMaxConns)
		ds := &http.Server{
			Handler:           n.dataHandler(),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    dataMaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		}
		dataSrvs = append(dataSrvs, ds)
		if n.cfg.HTTPS {
			ln = tls.NewListener(ln, &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: n.cfg.TLS.Server.Certificates,
				NextProtos:   []string{"http/1.1"},
			})
		}
		n.log.Info("data endpoint", "location", loc, "addr", ln.Addr().String())
		go func() {
			if err := ds.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	n.log.Info("serving", "http", n.Addr(), "https", n.cfg.HTTPS, "grpc", n.cfg.GRPCAddr, "raft", n.cfg.RaftAddr, "gossip", n.cfg.GossipAddr, "data", n.cfg.DataDir)
	select {
	case err := <-errc:
		return fmt.Errorf("zone: serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, ds := range dataSrvs {
		go ds.Shutdown(shutdown)
	}
	err := srv.Shutdown(shutdown)
	n.grpc.GracefulStop()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	n.log.Info("stopped")
	return nil
}

// Health is what GET /_georeg/health answers, with 200 when the node serves
// clients and 503 while it catches up. The traffic manager probes it several
// times a second, so it is cheap.
type Health struct {
	Region string `json:"region"`
	Zone   int    `json:"zone"`
	Ready  bool   `json:"ready"`
	// DiskFull: the blob store is at its quota; the node takes itself out
	// of client traffic until there is room again.
	DiskFull bool   `json:"diskFull,omitempty"`
	Home     string `json:"home"`
	RaftRole string `json:"raftRole"`
	// Endpoints is the region-endpoint-enabled flag of every region, from
	// the control plane (this node's copy outside the home region).
	Endpoints map[string]bool `json:"endpoints"`
	// ControlFetched is when this node last copied the control state from
	// the home region.
	ControlFetched time.Time `json:"controlFetched"`
}

func (n *Node) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := Health{Region: n.cfg.Region, Zone: n.cfg.Zone, Ready: n.ready.Load(), Home: n.cfg.Home,
		RaftRole: strings.ToLower(n.group.Role())}
	h.Endpoints, h.ControlFetched = n.control.EndpointsEnabled()
	h.DiskFull = n.quota != nil && n.quota.Full()
	w.Header().Set("Cache-Control", "no-store")
	if !h.Ready || h.DiskFull {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(h)
		return
	}
	writeJSON(w, h)
}

// Status is what GET /_georeg/status answers: the node's view of its region.
type Status struct {
	ID            string        `json:"id"`
	Region        string        `json:"region"`
	Zone          int           `json:"zone"`
	Zones         int           `json:"zones"`
	Raft          region.Status `json:"raft"`
	Members       []string      `json:"members"`
	RepairBacklog int64         `json:"repairBacklog"`
	Repaired      int64         `json:"repaired"`
	RepairPasses  int64         `json:"repairPasses"`
	Uploads       int           `json:"uploads"`
	// Peers is replication to each other region, as this node sees it (only
	// the region's leader sends, so followers show what they last knew).
	Peers []replication.PeerStatus `json:"peers"`
	// Synced is when anti-entropy last found nothing to pull from each peer.
	Synced map[string]time.Time `json:"synced"`
	// Site is a connected registry's sync from its parent (only on a
	// site's node; followers' syncers do not run).
	Site *site.Report `json:"site,omitempty"`
}

func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := Status{
		ID: members.NodeID(n.cfg.Region, n.cfg.Zone), Region: n.cfg.Region, Zone: n.cfg.Zone, Zones: n.cfg.Zones,
		Raft:          n.group.Status(),
		RepairBacklog: n.repairer.Backlog(),
		Repaired:      n.repairer.Repaired(),
		RepairPasses:  n.repairer.Passes(),
		Uploads:       n.uploads.Count(),
		Peers:         n.repl.Peers(),
		Synced:        n.repl.Synced(),
	}
	for _, m := range n.members.Alive() {
		st.Members = append(st.Members, m.ID)
	}
	if n.syncer != nil {
		rep := n.syncer.Report()
		st.Site = &rep
	}
	writeJSON(w, st)
}

// State is what GET /_georeg/state answers: enough to compare replicas
// digest by digest. With authentication on, only an operator may ask (see
// auth.Authenticator.Operator).
type State struct {
	// Meta is the digest of the node's metadata (meta.Reader.Digest).
	Meta digest.Digest `json:"meta"`
	// AppliedIndex is the last Raft entry applied.
	AppliedIndex uint64 `json:"appliedIndex"`
	// Blobs are the digests of the blobs in the local store, sorted.
	Blobs []digest.Digest `json:"blobs"`
}

func (n *Node) serveState(w http.ResponseWriter, r *http.Request) {
	// It names every blob of every repository: operators only.
	if err := n.auth.Operator(r.Context(), r); err != nil {
		api.ServeError(w, r, err)
		return
	}
	st := State{Blobs: []digest.Digest{}}
	var err error
	if st.Meta, st.AppliedIndex, err = n.metaDigest.get(n.group); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	err = n.local.Walk(r.Context(), func(d digest.Digest, _ int64) error {
		st.Blobs = append(st.Blobs, d)
		return nil
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sort.Slice(st.Blobs, func(i, j int) bool { return st.Blobs[i] < st.Blobs[j] })
	writeJSON(w, st)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (n *Node) close() {
	if n.group != nil {
		n.group.Close()
	}
	if n.members != nil {
		n.members.Leave(time.Second)
	}
	if n.blobs != nil {
		n.blobs.Close()
	}
	if n.repl != nil {
		n.repl.Close()
	}
	if n.control != nil {
		n.control.Close()
	}
	for _, l := range []net.Listener{n.httpLn, n.grpcLn} {
		if l != nil {
			l.Close()
		}
	}
	for _, l := range n.cfg.DataListeners {
		l.Close()
	}
}

// advertised returns addr with its host replaced by host, when host is set.
func advertised(addr, host string) string {
	if host == "" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, port)
}
