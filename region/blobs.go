package region

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/members"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
)

// BlobsConfig configures Blobs.
type BlobsConfig struct {
	// Local is this node's own store. It owns the integrity of the
	// copies in it (which are known to match their digests); give the
	// node's Server the same one, so that a copy either writes is trusted
	// by both.
	Local *storage.Checked
	// Zones is the number of zones in the region; a write is acknowledged
	// once Zones/2+1 of them hold it.
	Zones   int
	Members Membership
	// ReplicateTimeout bounds the background copies to zones beyond the
	// majority. Zero means 10 minutes.
	ReplicateTimeout time.Duration
	// BackgroundWait is how long a copy beyond the majority waits for
	// this node to finish the blobs it is writing, which the clients are
	// waiting for, before it starts anyway. Zero means 2 seconds; negative
	// means not at all.
	BackgroundWait time.Duration
	// TLS, when set, is the mutual TLS client configuration of the links
	// to other zones (gRPC and the blob stream); nil is plaintext.
	TLS    *tls.Config
	Logger *slog.Logger
}

// Blobs is the region's blob store as seen from one zone node: the local
// store, with writes made majority-durable across zones and reads falling
// back to other zones. It implements storage.BlobStore and FileIngester.
// Check is its verified read: a caller that must not pass on a corrupt
// byte calls it before it reads. Which copies match their digests is the
// local store's to know (storage.Checked); Blobs writes and checks
// through it and never marks a copy itself.
type Blobs struct {
	cfg     BlobsConfig
	local   *storage.Checked
	log     *slog.Logger
	peers   *proto.Pool
	streams *blobStreams
	fetches singleflight.Group
	writing activity // blobs being written here with copies streamed

	// Counters for status and metrics.
	copiedOut, fetchedIn atomic.Int64
}

// NewBlobs returns the zone-replicated blob store.
func NewBlobs(cfg BlobsConfig) *Blobs {
	if cfg.ReplicateTimeout == 0 {
		cfg.ReplicateTimeout = 10 * time.Minute
	}
	if cfg.BackgroundWait == 0 {
		cfg.BackgroundWait = 2 * time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Blobs{cfg: cfg, local: cfg.Local, log: lg, peers: proto.NewPool(proto.PoolConfig{TLS: cfg.TLS}), streams: newBlobStreams(cfg.TLS)}
}

var (
	_ storage.BlobStore    = (*Blobs)(nil)
	_ storage.FileIngester = (*Blobs)(nil)
)

func (b *Blobs) quorum() int { return b.cfg.Zones/2 + 1 }

// Stat returns the size of the blob, fetching it from another zone when the
// local store lacks it.
func (b *Blobs) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	size, err := b.local.Stat(ctx, dgst)
	if errors.Is(err, storage.ErrNotFound) {
		ferr := b.fetch(ctx, dgst)
		if ferr == nil {
			return b.local.Stat(ctx, dgst)
		}
		if errors.Is(ferr, storage.ErrUnavailable) {
			return 0, ferr
		}
	}
	return size, err
}

// Open reads the blob, fetching it from another zone when the local store
// lacks it.
func (b *Blobs) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, err := b.local.Open(ctx, dgst, offset)
	if errors.Is(err, storage.ErrNotFound) {
		ferr := b.fetch(ctx, dgst)
		if ferr == nil {
			return b.local.Open(ctx, dgst, offset)
		}
		if errors.Is(ferr, storage.ErrUnavailable) {
			return nil, ferr
		}
	}
	return rc, err
}

// Put stores the blob locally and in a majority of zones. The bytes are
// streamed to as many other zones as a majority needs while they are
// written here, so a push waits for one disk write and its fsync, not for
// two in a row; the remaining zones copy the committed local blob.
func (b *Blobs) Put(ctx context.Context, dgst digest.Digest, size int64, r io.Reader) (int64, error) {
	if err := validDigest(dgst); err != nil {
		return 0, err
	}
	had := b.hasLocal(ctx, dgst)
	c := b.newCopies(ctx, dgst, had)
	if c == nil {
		n, err := b.local.Put(ctx, dgst, size, r)
		if err != nil {
			return n, err
		}
		return n, b.replicateOrUndo(ctx, dgst, n, had)
	}
	b.writing.begin()
	defer b.writing.end()
	f := &fanout{}
	for _, p := range c.streamed {
		q := newChunkQueue()
		f.queues = append(f.queues, q)
		// copyFrom closes q whatever happens to the copy, which unblocks
		// the writer.
		c.start(p, size, func() (io.ReadCloser, error) { return q, nil })
	}
	n, err := b.local.Put(ctx, dgst, size, io.TeeReader(r, f))
	f.close(err)
	if err != nil {
		c.abandon()
		return n, err
	}
	return n, c.finish(ctx, n)
}

// validDigest refuses a digest that is not well formed before any copy to
// another zone is planned for it (planning reads its hex part).
func validDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("region: digest %q: %w", dgst, err)
	}
	return nil
}

func (b *Blobs) hasLocal(ctx context.Context, dgst digest.Digest) bool {
	_, err := b.local.Stat(ctx, dgst)
	return err == nil
}

// replicateOrUndo replicates a new local copy and, when no majority holds
// it, removes the copy again (unless it was there before), so that a refused
// write leaves nothing behind.
func (b *Blobs) replicateOrUndo(ctx context.Context, dgst digest.Digest, size int64, had bool) error {
	err := b.replicate(ctx, dgst, size)
	if err != nil && !had {
		b.undo(ctx, dgst)
	}
	return err
}

func (b *Blobs) undo(ctx context.Context, dgst digest.Digest) {
	if err := b.local.Delete(context.WithoutCancel(ctx), dgst); err != nil && !errors.Is(err, storage.ErrNotFound) {
		b.log.Warn("removing unacknowledged blob copy", "digest", dgst, "err", err)
	}
}

// IngestFile moves the file, whose content the caller has verified, into
// the local store and copies it to a majority of zones. The copies to the
// zones that make the majority are read from the file while the local
// store makes it durable; the other zones copy the committed blob.
func (b *Blobs) IngestFile(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	if err := validDigest(dgst); err != nil {
		return err
	}
	had := b.hasLocal(ctx, dgst)
	var c *copies
	if size >= 0 {
		c = b.newCopies(ctx, dgst, had)
	}
	if c == nil {
		if err := b.local.IngestFile(ctx, dgst, size, path); err != nil {
			return err
		}
		return b.replicateOrUndo(ctx, dgst, size, had)
	}
	b.writing.begin()
	defer b.writing.end()
	// Opened before the store takes the file: a rename keeps it open.
	src, err := os.Open(path)
	if err != nil {
		c.abandon()
		return err
	}
	c.onDone(func() { src.Close() })
	for _, p := range c.streamed {
		c.start(p, size, func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(src, 0, size)), nil
		})
	}
	if err := b.local.IngestFile(ctx, dgst, size, path); err != nil {
		c.abandon()
		return err
	}
	return c.finish(ctx, size)
}

// Delete removes the local copy only (a corrupt copy is repaired from the
// other zones; garbage collection deletes through the metadata): a later
// read fetches the blob again from a zone that holds it.
func (b *Blobs) Delete(ctx context.Context, dgst digest.Digest) error {
	return b.local.Delete(ctx, dgst)
}

// Check returns nil once this zone holds a copy of dgst that matches its
// digest: it asks the local store (storage.Checked.Check), which hashes
// the copy unless it is known good and removes it when it does not match,
// and fetches a missing or removed copy from another zone. When no zone
// holds a good copy (or ctx ends first) it returns the local store's error, wrapping
// storage.ErrNotFound or storage.ErrCorrupt, with the fetch's error in its
// text; when one may but this zone could not get it (the zone unreachable,
// or no room here to store the copy) it returns the fetch's error, wrapping
// storage.ErrUnavailable, as Open and Stat do: the blob is not unknown,
// and a client told 503 tries again, through the endpoint at another zone.
func (b *Blobs) Check(ctx context.Context, dgst digest.Digest) error {
	err := b.local.Check(ctx, dgst)
	if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrCorrupt) {
		return err
	}
	if ferr := b.fetch(ctx, dgst); ferr != nil {
		if errors.Is(ferr, storage.ErrUnavailable) {
			return fmt.Errorf("%w (this zone's copy: %v)", ferr, err)
		}
		return fmt.Errorf("%w (fetching it from another zone: %v)", err, ferr)
	}
	// The fetched copy was hashed as it was stored: trusted.
	return b.local.Check(ctx, dgst)
}

// Walk lists the local copies.
func (b *Blobs) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	return b.local.Walk(ctx, fn)
}

// replicate copies a locally stored blob to the other zones and returns once
// a majority of zones (this one included) hold it. Copies beyond the
// majority go on in the background.
func (b *Blobs) replicate(ctx context.Context, dgst digest.Digest, size int64) error {
	need := b.quorum() - 1
	if need <= 0 {
		return nil
	}
	peers := otherZones(b.cfg.Members)
	suspects := suspectZones(b.cfg.Members)
	if len(peers)+len(suspects) < need {
		return fmt.Errorf("%w: blob %s: %d other zones reachable, %d needed for a majority", storage.ErrUnavailable, dgst, len(peers), need)
	}
	c := b.copiesTo(ctx, dgst, peers, 0)
	return c.awaitMajority(ctx, size)
}

// copies tracks the copies of one new blob to the other zones of the
// region. The first len(streamed) copies get the bytes while the local copy
// is being written; the others (later) copy the committed local blob. The
// zones gossip reports down (suspects) are tried only when the others
// cannot make a majority: gossip can take a busy node for dead, and a write
// must not be refused while a majority could still hold it. The copies run
// on their own context: a client that goes away after its write was
// acknowledged does not stop the copies beyond the majority.
type copies struct {
	b        *Blobs
	dgst     digest.Digest
	need     int
	streamed []members.Member
	later    []members.Member
	suspects []members.Member
	bg       context.Context
	cancel   context.CancelFunc
	results  chan error
	started  int
	done     []func() // run once every started copy has ended
}

// newCopies plans the copies of a blob about to be written locally, or
// returns nil when there is nothing to stream alongside the local write:
// the blob was already here, the region has one zone, or too few zones are
// up for a majority (the caller's plain path then reports that).
func (b *Blobs) newCopies(ctx context.Context, dgst digest.Digest, had bool) *copies {
	need := b.quorum() - 1
	peers := otherZones(b.cfg.Members)
	if had || need <= 0 || len(peers) < need {
		return nil
	}
	// Spread the streamed copies over the zones, so that no one zone
	// receives every upload first.
	slices.SortFunc(peers, func(x, y members.Member) int { return cmp.Compare(x.ID, y.ID) })
	if enc := dgst.Encoded(); enc != "" {
		k := int(enc[0]) % len(peers)
		peers = slices.Concat(peers[k:], peers[:k])
	}
	return b.copiesTo(ctx, dgst, peers, need)
}

func (b *Blobs) copiesTo(ctx context.Context, dgst digest.Digest, peers []members.Member, streamed int) *copies {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.ReplicateTimeout)
	return &copies{
		b: b, dgst: dgst, need: b.quorum() - 1,
		streamed: peers[:streamed], later: peers[streamed:], suspects: suspectZones(b.cfg.Members),
		bg: bg, cancel: cancel, results: make(chan error, len(peers)),
	}
}

// start begins one copy to p of the bytes open returns.
func (c *copies) start(p members.Member, size int64, open func() (io.ReadCloser, error)) {
	c.started++
	go func() { c.results <- c.b.copyFrom(c.bg, p, c.dgst, size, open) }()
}

// onDone registers fn to run once every started copy has ended.
func (c *copies) onDone(fn func()) { c.done = append(c.done, fn) }

// abandon gives up after the local write failed: the copies already
// started are cancelled (a peer stores nothing that does not match the
// digest anyway), and their resources are released once they have ended.
func (c *copies) abandon() {
	c.cancel()
	go c.drain(0)
}

// drain waits for the results not yet received, then releases everything.
func (c *copies) drain(received int) {
	for range c.started - received {
		<-c.results
	}
	c.cancel()
	for _, fn := range c.done {
		fn()
	}
}

// finish waits for a majority once the local copy is committed. When
// none is reached the local copy is removed, so that a refused write
// leaves nothing behind.
func (c *copies) finish(ctx context.Context, size int64) error {
	err := c.awaitMajority(ctx, size)
	if err != nil {
		c.b.undo(ctx, c.dgst)
	}
	return err
}

// awaitMajority waits until need copies succeeded (with this zone's own
// copy, a majority), or until that can no longer happen. The zones not
// streamed to copy the committed local blob (of size bytes): at once when
// the streamed copies cannot make the majority on their own, otherwise
// once the majority holds it, in the background, so that the copies beyond
// the majority do not compete with the ones an acknowledgement waits for:
// neither with this blob's nor, for up to BackgroundWait, with those of the
// other blobs this node is writing.
func (c *copies) awaitMajority(ctx context.Context, size int64) error {
	startLater := func(background bool) {
		for _, p := range c.later {
			c.start(p, size, func() (io.ReadCloser, error) {
				if background {
					c.b.writing.waitIdle(c.bg, c.b.cfg.BackgroundWait)
				}
				return c.b.local.Open(c.bg, c.dgst, 0)
			})
		}
		c.later = nil
	}
	ok, failed := 0, 0
	// enough reports whether the copies started or still to start can make
	// the majority, turning to the suspects when the others cannot.
	enough := func() bool {
		if c.started+len(c.later)-failed < c.need && len(c.suspects) > 0 {
			c.later = append(c.later, c.suspects...)
			c.suspects = nil
			startLater(false)
		}
		return c.started+len(c.later)-failed >= c.need
	}
	if c.started < c.need && enough() {
		startLater(false)
	}
	defer func() {
		if ok >= c.need {
			startLater(true)
		}
		go c.drain(ok + failed)
	}()
	var lastErr error
	for ok < c.need && enough() {
		select {
		case err := <-c.results:
			if err == nil {
				ok++
				continue
			}
			failed++
			lastErr = err
			c.b.log.Warn("copy to zone failed", "digest", c.dgst, "err", err)
			startLater(false)
		case <-ctx.Done():
			return fmt.Errorf("%w: blob %s: %v", storage.ErrUnavailable, c.dgst, ctx.Err())
		}
	}
	if ok >= c.need {
		return nil
	}
	return fmt.Errorf("%w: blob %s held by %d of %d zones, a majority is %d: %v", storage.ErrUnavailable, c.dgst, ok+1, c.b.cfg.Zones, c.b.quorum(), lastErr)
}

// reconnectWait bounds the second try of a copy to a zone whose
// connection failed fast: long enough to connect to a zone that listens,
// short enough that a zone that just died (and that gossip does not
// suspect yet) delays the push little.
const reconnectWait = 500 * time.Millisecond

// copyFrom streams the bytes open returns to peer p as blob dgst, unless p
// holds a verified copy already. It always closes what open returned.
func (b *Blobs) copyFrom(ctx context.Context, p members.Member, dgst digest.Digest, size int64, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	c, err := zoneClient(b.peers, p.GRPC)
	if err != nil {
		return err
	}
	req := &zonepb.HasBlobsRequest{Digests: []string{dgst.String()}}
	has, err := c.HasBlobs(ctx, req)
	if status.Code(err) == codes.Unavailable {
		// p may have restarted since this node last failed to reach it:
		// the connection then still backs off and fails fast although p
		// listens again. Gossip lists p alive, so try once more at once,
		// waiting briefly for the connection.
		b.peers.Wake(p.GRPC)
		wctx, cancel := context.WithTimeout(ctx, reconnectWait)
		has, err = c.HasBlobs(wctx, req, grpc.WaitForReady(true))
		cancel()
	}
	if err != nil {
		return fmt.Errorf("zone %s: %w", p.ID, err)
	}
	if len(has.Present) == 1 && has.Present[0] {
		return nil
	}
	if err := b.streams.send(ctx, p.GRPC, dgst, size, rc); err != nil {
		if !errors.Is(err, errCopyRefused) && (errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch)) {
			// The bytes read back here did not hash to the digest: the
			// local copy went bad. The repairer hashes a copy the local
			// store no longer trusts, and replaces it.
			b.local.Distrust(dgst)
			b.log.Error("local blob copy does not match its digest; queued for repair", "digest", dgst, "err", err)
		}
		return fmt.Errorf("zone %s: copy of %s: %w", p.ID, dgst, err)
	}
	b.copiedOut.Add(size)
	return nil
}

// activity counts the blobs a node is writing while it streams them to
// other zones: what clients are waiting for.
type activity struct {
	mu      sync.Mutex
	n       int
	idle    chan struct{} // closed while n is 0; nil before the first write
	lastEnd time.Time     // when n last went to 0
}

// quietAfterWrites is how long a node must have written nothing before
// the copies beyond the majority start: clients push an image as several
// blobs, one after another or a few at a time, and a gap between two of
// them is not the end of the push.
const quietAfterWrites = 250 * time.Millisecond

func (a *activity) begin() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 {
		a.idle = make(chan struct{})
	}
	a.n++
}

func (a *activity) end() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n--; a.n == 0 {
		a.lastEnd = time.Now()
		close(a.idle)
	}
}

// waitIdle returns once no blob has been written for quietAfterWrites, after
// at most max (a negative max does not wait), or when ctx ends.
func (a *activity) waitIdle(ctx context.Context, max time.Duration) {
	if max < 0 {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		a.mu.Lock()
		idle, busy, quietAt := a.idle, a.n > 0, a.lastEnd.Add(quietAfterWrites)
		a.mu.Unlock()
		if idle == nil {
			return
		}
		var wake <-chan struct{}
		var nap <-chan time.Time
		if busy {
			wake = idle
		} else {
			d := time.Until(quietAt)
			if d <= 0 {
				return
			}
			nap = time.After(d)
		}
		select {
		case <-wake:
		case <-nap:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// fanout hands what the local write reads to every streamed copy that
// still takes bytes: a zone that fails its copy must not stop the local
// write or the other copies.
type fanout struct {
	queues []*chunkQueue
}

func (f *fanout) Write(p []byte) (int, error) {
	for _, q := range f.queues {
		q.put(p) // a queue whose reader is gone drops p
	}
	return len(p), nil
}

func (f *fanout) close(err error) {
	for _, q := range f.queues {
		q.closeWrite(err)
	}
}

// queueBytes bounds what a streamed copy may lag behind the local write.
// Unlike a pipe, which hands over each write only when the copy is ready to
// read it, the queue lets the local write and the copy's gRPC sends run at
// the same time; the bound keeps a slow zone from holding a whole blob in
// memory.
const queueBytes = 2 << 20

// chunkQueue is a bounded, in-memory pipe from the local write (one writer)
// to one streamed copy (one reader). put blocks while the queue holds
// queueBytes; once the reader has closed, put drops everything.
type chunkQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	chunks  []chunk
	bytes   int
	wclosed bool
	werr    error // why the writer closed; nil means the end of the blob
	rclosed bool
	cur     chunk // the chunk being read
}

type chunk struct {
	buf  *[chunkBufSize]byte
	data []byte // what is left to read of buf
}

func newChunkQueue() *chunkQueue {
	q := &chunkQueue{}
	q.cond.L = &q.mu
	return q
}

// chunkBufs recycles the queues' buffers: a blob passes through them by the
// thousand, and fresh memory is not free.
var chunkBufs = sync.Pool{New: func() any { return new([chunkBufSize]byte) }}

// chunkBufSize matches the store's largest copy step (a MiB), so that each
// write of a big blob is one chunk and one frame to the other zones.
const chunkBufSize = 1 << 20

func (q *chunkQueue) put(p []byte) {
	for len(p) > 0 {
		buf := chunkBufs.Get().(*[chunkBufSize]byte)
		n := copy(buf[:], p)
		p = p[n:]
		q.mu.Lock()
		for q.bytes >= queueBytes && !q.rclosed {
			q.cond.Wait()
		}
		if q.rclosed {
			q.mu.Unlock()
			chunkBufs.Put(buf)
			return
		}
		q.chunks = append(q.chunks, chunk{buf, buf[:n]})
		q.bytes += n
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

func (q *chunkQueue) closeWrite(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.wclosed, q.werr = true, err
	q.cond.Broadcast()
}

// next takes the chunk to read: the one Read started, or the next the
// writer adds. ok is false once the writer closed and everything was read;
// err is then its error (nil: the end of the blob).
func (q *chunkQueue) next() (c chunk, ok bool, err error) {
	if q.cur.buf != nil {
		c, q.cur = q.cur, chunk{}
		return c, true, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.chunks) == 0 && !q.wclosed {
		q.cond.Wait()
	}
	if len(q.chunks) == 0 {
		return chunk{}, false, q.werr
	}
	c = q.chunks[0]
	q.chunks[0] = chunk{}
	q.chunks = q.chunks[1:]
	q.bytes -= len(c.data)
	q.cond.Broadcast()
	return c, true, nil
}

// Read implements io.Reader for the copy: it returns io.EOF once the
// writer closed without an error, and the writer's error otherwise.
func (q *chunkQueue) Read(p []byte) (int, error) {
	c, ok, err := q.next()
	if !ok {
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	n := copy(p, c.data)
	if c.data = c.data[n:]; len(c.data) > 0 {
		q.cur = c
	} else {
		chunkBufs.Put(c.buf)
	}
	return n, nil
}

// writeChunksTo hands the queued bytes to w chunk by chunk as the writer
// adds them, without copying them, until the writer closes: it returns nil
// at the end of the blob and the writer's error otherwise.
func (q *chunkQueue) writeChunksTo(w io.Writer) (int64, error) {
	var n int64
	for {
		c, ok, err := q.next()
		if !ok {
			return n, err
		}
		m, err := w.Write(c.data)
		n += int64(m)
		chunkBufs.Put(c.buf)
		if err != nil {
			return n, err
		}
	}
}

// Close ends the reader's side: the writer no longer waits for it. Only
// the reader calls it.
func (q *chunkQueue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.rclosed = true
	if q.cur.buf != nil {
		chunkBufs.Put(q.cur.buf)
		q.cur = chunk{}
	}
	for _, c := range q.chunks {
		chunkBufs.Put(c.buf)
	}
	q.chunks, q.bytes = nil, 0
	q.cond.Broadcast()
	return nil
}

// fetch copies dgst from another zone into the local store, verifying it.
// Concurrent fetches of one digest share one transfer, which runs on its own
// context so that one caller giving up does not fail the others. It returns
// an error wrapping storage.ErrNotFound when every other zone answered that
// it lacks the blob, and storage.ErrUnavailable when some could not be asked.
func (b *Blobs) fetch(ctx context.Context, dgst digest.Digest) error {
	ch := b.fetches.DoChan(dgst.String(), func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.ReplicateTimeout)
		defer cancel()
		if b.cfg.Zones <= 1 {
			// No other zone exists to hold it, nor to be unreachable.
			return nil, fmt.Errorf("%w: %s, and the region has no other zone", storage.ErrNotFound, dgst)
		}
		unreachable := 0
		var lastErr error = fmt.Errorf("%w: no other zone is up", storage.ErrUnavailable)
		for _, p := range otherZones(b.cfg.Members) {
			err := b.fetchFrom(fctx, p, dgst)
			if err == nil {
				b.log.Info("blob fetched from another zone", "digest", dgst, "from", p.ID)
				return nil, nil
			}
			if status.Code(errors.Unwrap(err)) != codes.NotFound && status.Code(err) != codes.NotFound {
				unreachable++
			}
			lastErr = err
		}
		if unreachable == 0 && lastErr != nil && len(otherZones(b.cfg.Members)) > 0 {
			return nil, fmt.Errorf("%w: no zone holds %s", storage.ErrNotFound, dgst)
		}
		return nil, fmt.Errorf("%w: %v", storage.ErrUnavailable, lastErr)
	})
	select {
	case <-ctx.Done():
		return ctx.Err()
	case res := <-ch:
		return res.Err
	}
}

func (b *Blobs) fetchFrom(ctx context.Context, p members.Member, dgst digest.Digest) error {
	c, err := zoneClient(b.peers, p.GRPC)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.GetBlob(ctx, &zonepb.GetBlobRequest{Digest: dgst.String()})
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	r := &chunkReader{pending: first.Data, recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}}
	// Put verifies digest and size before the copy becomes visible (and
	// the local store trusts it from then on).
	n, err := b.local.Put(ctx, dgst, first.Size, r)
	if err != nil {
		return fmt.Errorf("zone %s: %w", p.ID, err)
	}
	b.fetchedIn.Add(n)
	return nil
}

// chunkReader reads the data of a stream of chunks.
type chunkReader struct {
	pending []byte
	recv    func() ([]byte, error)
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		data, err := c.recv()
		if err != nil {
			return 0, err
		}
		c.pending = data
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Close releases the gRPC connections.
func (b *Blobs) Close() {
	b.peers.Close()
	b.streams.close()
}
