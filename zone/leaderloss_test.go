package zone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/region/regiontest"
	"github.com/georeg/georeg/replication"
)

// replicating runs a Replicator on every node of regiontest clusters, as
// zone.Node wires it, dialing other regions through a simulated WAN, and
// keeps every node's metrics across restarts.
type replicating struct {
	t       *testing.T
	wanFile string
	network *wan.Network

	mu      sync.Mutex
	metrics map[string][]*replication.Metrics // by node ID, one per start
}

func newReplicating(t *testing.T) *replicating {
	t.Helper()
	r := &replicating{t: t, wanFile: filepath.Join(t.TempDir(), "wan.json"), metrics: map[string][]*replication.Metrics{}}
	r.saveWAN(wan.Config{Version: wan.Version, Links: []wan.Link{}})
	n, err := wan.Open(t.Context(), wan.NetworkConfig{File: r.wanFile, PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.network = n
	return r
}

// saveWAN writes cfg and waits until the network applies it.
func (r *replicating) saveWAN(cfg wan.Config) {
	r.t.Helper()
	if err := cfg.Save(r.wanFile); err != nil {
		r.t.Fatal(err)
	}
	if r.network == nil {
		return
	}
	want, err := wan.Load(r.wanFile)
	if err != nil {
		r.t.Fatal(err)
	}
	regiontest.WaitFor(r.t, "the WAN to apply its config", func() bool {
		cur := r.network.Current()
		return len(cur.Addresses) == len(want.Addresses) && len(cur.Links) == len(want.Links) &&
			(len(want.Links) == 0 || cur.Link(want.Links[0].A, want.Links[0].B) == want.Links[0])
	})
}

// services is regiontest.Config.Services for a node that replicates.
func (r *replicating) services(n *regiontest.Node, s *grpc.Server) func() {
	m := replication.NewMetrics(prometheus.NewRegistry())
	dial := r.network.Dialer(n.Region, true)
	rep, err := replication.New(replication.Config{
		Meta: n.Group, Blobs: n.Blobs, Members: n.Members, Dir: filepath.Join(n.Dir, "replication"),
		Metrics: m, Logger: n.Logger(), AntiEntropyInterval: time.Hour,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) },
	})
	if err != nil {
		r.t.Fatal(err)
	}
	rep.Register(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep.Run(ctx)
	}()
	r.mu.Lock()
	r.metrics[n.ID] = append(r.metrics[n.ID], m)
	r.mu.Unlock()
	return func() {
		cancel()
		<-done
		rep.Close()
	}
}

// received returns the blob bytes every replicating node fetched
// from region from, over all their starts.
func (r *replicating) received(from string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum float64
	for _, ms := range r.metrics {
		for _, m := range ms {
			var d dto.Metric
			if err := m.BytesReceived.WithLabelValues(from).Write(&d); err != nil {
				r.t.Fatal(err)
			}
			sum += d.GetCounter().GetValue()
		}
	}
	return int64(sum)
}

// push writes an image of one layer through node n, as the distribution
// API does, and returns the manifest's digest.
func push(t *testing.T, n *regiontest.Node, repo, tag string, layer []byte) digest.Digest {
	t.Helper()
	ctx := t.Context()
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	man := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	man.SchemaVersion = 2
	var requires []digest.Digest
	for i, b := range [][]byte{config, layer} {
		d := digest.FromBytes(b)
		if _, err := n.Blobs.Put(ctx, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := n.Group.Apply(ctx, meta.LinkBlob{Repo: repo, Digest: d, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			man.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: d, Size: int64(len(b))}
		} else {
			man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(b))})
		}
		requires = append(requires, d)
	}
	body, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromBytes(body)
	err = n.Group.Apply(ctx, meta.PutManifest{
		Repo: repo, Tag: tag, Time: time.Now().UTC(), Requires: requires,
		Manifest: meta.ManifestRecord{Digest: dgst, MediaType: man.MediaType, Size: int64(len(body)), Content: body},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dgst
}

// TestReplicationLeaderLostMidTransfer kills the leader of a three-zone
// region while it fetches a large layer from another region: the new
// leader resumes from the segments the region made durable, so the region
// receives the layer about once, not twice.
func TestReplicationLeaderLostMidTransfer(t *testing.T) {
	r := newReplicating(t)
	west := regiontest.New(t, regiontest.Config{Region: "westus", Zones: 1, Services: r.services})
	east := regiontest.New(t, regiontest.Config{Region: "eastus", Zones: 3, Join: west.GossipAddrs(), Services: r.services})

	// 8 MiB/s from westus to eastus: the 24 MiB layer takes three seconds.
	cfg := wan.Config{Version: wan.Version, Addresses: map[string]string{},
		Links: []wan.Link{{A: "westus", B: "eastus", Bandwidth: 8 << 20}}}
	for _, c := range []*regiontest.Cluster{west, east} {
		for _, n := range c.Nodes() {
			cfg.Addresses[n.GRPCAddr] = n.Region
		}
	}
	r.saveWAN(cfg)

	const size = 24 << 20
	layer := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(layer)
	layerDigest := digest.FromBytes(layer)
	manifest := push(t, west.Node(1), "app", "v1", layer)

	leader := east.Leader()
	regiontest.WaitFor(t, "eastus's leader to make part of the layer durable", func() bool {
		rec, err := leader.Group.Transfer(layerDigest)
		return err == nil && rec.Durable() >= 4<<20
	})
	leader.Stop()
	east.Leader()
	regiontest.WaitFor(t, "every zone of eastus to hold the image", func() bool {
		for _, n := range east.Running() {
			if _, err := n.Group.Manifest("app", manifest); err != nil {
				return false
			}
			if tag, err := n.Group.Tag("app", "v1"); err != nil || tag.Digest != manifest {
				return false
			}
		}
		return true
	})
	// The killed leader loses at most the segment it was storing and the
	// one received since (segments of 2 MiB for 24 MiB), and chunks in
	// flight.
	got := r.received("westus")
	t.Logf("eastus received %d bytes for a layer of %d", got, size)
	if got > size+4<<20+1<<20 {
		t.Errorf("eastus received %d bytes for a layer of %d: the new leader did not resume from the durable segments", got, size)
	}
}
