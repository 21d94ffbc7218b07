// Package sitetest is a fake parent registry for tests of connected
// registries' sites: the sync protocol's three calls (base/connected) and
// the part of the OCI Distribution API a site reads, backed by maps, with
// HTTP Basic auth by the sync token.
package sitetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/oci"
)

// Parent is a fake parent registry. Its exported state may be changed
// under Mu.
type Parent struct {
	t        *testing.T
	Server   *httptest.Server
	Conn     connected.ConnectionString
	Region   string
	PageSize int // catalog and tag pages hold at most this many

	Mu       sync.Mutex
	Cfg      connected.Config
	Active   string // the activated instance
	Log      []connected.Event
	Trimmed  uint64 // events up to here are gone: older cursors resync
	Repos    map[string]*Repo
	Blobs    map[digest.Digest][]byte
	Statuses []connected.Status
	// Tamper, when set, is served instead of the manifest of that digest.
	Tamper map[digest.Digest][]byte
	// BadEvents, when set, is the body of every events answer.
	BadEvents string
	notify    chan struct{}

	Down atomic.Bool // connections are closed unanswered
	// RefuseStatus makes status calls answer 503 (the home region down).
	RefuseStatus atomic.Bool
	// Delay, when set, is added before every answer (a round trip).
	Delay atomic.Int64 // nanoseconds
	// CutBlobOnce, when above 0, cuts the next answer of a blob larger than
	// that many bytes after that many bytes of its body.
	CutBlobOnce atomic.Int64
	// StallBlobOnce, when above 0, stalls the next answer of a blob larger
	// than that many bytes after that many bytes of its body, until the
	// client goes away.
	StallBlobOnce atomic.Int64
	BlobGets      atomic.Int64
	BlobBytes     atomic.Int64
	Activates     atomic.Int64
	EventCalls    atomic.Int64
}

// once takes the value of a knob for a blob of size bytes it applies to.
func once(knob *atomic.Int64, size int) int64 {
	if v := knob.Load(); v > 0 && v < int64(size) && knob.CompareAndSwap(v, 0) {
		return v
	}
	return 0
}

// countingWriter counts the blob bytes sent and cuts the answer after
// cut bytes (0: never).
type countingWriter struct {
	http.ResponseWriter
	p     *Parent
	sent  int64
	cut   int64
	stall int64
	r     *http.Request
}

func (c *countingWriter) Write(b []byte) (int, error) {
	for _, at := range []int64{c.cut, c.stall} {
		if at > 0 && c.sent+int64(len(b)) > at {
			n, _ := c.ResponseWriter.Write(b[:at-c.sent])
			c.p.BlobBytes.Add(int64(n))
			http.NewResponseController(c.ResponseWriter).Flush()
			if at == c.stall {
				<-c.r.Context().Done()
			}
			panic(http.ErrAbortHandler) // closes the connection mid-body
		}
	}
	n, err := c.ResponseWriter.Write(b)
	c.sent += int64(n)
	c.p.BlobBytes.Add(int64(n))
	return n, err
}

// Repo is a repository of the parent.
type Repo struct {
	Tags      map[string]digest.Digest
	Manifests map[digest.Digest]Manifest
}

// Manifest is a stored manifest.
type Manifest struct {
	MediaType string
	Content   []byte
}

// New starts a parent serving reg (Cfg holds reg alone until changed); the
// server stops with the test.
func New(t *testing.T, reg connected.Registry) *Parent {
	p := &Parent{
		t: t, Region: "cloud", PageSize: 2,
		Repos: map[string]*Repo{}, Blobs: map[digest.Digest][]byte{},
		Tamper: map[digest.Digest][]byte{}, notify: make(chan struct{}),
		Cfg: connected.Config{Registry: reg},
	}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Server.Close)
	p.Conn = connected.ConnectionString{
		Name: reg.Name, SyncToken: connected.SyncTokenName(reg.Name), SyncPassword: "s3cret",
		ParentEndpoint: strings.TrimPrefix(p.Server.URL, "http://"), Protocol: "http",
	}
	return p
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (p *Parent) serve(w http.ResponseWriter, r *http.Request) {
	if d := p.Delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if p.Down.Load() {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	if u, pw, ok := r.BasicAuth(); !ok || u != p.Conn.SyncToken || pw != p.Conn.SyncPassword {
		apiError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, connected.APIPrefix+"/"+p.Conn.Name+"/"); ok {
		p.serveSync(w, r, rest)
		return
	}
	p.Mu.Lock()
	defer p.Mu.Unlock()
	if r.URL.Path == "/v2/_catalog" {
		var names []string
		for n := range p.Repos {
			if p.Cfg.Registry.Syncs(n) {
				names = append(names, n)
			}
		}
		p.page(w, r, "repositories", names)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if repo, ok := strings.CutSuffix(path, "/tags/list"); ok {
		rp := p.Repos[repo]
		if rp == nil {
			apiError(w, http.StatusNotFound, "NAME_UNKNOWN", repo)
			return
		}
		var tags []string
		for t := range rp.Tags {
			tags = append(tags, t)
		}
		p.page(w, r, "tags", tags)
		return
	}
	for _, kind := range []string{"/manifests/", "/blobs/"} {
		i := strings.LastIndex(path, kind)
		if i < 0 {
			continue
		}
		repo, ref := path[:i], path[i+len(kind):]
		rp := p.Repos[repo]
		if rp == nil || !p.Cfg.Registry.Syncs(repo) {
			apiError(w, http.StatusNotFound, "NAME_UNKNOWN", repo)
			return
		}
		if kind == "/blobs/" {
			b, ok := p.Blobs[digest.Digest(ref)]
			if !ok {
				apiError(w, http.StatusNotFound, "BLOB_UNKNOWN", ref)
				return
			}
			p.BlobGets.Add(1)
			// The body goes out without the lock: a cut or slow answer
			// must not hold up other calls.
			p.Mu.Unlock()
			defer p.Mu.Lock()
			cw := &countingWriter{ResponseWriter: w, p: p, cut: once(&p.CutBlobOnce, len(b)), stall: once(&p.StallBlobOnce, len(b)), r: r}
			http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
			return
		}
		d := digest.Digest(ref)
		if td, ok := rp.Tags[ref]; ok {
			d = td
		}
		m, ok := rp.Manifests[d]
		if !ok {
			apiError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", ref)
			return
		}
		content := m.Content
		if t, ok := p.Tamper[d]; ok {
			content = t
		}
		w.Header().Set("Content-Type", m.MediaType)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		if r.Method == http.MethodGet {
			w.Write(content)
		}
		return
	}
	apiError(w, http.StatusNotFound, "NAME_UNKNOWN", path)
}

// page answers one page of names with n and last, linking the next.
func (p *Parent) page(w http.ResponseWriter, r *http.Request, key string, names []string) {
	sort.Strings(names)
	last := r.URL.Query().Get("last")
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	n = min(n, p.PageSize)
	i := sort.SearchStrings(names, last)
	if i < len(names) && names[i] == last {
		i++
	}
	out := names[i:]
	if len(out) > n {
		out = out[:n]
		w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, r.URL.Path, n, out[len(out)-1]))
	}
	json.NewEncoder(w).Encode(map[string]any{key: append([]string{}, out...)})
}

func (p *Parent) serveSync(w http.ResponseWriter, r *http.Request, call string) {
	switch call {
	case "activate":
		var h connected.Hello
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil || h.Instance == "" {
			apiError(w, http.StatusBadRequest, "UNSUPPORTED", "bad hello")
			return
		}
		p.Activates.Add(1)
		p.Mu.Lock()
		defer p.Mu.Unlock()
		if p.Active != "" && p.Active != h.Instance {
			apiError(w, http.StatusConflict, "DENIED", "connected registry is active on instance "+p.Active)
			return
		}
		p.Active = h.Instance
		json.NewEncoder(w).Encode(p.Cfg)
	case "status":
		if p.RefuseStatus.Load() {
			apiError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the home region is unavailable")
			return
		}
		var st connected.Status
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			apiError(w, http.StatusBadRequest, "UNSUPPORTED", "bad status")
			return
		}
		p.Mu.Lock()
		p.Statuses = append(p.Statuses, st)
		p.Mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case "events":
		p.EventCalls.Add(1)
		since, err := connected.ParseCursor(r.URL.Query().Get("since"))
		if err != nil {
			apiError(w, http.StatusBadRequest, "UNSUPPORTED", err.Error())
			return
		}
		for range 2 {
			p.Mu.Lock()
			if p.BadEvents != "" {
				body := p.BadEvents
				p.Mu.Unlock()
				w.Write([]byte(body))
				return
			}
			last := uint64(len(p.Log))
			if since.Region != p.Region || since.Seq < p.Trimmed || since.Seq > last {
				p.Mu.Unlock()
				json.NewEncoder(w).Encode(connected.Events{Region: p.Region, Last: last, Resync: true, Events: []connected.Event{}})
				return
			}
			if since.Seq < last {
				evs := p.Log[since.Seq:]
				if len(evs) > connected.MaxEvents {
					evs = evs[:connected.MaxEvents]
				}
				ans := connected.Events{Region: p.Region, Last: evs[len(evs)-1].Seq, Events: evs}
				p.Mu.Unlock()
				json.NewEncoder(w).Encode(ans)
				return
			}
			notify := p.notify
			p.Mu.Unlock()
			select {
			case <-notify:
			case <-time.After(200 * time.Millisecond): // a short long poll
			case <-r.Context().Done():
				return
			}
		}
		json.NewEncoder(w).Encode(connected.Events{Region: p.Region, Last: since.Seq, Events: []connected.Event{}})
	default:
		apiError(w, http.StatusNotFound, "NAME_UNKNOWN", call)
	}
}

// event records an event; p.Mu is held.
func (p *Parent) event(e connected.Event) {
	e.Seq = uint64(len(p.Log)) + 1
	p.Log = append(p.Log, e)
	close(p.notify)
	p.notify = make(chan struct{})
}

func (p *Parent) repo(name string) *Repo {
	rp := p.Repos[name]
	if rp == nil {
		rp = &Repo{Tags: map[string]digest.Digest{}, Manifests: map[digest.Digest]Manifest{}}
		p.Repos[name] = rp
	}
	return rp
}

// PutManifest stores a manifest, tagged tag when set, and records its
// push event.
func (p *Parent) PutManifest(repo, tag, mediaType string, content []byte) digest.Digest {
	d := digest.FromBytes(content)
	p.Mu.Lock()
	defer p.Mu.Unlock()
	rp := p.repo(repo)
	rp.Manifests[d] = Manifest{mediaType, content}
	if tag != "" {
		rp.Tags[tag] = d
	}
	p.event(connected.Event{Action: "push", Repo: repo, Tag: tag, Digest: d.String(), MediaType: mediaType})
	return d
}

func descriptor(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest.FromBytes(b).String(), "size": len(b)}
}

// PushImage stores an image of the given layers (and a config of its
// own) and tags it.
func (p *Parent) PushImage(repo, tag string, layers ...string) digest.Digest {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q,"repo":%q}`, tag, repo))
	p.Mu.Lock()
	p.Blobs[digest.FromBytes(cfg)] = cfg
	var ls []map[string]any
	for _, l := range layers {
		p.Blobs[digest.FromString(l)] = []byte(l)
		ls = append(ls, descriptor("application/vnd.oci.image.layer.v1.tar", []byte(l)))
	}
	p.Mu.Unlock()
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest,
		"config": descriptor("application/vnd.oci.image.config.v1+json", cfg), "layers": ls,
	})
	return p.PutManifest(repo, tag, oci.MediaTypeOCIManifest, m)
}

// PushIndex stores an index of two images, untagged, and tags the index.
func (p *Parent) PushIndex(repo, tag string) digest.Digest {
	var ms []map[string]any
	for _, arch := range []string{"amd64", "arm64"} {
		d := p.PushImage(repo, "", "layer-"+arch+"-"+tag)
		p.Mu.Lock()
		c := p.Repos[repo].Manifests[d].Content
		p.Mu.Unlock()
		ms = append(ms, descriptor(oci.MediaTypeOCIManifest, c))
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex, "manifests": ms})
	return p.PutManifest(repo, tag, oci.MediaTypeOCIIndex, idx)
}

// DeleteTag deletes a tag and records its delete event.
func (p *Parent) DeleteTag(repo, tag string) {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	d := p.Repos[repo].Tags[tag]
	delete(p.Repos[repo].Tags, tag)
	// As the cloud's: a tag's delete names the digest it pointed at.
	p.event(connected.Event{Action: "delete", Repo: repo, Tag: tag, Digest: d.String()})
}

// DeleteManifest deletes a manifest with its tags and records its delete
// event.
func (p *Parent) DeleteManifest(repo string, d digest.Digest) {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	rp := p.Repos[repo]
	delete(rp.Manifests, d)
	for t, td := range rp.Tags {
		if td == d {
			delete(rp.Tags, t)
		}
	}
	p.event(connected.Event{Action: "delete", Repo: repo, Digest: d.String()})
}

// LastEvent is the newest event's sequence.
func (p *Parent) LastEvent() uint64 {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	return uint64(len(p.Log))
}

// Tags returns repo's tags and digests at the parent.
func (p *Parent) Tags(repo string) map[string]digest.Digest {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	out := map[string]digest.Digest{}
	if rp := p.Repos[repo]; rp != nil {
		for t, d := range rp.Tags {
			out[t] = d
		}
	}
	return out
}

// LastStatus is the last status a site reported.
func (p *Parent) LastStatus() (connected.Status, bool) {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	if len(p.Statuses) == 0 {
		return connected.Status{}, false
	}
	return p.Statuses[len(p.Statuses)-1], true
}

// UniqueBlobBytes sums the bytes of the blobs the synced repositories use.
func (p *Parent) UniqueBlobBytes() (n int64, count int) {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	seen := map[digest.Digest]bool{}
	for name, rp := range p.Repos {
		if !p.Cfg.Registry.Syncs(name) {
			continue
		}
		for _, m := range rp.Manifests {
			mf, err := oci.ParseManifest(m.MediaType, m.Content)
			if err != nil {
				p.t.Fatal(err)
			}
			for _, b := range mf.Blobs() {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					n += b.Size
				}
			}
		}
	}
	return n, len(seen)
}
