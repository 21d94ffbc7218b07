package replication

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/storage"
)

// Metadata is what replication needs of the region's metadata: reads from
// the local replica and writes through the region's Raft group.
// *region.Group implements it.
type Metadata interface {
	Apply(ctx context.Context, cmd meta.Command) error
	Manifest(repo string, dgst digest.Digest) (meta.ManifestRecord, error)
	Tag(repo, tag string) (meta.TagRecord, error)
	Blob(dgst digest.Digest) (int64, error)
	BlobLink(repo string, dgst digest.Digest) (int64, error)
	// BlobUnlinked reports whether a blob was deleted from repo in this
	// region (blob deletes do not replicate): read-through must not bring
	// it back.
	BlobUnlinked(repo string, dgst digest.Digest) bool
	// DeleteStamp returns the stamp of the delete of a tag or manifest
	// digest of repo when the delete is its newest write here:
	// read-through then takes only a peer's newer write.
	DeleteStamp(repo, ref string) (clock uint64, origin string, ok bool)
	OutboxAfter(seq uint64, n int) ([]meta.Event, error)
	LastSeq() uint64
	// Changed returns a channel closed after the next write to the local
	// replica: a sender waits on it for new outbox events.
	Changed() <-chan struct{}
	Cursors() map[string]uint64
	OutboxDrops() map[string]meta.OutboxDrop
	RepoSummaries() (map[string]digest.Digest, error)
	RepoSizes() (map[string]meta.RepoSize, error)
	RepoState(repo string) (meta.RepoState, error)
	IsLeader() bool
	// Barrier waits until this node has applied every write its region
	// acknowledged before the call.
	Barrier(ctx context.Context) error
	// Leader names the region's Raft leader, which does all of the
	// region's fetching from other regions (so that one process's
	// single-flight covers offers, anti-entropy and transfers alike).
	Leader() (members.Member, bool)
}

// Membership is the gossip view. *members.List implements it.
type Membership interface {
	Self() members.Member
	Alive() []members.Member
	Region(region string) []members.Member
	Changed() <-chan struct{}
}

// Config configures a Replicator.
type Config struct {
	Meta    Metadata
	Blobs   storage.BlobStore
	Members Membership
	// Dir keeps partial blob transfers, so that a cut transfer resumes.
	Dir     string
	Metrics *Metrics
	// Exclude, when set, names regions not to replicate to (deleted
	// replications).
	Exclude func(region string) bool
	// MaxFetches bounds the blob fetches from other regions this node
	// runs at once (default 128): fetches of different digests overlap,
	// since one round trip each would otherwise bound the rate at which
	// small images arrive.
	MaxFetches int
	// OfferBatchEvents and OfferBatchBytes bound one batch of offered
	// events (default 256 events, 4 MiB of manifests and inline blobs);
	// OffersInFlight is how many batches a peer may hold unanswered
	// (default 32), holding 8 x OfferBatchBytes at most: a stream of
	// pushes makes small batches, and a peer 140 ms away needs 20 or
	// more in flight for none to wait for a free place.
	OfferBatchEvents int
	OfferBatchBytes  int
	OffersInFlight   int
	// BlobConns is how many connections to each peer node blob transfers
	// spread over, in turn (default 4): on a long link one connection
	// carries a window per round trip at most (on the simulated WAN, 4 MiB
	// per one-way delay: 60 MB/s at a 140 ms round trip).
	BlobConns int
	// OutboxMaxEvents and OutboxMaxAge bound what the outbox keeps for a
	// peer region that does not acknowledge (down, cut off, too slow):
	// once it lacks more events than OutboxMaxEvents (default 100,000), or
	// its oldest unacknowledged event is older than OutboxMaxAge (default
	// 24 h), its events are dropped, and it re-syncs from summaries
	// (anti-entropy) when it returns. Negative: no bound.
	OutboxMaxEvents int
	OutboxMaxAge    time.Duration
	// AntiEntropyInterval is the time between anti-entropy rounds (default
	// 10 s).
	AntiEntropyInterval time.Duration
	Logger              *slog.Logger
	// Dial, when set, makes the connections to other regions (the local
	// mesh's simulated WAN); nil dials directly.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, is the mutual TLS client configuration of the
	// connections to other nodes; nil connects in plaintext.
	TLS *tls.Config
}

// Replicator replicates one region's writes to its peers and serves its
// peers' requests. Every node runs one; only the region's Raft leader sends
// offers and runs anti-entropy.
type Replicator struct {
	replicationpb.UnimplementedReplicationServer
	cfg    Config
	region string
	log    *slog.Logger
	m      *Metrics

	pool *proto.Pool // connections to the other regions
	// blobPools are more connections to the other regions, for blob
	// transfers only, taken in turn (blobNext): a WAN link carries one
	// connection's window per round trip at most, so one connection
	// cannot fill a long, fast link (Config.BlobConns).
	blobPools []*proto.Pool
	blobNext  atomic.Uint32

	fetches singleflight.Group
	// life ends with Close: the background work no request waits for
	// (early fetches and offers, early.go) runs on it, and Close waits
	// for that work (background) to return.
	life         context.Context
	stop         context.CancelFunc
	background   sync.WaitGroup
	bgMu         sync.Mutex // guards closed, and background's additions
	closed       bool
	earlyFetches chan struct{} // one per early fetch running (maxEarlyFetches)
	earlySends   chan struct{} // one per early offer on its way (maxEarlySends)
	early        transfers     // the early fetches started (their digests)
	fetchSlots   chan struct{} // one per blob fetch running (Config.MaxFetches)
	xfers        transfers     // this node's blob transfers from peer regions
	aeRunning    sync.Map      // peer region -> an anti-entropy round is running

	stateMu sync.Mutex
	peers   map[string]*PeerStatus
	live    map[string]*peerLive
	synced  map[string]time.Time // last anti-entropy round with nothing left to pull
}

// PeerStatus is this region's view of replication to one peer region
// (offers, on the region's leader), and of the blobs it fetches from it
// (on the node that fetches: the leader).
type PeerStatus struct {
	Region string `json:"region"`
	// Backlog is the lag in events: the outbox events the peer has not
	// acknowledged.
	Backlog uint64 `json:"backlog"`
	// LagSeconds is the age of the oldest of them (0 with none).
	LagSeconds float64 `json:"lagSeconds"`
	// DeliverySeconds is how long the newest event the peer acknowledged
	// took from its write to the peer's answer.
	DeliverySeconds float64 `json:"deliverySeconds"`
	// EventsPerSecond is the rate at which the peer acknowledged events
	// over the last 10 s.
	EventsPerSecond float64 `json:"eventsPerSecond"`
	// OffersInFlight is the batches offered to the peer, not answered yet.
	OffersInFlight int `json:"offersInFlight"`
	// BlobBytesPerSecond is the rate at which this node received blob
	// bytes from the peer over the last 10 s.
	BlobBytesPerSecond float64 `json:"blobBytesPerSecond"`
	// TransfersInFlight is the blob fetches from the peer running here.
	TransfersInFlight int `json:"transfersInFlight"`
	// DroppedEvents counts the events dropped unsent because the peer left
	// them unacknowledged past the outbox's bound (Config.OutboxMaxEvents,
	// OutboxMaxAge); LastDrop is when that last happened. The peer gets
	// their content through anti-entropy.
	DroppedEvents uint64    `json:"droppedEvents,omitempty"`
	LastDrop      time.Time `json:"lastDrop,omitzero"`
	// Catch-up from the peer: the last anti-entropy round that found
	// repositories differing (on the node that runs them: the leader).
	// SyncRepos and SyncReposDone count the repositories it has to
	// reconcile and has, SyncManifests the manifests it pulled;
	// SyncRunning says whether it still runs and SyncETASeconds the time
	// it still needs at its pace so far.
	SyncRepos      int     `json:"syncRepos,omitempty"`
	SyncReposDone  int     `json:"syncReposDone,omitempty"`
	SyncManifests  int     `json:"syncManifests,omitempty"`
	SyncRunning    bool    `json:"syncRunning,omitempty"`
	SyncETASeconds float64 `json:"syncEtaSeconds,omitempty"`
	// SyncTags and SyncBytes are the peer's live tags and linked blob
	// bytes in the repositories the round reconciles, SyncTagsDone and
	// SyncBytesDone those of the repositories it has reconciled.
	SyncTags      int64     `json:"syncTags,omitempty"`
	SyncTagsDone  int64     `json:"syncTagsDone,omitempty"`
	SyncBytes     int64     `json:"syncBytes,omitempty"`
	SyncBytesDone int64     `json:"syncBytesDone,omitempty"`
	LastSync      time.Time `json:"lastSync,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
}

// New returns a Replicator.
func New(cfg Config) (*Replicator, error) {
	if cfg.AntiEntropyInterval == 0 {
		cfg.AntiEntropyInterval = 10 * time.Second
	}
	if cfg.MaxFetches <= 0 {
		cfg.MaxFetches = 128
	}
	if cfg.OfferBatchEvents <= 0 {
		cfg.OfferBatchEvents = 256
	}
	cfg.OfferBatchEvents = min(cfg.OfferBatchEvents, maxOfferEvents)
	if cfg.OfferBatchBytes <= 0 {
		cfg.OfferBatchBytes = 4 << 20
	}
	if cfg.OutboxMaxEvents == 0 {
		cfg.OutboxMaxEvents = 100_000
	}
	if cfg.OutboxMaxAge == 0 {
		cfg.OutboxMaxAge = 24 * time.Hour
	}
	if cfg.BlobConns <= 0 {
		cfg.BlobConns = 4
	}
	if cfg.OffersInFlight <= 0 {
		cfg.OffersInFlight = 32
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "partial"), 0o755); err != nil {
		return nil, fmt.Errorf("replication: %w", err)
	}
	life, stop := context.WithCancel(context.Background())
	return &Replicator{
		cfg: cfg, region: cfg.Members.Self().Region, log: lg, m: cfg.Metrics,
		life: life, stop: stop,
		earlyFetches: make(chan struct{}, maxEarlyFetches),
		earlySends:   make(chan struct{}, maxEarlySends),
		pool:         proto.NewPool(proto.PoolConfig{Dial: cfg.Dial, TLS: cfg.TLS}),
		blobPools:    blobPools(cfg),
		peers:        map[string]*PeerStatus{}, live: map[string]*peerLive{}, synced: map[string]time.Time{},
		fetchSlots: make(chan struct{}, cfg.MaxFetches),
	}, nil
}

// Register adds the replication service to a gRPC server.
func (r *Replicator) Register(s *grpc.Server) { replicationpb.RegisterReplicationServer(s, r) }

// Peers returns the replication status of every peer region, sorted.
func (r *Replicator) Peers() []PeerStatus {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	now := time.Now()
	drops := r.cfg.Meta.OutboxDrops()
	var out []PeerStatus
	for name, p := range r.peers {
		ps := *p
		if d, ok := drops[name]; ok {
			ps.DroppedEvents, ps.LastDrop = d.Events, d.Last
		}
		if l := r.live[name]; l != nil {
			ps.EventsPerSecond, ps.BlobBytesPerSecond = l.events.perSecond(now), l.blobBytes.perSecond(now)
			ps.OffersInFlight, ps.TransfersInFlight = l.offersInFlight, l.transfersInFlight
			if sy := l.sync; !sy.started.IsZero() {
				ps.SyncRepos, ps.SyncReposDone, ps.SyncManifests = sy.repos, sy.reposDone, sy.manifests
				ps.SyncRunning, ps.SyncETASeconds = sy.ended.IsZero(), sy.eta(now).Seconds()
				ps.SyncTags, ps.SyncTagsDone, ps.SyncBytes, ps.SyncBytesDone = sy.tags, sy.tagsDone, sy.bytes, sy.bytesDone
			}
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Region < out[j].Region })
	return out
}

func (r *Replicator) peer(region string) *PeerStatus {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	p, ok := r.peers[region]
	if !ok {
		p = &PeerStatus{Region: region}
		r.peers[region] = p
	}
	return p
}

// setLive updates what this node measures of peer region.
func (r *Replicator) setLive(region string, f func(*peerLive)) {
	r.peer(region)
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	l, ok := r.live[region]
	if !ok {
		l = &peerLive{}
		r.live[region] = l
	}
	f(l)
}

func (r *Replicator) setPeer(region string, f func(*PeerStatus)) {
	p := r.peer(region)
	r.stateMu.Lock()
	f(p)
	r.stateMu.Unlock()
}

// peerRegions are the other regions: those gossip shows and those that
// acknowledged events before (a region that is down is still a peer).
func (r *Replicator) peerRegions() []string {
	set := map[string]bool{}
	for _, m := range r.cfg.Members.Alive() {
		set[m.Region] = true
	}
	for p := range r.cfg.Meta.Cursors() {
		set[p] = true
	}
	delete(set, r.region)
	var out []string
	for p := range set {
		if r.cfg.Exclude == nil || !r.cfg.Exclude(p) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Run sends offers and runs anti-entropy while this node leads its region,
// until ctx ends.
func (r *Replicator) Run(ctx context.Context) {
	senders := map[string]context.CancelFunc{}
	stopAll := func() {
		for p, cancel := range senders {
			cancel()
			delete(senders, p)
		}
	}
	defer stopAll()
	aeTick := time.NewTicker(r.cfg.AntiEntropyInterval)
	defer aeTick.Stop()
	r.cleanPartials(ctx)
	check := time.NewTicker(250 * time.Millisecond)
	defer check.Stop()
	for {
		if r.cfg.Meta.IsLeader() {
			for _, p := range r.peerRegions() {
				if _, ok := senders[p]; !ok {
					sctx, cancel := context.WithCancel(ctx)
					senders[p] = cancel
					go r.sendLoop(sctx, p)
					go r.antiEntropy(sctx, p)
				}
			}
		} else if len(senders) > 0 {
			stopAll()
		}
		select {
		case <-ctx.Done():
			return
		case <-check.C:
		case <-aeTick.C:
			r.cleanPartials(ctx)
			if r.cfg.Meta.IsLeader() {
				for _, p := range r.peerRegions() {
					go r.antiEntropy(ctx, p)
				}
			}
		}
	}
}

func (r *Replicator) ack(ctx context.Context, peer string, seq uint64) {
	if err := r.cfg.Meta.Apply(ctx, meta.AckOutbox{Peer: peer, Seq: seq}); err != nil && ctx.Err() == nil {
		r.log.Warn("recording the peer's cursor", "peer", peer, "err", err)
	}
}

// withRegion calls fn with a client of each alive node of region in turn
// until one succeeds.
func (r *Replicator) withRegion(ctx context.Context, region string, fn func(replicationpb.ReplicationClient) error) error {
	return r.withRegionOn(ctx, r.pool, region, fn)
}

// withRegionOn is withRegion over the connections of pool.
func (r *Replicator) withRegionOn(ctx context.Context, pool *proto.Pool, region string, fn func(replicationpb.ReplicationClient) error) error {
	nodes := r.cfg.Members.Region(region)
	if len(nodes) == 0 {
		return fmt.Errorf("region %s: no node is up", region)
	}
	var err error
	for _, n := range nodes {
		c, cerr := client(pool, n.GRPC)
		if cerr != nil {
			err = cerr
			continue
		}
		if err = fn(c); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("region %s: %w", region, err)
}

func (r *Replicator) client(addr string) (replicationpb.ReplicationClient, error) {
	return client(r.pool, addr)
}

func client(pool *proto.Pool, addr string) (replicationpb.ReplicationClient, error) {
	conn, err := pool.Get(addr)
	if err != nil {
		return nil, err
	}
	return replicationpb.NewReplicationClient(conn), nil
}

// blobWindow is the flow-control window of a blob fetch: a bandwidth-delay
// product of 100 MB/s over 140 ms (westus-westeurope) is 14 MB, which
// gRPC's own window reaches only after several round trips.
const blobWindow = 16 << 20

func blobPools(cfg Config) []*proto.Pool {
	out := make([]*proto.Pool, cfg.BlobConns)
	for i := range out {
		out[i] = proto.NewPool(proto.PoolConfig{Dial: cfg.Dial, TLS: cfg.TLS, WindowBytes: blobWindow})
	}
	return out
}

// blobPool returns the connections the next blob transfer uses.
func (r *Replicator) blobPool() *proto.Pool {
	return r.blobPools[int(r.blobNext.Add(1))%len(r.blobPools)]
}

// closeWait bounds how long Close waits for background work to see its
// context end.
const closeWait = 5 * time.Second

// Close stops background work and releases connections.
func (r *Replicator) Close() {
	r.bgMu.Lock()
	r.closed = true
	r.bgMu.Unlock()
	r.stop()
	waited := make(chan struct{})
	go func() {
		r.background.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(closeWait):
		r.log.Warn("replication: closing with early blob fetches still running")
	}
	r.pool.Close()
	for _, p := range r.blobPools {
		p.Close()
	}
}

// ingestManifest stores a manifest another region holds, with every blob
// and child manifest it needs, fetching from region only what this region
// lacks and inline (blobs checked against their digests, from an offer)
// does not hold. tag may be empty.
func (r *Replicator) ingestManifest(ctx context.Context, from, repo string, dgst digest.Digest, mediaType string, content []byte, inline map[digest.Digest][]byte, tag string, clock uint64, origin string, when time.Time) ([]digest.Digest, error) {
	cmd, err := r.prepareManifest(ctx, from, repo, dgst, mediaType, content, inline, tag, clock, origin, when)
	if err != nil {
		return nil, err
	}
	return nil, r.cfg.Meta.Apply(ctx, cmd)
}

// prepareManifest makes this region hold what a manifest of another
// region needs (its child manifests, committed, and its blobs, durable)
// and returns the command that commits it. Its blobs in inline are stored
// from there, the others fetched.
func (r *Replicator) prepareManifest(ctx context.Context, from, repo string, dgst digest.Digest, mediaType string, content []byte, inline map[digest.Digest][]byte, tag string, clock uint64, origin string, when time.Time) (meta.PutManifest, error) {
	if dgst.Algorithm().FromBytes(content) != dgst {
		return meta.PutManifest{}, fmt.Errorf("manifest %s from %s does not match its digest", dgst, from)
	}
	m, err := oci.ParseManifest(mediaType, content)
	if err != nil {
		return meta.PutManifest{}, fmt.Errorf("manifest %s from %s: %w", dgst, from, err)
	}
	for _, c := range m.Manifests {
		if _, err := r.cfg.Meta.Manifest(repo, c.Digest); err == nil {
			continue
		}
		if err := r.pullManifest(ctx, from, repo, c.Digest.String(), false); err != nil {
			return meta.PutManifest{}, fmt.Errorf("child manifest %s: %w", c.Digest, err)
		}
	}
	cmd := meta.PutManifest{
		Repo: repo, Tag: tag, Replicated: true, Clock: clock, Origin: origin, Time: when,
		Manifest: meta.ManifestRecord{
			Digest: dgst, MediaType: m.MediaType, Size: int64(len(content)),
			ArtifactType: m.ArtifactType, Annotations: m.Annotations, Content: content,
		},
	}
	if m.Subject != nil {
		cmd.Manifest.Subject = m.Subject.Digest
	}
	// Blobs of different digests are fetched at once (fetchBlob bounds
	// the region's fetches); the manifest commits once every one is here.
	var g errgroup.Group
	for _, b := range m.Blobs() {
		if data, ok := inline[b.Digest]; ok {
			g.Go(func() error { return r.storeInline(ctx, from, b.Digest, data) })
		} else {
			g.Go(func() error { return r.ensureBlob(ctx, from, b.Digest, b.Size) })
		}
		cmd.Links = append(cmd.Links, meta.Link{Digest: b.Digest, Size: b.Size})
		cmd.Requires = append(cmd.Requires, b.Digest)
	}
	if err := g.Wait(); err != nil {
		return meta.PutManifest{}, err
	}
	for _, c := range m.Manifests {
		cmd.RequiresManifests = append(cmd.RequiresManifests, c.Digest)
	}
	if tag != "" {
		if old, err := r.cfg.Meta.Tag(repo, tag); err == nil && old.Digest != dgst && old.Clock != 0 && hlcClose(old.Clock, clock) {
			r.m.Conflicts.Inc()
			r.log.Info("concurrent tag writes, last writer wins", "repo", repo, "tag", tag, "local", old.Digest, "remote", dgst, "from", origin)
		}
	}
	return cmd, nil
}

// hlcClose reports whether two writes were made within 5 s of each other:
// a replicated write that replaces a different, recent local one is a
// conflict worth recording.
func hlcClose(a, b uint64) bool {
	d := int64(a>>16) - int64(b>>16)
	return d < 5000 && d > -5000
}

// ensureBlob makes sure this region holds a verified copy of dgst, fetching
// it from region from when it does not. Bytes already in the region's
// stores count, even before a manifest links them (an earlier offer of the
// same layer may have brought them).
func (r *Replicator) ensureBlob(ctx context.Context, from string, dgst digest.Digest, size int64) error {
	if have, err := r.cfg.Blobs.Stat(ctx, dgst); err == nil {
		r.m.BytesDeduped.Add(float64(have))
		return nil
	}
	return r.fetchBlob(ctx, from, dgst, size)
}

// staleTransfer is the age after which a partial transfer is started over.
const staleTransfer = 24 * time.Hour

// fetchBlob copies a blob from a peer region into this region's zones.
// The bytes received are kept in a partial file, so a cut transfer resumes
// where it stopped; on a region of several zones, every completed segment
// is also made durable on a majority of zones and recorded in the region's
// Raft log, so that a new leader resumes where the last durable segment
// ends (see transfer.go). Concurrent fetches of one blob share one
// transfer.
func (r *Replicator) fetchBlob(ctx context.Context, from string, dgst digest.Digest, size int64) error {
	return r.fetchShared(context.WithoutCancel(ctx), from, dgst, size)
}

// fetchShared is fetchBlob on ctx as it is: the fetch runs on the context
// of the caller that started it, whoever joins it later.
func (r *Replicator) fetchShared(ctx context.Context, from string, dgst digest.Digest, size int64) error {
	_, err, _ := r.fetches.Do(dgst.String(), func() (any, error) {
		return nil, r.fetchBlobOnce(ctx, from, dgst, size)
	})
	return err
}

func (r *Replicator) fetchBlobOnce(ctx context.Context, from string, dgst digest.Digest, size int64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	select {
	case r.fetchSlots <- struct{}{}:
		defer func() { <-r.fetchSlots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := r.cfg.Blobs.Stat(ctx, dgst); err == nil {
		return nil // another fetch of it ended while this one waited
	}
	if r.otherLeader() {
		return fmt.Errorf("fetch %s from %s: %w", dgst, from, errNotLeader)
	}
	r.xfers.begin(dgst)
	defer r.xfers.end(dgst)
	r.m.TransfersInFlight.WithLabelValues(from).Inc()
	defer r.m.TransfersInFlight.WithLabelValues(from).Dec()
	r.setLive(from, func(l *peerLive) { l.transfersInFlight++ })
	defer r.setLive(from, func(l *peerLive) { l.transfersInFlight-- })
	t, err := r.openTransfer(ctx, from, dgst, size)
	if err != nil {
		return err
	}
	defer t.close()
	if err := t.receive(ctx); err != nil {
		return fmt.Errorf("fetch %s from %s (%d bytes durable in the region, %d kept here, to resume): %w",
			dgst, from, t.durable.Load(), t.offset-t.start, err)
	}
	return t.finish(ctx)
}

// pullManifest fetches a manifest by reference from a peer region and
// ingests it. With tagged, a tag reference also sets the tag (with the
// peer's clock).
func (r *Replicator) pullManifest(ctx context.Context, from, repo, ref string, tagged bool) error {
	var resp *replicationpb.GetManifestResponse
	err := r.withRegion(ctx, from, func(c replicationpb.ReplicationClient) error {
		var err error
		resp, err = c.GetManifest(ctx, &replicationpb.GetManifestRequest{Repo: repo, Reference: ref})
		return err
	})
	if err != nil {
		return err
	}
	if !resp.Found {
		return fmt.Errorf("%w: %s@%s not in %s", storage.ErrNotFound, repo, ref, from)
	}
	tag, clock, origin := "", resp.Clock, resp.Origin
	if tagged && !isDigest(ref) {
		tag, clock, origin = ref, resp.TagClock, resp.TagOrigin
	}
	_, err = r.ingestManifest(ctx, from, repo, digest.Digest(resp.Digest), resp.MediaType, resp.Content, nil, tag, clock, origin, time.Now().UTC())
	return err
}

func isDigest(ref string) bool {
	_, err := digest.Parse(ref)
	return err == nil
}
