package site

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
)

// The upload direction of a ReadWrite connected registry. A local push is
// an ordinary write of the site's region: acknowledged once its Raft group
// (a majority of the site's zones) holds it, and appended in the same Raft
// entry to the region's outbox, which a site has no peer region to drain.
// The outbox is the store-and-forward queue: the Syncer sends its events
// to the parent in order, through the same child-dialed link, and records
// what the parent holds as the cursor of the outbox peer OutboxPeer, which
// drops them. What a site crashed or was cut off before sending stays in
// the outbox and goes once the parent answers again.
//
// Each push goes content first: the blobs the parent lacks (a HEAD each;
// an upload cut midway resumes from the offset the parent's session
// holds), then index children, then the manifest by digest, each with the
// Distribution API and the sync token; then its tag as a Write, which the
// parent merges by the write's own (clock, origin) as regions merge each
// other's, and forwards to every region when it wins.

// OutboxPeer is the name under which a site's outbox records how far its
// parent holds the site's writes. It is no region name (regions have no
// underscore), and a site's replicator leaves it alone.
const OutboxPeer = "_parent"

// uploadPoll is how often an idle site looks for new local writes.
const uploadPoll = 100 * time.Millisecond

// uploadBatch bounds the outbox events read at a time.
const uploadBatch = 200

// uploadLoop syncs the outbox up while the registry is ReadWrite, until
// ctx ends.
func (s *Syncer) uploadLoop(ctx context.Context) {
	b := newBackoff(s.cfg.MaxBackoff)
	t := time.NewTicker(uploadPoll)
	defer t.Stop()
	for ctx.Err() == nil {
		if s.Mode() == connected.ReadWrite {
			n, err := s.uploadOnce(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("syncing local writes up", "err", err)
				s.setStatus("", err)
				select {
				case <-s.linkUp: // drop what came before the failure
				default:
				}
				if !b.waitOr(ctx, s.linkUp) {
					return
				}
				continue
			}
			b.reset()
			if n > 0 {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// uploadOnce sends the next outbox events to the parent and records the
// longest prefix of them that the parent acknowledged. It returns how
// many it sent.
func (s *Syncer) uploadOnce(ctx context.Context) (int, error) {
	cursor := s.cfg.Meta.Cursors()[OutboxPeer]
	evs, err := s.cfg.Meta.OutboxAfter(cursor, uploadBatch)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	// Events of one tag (or of one manifest, without a tag) go in order;
	// different ones at once, since each costs round trips to the parent.
	keys := map[string][]int{}
	var order []string
	for i, e := range evs {
		k := e.Repo + "@" + e.Digest.String()
		if e.Tag != "" {
			k = e.Repo + ":" + e.Tag
		}
		if _, ok := keys[k]; !ok {
			order = append(order, k)
		}
		keys[k] = append(keys[k], i)
	}
	done := make([]bool, len(evs))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.MaxFetches)
	for _, k := range order {
		g.Go(func() error {
			for _, i := range keys[k] {
				if err := s.uploadEvent(gctx, evs[i]); err != nil {
					return fmt.Errorf("local write %d (%s %s): %w", evs[i].Seq, evs[i].Op, evs[i].Repo, err)
				}
				mu.Lock()
				done[i] = true
				mu.Unlock()
			}
			return nil
		})
	}
	werr := g.Wait()
	n := 0
	for n < len(done) && done[n] {
		n++
	}
	if n > 0 {
		if err := s.cfg.Meta.Apply(ctx, meta.AckOutbox{Peer: OutboxPeer, Seq: evs[n-1].Seq}); err != nil {
			return 0, fmt.Errorf("recording what the parent holds: %w", err)
		}
		s.writesSynced.Add(int64(n))
	}
	return n, werr
}

// uploadEvent sends one local write to the parent.
func (s *Syncer) uploadEvent(ctx context.Context, e meta.Event) error {
	if !s.reg().Syncs(e.Repo) {
		// The site refuses pushes outside its repositories; this one was
		// made before they were narrowed.
		s.log.Warn("a local write outside the repositories this connected registry syncs is not synced up", "repo", e.Repo, "tag", e.Tag)
		return nil
	}
	w := connected.Write{Repo: e.Repo, Tag: e.Tag, Clock: e.Clock, Origin: e.Origin, Prev: e.Prev.String()}
	switch e.Op {
	case meta.OpPutManifest:
		if _, err := s.cfg.Meta.Manifest(e.Repo, e.Digest); errors.Is(err, meta.ErrManifestUnknown) {
			return nil // deleted here since: that delete follows
		} else if err != nil {
			return err
		}
		if err := s.pushManifest(ctx, e.Repo, e.Digest, 0); err != nil {
			return err
		}
		if e.Tag == "" {
			return nil
		}
		w.Op, w.Digest = connected.WriteTag, e.Digest.String()
	case meta.OpDeleteTag:
		w.Op, w.Deleted = connected.WriteTag, true
	case meta.OpDeleteManifest:
		w.Op, w.Digest = connected.WriteDeleteManifest, e.Digest.String()
	default:
		return nil
	}
	res, err := s.c.write(ctx, s.cfg.Connection.Name, w)
	if err != nil {
		return err
	}
	if res.Conflict {
		s.conflicts.Add(1)
		s.log.Info("a tag written here was written at the parent too", "repo", e.Repo, "tag", e.Tag,
			"here", w.Digest, "parent", res.Digest, "won", res.Won)
	}
	if res.Won || w.Op != connected.WriteTag {
		return nil
	}
	// The parent holds a later write of the tag: the site takes it now
	// rather than with the parent's events.
	if res.Deleted {
		err := s.deleteTag(ctx, e.Repo, e.Tag)
		if errors.Is(err, meta.ErrManifestUnknown) {
			return nil
		}
		return err
	}
	return s.pull(ctx, e.Repo, res.Digest, e.Tag, 0)
}

// pushManifest makes the parent hold manifest dgst of repo: its index
// children and blobs first, each only when the parent lacks it.
func (s *Syncer) pushManifest(ctx context.Context, repo string, dgst digest.Digest, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("manifest %s@%s: indexes nested over %d deep", repo, dgst, maxDepth)
	}
	if _, err := s.c.headManifest(ctx, repo, dgst.String()); err == nil {
		s.manifestsSkipped.Add(1)
		return nil
	} else if !isNotFound(err) {
		return err
	}
	rec, err := s.cfg.Meta.Manifest(repo, dgst)
	if err != nil {
		return fmt.Errorf("manifest %s@%s: %w", repo, dgst, err)
	}
	m, err := oci.ParseManifest(rec.MediaType, rec.Content)
	if err != nil {
		return fmt.Errorf("manifest %s@%s: %w", repo, dgst, err)
	}
	for _, c := range m.Manifests {
		if err := s.pushManifest(ctx, repo, c.Digest, depth+1); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, b := range m.Blobs() {
		g.Go(func() error { return s.pushBlob(gctx, repo, b.Digest, b.Size) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := s.c.putManifest(ctx, repo, dgst, rec.MediaType, rec.Content); err != nil {
		return err
	}
	s.manifestsSent.Add(1)
	return nil
}

// pushBlob makes the parent hold blob dgst in repo: nothing when it
// does, a cross-repository mount when the site sent it into another
// repository, else an upload. One upload of a digest runs at a time;
// the other repositories that need it mount it once it is there.
func (s *Syncer) pushBlob(ctx context.Context, repo string, dgst digest.Digest, size int64) error {
	for range 3 {
		if ok, err := s.c.hasBlob(ctx, repo, dgst); err != nil {
			return err
		} else if ok {
			s.blobsSkipped.Add(1)
			s.parentHolds(dgst, repo)
			return nil
		}
		if from := s.heldAt(dgst); from != "" && from != repo {
			mounted, err := s.c.mount(ctx, repo, dgst, from)
			if err != nil {
				return err
			}
			if mounted {
				s.blobsMounted.Add(1)
				s.parentHolds(dgst, repo)
				return nil
			}
		}
		into, err, _ := s.fetches.Do("up "+dgst.String(), func() (any, error) {
			select {
			case s.slots <- struct{}{}:
				defer func() { <-s.slots }()
			case <-ctx.Done():
				return "", ctx.Err()
			}
			if err := s.uploadBlob(ctx, repo, dgst, size); err != nil {
				return "", err
			}
			s.parentHolds(dgst, repo)
			return repo, nil
		})
		if err != nil {
			return err
		}
		if into.(string) == repo {
			return nil
		}
		// Uploaded into another repository meanwhile: mount it from there.
	}
	return fmt.Errorf("blob %s: not in %s at the parent after uploading and mounting it", dgst, repo)
}

// parentHolds records that the parent holds dgst in repo, to mount it
// from there into other repositories.
func (s *Syncer) parentHolds(dgst digest.Digest, repo string) {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	if len(s.held) >= maxHeld {
		clear(s.held)
	}
	s.held[dgst] = repo
}

// heldAt returns a repository the parent holds dgst in, "" if unknown.
func (s *Syncer) heldAt(dgst digest.Digest) string {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	return s.held[dgst]
}

// maxHeld bounds the blobs remembered as held by the parent.
const maxHeld = 100_000

// uploadBlob uploads blob dgst of repo to the parent in one session,
// resuming the session a cut upload left (kept in memory) from the
// offset the parent holds.
func (s *Syncer) uploadBlob(ctx context.Context, repo string, dgst digest.Digest, size int64) error {
	ctx, cancel := context.WithTimeout(ctx, blobTimeout)
	defer cancel()
	key := repo + " " + dgst.String()
	s.sessionsMu.Lock()
	loc := s.sessions[key]
	s.sessionsMu.Unlock()
	offset := int64(0)
	if loc != "" {
		if off, err := s.c.uploadOffset(ctx, loc); err == nil && off <= size {
			offset = off
			s.uploadsResumed.Add(1)
		} else {
			loc = ""
		}
	}
	if loc == "" {
		var err error
		if loc, err = s.c.startUpload(ctx, repo); err != nil {
			return fmt.Errorf("blob %s: %w", dgst, err)
		}
		s.sessionsMu.Lock()
		s.sessions[key] = loc
		s.sessionsMu.Unlock()
	}
	rc, err := s.cfg.Blobs.Open(ctx, dgst, offset)
	if err != nil {
		return fmt.Errorf("blob %s: reading the local copy: %w", dgst, err)
	}
	defer rc.Close()
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	idle := time.AfterFunc(s.cfg.BlobIdleTimeout, icancel)
	defer idle.Stop()
	body := &countingReader{r: &idleReader{r: rc, t: idle, d: s.cfg.BlobIdleTimeout}}
	next, err := s.c.finishUpload(ictx, loc, dgst, offset, size, body)
	s.bytesSent.Add(body.n)
	s.sessionsMu.Lock()
	var he *HTTPError
	if err != nil && !(errors.As(err, &he) && he.Status == http.StatusRequestedRangeNotSatisfiable) {
		s.sessions[key] = next
	} else {
		// Done, or the session holds other bytes than the site took
		// it to: the next attempt starts a new one rather than send
		// the same refused range again.
		delete(s.sessions, key)
	}
	s.sessionsMu.Unlock()
	if err != nil {
		return fmt.Errorf("blob %s: %d of %d bytes sent, to resume: %w", dgst, offset+body.n, size, err)
	}
	s.blobsSent.Add(1)
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func isNotFound(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}

// resolve makes a Location the parent answered absolute.
func (c *client) resolve(loc string) (string, error) {
	base, err := url.Parse(c.base)
	if err != nil {
		return "", err
	}
	u, err := base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("malformed answer: Location %q: %w", loc, err)
	}
	if u.Host != base.Host {
		// The session lives where the parent's endpoint sends it; a
		// Location elsewhere would take the sync token there.
		u.Scheme, u.Host = base.Scheme, base.Host
	}
	return u.String(), nil
}

// do makes a request of the Distribution API with the sync token and
// returns the answer when its status is one of ok (its body is the
// caller's to close).
func (c *client) do(ctx context.Context, method, u string, hdr http.Header, body io.Reader, size int64, ok ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

// hasBlob reports whether the parent holds blob dgst in repo.
func (c *client) hasBlob(ctx context.Context, repo string, dgst digest.Digest) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodHead, c.base+"/v2/"+repo+"/blobs/"+dgst.String(), nil, nil, 0, http.StatusOK)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", dgst, err)
	}
	resp.Body.Close()
	return true, nil
}

// startUpload opens an upload session at the parent and returns its URL.
func (c *client) startUpload(ctx context.Context, repo string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/", nil, http.NoBody, 0, http.StatusAccepted)
	if err != nil {
		return "", fmt.Errorf("starting an upload: %w", err)
	}
	resp.Body.Close()
	return c.resolve(resp.Header.Get("Location"))
}

// mount has the parent link blob dgst of repository from into repo; it
// reports false (and gives up the session the parent opened instead)
// when the parent could not.
func (c *client) mount(ctx context.Context, repo string, dgst digest.Digest, from string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	q := url.Values{"mount": {dgst.String()}, "from": {from}}
	resp, err := c.do(ctx, http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/?"+q.Encode(), nil, http.NoBody, 0, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return false, fmt.Errorf("mounting %s from %s: %w", dgst, from, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return true, nil
	}
	if loc, err := c.resolve(resp.Header.Get("Location")); err == nil {
		if resp, err := c.do(ctx, http.MethodDelete, loc, nil, nil, 0, http.StatusNoContent, http.StatusAccepted, http.StatusOK); err == nil {
			resp.Body.Close()
		}
	}
	return false, nil
}

// uploadOffset returns how many bytes the upload session at loc holds.
func (c *client) uploadOffset(ctx context.Context, loc string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, loc, nil, nil, 0, http.StatusNoContent)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return rangeEnd(resp.Header.Get("Range"))
}

// rangeEnd returns the bytes an upload's Range header ("0-N") says the
// session holds. "0-0" is what georeg (and distribution) answer for an
// empty session as well as for one byte: it is taken as empty, since a
// session the site resumes holds whole chunks or nothing (the parent drops
// a cut chunk); a session that held one byte refuses the resent one (416)
// and the upload starts over.
func rangeEnd(r string) (int64, error) {
	if r == "" {
		return 0, nil
	}
	start, end, ok := strings.Cut(r, "-")
	n, err := strconv.ParseInt(end, 10, 64)
	if !ok || err != nil || n < -1 {
		return 0, fmt.Errorf("malformed answer: Range %q", r)
	}
	if n == 0 && strings.TrimPrefix(start, "bytes=") == "0" {
		return 0, nil
	}
	return n + 1, nil
}

// finishUpload sends the bytes of body (from offset to size) to the
// session at loc and closes it as blob dgst. It returns the session's
// latest URL, to resume from when it fails.
func (c *client) finishUpload(ctx context.Context, loc string, dgst digest.Digest, offset, size int64, body io.Reader) (string, error) {
	if offset < size {
		hdr := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", offset, size-1)},
		}
		resp, err := c.do(ctx, http.MethodPatch, loc, hdr, body, size-offset, http.StatusAccepted)
		if err != nil {
			return loc, err
		}
		resp.Body.Close()
		if loc, err = c.resolve(resp.Header.Get("Location")); err != nil {
			return "", err
		}
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("digest", dgst.String())
	u.RawQuery = q.Encode()
	pctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.do(pctx, http.MethodPut, u.String(), nil, http.NoBody, 0, http.StatusCreated)
	if err != nil {
		return loc, err
	}
	resp.Body.Close()
	return "", nil
}

// putManifest stores a manifest at the parent by its digest.
func (c *client) putManifest(ctx context.Context, repo string, dgst digest.Digest, mediaType string, content []byte) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPut, c.base+"/v2/"+repo+"/manifests/"+dgst.String(), http.Header{"Content-Type": {mediaType}},
		bytes.NewReader(content), int64(len(content)), http.StatusCreated)
	if err != nil {
		return fmt.Errorf("manifest %s@%s: %w", repo, dgst, err)
	}
	resp.Body.Close()
	return nil
}

// write has the parent merge a local write.
func (c *client) write(ctx context.Context, name string, w connected.Write) (connected.WriteResult, error) {
	var res connected.WriteResult
	_, err := c.call(ctx, http.MethodPost, connected.APIPrefix+"/"+name+"/write", w, &res, callTimeout)
	if err != nil {
		return res, fmt.Errorf("%s %s:%s: %w", w.Op, w.Repo, w.Tag, err)
	}
	if !res.Won && !res.Deleted {
		if _, err := oci.ParseDigest(res.Digest); err != nil {
			return res, fmt.Errorf("write: malformed answer: %w", err)
		}
	}
	return res, nil
}
