package replication

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/replicationpb"
	"github.com/georeg/georeg/storage"
)

// A blob fetched from a peer region arrives at the region's leader, which
// writes it to a partial file of its own and, every segment, makes the
// segment durable in the region: it stores the segment as a blob of its own
// through the region's blob store (a majority of zones, readable from any)
// and records it in the region's Raft log (meta.TransferSegment). A new
// leader reads the record and fetches only what comes after the last
// durable segment; it builds the blob from the segments and its own partial
// file. Segment blobs hold a header naming the transfer, so they never
// share a digest with a client's blob or another transfer's segment, and
// they are never linked into a repository: clients cannot see them, and
// the repairer, which walks the blob index, leaves them alone. When a
// transfer ends, its record goes and its segments are listed as dead; every
// zone deletes its copies of dead segments (cleanPartials). A garbage
// collector that sweeps blobs no manifest references must spare the
// segments of the region's live transfer records (meta.Reader.Transfers).
//
// Only the leader fetches: a fetch on a node that sees another node lead
// stops (errNotLeader), so that a leader deposed mid-transfer, or a node
// that restarted and briefly led, does not fetch the same bytes as the new
// leader.

// TransferLog is what durable transfer progress needs of Metadata beyond
// the Metadata interface: reads of the transfer records, which Apply writes
// with the meta.Transfer* commands. It is an optional ability checked at
// run time: without it, transfers keep their progress on the fetching node
// only. *region.Group implements it (through its *meta.Reader). The reads come
// from the local replica.
type TransferLog interface {
	Transfer(dgst digest.Digest) (meta.Transfer, error)
	Transfers() ([]meta.Transfer, error)
	DeadSegments() ([]meta.DeadSegment, error)
}

// zoneCounter is the optional ability of a region's blob store to tell how
// many zones the region has (*region.Blobs has it). A one-zone region keeps
// no segments: its partial file is on the only node there is.
type zoneCounter interface {
	Zones() int
}

const (
	// minSegment is the smallest segment. A leader killed mid-transfer
	// loses at most the segment being stored and the one received since
	// (offsets stay on chunk boundaries, which segments are multiples of):
	// 4 MiB of a 64 MiB layer.
	minSegment = 2 << 20
	// targetSegments is how many segments a big blob is cut into at most,
	// well within meta.MaxTransferSegments, so that a record stays small
	// and a kill loses at most about 2/targetSegments of the blob.
	targetSegments = 64
	// segmentThreshold is the smallest blob fetched in segments; a smaller
	// one is fetched again whole if its fetching leader dies.
	segmentThreshold = 4 * minSegment
	// deadSegmentRecheck is how long after its transfer ended a dead
	// segment is deleted again on every pass: a copy to a zone beyond the
	// majority may still land meanwhile (region.BlobsConfig.ReplicateTimeout
	// bounds it). Older dead segments are deleted once per process.
	deadSegmentRecheck = 20 * time.Minute
	// leaderCheckInterval is how often a fetch whose stream brings no
	// chunk checks that this node still leads the region.
	leaderCheckInterval = 100 * time.Millisecond
	// deadSegmentTTL is how long dead segments stay listed: a zone down
	// for longer keeps its copies of them until garbage collection.
	deadSegmentTTL = 24 * time.Hour
)

// segmentSize returns the segment size of a blob of size bytes, and 0 when
// such a blob is not fetched in segments (too small, or of unknown size).
func segmentSize(size int64) int64 {
	if size < segmentThreshold {
		return 0
	}
	const mib = 1 << 20
	s := (size + targetSegments - 1) / targetSegments
	s = (s + mib - 1) / mib * mib
	return max(s, minSegment)
}

// segmentHeader is what a segment blob holds before the segment's bytes.
func segmentHeader(t meta.Transfer, k int) []byte {
	return fmt.Appendf(nil, "georeg transfer segment\nblob %s\ntransfer %s\nsegment %d\noffset %d\n\n",
		t.Digest, t.ID, k, int64(k)*t.SegmentSize)
}

// transfers is the node's own state of blob transfers.
type transfers struct {
	mu       sync.Mutex
	active   map[digest.Digest]bool
	sweptAll bool // dead segments older than deadSegmentRecheck were deleted once
}

func (s *transfers) begin(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		s.active = map[digest.Digest]bool{}
	}
	s.active[d] = true
}

// claim begins d unless it is active already, and reports whether it did.
func (s *transfers) claim(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[d] {
		return false
	}
	if s.active == nil {
		s.active = map[digest.Digest]bool{}
	}
	s.active[d] = true
	return true
}

func (s *transfers) end(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, d)
}

func (s *transfers) isActive(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[d]
}

// partialFile is a node-local file of a transfer's bytes from Start on.
type partialFile struct {
	Name     string
	Start    int64
	Size     int64
	Modified time.Time
}

// End returns the blob offset just past the file's bytes.
func (p partialFile) End() int64 { return p.Start + p.Size }

// partialName names the partial file of dgst's bytes from start on.
func partialName(dgst digest.Digest, start int64) string {
	return dgst.Algorithm().String() + "-" + dgst.Encoded() + "-" + strconv.FormatInt(start, 10)
}

// parsePartialName returns the blob and the start offset a partial file
// name says; a name without an offset (an earlier version's) starts at 0.
func parsePartialName(name string) (digest.Digest, int64, bool) {
	alg, rest, ok := strings.Cut(name, "-")
	if !ok {
		return "", 0, false
	}
	hex, off, hasOff := strings.Cut(rest, "-")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if d.Validate() != nil {
		return "", 0, false
	}
	var start int64
	if hasOff {
		n, err := strconv.ParseInt(off, 10, 64)
		if err != nil || n < 0 {
			return "", 0, false
		}
		start = n
	}
	return d, start, true
}

// planPartial picks, among a blob's partial files on this node, the one a
// transfer goes on writing (ok false: none, start a new one at durable):
// a fresh file that covers the durable end, from at or before it, and holds
// no more than the blob; of several, the one that reaches furthest. The
// others are to be removed.
func planPartial(files []partialFile, durable, size int64, now time.Time) (keep partialFile, ok bool, drop []partialFile) {
	for _, f := range files {
		usable := now.Sub(f.Modified) <= staleTransfer && f.Start <= durable && f.End() >= durable &&
			(size < 0 || f.End() <= size)
		switch {
		case !usable:
			drop = append(drop, f)
		case !ok:
			keep, ok = f, true
		case f.End() > keep.End():
			drop = append(drop, keep)
			keep = f
		default:
			drop = append(drop, f)
		}
	}
	return keep, ok, drop
}

// partials lists this node's partial files of dgst.
func (r *Replicator) partials(dgst digest.Digest) []partialFile {
	dir := filepath.Join(r.cfg.Dir, "partial")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []partialFile
	for _, e := range entries {
		d, start, ok := parsePartialName(e.Name())
		if !ok || d != dgst {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, partialFile{Name: e.Name(), Start: start, Size: fi.Size(), Modified: fi.ModTime()})
	}
	return out
}

// transfer is one attempt at fetching a blob from a peer region into this
// region. The receiving goroutine writes the partial file and hands each
// complete segment to the committer goroutine, waiting while the committer
// still stores the one before: at most two segments are ever not durable.
type transfer struct {
	r    *Replicator
	from string
	dgst digest.Digest
	size int64 // -1 until the source tells
	tlog TransferLog
	// rec is the record as the transfer began: nil when the transfer keeps
	// no durable progress. Only its ID, Size and SegmentSize are used
	// after the start; durable holds the progress.
	rec     *meta.Transfer
	durable atomic.Int64

	f *os.File
	// w writes to f, starting the write-back of what arrived every few
	// MiB: the blob's final fsync then waits for its tail, not for all
	// of it (a 256 MiB image spent 200 ms there after its last byte).
	w         io.Writer
	path      string
	start     int64 // the blob offset of the file's first byte
	offset    int64 // the next byte to receive
	resumedAt int64 // the offset this attempt started receiving at
	// hash, when the file holds the blob from its first byte and this
	// attempt wrote all of it, is the digest of what it wrote so far: the
	// finished file is then checked without reading it again, and handed
	// to the store by rename (see finish).
	hash hash.Hash

	next      int // the next segment to hand to the committer
	jobs      chan int
	committed chan struct{} // closed once the committer has returned
	stopped   atomic.Bool   // the committer gave up; the transfer goes on without it
	orphans   []meta.Segment

	// For the log: the segments this attempt made durable, the time spent
	// on them, and the time the receiver waited for the committer.
	segments            int
	committing, blocked time.Duration
}

// openTransfer prepares a fetch of dgst: the region's record of the
// transfer (begun or resumed) and this node's partial file.
func (r *Replicator) openTransfer(ctx context.Context, from string, dgst digest.Digest, size int64) (*transfer, error) {
	t := &transfer{r: r, from: from, dgst: dgst, size: size}
	t.tlog, _ = r.cfg.Meta.(TransferLog)
	if zc, ok := r.cfg.Blobs.(zoneCounter); ok && zc.Zones() <= 1 {
		t.tlog = nil
	}
	if t.tlog != nil && t.size < 0 {
		if rec, err := t.tlog.Transfer(dgst); err == nil {
			t.size = rec.Size
		}
	}
	if t.tlog != nil && segmentSize(t.size) > 0 {
		if err := t.begin(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			r.log.Warn("blob transfer: recording its progress in the region failed; fetching on this node only", "digest", dgst, "from", from, "err", err)
			t.rec = nil
		}
	}
	durable := t.durable.Load()
	keep, ok, drop := planPartial(r.partials(dgst), durable, t.size, time.Now())
	dir := filepath.Join(r.cfg.Dir, "partial")
	for _, p := range drop {
		os.Remove(filepath.Join(dir, p.Name))
	}
	if !ok {
		keep = partialFile{Name: partialName(dgst, durable), Start: durable}
	}
	t.path = filepath.Join(dir, keep.Name)
	f, err := os.OpenFile(t.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("replication: partial file of %s: %w", dgst, err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("replication: partial file of %s: %w", dgst, err)
	}
	t.f, t.start, t.offset = f, keep.Start, keep.Start+end
	t.w = storage.NewWriteBehind(f, end)
	t.resumedAt = t.offset
	if t.offset == 0 && dgst.Algorithm().Available() {
		t.hash = dgst.Algorithm().Hash()
	}
	if t.rec != nil {
		t.startCommitter(ctx)
	}
	return t, nil
}

// startCommitter starts the goroutine that makes segments durable, from
// the first one the record lacks.
func (t *transfer) startCommitter(ctx context.Context) {
	t.next = len(t.rec.Segments)
	t.jobs, t.committed = make(chan int), make(chan struct{})
	go t.commitLoop(ctx)
}

// segmentFromHere begins durable progress for a transfer that started
// without knowing the blob's size (a read-through), once the first chunk
// told it. The file starts at the blob's first byte, so it covers whatever
// the region already holds durably, unless the region holds more than this
// node received (a transfer begun elsewhere meanwhile): this node then goes
// on alone.
func (t *transfer) segmentFromHere(ctx context.Context) {
	if err := t.begin(ctx); err != nil {
		t.r.log.Warn("blob transfer: recording its progress in the region failed; fetching on this node only", "digest", t.dgst, "from", t.from, "err", err)
		t.rec = nil
		return
	}
	if d := t.durable.Load(); d > t.offset {
		t.r.log.Info("blob transfer: the region holds more of the blob than this node received; fetching on this node only",
			"digest", t.dgst, "from", t.from, "durable", d, "received", t.offset)
		t.rec = nil
		return
	}
	t.startCommitter(ctx)
}

// begin opens or resumes the region's record of the transfer. The record
// is read after a write of this node's own has applied, so that a leader
// just elected sees every segment its predecessor recorded.
func (t *transfer) begin(ctx context.Context) error {
	now := time.Now().UTC()
	if old, err := t.tlog.Transfer(t.dgst); err == nil && now.Sub(old.Updated) > staleTransfer {
		// Too old to trust as the start of this transfer.
		if err := t.r.cfg.Meta.Apply(ctx, meta.TransferEnd{Digest: t.dgst, ID: old.ID, Time: now}); err != nil {
			return fmt.Errorf("ending a stale record of the transfer: %w", err)
		}
	}
	id := make([]byte, 16)
	rand.Read(id)
	err := t.r.cfg.Meta.Apply(ctx, meta.TransferBegin{
		Digest: t.dgst, Size: t.size, ID: hex.EncodeToString(id), From: t.from, SegmentSize: segmentSize(t.size), Time: now,
	})
	if err != nil {
		return fmt.Errorf("beginning the record of the transfer: %w", err)
	}
	rec, err := t.tlog.Transfer(t.dgst)
	if errors.Is(err, meta.ErrTransferUnknown) {
		return fmt.Errorf("the region records %d transfers already", meta.MaxTransfers)
	}
	if err != nil {
		return fmt.Errorf("reading the record of the transfer: %w", err)
	}
	if rec.Size != t.size || rec.SegmentSize != segmentSize(t.size) {
		return fmt.Errorf("the region's record of the transfer is of %d bytes in segments of %d, want %d in %d",
			rec.Size, rec.SegmentSize, t.size, segmentSize(t.size))
	}
	t.rec = &rec
	t.durable.Store(rec.Durable())
	if d := rec.Durable(); d > 0 {
		t.r.log.Info("blob transfer resumed from the region's durable segments", "digest", t.dgst, "from", t.from,
			"durable", d, "size", rec.Size, "segments", len(rec.Segments))
	}
	return nil
}

// errNotLeader is returned by a fetch on a node that another node of the
// region has taken the lead from: the leader fetches for the region, and
// resumes from the durable segments.
var errNotLeader = fmt.Errorf("%w: another node leads the region and fetches for it", storage.ErrUnavailable)

// otherLeader reports whether another node of the region is known to lead
// it. During an election (no leader known) a node goes on fetching.
func (r *Replicator) otherLeader() bool {
	if r.cfg.Meta.IsLeader() {
		return false
	}
	l, ok := r.cfg.Meta.Leader()
	return ok && l.ID != r.cfg.Members.Self().ID
}

// receive streams the rest of the blob from the source region into the
// partial file, resuming at the offset reached whenever the stream breaks
// and another node of the source region is tried. It stops with
// errNotLeader as soon as another node leads the region: that node fetches
// the blob too, from the durable segments on, and two nodes fetching the
// same bytes would fetch them twice.
func (t *transfer) receive(ctx context.Context) error {
	if t.size >= 0 && t.offset >= t.size {
		return nil
	}
	r := t.r
	if r.otherLeader() {
		// Learnt while the record was begun (a node just restarted).
		return errNotLeader
	}
	received := r.m.BytesReceived.WithLabelValues(t.from)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var deposed atomic.Bool
	go func() {
		// A stream that stalls brings no chunk to check the lead on.
		tick := time.NewTicker(leaderCheckInterval)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				if r.otherLeader() {
					deposed.Store(true)
					stop()
					return
				}
			}
		}
	}()
	err := r.withRegionOn(rctx, r.blobPool(), t.from, func(c replicationpb.ReplicationClient) error {
		sctx, scancel := context.WithCancel(rctx)
		defer scancel()
		stream, err := c.GetBlob(sctx, &replicationpb.GetBlobRequest{Digest: t.dgst.String(), Offset: t.offset, Region: r.region})
		if err != nil {
			return err
		}
		for {
			chunk, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if chunk.Size > 0 && chunk.Size != t.size {
				if t.rec != nil && !t.stopped.Swap(true) {
					r.log.Warn("blob transfer: the source holds another size than expected; fetching on this node only",
						"digest", t.dgst, "from", t.from, "size", chunk.Size, "expected", t.size)
				}
				learned := t.size < 0
				t.size = chunk.Size
				if learned && t.rec == nil && t.tlog != nil && t.start == 0 && segmentSize(t.size) > 0 {
					t.segmentFromHere(ctx)
				}
			}
			n, werr := t.w.Write(chunk.Data)
			if t.hash != nil {
				if werr != nil {
					t.hash = nil
				} else {
					t.hash.Write(chunk.Data)
				}
			}
			t.offset += int64(n)
			received.Add(float64(n))
			r.setLive(t.from, func(l *peerLive) { l.blobBytes.add(time.Now(), float64(n)) })
			if werr != nil {
				return werr
			}
			// Hand off on ctx, not rctx: a node deposed meanwhile still
			// makes durable the segments it holds whole, which the new
			// leader then need not fetch.
			if err := t.handOff(ctx); err != nil {
				return err
			}
			if r.otherLeader() {
				// Stop here rather than try the source's other nodes.
				deposed.Store(true)
				stop()
				return errNotLeader
			}
		}
	})
	if deposed.Load() {
		return errNotLeader
	}
	return err
}

// ingest hands a partial file that holds the whole blob, hashed as it was
// written, to the region's blob store by rename (storage.FileIngester):
// reading 256 MiB of layers back, hashing and copying them again after the
// last byte arrived took longer than a second of a transfer that the link
// bounds otherwise. done is false when the fast path does not apply (the
// file was resumed, or the store takes no files): finish then stores it
// with Put.
func (t *transfer) ingest(ctx context.Context) (done bool, err error) {
	fi, ok := t.r.cfg.Blobs.(storage.FileIngester)
	if !ok || t.hash == nil || t.start != 0 || t.offset != t.size {
		return false, nil
	}
	if got := digest.NewDigest(t.dgst.Algorithm(), t.hash); got != t.dgst {
		os.Remove(t.path)
		t.end(ctx)
		return true, fmt.Errorf("blob %s from %s: %w (the bytes received hash to %s)", t.dgst, t.from, storage.ErrDigestMismatch, got)
	}
	if err := fi.IngestFile(ctx, t.dgst, t.size, t.path); err != nil {
		return true, fmt.Errorf("blob %s from %s: storing it: %w", t.dgst, t.from, err)
	}
	t.end(ctx)
	return true, nil
}

// handOff gives the committer every segment the file now holds, short of
// the blob's last bytes (which the whole blob's Put makes durable anyway).
// It waits while the committer stores the previous segment.
func (t *transfer) handOff(ctx context.Context) error {
	for t.rec != nil && !t.stopped.Load() {
		s := t.rec.SegmentSize
		end := int64(t.next+1) * s
		if end > t.offset || end >= t.size {
			return nil
		}
		start := time.Now()
		select {
		case t.jobs <- t.next:
			t.next++
			t.blocked += time.Since(start)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// commitLoop stores the segments handed to it, in order, until the
// receiver closes jobs. After a failure it only drains jobs: the transfer
// goes on without durable progress.
func (t *transfer) commitLoop(ctx context.Context) {
	defer close(t.committed)
	for k := range t.jobs {
		if t.stopped.Load() {
			continue
		}
		start := time.Now()
		err := t.commit(ctx, k)
		t.committing += time.Since(start)
		if err == nil {
			t.segments++
		}
		if err != nil {
			t.stopped.Store(true)
			if ctx.Err() == nil {
				t.r.log.Warn("blob transfer: making a segment durable failed; going on with this node's copy only",
					"digest", t.dgst, "segment", k, "err", err)
			}
		}
	}
}

// commit stores segment k as a blob on a majority of zones and records it.
func (t *transfer) commit(ctx context.Context, k int) error {
	rec := *t.rec
	off, n := int64(k)*rec.SegmentSize, rec.SegmentSize
	hdr := segmentHeader(rec, k)
	section := func() io.Reader {
		return io.MultiReader(bytes.NewReader(hdr), io.NewSectionReader(t.f, off-t.start, n))
	}
	d := digest.Canonical.Digester()
	if _, err := io.Copy(d.Hash(), section()); err != nil {
		return fmt.Errorf("reading segment %d back: %w", k, err)
	}
	seg := meta.Segment{Offset: off, Size: n, Digest: d.Digest()}
	if _, err := t.r.cfg.Blobs.Put(ctx, seg.Digest, int64(len(hdr))+n, section()); err != nil {
		return fmt.Errorf("storing segment %d: %w", k, err)
	}
	t.orphans = append(t.orphans, seg)
	if err := t.r.cfg.Meta.Apply(ctx, meta.TransferSegment{Digest: t.dgst, ID: rec.ID, Segment: seg, Time: time.Now().UTC()}); err != nil {
		return fmt.Errorf("recording segment %d: %w", k, err)
	}
	cur, err := t.tlog.Transfer(t.dgst)
	if errors.Is(err, meta.ErrTransferUnknown) || (err == nil && (cur.ID != rec.ID || len(cur.Segments) <= k || cur.Segments[k] != seg)) {
		// The record ended or was replaced meanwhile: the command listed
		// the segment as dead.
		return fmt.Errorf("recording segment %d: the region's record of the transfer ended or moved on", k)
	}
	if err != nil {
		return fmt.Errorf("reading back the record of segment %d: %w", k, err)
	}
	t.orphans = t.orphans[:len(t.orphans)-1]
	t.durable.Store(seg.End())
	return nil
}

// stopCommitter waits for the committer to finish the segment it stores.
func (t *transfer) stopCommitter() {
	if t.jobs != nil {
		close(t.jobs)
		<-t.committed
		t.jobs = nil
	}
}

// close releases the transfer's file and committer.
func (t *transfer) close() {
	t.stopCommitter()
	t.f.Close()
}

// finish stores the whole blob, verified against its digest, from the
// durable segments before this node's partial file and the file, then
// removes the file and ends the region's record (its segments become
// dead). A blob that does not match its digest is dropped with every
// byte kept of it, so that the next attempt starts over.
func (t *transfer) finish(ctx context.Context) error {
	t.stopCommitter()
	r := t.r
	var segs []meta.Segment
	rec := t.rec
	if t.start > 0 {
		if t.tlog == nil || rec == nil {
			os.Remove(t.path)
			return fmt.Errorf("blob %s from %s: a partial file from offset %d without a record of the transfer; starting over", t.dgst, t.from, t.start)
		}
		cur, err := t.tlog.Transfer(t.dgst)
		if err != nil && !errors.Is(err, meta.ErrTransferUnknown) {
			return fmt.Errorf("blob %s from %s: reading the record of the transfer: %w", t.dgst, t.from, err)
		}
		if err != nil || cur.ID != rec.ID || cur.Durable() < t.start {
			os.Remove(t.path)
			return fmt.Errorf("blob %s from %s: the region's record of the transfer ended before it completed; starting over", t.dgst, t.from)
		}
		rec, segs = &cur, cur.Segments
	}
	if done, err := t.ingest(ctx); done || err != nil {
		return err
	}
	head := &segmentsReader{ctx: ctx, blobs: r.cfg.Blobs, rec: rec, segs: segs, upto: t.start}
	defer head.Close()
	body := io.MultiReader(head, io.NewSectionReader(t.f, 0, t.offset-t.start))
	_, err := r.cfg.Blobs.Put(ctx, t.dgst, t.size, body)
	if errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch) || errors.Is(head.err, storage.ErrNotFound) {
		// Bad bytes, or a segment no zone holds any more: start over.
		os.Remove(t.path)
		t.end(ctx)
		return fmt.Errorf("blob %s from %s: %w", t.dgst, t.from, errors.Join(err, head.err))
	}
	if err != nil {
		return fmt.Errorf("blob %s from %s: storing it: %w", t.dgst, t.from, err)
	}
	os.Remove(t.path)
	t.end(ctx)
	if t.segments > 0 {
		r.log.Info("blob fetched in durable segments", "digest", t.dgst, "from", t.from, "size", t.size,
			"resumedAt", t.resumedAt, "segments", t.segments, "segmentSize", t.rec.SegmentSize,
			"commitMs", t.committing.Milliseconds(), "receiverWaitedMs", t.blocked.Milliseconds())
	}
	return nil
}

// end removes the region's record of the transfer, listing its segments
// and any segment stored but never recorded as dead, and deletes this
// node's copies of them at once (the other zones follow on their next
// pass).
func (t *transfer) end(ctx context.Context) {
	if t.tlog == nil || (t.rec == nil && len(t.orphans) == 0) {
		return
	}
	cmd := meta.TransferEnd{Digest: t.dgst, Unrecorded: t.orphans, Time: time.Now().UTC()}
	if t.rec != nil {
		cmd.ID = t.rec.ID
	}
	if err := t.r.cfg.Meta.Apply(ctx, cmd); err != nil {
		// The leader's pass ends it later: the region holds the blob.
		t.r.log.Warn("blob transfer: ending its record failed", "digest", t.dgst, "err", err)
		return
	}
	t.r.sweepDeadSegments(ctx, false)
}

// segmentsReader reads the bytes of segs before upto, opening one segment
// blob at a time (from another zone when this one lacks it).
type segmentsReader struct {
	ctx   context.Context
	blobs storage.BlobStore
	rec   *meta.Transfer
	segs  []meta.Segment
	upto  int64

	i    int
	cur  io.ReadCloser
	left int64
	err  error // the first error reading a segment
}

func (s *segmentsReader) Read(p []byte) (int, error) {
	for s.cur == nil {
		if s.i >= len(s.segs) || s.segs[s.i].Offset >= s.upto {
			return 0, io.EOF
		}
		seg := s.segs[s.i]
		rc, err := s.blobs.Open(s.ctx, seg.Digest, int64(len(segmentHeader(*s.rec, s.i))))
		if err != nil {
			s.err = fmt.Errorf("segment %d of %s: %w", s.i, s.rec.Digest, err)
			return 0, s.err
		}
		s.cur, s.left = rc, min(seg.Size, s.upto-seg.Offset)
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.cur.Read(p)
	s.left -= int64(n)
	if s.left == 0 {
		s.cur.Close()
		s.cur = nil
		s.i++
		return n, nil
	}
	if err == io.EOF {
		return n, fmt.Errorf("segment %d of %s: %w", s.i, s.rec.Digest, io.ErrUnexpectedEOF)
	}
	return n, err
}

// Close closes the segment being read.
func (s *segmentsReader) Close() error {
	if s.cur != nil {
		s.cur.Close()
		s.cur = nil
	}
	return nil
}

// cleanPartials removes this node's partial files of blobs the region has
// since received in full (another node finished the transfer this one
// started) and those too old to resume, deletes this node's copies of dead
// segments, and, on the leader, ends the transfer records nobody will
// finish.
func (r *Replicator) cleanPartials(ctx context.Context) {
	dir := filepath.Join(r.cfg.Dir, "partial")
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			d, _, ok := parsePartialName(e.Name())
			if !ok || r.xfers.isActive(d) {
				continue
			}
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTransfer {
				os.Remove(filepath.Join(dir, e.Name()))
				continue
			}
			if _, err := r.cfg.Blobs.Stat(ctx, d); err == nil {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	r.sweepDeadSegments(ctx, true)
	if r.cfg.Meta.IsLeader() {
		r.sweepTransfers(ctx)
	}
}

// sweepDeadSegments deletes this node's copies of dead segments: those that
// died recently, and on the first periodic pass of the process all of
// them.
func (r *Replicator) sweepDeadSegments(ctx context.Context, periodic bool) {
	tlog, ok := r.cfg.Meta.(TransferLog)
	if !ok {
		return
	}
	dead, err := tlog.DeadSegments()
	if err != nil {
		r.log.Warn("listing dead transfer segments", "err", err)
		return
	}
	r.xfers.mu.Lock()
	all := periodic && !r.xfers.sweptAll
	r.xfers.mu.Unlock()
	deleted := 0
	for _, d := range dead {
		if !all && time.Since(d.Died) > deadSegmentRecheck {
			continue
		}
		if _, err := r.cfg.Meta.Blob(d.Digest); err == nil {
			continue // a client's blob after all
		}
		err := r.cfg.Blobs.Delete(ctx, d.Digest)
		switch {
		case err == nil:
			deleted++
		case !errors.Is(err, storage.ErrNotFound):
			r.log.Warn("deleting a dead transfer segment", "digest", d.Digest, "err", err)
			return
		}
	}
	if deleted > 0 {
		r.log.Debug("deleted dead transfer segments", "count", deleted)
	}
	if all {
		r.xfers.mu.Lock()
		r.xfers.sweptAll = true
		r.xfers.mu.Unlock()
	}
}

// sweepTransfers ends the region's transfer records that no fetch will
// finish: older than a day, from a region whose replication was deleted,
// or of a blob the region holds (its fetching leader died between storing
// the blob and ending the record). It forgets dead segments listed longer
// than deadSegmentTTL ago.
func (r *Replicator) sweepTransfers(ctx context.Context) {
	tlog, ok := r.cfg.Meta.(TransferLog)
	if !ok {
		return
	}
	recs, err := tlog.Transfers()
	if err != nil {
		r.log.Warn("listing blob transfers", "err", err)
		return
	}
	now := time.Now().UTC()
	ended := 0
	for _, t := range recs {
		if r.xfers.isActive(t.Digest) {
			continue
		}
		var why string
		switch {
		case now.Sub(t.Updated) > staleTransfer:
			why = "no progress for a day"
		case r.cfg.Exclude != nil && r.cfg.Exclude(t.From):
			why = "its source region is gone"
		default:
			if _, err := r.cfg.Blobs.Stat(ctx, t.Digest); err == nil {
				why = "the region holds the blob"
			}
		}
		if why == "" {
			continue
		}
		if err := r.cfg.Meta.Apply(ctx, meta.TransferEnd{Digest: t.Digest, ID: t.ID, Time: now}); err != nil {
			r.log.Warn("ending a blob transfer record", "digest", t.Digest, "err", err)
			return
		}
		r.log.Info("blob transfer record dropped", "digest", t.Digest, "from", t.From, "durable", t.Durable(), "why", why)
		ended++
	}
	if ended > 0 {
		r.sweepDeadSegments(ctx, false)
	}
	dead, err := tlog.DeadSegments()
	if err != nil || len(dead) == 0 || now.Sub(dead[0].Died) <= deadSegmentTTL {
		return
	}
	if err := r.cfg.Meta.Apply(ctx, meta.ForgetDeadSegments{Before: now.Add(-deadSegmentTTL)}); err != nil {
		r.log.Warn("forgetting dead transfer segments", "err", err)
	}
}
