package region_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/region/regiontest"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/storage/storagetest"
)

// TestBlobsSuite runs the storage suite on region.Blobs in a region of one zone
// and in one of three. Each case gets a region.Blobs of its own over an empty
// local store, which writes and reads as zone 1 of the cluster: in three
// zones, its copies go to the cluster's zones 2 and 3 and its reads fall
// back to them. Their stores keep what earlier cases left, which is
// harmless: no two cases use the same blob.
func TestBlobsSuite(t *testing.T) {
	for _, zones := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d zones", zones), func(t *testing.T) {
			c := regiontest.New(t, regiontest.Config{Zones: zones})
			zone1 := c.Node(1)
			storagetest.Run(t, storagetest.Config{
				ReadsFallBack: zones > 1,
				NewStore: func(t *testing.T) storage.BlobStore {
					lg := c.Logger("suite")
					fs, err := storage.NewFS(storage.FSConfig{Root: t.TempDir(), Logger: lg})
					if err != nil {
						t.Fatal(err)
					}
					b := region.NewBlobs(region.BlobsConfig{
						Local: storage.NewChecked(storage.CheckedConfig{Store: fs, Logger: lg}),
						Zones: zones, Members: zone1.Members, Logger: lg,
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
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	tests := []struct {
		name string
		size int
		put  func(t *testing.T, b *region.Blobs, data []byte) error
	}{
		{"Put, several chunks", 3*proto.ChunkSize + 17, func(t *testing.T, b *region.Blobs, data []byte) error {
			n, err := b.Put(t.Context(), digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
			if err == nil && n != int64(len(data)) {
				t.Errorf("Put wrote %d bytes, want %d", n, len(data))
			}
			return err
		}},
		{"Put, empty blob", 0, func(t *testing.T, b *region.Blobs, data []byte) error {
			_, err := b.Put(t.Context(), digest.FromBytes(data), 0, bytes.NewReader(data))
			return err
		}},
		{"Put, unknown size", 1000, func(t *testing.T, b *region.Blobs, data []byte) error {
			_, err := b.Put(t.Context(), digest.FromBytes(data), -1, bytes.NewReader(data))
			return err
		}},
		{"IngestFile", proto.ChunkSize, func(t *testing.T, b *region.Blobs, data []byte) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return b.IngestFile(t.Context(), digest.FromBytes(data), int64(len(data)), path)
		}},
	}
	for i, tt := range tests {
		n := c.Nodes()[i%len(c.Nodes())]
		t.Run(tt.name+" through "+n.ID, func(t *testing.T) {
			data, dgst := randomBlob(t, tt.size)
			if err := tt.put(t, n.Blobs, data); err != nil {
				t.Fatal(err)
			}
			if holders := c.Holders(dgst); len(holders) < 2 || !slices.Contains(holders, n.Zone) {
				t.Fatalf("acknowledged blob held by zones %v, want the writer's and at least one more", holders)
			}
			regiontest.WaitFor(t, "every zone to hold the blob", func() bool { return len(c.Holders(dgst)) == 3 })
			for _, o := range c.Nodes() {
				if err := storage.Verify(t.Context(), o.Local, dgst); err != nil {
					t.Errorf("%s: copy does not verify: %v", o.ID, err)
				}
			}
		})
	}

	t.Run("wrong digest stores nothing anywhere", func(t *testing.T) {
		data, _ := randomBlob(t, 100)
		wrong := digest.FromString("something else")
		_, err := c.Node(1).Blobs.Put(t.Context(), wrong, int64(len(data)), bytes.NewReader(data))
		if !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("got %v, want storage.ErrDigestMismatch", err)
		}
		if holders := c.Holders(wrong); len(holders) != 0 {
			t.Fatalf("zones %v hold the refused blob", holders)
		}
	})

	t.Run("a corrupt local copy is not sent", func(t *testing.T) {
		// A sender hashes what it reads back from its store before it
		// vouches for it: a node whose local copy is corrupt cannot make
		// its zones hold it.
		data, dgst := randomBlob(t, 2000)
		n := c.Node(1)
		n.PutLocal(t, data)
		bad := bytes.Clone(data)
		bad[0] ^= 0xff
		if err := os.WriteFile(n.BlobPath(dgst), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		err := region.Replicate(n.Blobs, t.Context(), dgst, int64(len(data)))
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("replicating a corrupt copy: got %v, want storage.ErrUnavailable", err)
		}
		for _, o := range c.Nodes()[1:] {
			if _, err := o.Local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s holds a copy from a corrupt stream: %v", o.ID, err)
			}
		}
	})
}

// TestBlobsPutOverRottenCopy: pushing again a blob whose local copy has
// rotted on disk leaves that copy as it was, and must not mark it verified
// on the strength of the new bytes: the next read still hashes it and
// finds the damage.
func TestBlobsPutOverRottenCopy(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	n := c.Node(1)
	for _, tt := range []struct {
		name string
		put  func(b *region.Blobs, dgst digest.Digest, data []byte) error
	}{
		{"Put", func(b *region.Blobs, dgst digest.Digest, data []byte) error {
			_, err := b.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data))
			return err
		}},
		{"IngestFile", func(b *region.Blobs, dgst digest.Digest, data []byte) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return b.IngestFile(t.Context(), dgst, int64(len(data)), path)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, dgst := randomBlob(t, 4000)
			if err := tt.put(n.Blobs, dgst, data); err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 1
			if err := os.WriteFile(n.BlobPath(dgst), bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tt.put(n.Blobs, dgst, data); err != nil {
				t.Fatal(err)
			}
			if trusted, err := region.LocalStore(n.Blobs).Trusted(t.Context(), dgst); err != nil || trusted {
				t.Fatalf("rotten local copy trusted after a second push: %v, %v", trusted, err)
			}
		})
	}
}

// TestBlobsPutWithoutMajority: a write that cannot reach a majority fails
// with storage.ErrUnavailable and leaves no copy behind, unless the copy was
// there before the write.
func TestBlobsPutWithoutMajority(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	n := c.Node(1)
	put := func(t *testing.T, data []byte) error {
		_, err := n.Blobs.Put(t.Context(), digest.FromBytes(data), int64(len(data)), bytes.NewReader(data))
		return err
	}

	t.Run("one zone down", func(t *testing.T) {
		c.Node(3).Stop()
		data, dgst := randomBlob(t, 5000)
		if err := put(t, data); err != nil {
			t.Fatalf("2 of 3 zones up: %v", err)
		}
		if holders := c.Holders(dgst); !slices.Equal(holders, []int{1, 2}) {
			t.Fatalf("held by %v", holders)
		}
		c.Node(3).Start()
		c.WaitGossip()
	})

	t.Run("peers unreachable but in gossip", func(t *testing.T) {
		// Their gRPC servers stop; gossip still lists them, so the
		// writer tries and fails to stream to them.
		for _, o := range c.Nodes()[1:] {
			o.Server.Stop()
		}
		data, dgst := randomBlob(t, 5000)
		if err := put(t, data); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.Local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unacknowledged local copy left behind: %v", err)
		}
		if len(n.Members.Region(testRegion)) != 3 {
			t.Fatal("gossip dropped the peers; the case did not happen")
		}
		for _, o := range c.Nodes()[1:] {
			o.Stop()
		}
	})

	t.Run("peers gone from gossip", func(t *testing.T) {
		c.WaitGossip()
		data, dgst := randomBlob(t, 5000)
		if err := put(t, data); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.Local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unacknowledged local copy left behind: %v", err)
		}
	})

	t.Run("a copy that was there stays", func(t *testing.T) {
		data, dgst := randomBlob(t, 5000)
		n.PutLocal(t, data)
		if err := put(t, data); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.Local.Stat(t.Context(), dgst); err != nil {
			t.Fatalf("a refused write removed the copy held before it: %v", err)
		}
	})

	t.Run("IngestFile", func(t *testing.T) {
		data, dgst := randomBlob(t, 5000)
		path := t.TempDir() + "/upload"
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := n.Blobs.IngestFile(t.Context(), dgst, int64(len(data)), path); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("got %v, want storage.ErrUnavailable", err)
		}
		if _, err := n.Local.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unacknowledged local copy left behind: %v", err)
		}
	})
}

// TestBlobsStreamedCopyFails: a write streams to one other zone (of three)
// while it is written locally; when that zone fails the copy, the third
// zone copies the committed blob and still makes the majority.
func TestBlobsStreamedCopyFails(t *testing.T) {
	failing := 2
	c := regiontest.New(t, regiontest.Config{Zones: 3, CopyStore: func(zone int, s storage.BlobStore) storage.BlobStore {
		if zone != failing {
			return s
		}
		return failingPuts{s}
	}})
	w := c.Node(1)
	// blobTo returns a blob whose streamed copy goes to the given zone.
	blobTo := func(t *testing.T, zone int) ([]byte, digest.Digest) {
		for {
			data, dgst := randomBlob(t, 3*proto.ChunkSize+5)
			streamed, later, ok := region.PlanCopies(w.Blobs, t.Context(), dgst)
			if !ok {
				t.Fatal("no copies planned with every zone up")
			}
			if len(streamed) != 1 || len(later) != 1 {
				t.Fatalf("planned %d streamed and %d later copies, want 1 and 1", len(streamed), len(later))
			}
			if streamed[0].Zone == zone {
				return data, dgst
			}
		}
	}
	writes := []struct {
		name string
		put  func(t *testing.T, data []byte, dgst digest.Digest) error
	}{
		{"Put", func(t *testing.T, data []byte, dgst digest.Digest) error {
			_, err := w.Blobs.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data))
			return err
		}},
		{"IngestFile", func(t *testing.T, data []byte, dgst digest.Digest) error {
			path := t.TempDir() + "/upload"
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return w.Blobs.IngestFile(t.Context(), dgst, int64(len(data)), path)
		}},
	}
	for _, wr := range writes {
		for _, streamedTo := range []int{failing, 3} {
			t.Run(fmt.Sprintf("%s streamed to zone %d", wr.name, streamedTo), func(t *testing.T) {
				data, dgst := blobTo(t, streamedTo)
				if err := wr.put(t, data, dgst); err != nil {
					t.Fatalf("one zone of three failing its copy: %v", err)
				}
				if holders := c.Holders(dgst); !slices.Equal(holders, []int{1, 3}) {
					t.Fatalf("acknowledged blob held by zones %v, want [1 3]", holders)
				}
				if err := storage.Verify(t.Context(), c.Node(3).Local, dgst); err != nil {
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
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	w := c.Node(1)
	endWriting := region.BeginWriting(w.Blobs) // another upload in progress
	ended := false
	defer func() {
		if !ended {
			endWriting()
		}
	}()
	data, dgst := randomBlob(t, 2*proto.ChunkSize)
	if _, err := w.Blobs.Put(t.Context(), dgst, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if holders := c.Holders(dgst); len(holders) != 2 || holders[0] != 1 {
		t.Fatalf("acknowledged blob held by zones %v, want the writer's and one more", holders)
	}
	// Well within BackgroundWait (2 s by default).
	time.Sleep(300 * time.Millisecond)
	if holders := c.Holders(dgst); len(holders) != 2 {
		t.Fatalf("the copy beyond the majority did not wait for the other upload: held by %v", holders)
	}
	endWriting()
	ended = true
	regiontest.WaitFor(t, "the third zone to get its copy", func() bool { return len(c.Holders(dgst)) == 3 })
}

// TestBlobsIngestBadFile: IngestFile trusts its caller's digest locally,
// but the zones it streams to verify what they get, so a file that does not
// match its digest or size is stored nowhere.
func TestBlobsIngestBadFile(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	w := c.Node(1)
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
			if err := w.Blobs.IngestFile(t.Context(), dgst, tt.size, path); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			// Copies that were streamed end in the background: wait for
			// them rather than for a fixed time, which a loaded machine
			// overruns.
			regiontest.WaitFor(t, "no zone to hold a blob from a bad file", func() bool { return len(c.Holders(dgst)) == 0 })
		})
	}
}

// TestBlobsReadThrough reads blobs that only other zones hold.
func TestBlobsReadThrough(t *testing.T) {
	getBlobs := &callGate{method: zonepb.Zone_GetBlob_FullMethodName}
	c := regiontest.New(t, regiontest.Config{Zones: 3, ServerOptions: func(int) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.StreamInterceptor(getBlobs.intercept)}
	}})
	reader := c.Node(3)
	// seed stores a blob in zones 1 and 2 only.
	seed := func(t *testing.T, size int) ([]byte, digest.Digest) {
		data, dgst := randomBlob(t, size)
		c.Node(1).PutLocal(t, data)
		c.Node(2).PutLocal(t, data)
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
			rc, err := reader.Blobs.Open(t.Context(), dgst, 0)
			if got := readAll(t, rc, err); !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, not the blob", len(got))
			}
		}},
		{"Open at an offset", func(t *testing.T, data []byte, dgst digest.Digest) {
			rc, err := reader.Blobs.Open(t.Context(), dgst, 1000)
			if got := readAll(t, rc, err); !bytes.Equal(got, data[1000:]) {
				t.Fatalf("read %d bytes, not the blob from 1000", len(got))
			}
		}},
		{"Stat", func(t *testing.T, data []byte, dgst digest.Digest) {
			size, err := reader.Blobs.Stat(t.Context(), dgst)
			if err != nil || size != int64(len(data)) {
				t.Fatalf("Stat: %d, %v", size, err)
			}
		}},
		{"Check", func(t *testing.T, data []byte, dgst digest.Digest) {
			if err := reader.Blobs.Check(t.Context(), dgst); err != nil {
				t.Fatalf("Check: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, dgst := seed(t, 2*proto.ChunkSize+5)
			tt.read(t, data, dgst)
			if err := storage.Verify(t.Context(), reader.Local, dgst); err != nil {
				t.Fatalf("the reader's zone did not keep a verified copy: %v", err)
			}
		})
	}

	t.Run("a corrupt copy in one zone is skipped", func(t *testing.T) {
		data, dgst := seed(t, 3000)
		// The reader asks zones in ID order: zone 1 first.
		bad := bytes.Clone(data)
		bad[len(bad)-1] ^= 0xff
		if err := os.WriteFile(c.Node(1).BlobPath(dgst), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		rc, err := reader.Blobs.Open(t.Context(), dgst, 0)
		if got := readAll(t, rc, err); !bytes.Equal(got, data) {
			t.Fatal("served bytes that do not match the digest")
		}
	})

	t.Run("a blob no zone holds", func(t *testing.T) {
		_, dgst := randomBlob(t, 10)
		if _, err := reader.Blobs.Open(t.Context(), dgst, 0); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Open: got %v, want storage.ErrNotFound", err)
		}
		if _, err := reader.Blobs.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat: got %v, want storage.ErrNotFound", err)
		}
	})

	t.Run("a blob other zones hold but cannot hand over", func(t *testing.T) {
		_, dgst := seed(t, 3000)
		getBlobs.failWith(status.Error(codes.ResourceExhausted, "no room"))
		defer getBlobs.failWith(nil)
		// A zone that lacks the blob and cannot fetch it must not call it
		// unknown (404): the endpoint would not try another zone.
		for name, err := range map[string]error{
			"Check": reader.Blobs.Check(t.Context(), dgst),
			"Stat":  func() error { _, err := reader.Blobs.Stat(t.Context(), dgst); return err }(),
		} {
			if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s: got %v, want storage.ErrUnavailable and not storage.ErrNotFound", name, err)
			}
		}
		getBlobs.failWith(nil)
		if err := reader.Blobs.Check(t.Context(), dgst); err != nil {
			t.Fatalf("Check once the zones hand it over: %v", err)
		}
	})

	t.Run("concurrent reads fetch once", func(t *testing.T) {
		data, dgst := seed(t, 4*proto.ChunkSize)
		release := getBlobs.hold()
		before := getBlobs.count()
		fetchedBefore := region.FetchedIn(reader.Blobs)
		const readers = 8
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Go(func() {
				rc, err := reader.Blobs.Open(context.Background(), dgst, 0)
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
		regiontest.WaitFor(t, "the first fetch to reach a zone", func() bool { return getBlobs.count() > before })
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
		if got := region.FetchedIn(reader.Blobs) - fetchedBefore; got != int64(len(data)) {
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
	fail  error         // nil when calls are served
}

// failWith makes the calls fail with err from now on (nil: served again).
func (g *callGate) failWith(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = err
}

func (g *callGate) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == g.method {
		g.mu.Lock()
		g.calls++
		gate, fail := g.gate, g.fail
		g.mu.Unlock()
		if fail != nil {
			return fail
		}
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

// gossipHides is a region.Membership whose gossip takes one zone for dead (a
// busy node that missed its probes) while it is up.
type gossipHides struct {
	region.Membership
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
	c := regiontest.New(t, regiontest.Config{Zones: 3, CopyStore: func(zone int, s storage.BlobStore) storage.BlobStore {
		if zone == 2 {
			return failingPuts{s}
		}
		return s
	}})
	w := c.Node(1)
	blobs := region.NewBlobs(region.BlobsConfig{Local: region.LocalStore(w.Blobs), Zones: 3, Members: gossipHides{w.Members, c.Node(3).ID}})
	t.Cleanup(blobs.Close)
	if got := region.OtherZones(blobs); len(got) != 1 || got[0].Zone != 2 {
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
			if holders := c.Holders(dgst); !slices.Equal(holders, []int{1, 3}) {
				t.Fatalf("acknowledged blob held by zones %v, want [1 3]", holders)
			}
		})
	}
}
