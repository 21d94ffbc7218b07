package region

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/storagetest"
)

// TestBlobsSuite runs the storage suite on Blobs in a region of one zone
// and in one of three. Each case gets a Blobs of its own over an empty
// local store, which writes and reads as zone 1 of the cluster: in three
// zones, its copies go to the cluster's zones 2 and 3 and its reads fall
// back to them. Their stores keep what earlier cases left, which is
// harmless: no two cases use the same blob.
func TestBlobsSuite(t *testing.T) {
	for _, zones := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d zones", zones), func(t *testing.T) {
			c := newTestCluster(t, clusterConfig{zones: zones})
			zone1 := c.node(1)
			storagetest.Run(t, storagetest.Config{
				ReadsFallBack: zones > 1,
				NewStore: func(t *testing.T) storage.BlobStore {
					lg := c.logs.logger("suite")
					fs, err := storage.NewFS(storage.FSConfig{Root: t.TempDir(), Logger: lg})
					if err != nil {
						t.Fatal(err)
					}
					b := NewBlobs(BlobsConfig{
						Local: storage.NewChecked(storage.CheckedConfig{Store: fs, Logger: lg}),
						Zones: zones, Members: zone1.list, Logger: lg,
					})
					t.Cleanup(b.Close)
					return b
				},
			})
		})
	}
}

// TestBlobsPut writes through one zone: the write returns once a majority
// of zones hold the blob, and the last zone gets it in the background.
func TestBlobsPut(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	tests := []struct {
		name string
		size int
		put  func(t *testing.T, b *Blobs, data []byte) error
	}{
		{"Put, several chunks", 3*proto.ChunkSize + 17, func(t *testing.T, b *Blobs, data []byte) error {
			n, err := b.Put(t.Context(), digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
			if err == nil && n != int64(len(data)) {
				t.Errorf("Put wrote %d bytes, want %d", n, len(data))
			}
			return err
		}},
		{"Put, empty blob", 0, func(t *testing.T, b *Blobs, data []byte) error {
			_, err := b.Put(t.Context(), digest.FromBytes(data), 0, bytes.NewReader(data))
			return err
		}},
		{"Put, unknown size", 1000, func(t *testing.T, b *Blobs, data []byte) error {
			_, err := b.Put(t.Context(), digest.FromBytes(data), -1, bytes.NewReader(data))
			return err
		}},
		{"IngestFile", proto.ChunkSize, func(t *testing.T, b *Blobs, data []byte) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return b.IngestFile(t.Context(), digest.FromBytes(data), int64(len(data)), path)
		}},
	}
	for i, tt := range tests {
		n := c.nodes[i%len(c.nodes)]
		t.Run(tt.name+" through "+n.id, func(t *testing.T) {
			data, dgst := randomBlob(t, tt.size)
			if err := tt.put(t, n.blobs, data); err != nil {
				t.Fatal(err)
			}
			if holders := c.holders(dgst); len(holders) < 2 || !slices.Contains(holders, n.zone) {
				t.Fatalf("acknowledged blob held by zones %v, want the writer's and at least one more", holders)
			}
			waitFor(t, "every zone to hold the blob", func() bool { return len(c.holders(dgst)) == 3 })
			for _, o := range c.nodes {
				if err := storage.Verify(t.Context(), o.local, dgst); err != nil {
					t.Errorf("%s: copy does not verify: %v", o.id, err)
				}
			}
		})
	}

	t.Run("wrong digest stores nothing anywhere", func(t *testing.T) {
		data, _ := randomBlob(t, 100)
		wrong := digest.FromString("something else")
		_, err := c.node(1).blobs.Put(t.Context(), wrong, int64(len(data)), bytes.NewReader(data))
		if !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("got %v, want storage.ErrDigestMismatch", err)
		}
		if holders := c.holders(wrong); len(holders) != 0 {
			t.Fatalf("zones %v hold the refused blob", holders)
		}
	})

	t.Run("a corrupt local copy is not sent", func(t *testing.T) {
		// A sender hashes what it reads back from its store before it
		// vouches for it: a node whose local copy is corrupt cannot make
		// its zones hold it.
		data, dgst := randomBlob(t, 2000)
		n := c.node(1)
		n.putLocal(t, data)
		bad := bytes.Clone(data)
		bad[0] ^= 0xff
		if err := os.WriteFile(n.blobPath(dgst), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		err := n.blobs.replicate(t.Context(), dgst, int64(len(data)))
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("replicating a corrupt copy: got %v, want storage.ErrUnavailable", err)
		}
		for _, o := range c.nodes[1:] {
			if _, err := o.local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s holds a copy from a corrupt stream: %v", o.id, err)
			}
		}
	})
}

// TestBlobsPutOverRottenCopy: pushing again a blob whose local copy has
// rotted on disk leaves that copy as it was, and must not mark it verified
// on the strength of the new bytes: the next read still hashes it and
// finds the damage.
func TestBlobsPutOverRottenCopy(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	n := c.node(1)
	for _, tt := range []struct {
		name string
		put  func(b *Blobs, dgst digest.Digest, data []byte) error
	}{
		{"Put", func(b *Blobs, dgst digest.Digest, data []byte) error {
			_, err := b.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data))
			return err
		}},
		{"IngestFile", func(b *Blobs, dgst digest.Digest, data []byte) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return b.IngestFile(t.Context(), dgst, int64(len(data)), path)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, dgst := randomBlob(t, 4000)
			if err := tt.put(n.blobs, dgst, data); err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 1
			if err := os.WriteFile(n.blobPath(dgst), bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tt.put(n.blobs, dgst, data); err != nil {
				t.Fatal(err)
			}
			if trusted, err := n.blobs.local.Trusted(t.Context(), dgst); err != nil || trusted {
				t.Fatalf("rotten local copy trusted after a second push: %v, %v", trusted, err)
			}
		})
	}
}

// TestBlobsPutWithoutMajority: a write that cannot reach a majority fails
// with storage.ErrUnavailable and leaves no copy behind, unless the copy was
// there before the write.
func TestBlobsPutWithoutMajority(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	n := c.node(1)
	put := func(t *testing.T, data []byte) error {
		_, err := n.blobs.Put(t.Context(), digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
		return err
	}

	t.Run("one zone down", func(t *testing.T) {
		c.node(3).stop()
		data, dgst := randomBlob(t, 5000)
		if err := put(t, data); err != nil {
			t.Fatalf("2 of 3 zones up: %v", err)
		}
		if holders := c.holders(dgst); !slices.Equal(holders, []int{1, 2}) {
			t.Fatalf("held by %v", holders)
		}
		c.node(3).start()
		c.waitGossip()
	})

	t.Run("peers unreachable but in gossip", func(t *testing.T) {
		// Their gRPC servers stop; gossip still lists them, so the
		// writer tries and fails to stream to them.
		for _, o := range c.nodes[1:] {
			o.srv.Stop()
		}
		data, dgst := randomBlob(t, 5000)
		if err := put(t, data); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unacknowledged local copy left behind: %v", err)
		}
		if len(n.list.Region(testRegion)) != 3 {
			t.Fatal("gossip dropped the peers; the case did not happen")
		}
		for _, o := range c.nodes[1:] {
			o.stop()
		}
	})

	t.Run("peers gone from gossip", func(t *testing.T) {
		c.waitGossip()
		data, dgst := randomBlob(t, 5000)
		if err := put(t, data); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unacknowledged local copy left behind: %v", err)
		}
	})

	t.Run("a copy that was there stays", func(t *testing.T) {
		data, dgst := randomBlob(t, 5000)
		n.putLocal(t, data)
		if err := put(t, data); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.local.Stat(t.Context(), dgst); err != nil {
			t.Fatalf("a refused write removed the copy held before it: %v", err)
		}
	})

	t.Run("IngestFile", func(t *testing.T) {
		data, dgst := randomBlob(t, 5000)
		path := t.TempDir() + "/upload"
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := n.blobs.IngestFile(t.Context(), dgst, int64(len(data)), path); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unacknowledged local copy left behind: %v", err)
		}
	})
}

// TestBlobsStreamedCopyFails: a write streams to one other zone (of three)
// while it is written locally; when that zone fails the copy, the third
// zone copies the committed blob and still makes the majority.
func TestBlobsStreamedCopyFails(t *testing.T) {
	failing := 2
	c := newTestCluster(t, clusterConfig{zones: 3, copyStore: func(zone int, s storage.BlobStore) storage.BlobStore {
		if zone != failing {
			return s
		}
		return failingPuts{s}
	}})
	w := c.node(1)
	// blobTo returns a blob whose streamed copy goes to the given zone.
	blobTo := func(t *testing.T, zone int) ([]byte, digest.Digest) {
		for {
			data, dgst := randomBlob(t, 3*proto.ChunkSize+5)
			cp := w.blobs.newCopies(t.Context(), dgst, false)
			if cp == nil {
				t.Fatal("no copies planned with every zone up")
			}
			cp.abandon()
			if len(cp.streamed) != 1 || len(cp.later) != 1 {
				t.Fatalf("planned %d streamed and %d later copies, want 1 and 1", len(cp.streamed), len(cp.later))
			}
			if cp.streamed[0].Zone == zone {
				return data, dgst
			}
		}
	}
	writes := []struct {
		name string
		put  func(t *testing.T, data []byte, dgst digest.Digest) error
	}{
		{"Put", func(t *testing.T, data []byte, dgst digest.Digest) error {
			_, err := w.blobs.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data))
			return err
		}},
		{"IngestFile", func(t *testing.T, data []byte, dgst digest.Digest) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return w.blobs.IngestFile(t.Context(), dgst, int64(len(data)), path)
		}},
	}
	for _, wr := range writes {
		for _, streamedTo := range []int{failing, 3} {
			t.Run(fmt.Sprintf("%s streamed to zone %d", wr.name, streamedTo), func(t *testing.T) {
				data, dgst := blobTo(t, streamedTo)
				if err := wr.put(t, data, dgst); err != nil {
					t.Fatalf("one zone of three failing its copy: %v", err)
				}
				if holders := c.holders(dgst); !slices.Equal(holders, []int{1, 3}) {
					t.Fatalf("acknowledged blob held by zones %v, want [1 3]", holders)
				}
				if err := storage.Verify(t.Context(), c.node(3).local, dgst); err != nil {
					t.Fatalf("zone 3's copy: %v", err)
				}
			})
		}
	}
}

// TestBlobsBackgroundCopyWaits: the copy beyond the majority waits while
// the node writes other blobs (what clients wait for), and starts once it
// no longer does.
func TestBlobsBackgroundCopyWaits(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	w := c.node(1)
	w.blobs.writing.begin() // another upload in progress
	ended := false
	defer func() {
		if !ended {
			w.blobs.writing.end()
		}
	}()
	data, dgst := randomBlob(t, 2*proto.ChunkSize)
	if _, err := w.blobs.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if holders := c.holders(dgst); len(holders) != 2 || holders[0] != 1 {
		t.Fatalf("acknowledged blob held by zones %v, want the writer's and one more", holders)
	}
	// Well within BackgroundWait (2 s by default).
	time.Sleep(300 * time.Millisecond)
	if holders := c.holders(dgst); len(holders) != 2 {
		t.Fatalf("the copy beyond the majority did not wait for the other upload: held by %v", holders)
	}
	w.blobs.writing.end()
	ended = true
	waitFor(t, "the third zone to get its copy", func() bool { return len(c.holders(dgst)) == 3 })
}

func TestActivityWaitIdle(t *testing.T) {
	tests := []struct {
		name     string
		before   int           // writes that began and ended before
		busy     bool          // a write is in progress when waitIdle is called
		endAfter time.Duration // when it ends (0: not before max)
		max      time.Duration
		wantMin  time.Duration // waitIdle took at least this long
	}{
		{name: "no write yet", max: time.Hour},
		{name: "idle again", before: 2, max: time.Hour, wantMin: quietAfterWrites / 2},
		{name: "a write that ends", busy: true, endAfter: 50 * time.Millisecond, max: time.Hour, wantMin: 50*time.Millisecond + quietAfterWrites},
		{name: "a write that outlasts max", busy: true, max: 50 * time.Millisecond, wantMin: 50 * time.Millisecond},
		{name: "negative max", busy: true, max: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a activity
			for range tt.before {
				a.begin()
				a.end()
			}
			if tt.busy {
				a.begin()
				if tt.endAfter > 0 {
					time.AfterFunc(tt.endAfter, a.end)
				}
			}
			start := time.Now()
			done := make(chan struct{})
			go func() {
				a.waitIdle(t.Context(), tt.max)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(waitTimeout):
				t.Fatal("waitIdle did not return")
			}
			if took := time.Since(start); took < tt.wantMin {
				t.Fatalf("waitIdle returned after %v, want at least %v", took, tt.wantMin)
			}
		})
	}
}

// TestBlobsIngestBadFile: IngestFile trusts its caller's digest locally,
// but the zones it streams to verify what they get, so a file that does not
// match its digest or size is stored nowhere.
func TestBlobsIngestBadFile(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	w := c.node(1)
	data, dgst := randomBlob(t, 2*proto.ChunkSize+3)
	tests := []struct {
		name    string
		content []byte
		size    int64
		want    error
	}{
		{"content does not match the digest", append(bytes.Clone(data[1:]), 'x'), int64(len(data)), storage.ErrUnavailable},
		{"file shorter than the size", data[:len(data)-1], int64(len(data)), storage.ErrSizeMismatch},
		{"file longer than the size", append(bytes.Clone(data), 'x'), int64(len(data)), storage.ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := w.blobs.IngestFile(t.Context(), dgst, tt.size, path); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			// Copies that were streamed end in the background.
			time.Sleep(200 * time.Millisecond)
			if holders := c.holders(dgst); len(holders) != 0 {
				t.Fatalf("zones %v hold a blob from a bad file", holders)
			}
		})
	}
}

// TestBlobsReadThrough reads blobs that only other zones hold.
func TestBlobsReadThrough(t *testing.T) {
	getBlobs := &callGate{method: zonepb.Zone_GetBlob_FullMethodName}
	c := newTestCluster(t, clusterConfig{zones: 3, serverOptions: func(int) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.StreamInterceptor(getBlobs.intercept)}
	}})
	reader := c.node(3)
	// seed stores a blob in zones 1 and 2 only.
	seed := func(t *testing.T, size int) ([]byte, digest.Digest) {
		data, dgst := randomBlob(t, size)
		c.node(1).putLocal(t, data)
		c.node(2).putLocal(t, data)
		return data, dgst
	}
	readAll := func(t *testing.T, rc io.ReadCloser, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	tests := []struct {
		name string
		// read reads the blob through the reader zone and checks what it got.
		read func(t *testing.T, data []byte, dgst digest.Digest)
	}{
		{"Open", func(t *testing.T, data []byte, dgst digest.Digest) {
			rc, err := reader.blobs.Open(t.Context(), dgst, 0)
			if got := readAll(t, rc, err); !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, not the blob", len(got))
			}
		}},
		{"Open at an offset", func(t *testing.T, data []byte, dgst digest.Digest) {
			rc, err := reader.blobs.Open(t.Context(), dgst, 1000)
			if got := readAll(t, rc, err); !bytes.Equal(got, data[1000:]) {
				t.Fatalf("read %d bytes, not the blob from 1000", len(got))
			}
		}},
		{"Stat", func(t *testing.T, data []byte, dgst digest.Digest) {
			size, err := reader.blobs.Stat(t.Context(), dgst)
			if err != nil || size != int64(len(data)) {
				t.Fatalf("Stat: %d, %v", size, err)
			}
		}},
		{"Check", func(t *testing.T, data []byte, dgst digest.Digest) {
			if err := reader.blobs.Check(t.Context(), dgst); err != nil {
				t.Fatalf("Check: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, dgst := seed(t, 2*proto.ChunkSize+5)
			tt.read(t, data, dgst)
			if err := storage.Verify(t.Context(), reader.local, dgst); err != nil {
				t.Fatalf("the reader's zone did not keep a verified copy: %v", err)
			}
		})
	}

	t.Run("a corrupt copy in one zone is skipped", func(t *testing.T) {
		data, dgst := seed(t, 3000)
		// The reader asks zones in ID order: zone 1 first.
		bad := bytes.Clone(data)
		bad[len(bad)-1] ^= 0xff
		if err := os.WriteFile(c.node(1).blobPath(dgst), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		rc, err := reader.blobs.Open(t.Context(), dgst, 0)
		if got := readAll(t, rc, err); !bytes.Equal(got, data) {
			t.Fatal("served bytes that do not match the digest")
		}
	})

	t.Run("a blob no zone holds", func(t *testing.T) {
		_, dgst := randomBlob(t, 10)
		if _, err := reader.blobs.Open(t.Context(), dgst, 0); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Open: got %v, want storage.ErrNotFound", err)
		}
		if _, err := reader.blobs.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat: got %v, want storage.ErrNotFound", err)
		}
	})

	t.Run("concurrent reads fetch once", func(t *testing.T) {
		data, dgst := seed(t, 4*proto.ChunkSize)
		release := getBlobs.hold()
		before := getBlobs.count()
		fetchedBefore := reader.blobs.fetchedIn.Load()
		const readers = 8
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Go(func() {
				rc, err := reader.blobs.Open(context.Background(), dgst, 0)
				if err != nil {
					errs <- err
					return
				}
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if err == nil && !bytes.Equal(got, data) {
					err = errors.New("read bytes that are not the blob")
				}
				errs <- err
			})
		}
		waitFor(t, "the first fetch to reach a zone", func() bool { return getBlobs.count() > before })
		// The fetch is held at the serving zone; give every reader time
		// to miss locally and join it.
		time.Sleep(300 * time.Millisecond)
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := getBlobs.count() - before; n != 1 {
			t.Fatalf("%d readers made %d fetches, want 1", readers, n)
		}
		if got := reader.blobs.fetchedIn.Load() - fetchedBefore; got != int64(len(data)) {
			t.Fatalf("fetched %d bytes for a blob of %d", got, len(data))
		}
	})
}

// callGate counts the calls of one streaming method at a zone's gRPC server
// and can hold them until released.
type callGate struct {
	method string

	mu    sync.Mutex
	calls int
	gate  chan struct{} // nil when calls pass
}

func (g *callGate) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == g.method {
		g.mu.Lock()
		g.calls++
		gate := g.gate
		g.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-ss.Context().Done():
				return ss.Context().Err()
			}
		}
	}
	return handler(srv, ss)
}

func (g *callGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// hold makes calls wait until the returned function is called.
func (g *callGate) hold() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate := make(chan struct{})
	g.gate = gate
	return func() {
		g.mu.Lock()
		g.gate = nil
		g.mu.Unlock()
		close(gate)
	}
}

// failingPuts is a store that refuses every write.
type failingPuts struct{ storage.BlobStore }

func (failingPuts) Put(context.Context, digest.Digest, int64, io.Reader) (int64, error) {
	return 0, errors.New("injected failure")
}

// gossipHides is a Membership whose gossip takes one zone for dead (a
// busy node that missed its probes) while it is up.
type gossipHides struct {
	Membership
	hidden string
}

func (g gossipHides) Region(region string) []members.Member {
	return slices.DeleteFunc(g.Membership.Region(region), func(m members.Member) bool { return m.ID == g.hidden })
}

// TestBlobsSuspectedZone: when the zones gossip reports alive cannot make
// a majority (here the one alive peer fails its copy), a zone gossip
// reports down is tried before the write is refused; and a zone that was
// never seen is not.
func TestBlobsSuspectedZone(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3, copyStore: func(zone int, s storage.BlobStore) storage.BlobStore {
		if zone == 2 {
			return failingPuts{s}
		}
		return s
	}})
	w := c.node(1)
	blobs := NewBlobs(BlobsConfig{Local: w.blobs.local, Zones: 3, Members: gossipHides{w.list, c.node(3).id}})
	t.Cleanup(blobs.Close)
	if got := otherZones(blobs.cfg.Members); len(got) != 1 || got[0].Zone != 2 {
		t.Fatalf("zones gossip reports alive: %+v, want zone 2 only", got)
	}
	for _, name := range []string{"Put", "IngestFile"} {
		t.Run(name, func(t *testing.T) {
			data, dgst := randomBlob(t, 3*proto.ChunkSize+5)
			var err error
			if name == "Put" {
				_, err = blobs.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data))
			} else {
				path := t.TempDir() + "/upload"
				if werr := os.WriteFile(path, data, 0o644); werr != nil {
					t.Fatal(werr)
				}
				err = blobs.IngestFile(t.Context(), dgst, int64(len(data)), path)
			}
			if err != nil {
				t.Fatalf("write with zone 3 suspected and zone 2 failing: %v", err)
			}
			if holders := c.holders(dgst); !slices.Equal(holders, []int{1, 3}) {
				t.Fatalf("acknowledged blob held by zones %v, want [1 3]", holders)
			}
		})
	}
}
