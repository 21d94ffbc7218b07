package replication

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/storage"
)

const mib = 1 << 20

func TestSegmentSize(t *testing.T) {
	tests := []struct {
		size, want int64
	}{
		{-1, 0},
		{0, 0},
		{segmentThreshold - 1, 0},
		{segmentThreshold, minSegment},
		{64 * mib, 2 * mib},
		{128 * mib, 2 * mib},
		{128*mib + 1, 3 * mib},
		{1 << 30, 16 * mib},
		{10 << 30, 160 * mib},
	}
	for _, tt := range tests {
		got := segmentSize(tt.size)
		if got != tt.want {
			t.Errorf("segmentSize(%d) = %d, want %d", tt.size, got, tt.want)
		}
		if got > 0 && (tt.size+got-1)/got > targetSegments {
			t.Errorf("segmentSize(%d) = %d: %d segments, more than %d", tt.size, got, (tt.size+got-1)/got, targetSegments)
		}
		if got > 0 && (tt.size+got-1)/got > meta.MaxTransferSegments {
			t.Errorf("segmentSize(%d) = %d: more segments than a record holds", tt.size, got)
		}
	}
}

func TestPartialNames(t *testing.T) {
	d := digest.FromString("blob")
	tests := []struct {
		name      string
		wantOK    bool
		wantStart int64
	}{
		{partialName(d, 0), true, 0},
		{partialName(d, 8*mib), true, 8 * mib},
		{"sha256-" + d.Encoded(), true, 0}, // an earlier version's name
		{"sha256-" + d.Encoded() + "-x", false, 0},
		{"sha256-" + d.Encoded() + "--1", false, 0},
		{"sha256-nothex", false, 0},
		{"stray", false, 0},
	}
	for _, tt := range tests {
		got, start, ok := parsePartialName(tt.name)
		if ok != tt.wantOK || (ok && (got != d || start != tt.wantStart)) {
			t.Errorf("parsePartialName(%q) = %s, %d, %v; want %s, %d, %v", tt.name, got, start, ok, d, tt.wantStart, tt.wantOK)
		}
	}
}

func TestPlanPartial(t *testing.T) {
	now := time.Now()
	old := now.Add(-2 * staleTransfer)
	f := func(name string, start, size int64, mod time.Time) partialFile {
		return partialFile{Name: name, Start: start, Size: size, Modified: mod}
	}
	tests := []struct {
		name          string
		files         []partialFile
		durable, size int64
		wantKeep      string // "": none
		wantDrop      []string
	}{
		{"nothing yet", nil, 0, 64, "", nil},
		{"resume a file from the start", []partialFile{f("a", 0, 10, now)}, 0, 64, "a", nil},
		{"a file behind the durable end is useless", []partialFile{f("a", 0, 10, now)}, 12, 64, "", []string{"a"}},
		{"a file reaching past the durable end is kept", []partialFile{f("a", 0, 20, now)}, 12, 64, "a", nil},
		{"a file starting after the durable end cannot join", []partialFile{f("a", 16, 4, now)}, 12, 64, "", []string{"a"}},
		{"a file starting at the durable end", []partialFile{f("a", 12, 4, now)}, 12, 64, "a", nil},
		{"a stale file starts over", []partialFile{f("a", 0, 10, old)}, 0, 64, "", []string{"a"}},
		{"a file longer than the blob starts over", []partialFile{f("a", 0, 65, now)}, 0, 64, "", []string{"a"}},
		{"unknown size", []partialFile{f("a", 0, 65, now)}, 0, -1, "a", nil},
		{"the furthest of several", []partialFile{f("a", 0, 20, now), f("b", 12, 16, now), f("c", 12, 2, now)}, 12, 64, "b", []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, ok, drop := planPartial(tt.files, tt.durable, tt.size, now)
			var gotKeep string
			if ok {
				gotKeep = keep.Name
			}
			var gotDrop []string
			for _, d := range drop {
				gotDrop = append(gotDrop, d.Name)
			}
			if gotKeep != tt.wantKeep || !equalStrings(gotDrop, tt.wantDrop) {
				t.Errorf("planPartial = keep %q, drop %v; want %q, %v", gotKeep, gotDrop, tt.wantKeep, tt.wantDrop)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTransferResumesAfterLeaderDeath fetches a blob on one node of a
// region, stops that node mid-transfer (as if killed), and checks that
// another node of the region fetches only what the durable segments do not
// hold, and that the segments are gone afterwards.
func TestTransferResumesAfterLeaderDeath(t *testing.T) {
	w := newTransferWorld(t, 24*mib)
	a, b := w.node("eastus-1"), w.node("eastus-2")

	// a receives 9 MiB, then the source stalls.
	w.gate.set(9*mib, false)
	ctx, kill := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.fetchBlobOnce(ctx, "westus", w.dgst, w.size) }()
	w.waitDurable(t, 8*mib) // segments 0-3; segment 4 [8, 10) is incomplete
	kill()
	if err := <-done; err == nil {
		t.Fatal("the fetch on the killed node succeeded")
	}
	if got := w.received(a); got != 9*mib {
		t.Fatalf("the killed node received %d MiB, want 9", got/mib)
	}

	w.gate.set(-1, false)
	if err := b.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); err != nil {
		t.Fatal(err)
	}
	if got, want := w.received(b), w.size-8*mib; got != want {
		t.Errorf("the new leader received %d bytes, want %d (the blob less the 8 MiB of durable segments)", got, want)
	}
	w.checkDone(t)
	a.cleanPartials(t.Context())
	if p := a.partials(w.dgst); len(p) != 0 {
		t.Errorf("partial files left on the killed node after the region got the blob: %v", p)
	}
}

// TestTransferLostSegmentStartsOver checks that a transfer whose durable
// segment no zone holds any more starts over instead of failing forever.
func TestTransferLostSegmentStartsOver(t *testing.T) {
	w := newTransferWorld(t, 24*mib)
	a, b := w.node("eastus-1"), w.node("eastus-2")
	w.gate.set(9*mib, false)
	ctx, kill := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.fetchBlobOnce(ctx, "westus", w.dgst, w.size) }()
	w.waitDurable(t, 8*mib)
	kill()
	<-done
	rec, err := w.meta.Transfer(w.dgst)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.region.Delete(t.Context(), rec.Segments[1].Digest); err != nil {
		t.Fatal(err)
	}
	w.gate.set(-1, false)
	if err := b.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); err == nil {
		t.Fatal("the fetch succeeded without a segment")
	}
	if _, err := w.meta.Transfer(w.dgst); !errors.Is(err, meta.ErrTransferUnknown) {
		t.Fatalf("the broken record is still there (%v)", err)
	}
	if err := b.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); err != nil {
		t.Fatal(err)
	}
	w.checkDone(t)
}

// TestTransferDeposedLeaderStops checks that a node that loses the lead
// mid-transfer stops fetching (after the chunk in hand, whose complete
// segment it still makes durable) and that the new leader fetches the rest:
// no byte crosses twice. A node that does not lead does not start.
func TestTransferDeposedLeaderStops(t *testing.T) {
	w := newTransferWorld(t, 24*mib)
	a, b := w.node("eastus-1"), w.node("eastus-2")
	w.setLeader("eastus-2")
	if err := a.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); !errors.Is(err, errNotLeader) {
		t.Fatalf("a follower's fetch: %v, want errNotLeader", err)
	}
	if got := w.received(a); got != 0 {
		t.Fatalf("a follower received %d bytes", got)
	}

	w.setLeader("eastus-1")
	w.gate.set(9*mib, false)
	done := make(chan error, 1)
	go func() { done <- a.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size) }()
	w.waitDurable(t, 8*mib)
	w.setLeader("eastus-2")
	w.gate.set(-1, false)
	if err := <-done; !errors.Is(err, errNotLeader) {
		t.Fatalf("the deposed leader's fetch: %v, want errNotLeader", err)
	}
	if err := b.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); err != nil {
		t.Fatal(err)
	}
	// The deposed leader stops after the chunk in hand (or before it, if
	// it notices first): at most a chunk crosses twice.
	if got := w.received(a) + w.received(b); got < w.size || got > w.size+proto.ChunkSize {
		t.Errorf("the two leaders received %d and %d bytes: %d in all for a blob of %d", w.received(a), w.received(b), got, w.size)
	}
	w.checkDone(t)
}

// TestTransferResumesAfterCut cuts the source's stream and checks that the
// same node resumes from its partial file: no byte crosses twice.
func TestTransferResumesAfterCut(t *testing.T) {
	w := newTransferWorld(t, 24*mib)
	a := w.node("eastus-1")
	w.gate.set(5*mib, true)
	if err := a.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); err == nil {
		t.Fatal("the fetch succeeded through a cut")
	}
	w.gate.set(-1, false)
	if err := a.fetchBlobOnce(t.Context(), "westus", w.dgst, w.size); err != nil {
		t.Fatal(err)
	}
	if got := w.received(a); got != w.size {
		t.Errorf("received %d bytes for a blob of %d", got, w.size)
	}
	w.checkDone(t)
}

// TestTransferSegmenting checks which transfers keep durable segments: not
// those of a one-zone region or of a small blob; those of a blob whose size
// the fetch learns from the source (a read-through) once it learns it.
func TestTransferSegmenting(t *testing.T) {
	for _, tt := range []struct {
		name         string
		size         int64 // -1: unknown to the fetch
		zones        int
		wantSegments bool
	}{
		{"one zone", 24 * mib, 1, false},
		{"small blob", segmentThreshold - 1, 3, false},
		{"big blob", 24 * mib, 3, true},
		{"size learnt from the source", -1, 3, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size < 0 {
				size = 24 * mib
			}
			w := newTransferWorld(t, size)
			w.zones = tt.zones
			a := w.node("eastus-1")
			if err := a.fetchBlobOnce(t.Context(), "westus", w.dgst, tt.size); err != nil {
				t.Fatal(err)
			}
			dead, _ := w.meta.DeadSegments()
			if got := len(dead) > 0; got != tt.wantSegments {
				t.Errorf("%d segments stored; want segments: %v", len(dead), tt.wantSegments)
			}
			w.checkDone(t)
		})
	}
}

// TestSweepTransfers checks which transfer records the leader's pass ends.
func TestSweepTransfers(t *testing.T) {
	w := newTransferWorld(t, 24*mib)
	a := w.node("eastus-1")
	held := digest.FromString("held")
	if _, err := w.region.Put(t.Context(), held, 4, bytes.NewReader([]byte("held"))); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	recs := []struct {
		name    string
		dgst    digest.Digest
		from    string
		updated time.Time
		active  bool
		kept    bool
	}{
		{"in progress", digest.FromString("a"), "westus", now, false, true},
		{"stale", digest.FromString("b"), "westus", now.Add(-2 * staleTransfer), false, false},
		{"stale but running here", digest.FromString("c"), "westus", now.Add(-2 * staleTransfer), true, true},
		{"source gone", digest.FromString("d"), "gone", now, false, false},
		{"blob held", held, "westus", now, false, false},
	}
	for _, r := range recs {
		seg := meta.Segment{Offset: 0, Size: 4, Digest: digest.FromString("segment of " + r.name)}
		for _, c := range []meta.Command{
			meta.TransferBegin{Time: r.updated, Digest: r.dgst, Size: 8, ID: "x", From: r.from, SegmentSize: 4},
			meta.TransferSegment{Time: r.updated, Digest: r.dgst, ID: "x", Segment: seg},
		} {
			if err := w.meta.Apply(t.Context(), c); err != nil {
				t.Fatal(err)
			}
		}
		if r.active {
			a.xfers.begin(r.dgst)
		}
	}
	a.sweepTransfers(t.Context())
	for _, r := range recs {
		_, err := w.meta.Transfer(r.dgst)
		if kept := err == nil; kept != r.kept {
			t.Errorf("%s: record kept = %v, want %v (%v)", r.name, kept, r.kept, err)
		}
	}
	dead, _ := w.meta.DeadSegments()
	if len(dead) != 3 {
		t.Errorf("%d dead segments, want the 3 of the ended records", len(dead))
	}
}

// transferWorld is a source region (westus, one node) serving a blob over
// gRPC, and a receiving region (eastus) whose nodes share one metadata
// store (the Raft group's state) and one blob store (the zones' majority).
type transferWorld struct {
	t      *testing.T
	dgst   digest.Digest
	data   []byte
	size   int64
	gate   *gate
	meta   *testMeta
	leader atomic.Pointer[string] // the receiving region's leader; nil: every node believes it leads
	region storage.BlobStore
	zones  int
	source members.Member
}

func newTransferWorld(t *testing.T, size int64) *transferWorld {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size)}).Read(data)
	w := &transferWorld{t: t, dgst: digest.FromBytes(data), data: data, size: size, zones: 3}

	srcStore := newFS(t)
	if _, err := srcStore.Put(t.Context(), w.dgst, size, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	w.gate = &gate{stopAt: -1}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.source = members.Member{ID: "westus-1", Region: "westus", Zone: 1, GRPC: ln.Addr().String()}
	src, err := New(Config{
		Meta: newTestMeta(t), Blobs: &gatedStore{BlobStore: srcStore, g: w.gate},
		Members: &testMembers{self: w.source, all: []members.Member{w.source}},
		Dir:     t.TempDir(), Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(proto.ServerOptions()...)
	src.Register(srv)
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Stop()
		src.Close()
	})
	w.meta = newTestMeta(t)
	w.region = newFS(t)
	return w
}

// setLeader makes node id the receiving region's leader.
func (w *transferWorld) setLeader(id string) { w.leader.Store(&id) }

// node returns a new node of the receiving region.
func (w *transferWorld) node(id string) *Replicator {
	w.t.Helper()
	self := members.Member{ID: id, Region: "eastus"}
	r, err := New(Config{
		Meta: &nodeMeta{testMeta: w.meta, self: id, leader: &w.leader}, Blobs: &zonedStore{BlobStore: w.region, zones: &w.zones},
		Members: &testMembers{self: self, all: []members.Member{self, w.source}},
		Dir:     w.t.TempDir(), Metrics: NewMetrics(prometheus.NewRegistry()),
		Exclude: func(region string) bool { return region == "gone" },
		Logger:  slog.New(slog.NewTextHandler(testWriter{w.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(r.Close)
	return r
}

// received returns the bytes node r received from westus.
func (w *transferWorld) received(r *Replicator) int64 {
	var m dto.Metric
	if err := r.m.BytesReceived.WithLabelValues("westus").Write(&m); err != nil {
		w.t.Fatal(err)
	}
	return int64(m.GetCounter().GetValue())
}

// waitDurable waits until the region's record holds n bytes.
func (w *transferWorld) waitDurable(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := w.meta.Transfer(w.dgst)
		if err == nil && rec.Durable() >= n {
			if rec.Durable() != n {
				t.Fatalf("the record holds %d bytes, want %d", rec.Durable(), n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record holds %d bytes after 30 s (%v), want %d", rec.Durable(), err, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkDone checks that the region holds the blob and nothing else: no
// record, no segment.
func (w *transferWorld) checkDone(t *testing.T) {
	t.Helper()
	rc, err := w.region.Open(t.Context(), w.dgst, 0)
	if err != nil {
		t.Fatalf("the region does not hold the blob: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, w.data) {
		t.Fatalf("the region's copy differs (%v)", err)
	}
	if _, err := w.meta.Transfer(w.dgst); !errors.Is(err, meta.ErrTransferUnknown) {
		t.Errorf("the transfer record is still there (%v)", err)
	}
	var left []digest.Digest
	w.region.Walk(t.Context(), func(d digest.Digest, _ int64) error {
		if d != w.dgst {
			left = append(left, d)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("%d segment blobs left in the region's store", len(left))
	}
}

func newFS(t *testing.T) *storage.FS {
	t.Helper()
	s, err := storage.NewFS(storage.FSConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testMeta is a region's metadata without Raft: one store every node of
// the region shares.
type testMeta struct {
	*meta.Store
}

func newTestMeta(t *testing.T) *testMeta {
	t.Helper()
	s, err := meta.Open(meta.Config{Path: filepath.Join(t.TempDir(), "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testMeta{s}
}

func (*testMeta) IsLeader() bool                    { return true }
func (*testMeta) Leader() (members.Member, bool)    { return members.Member{}, false }
func (*testMeta) Barrier(ctx context.Context) error { return nil }

// nodeMeta is one node's view of testMeta: whether it leads.
type nodeMeta struct {
	*testMeta
	self   string
	leader *atomic.Pointer[string]
}

func (m *nodeMeta) IsLeader() bool {
	l := m.leader.Load()
	return l == nil || *l == m.self
}

func (m *nodeMeta) Leader() (members.Member, bool) {
	l := m.leader.Load()
	if l == nil {
		return members.Member{ID: m.self, Region: "eastus"}, true
	}
	return members.Member{ID: *l, Region: "eastus"}, true
}

var (
	_ Metadata    = (*testMeta)(nil)
	_ Metadata    = (*nodeMeta)(nil)
	_ TransferLog = (*nodeMeta)(nil)
)

type testMembers struct {
	self members.Member
	all  []members.Member
}

func (m *testMembers) Self() members.Member     { return m.self }
func (m *testMembers) Alive() []members.Member  { return m.all }
func (m *testMembers) Changed() <-chan struct{} { return nil }
func (m *testMembers) Region(r string) []members.Member {
	var out []members.Member
	for _, n := range m.all {
		if n.Region == r {
			out = append(out, n)
		}
	}
	return out
}

// zonedStore is a region's blob store that says how many zones it has.
type zonedStore struct {
	storage.BlobStore
	zones *int
}

func (z *zonedStore) Zones() int { return *z.zones }

// gate stops the source's streams at a blob offset: with an error (a cut
// link) or by stalling until the gate changes or the stream's caller goes
// away.
type gate struct {
	mu      sync.Mutex
	stopAt  int64 // -1: never
	cut     bool
	changed chan struct{} // closed by the next set
}

func (g *gate) set(stopAt int64, cut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopAt, g.cut = stopAt, cut
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

func (g *gate) get() (stopAt int64, cut bool, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.stopAt, g.cut, g.changed
}

type gatedStore struct {
	storage.BlobStore
	g *gate
}

func (s *gatedStore) Open(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, err := s.BlobStore.Open(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	return &gatedReader{ReadCloser: rc, ctx: ctx, pos: offset, g: s.g}, nil
}

type gatedReader struct {
	io.ReadCloser
	ctx context.Context
	pos int64
	g   *gate
}

func (r *gatedReader) Read(p []byte) (int, error) {
	for {
		stopAt, cut, changed := r.g.get()
		if stopAt < 0 || r.pos < stopAt {
			if stopAt >= 0 && int64(len(p)) > stopAt-r.pos {
				p = p[:stopAt-r.pos]
			}
			n, err := r.ReadCloser.Read(p)
			r.pos += int64(n)
			return n, err
		}
		if cut {
			return 0, errors.New("link cut")
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// testWriter sends logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
