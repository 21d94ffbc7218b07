// Package replicationtest runs regions of a registry in one process, for
// tests of replication and of what is built on it.
//
// # Basics
//
// [New] starts one node per region, as the regions' Raft leaders would run
// them: a real base/meta store (bbolt), a storage.FS blob store, and a
// replication.Replicator served over real gRPC on loopback. Every region
// dials the others through one simulated WAN (base/wan), so a test can cut
// the link between two regions, slow it, and heal it ([Mesh.Cut],
// [Mesh.SetLink], [Mesh.Heal]) while replication runs. Writes are made
// through [Region.Push] and friends, the way the distribution API makes
// them: local commands stamped with the region's hybrid logical clock,
// which append to the outbox.
//
// The logs of every region go to a buffer that is printed only when the
// test fails.
//
// # Caveats
//
// A region is one node that always leads: leader loss and the region's own
// Raft group are tested one layer up (region/regiontest). Gossip is static:
// a cut link hides no member, as memberlist does not see the simulated WAN
// either. Anti-entropy runs every hour unless [Config] says otherwise, so
// that a test sees offers deliver, not anti-entropy repair.
package replicationtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/hlc"
	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/internal/syncbuf"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/replication"
	"github.com/georeg/georeg/storage"
)

// WaitTimeout bounds every wait for the mesh to reach a state. Replication
// on loopback takes milliseconds; the margin is for a loaded machine running
// the race detector, and for retries after a healed cut (the sender backs
// off up to 5 s, gRPC reconnects up to 1 s). At load average 30 one
// anti-entropy catch-up of 400 images took over 30 s (TestOutboxBound).
const WaitTimeout = 60 * time.Second

// Config configures a Mesh.
type Config struct {
	// Regions names the regions, one node each (default westus, eastus).
	Regions []string
	// AntiEntropyInterval is replication.Config.AntiEntropyInterval
	// (default 1 h: no round but the one each sender starts with).
	AntiEntropyInterval time.Duration
	// OutboxMaxEvents and OutboxMaxAge are replication.Config's (default
	// 100,000 events and 24 h).
	OutboxMaxEvents int
	// BlobConns is replication.Config.BlobConns (default 4).
	BlobConns    int
	OutboxMaxAge time.Duration
}

// Mesh is the regions of one test and the WAN between them. It stops when
// the test ends.
type Mesh struct {
	t       testing.TB
	logs    *logBuffer
	wanPath string
	network *wan.Network

	wanMu  sync.Mutex
	wanCfg wan.Config

	regions []*Region
}

// Region is one region's node. Its fields are the real parts, for a test to
// read state from or act on directly.
type Region struct {
	Name       string
	Addr       string // the gRPC listener
	Meta       *Meta
	Blobs      *storage.FS
	Replicator *replication.Replicator
	Metrics    *replication.Metrics
	// Dial is how this region reaches the others: through the WAN.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	mesh *Mesh

	askedMu sync.Mutex
	asked   map[digest.Digest]int // GetBlob requests served, per digest
}

// New starts the regions of cfg and the replication between them.
func New(t testing.TB, cfg Config) *Mesh {
	t.Helper()
	if len(cfg.Regions) == 0 {
		cfg.Regions = []string{"westus", "eastus"}
	}
	if cfg.AntiEntropyInterval == 0 {
		cfg.AntiEntropyInterval = time.Hour
	}
	m := &Mesh{t: t, logs: newLogBuffer(t), wanPath: filepath.Join(t.TempDir(), "wan.json")}

	// Listen first: the WAN's config places every listener in its region.
	lns := make([]net.Listener, len(cfg.Regions))
	m.wanCfg = wan.Config{Version: wan.Version, Addresses: map[string]string{},
		DefaultRTT: wan.Duration(time.Millisecond), DefaultLocalRTT: wan.Duration(time.Millisecond)}
	for i, name := range cfg.Regions {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns[i] = ln
		m.wanCfg.Addresses[ln.Addr().String()] = name
		// No delay at all until a test asks for one: a link that adds
		// nothing is a plain socket.
		for _, other := range cfg.Regions[:i+1] {
			m.wanCfg.SetLink(wan.Link{A: other, B: name})
		}
	}
	if err := m.wanCfg.Save(m.wanPath); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	network, err := wan.Open(ctx, wan.NetworkConfig{File: m.wanPath, PollInterval: 10 * time.Millisecond, Logger: m.logs.logger("wan")})
	if err != nil {
		t.Fatal(err)
	}
	m.network = network

	var all []members.Member
	for i, name := range cfg.Regions {
		all = append(all, members.Member{ID: members.NodeID(name, 1), Region: name, Zone: 1, GRPC: lns[i].Addr().String()})
	}
	for i := range cfg.Regions {
		m.regions = append(m.regions, m.start(ctx, cfg, lns[i], all[i], all))
	}
	return m
}

func (m *Mesh) start(ctx context.Context, cfg Config, ln net.Listener, self members.Member, all []members.Member) *Region {
	t := m.t
	t.Helper()
	dir := t.TempDir()
	lg := m.logs.logger(self.Region)
	store, err := meta.Open(meta.Config{Path: filepath.Join(dir, "meta.db"), Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := storage.NewFS(storage.FSConfig{Root: filepath.Join(dir, "blobs"), Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	dial := m.network.Dialer(self.Region, true)
	r := &Region{
		Name:    self.Region,
		Addr:    ln.Addr().String(),
		Meta:    &Meta{Store: store, self: self, clock: hlc.New(nil)},
		Blobs:   blobs,
		Metrics: replication.NewMetrics(prometheus.NewRegistry()),
		Dial:    func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) },
		mesh:    m,
	}
	r.Replicator, err = replication.New(replication.Config{
		Meta: r.Meta, Blobs: blobs, Members: &staticMembers{self: self, all: all},
		Dir: filepath.Join(dir, "replication"), Metrics: r.Metrics,
		AntiEntropyInterval: cfg.AntiEntropyInterval, Logger: lg, Dial: r.Dial,
		OutboxMaxEvents: cfg.OutboxMaxEvents, OutboxMaxAge: cfg.OutboxMaxAge, BlobConns: cfg.BlobConns,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(proto.ServerOptions(), grpc.ChainStreamInterceptor(r.countGetBlob))...)
	r.Replicator.Register(srv)
	go srv.Serve(ln)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Replicator.Run(rctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Stop()
		r.Replicator.Close()
		store.Close()
	})
	return r
}

// Region returns the region called name.
func (m *Mesh) Region(name string) *Region {
	for _, r := range m.regions {
		if r.Name == name {
			return r
		}
	}
	m.t.Fatalf("no region %s in the mesh", name)
	return nil
}

// Regions returns every region, in the order of Config.Regions.
func (m *Mesh) Regions() []*Region { return append([]*Region(nil), m.regions...) }

// Logs returns everything the regions logged so far.
func (m *Mesh) Logs() string { return m.logs.String() }

// SetLink changes the link between two regions (round trip, bandwidth,
// cut) and returns once the WAN applies it: new dials see it, and a cut has
// closed the link's open connections.
func (m *Mesh) SetLink(l wan.Link) {
	m.t.Helper()
	m.wanMu.Lock()
	m.wanCfg.SetLink(l)
	err := m.wanCfg.Save(m.wanPath)
	m.wanMu.Unlock()
	if err != nil {
		m.t.Fatal(err)
	}
	want := m.wanCfg.Link(l.A, l.B)
	WaitFor(m.t, fmt.Sprintf("the WAN to apply the link %s-%s", l.A, l.B), func() bool {
		return m.network.Current().Link(l.A, l.B) == want
	})
	m.t.Logf("link %s-%s: rtt %v, bandwidth %d B/s, cut %v", l.A, l.B, l.RTT, l.Bandwidth, l.Cut)
}

// Cut partitions regions a and b: dials between them fail and their open
// connections close.
func (m *Mesh) Cut(a, b string) { m.SetLink(wan.Link{A: a, B: b, Cut: true}) }

// Heal restores the link between a and b to a plain loopback connection.
func (m *Mesh) Heal(a, b string) { m.SetLink(wan.Link{A: a, B: b}) }

// Meta is a one-node region's metadata: a meta.Store that stamps local
// writes with the region's hybrid logical clock, as region.Group does, and
// always leads. It implements replication.Metadata and
// replication.TransferLog.
type Meta struct {
	*meta.Store
	self  members.Member
	clock *hlc.Clock
	// Leaderless, when set, makes Leader report none, as a follower of a
	// region electing a leader does; the node still leads for the rest.
	Leaderless atomic.Bool
}

// Apply stamps cmd as region.Group.Apply does and applies it.
func (m *Meta) Apply(ctx context.Context, cmd meta.Command) error {
	return m.Store.Apply(ctx, meta.StampFor(cmd, m.clock, m.self.Region))
}

// IsLeader is true: the node is its region.
func (m *Meta) IsLeader() bool { return true }

// Leader is the node itself.
func (m *Meta) Leader() (members.Member, bool) { return m.self, !m.Leaderless.Load() }

// Barrier returns at once: one node has applied every write of its region.
func (m *Meta) Barrier(ctx context.Context) error { return ctx.Err() }

var (
	_ replication.Metadata    = (*Meta)(nil)
	_ replication.TransferLog = (*Meta)(nil)
)

// staticMembers is a gossip view that never changes.
type staticMembers struct {
	self members.Member
	all  []members.Member
}

func (s *staticMembers) Self() members.Member     { return s.self }
func (s *staticMembers) Alive() []members.Member  { return s.all }
func (s *staticMembers) Changed() <-chan struct{} { return nil }
func (s *staticMembers) Region(region string) []members.Member {
	var out []members.Member
	for _, m := range s.all {
		if m.Region == region {
			out = append(out, m)
		}
	}
	return out
}

// Image is a manifest pushed with Push: its digest and its blobs.
type Image struct {
	Repo     string
	Tag      string
	Manifest digest.Digest
	Config   digest.Digest
	Layers   []digest.Digest
}

// Blobs returns the config and layer digests.
func (i Image) Blobs() []digest.Digest { return append([]digest.Digest{i.Config}, i.Layers...) }

// RandomLayer returns size random bytes.
func RandomLayer(t testing.TB, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Push stores layers and a config as blobs of repo and pushes an image
// manifest of them, tagged tag unless tag is empty, as a client's push
// through the distribution API would: the blobs are linked first, then the
// manifest is one local command that appends an event to the outbox.
func (r *Region) Push(t testing.TB, repo, tag string, layers ...[]byte) Image {
	t.Helper()
	ctx := context.Background()
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","created":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	img := Image{Repo: repo, Tag: tag, Config: r.PutBlob(t, repo, config)}
	man := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.Config, Size: int64(len(config))},
	}
	man.SchemaVersion = 2
	for _, l := range layers {
		d := r.PutBlob(t, repo, l)
		img.Layers = append(img.Layers, d)
		man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(l))})
	}
	body, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	img.Manifest = digest.FromBytes(body)
	cmd := meta.PutManifest{
		Repo: repo, Tag: tag, Time: time.Now().UTC(),
		Manifest: meta.ManifestRecord{Digest: img.Manifest, MediaType: man.MediaType, Size: int64(len(body)), Content: body},
		Requires: img.Blobs(),
	}
	if err := r.Meta.Apply(ctx, cmd); err != nil {
		t.Fatalf("%s: push %s:%s: %v", r.Name, repo, tag, err)
	}
	return img
}

// PutBlob stores data in the region's blob store and links it into repo.
func (r *Region) PutBlob(t testing.TB, repo string, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	d := digest.FromBytes(data)
	if _, err := r.Blobs.Put(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("%s: put blob: %v", r.Name, err)
	}
	if err := r.Meta.Apply(ctx, meta.LinkBlob{Repo: repo, Digest: d, Size: int64(len(data))}); err != nil {
		t.Fatalf("%s: link blob: %v", r.Name, err)
	}
	return d
}

// DeleteTag deletes a tag as a client would.
func (r *Region) DeleteTag(t testing.TB, repo, tag string) {
	t.Helper()
	if err := r.Meta.Apply(context.Background(), meta.DeleteTag{Repo: repo, Tag: tag, Time: time.Now().UTC()}); err != nil {
		t.Fatalf("%s: delete %s:%s: %v", r.Name, repo, tag, err)
	}
}

// Has reports whether the region holds the image: its manifest, its tag
// pointing at it, and the bytes of every blob.
func (r *Region) Has(img Image) bool {
	if _, err := r.Meta.Manifest(img.Repo, img.Manifest); err != nil {
		return false
	}
	if img.Tag != "" {
		if tr, err := r.Meta.Tag(img.Repo, img.Tag); err != nil || tr.Digest != img.Manifest {
			return false
		}
	}
	for _, b := range img.Blobs() {
		if _, err := r.Blobs.Stat(context.Background(), b); err != nil {
			return false
		}
	}
	return true
}

// countGetBlob records the digests of the GetBlob requests the region
// serves.
func (r *Region) countGetBlob(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &recordingStream{ServerStream: ss, r: r})
}

// recordingStream is a server stream that records the GetBlob requests it
// receives.
type recordingStream struct {
	grpc.ServerStream
	r *Region
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if req, ok := m.(*replicationpb.GetBlobRequest); ok && err == nil {
		s.r.askedMu.Lock()
		if s.r.asked == nil {
			s.r.asked = map[digest.Digest]int{}
		}
		s.r.asked[digest.Digest(req.GetDigest())]++
		s.r.askedMu.Unlock()
	}
	return err
}

// BlobRequests returns how many GetBlob requests for dgst the region
// served: the fetches (and resumptions) other regions made of it.
func (r *Region) BlobRequests(dgst digest.Digest) int {
	r.askedMu.Lock()
	defer r.askedMu.Unlock()
	return r.asked[dgst]
}

// BytesReceived returns the blob bytes this region received from region
// from: fetched, or carried inline in offers.
func (r *Region) BytesReceived(from string) int64 {
	return int64(counterValue(r.mesh.t, r.Metrics.BytesReceived.WithLabelValues(from)))
}

// BytesDeduplicated returns the blob bytes replicated manifests referenced
// that this region held already.
func (r *Region) BytesDeduplicated() int64 {
	return int64(counterValue(r.mesh.t, r.Metrics.BytesDeduped))
}

// EventsSent returns the outbox events this region delivered to region to.
func (r *Region) EventsSent(to string) int64 {
	return int64(counterValue(r.mesh.t, r.Metrics.EventsSent.WithLabelValues(to)))
}

// AntiEntropyRepairs returns the writes anti-entropy pulled into this
// region that events had not delivered.
func (r *Region) AntiEntropyRepairs() int64 {
	return int64(counterValue(r.mesh.t, r.Metrics.AntiEntropyFix))
}

// EventsDropped returns the outbox events this region dropped unsent for
// region to, past the outbox's bound.
func (r *Region) EventsDropped(to string) int64 {
	return int64(counterValue(r.mesh.t, r.Metrics.EventsDropped.WithLabelValues(to)))
}

// Peer returns this region's replication status of peer region.
func (r *Region) Peer(region string) replication.PeerStatus {
	for _, p := range r.Replicator.Peers() {
		if p.Region == region {
			return p
		}
	}
	return replication.PeerStatus{Region: region}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// WaitFor polls cond until it holds, failing the test after WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer keeps the logs of a test's regions and prints them only when
// the test fails.
type logBuffer struct{ syncbuf.Buffer }

func newLogBuffer(t testing.TB) *logBuffer {
	l := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the mesh:\n%s", l.String())
		}
	})
	return l
}

func (l *logBuffer) logger(who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).With("region", who)
}

// Count returns how many lines of the mesh's logs contain every one of
// parts.
func (m *Mesh) Count(parts ...string) int {
	return m.logs.CountLines(parts...)
}
