package site

import (
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

// fakeParent is a parent registry for tests: the sync protocol's three
// calls and the part of the Distribution API a site reads, backed by maps,
// with Basic auth by the sync token.
type fakeParent struct {
	t        *testing.T
	srv      *httptest.Server
	conn     connected.ConnectionString
	region   string
	pageSize int // catalog and tag pages hold at most this many

	mu       sync.Mutex
	cfg      connected.Config
	active   string // the activated instance
	log      []connected.Event
	trimmed  uint64 // events up to here are gone: older cursors resync
	repos    map[string]*fakeRepo
	blobs    map[digest.Digest][]byte
	statuses []connected.Status
	// tamper, when set, is served instead of the manifest of that digest.
	tamper map[digest.Digest][]byte
	// badEvents, when set, is the body of every events answer.
	badEvents string
	notify    chan struct{}

	down       atomic.Bool // connections are closed unanswered
	blobGets   atomic.Int64
	blobBytes  atomic.Int64
	activates  atomic.Int64
	eventCalls atomic.Int64
}

type fakeRepo struct {
	tags      map[string]digest.Digest
	manifests map[digest.Digest]fakeManifest
}

type fakeManifest struct {
	mediaType string
	content   []byte
}

func newFakeParent(t *testing.T, reg connected.Registry) *fakeParent {
	p := &fakeParent{
		t: t, region: "cloud", pageSize: 2,
		repos: map[string]*fakeRepo{}, blobs: map[digest.Digest][]byte{},
		tamper: map[digest.Digest][]byte{}, notify: make(chan struct{}),
		cfg: connected.Config{Registry: reg},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.conn = connected.ConnectionString{
		Name: reg.Name, SyncToken: connected.SyncTokenName(reg.Name), SyncPassword: "s3cret",
		ParentEndpoint: strings.TrimPrefix(p.srv.URL, "http://"), Protocol: "http",
	}
	return p
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (p *fakeParent) serve(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	if u, pw, ok := r.BasicAuth(); !ok || u != p.conn.SyncToken || pw != p.conn.SyncPassword {
		apiError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, connected.APIPrefix+"/"+p.conn.Name+"/"); ok {
		p.serveSync(w, r, rest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.URL.Path == "/v2/_catalog" {
		var names []string
		for n := range p.repos {
			if p.cfg.Registry.Syncs(n) {
				names = append(names, n)
			}
		}
		p.page(w, r, "repositories", names)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if repo, ok := strings.CutSuffix(path, "/tags/list"); ok {
		rp := p.repos[repo]
		if rp == nil {
			apiError(w, http.StatusNotFound, "NAME_UNKNOWN", repo)
			return
		}
		var tags []string
		for t := range rp.tags {
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
		rp := p.repos[repo]
		if rp == nil || !p.cfg.Registry.Syncs(repo) {
			apiError(w, http.StatusNotFound, "NAME_UNKNOWN", repo)
			return
		}
		if kind == "/blobs/" {
			b, ok := p.blobs[digest.Digest(ref)]
			if !ok {
				apiError(w, http.StatusNotFound, "BLOB_UNKNOWN", ref)
				return
			}
			p.blobGets.Add(1)
			p.blobBytes.Add(int64(len(b)))
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
			return
		}
		d := digest.Digest(ref)
		if td, ok := rp.tags[ref]; ok {
			d = td
		}
		m, ok := rp.manifests[d]
		if !ok {
			apiError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", ref)
			return
		}
		content := m.content
		if t, ok := p.tamper[d]; ok {
			content = t
		}
		w.Header().Set("Content-Type", m.mediaType)
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
func (p *fakeParent) page(w http.ResponseWriter, r *http.Request, key string, names []string) {
	sort.Strings(names)
	last := r.URL.Query().Get("last")
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	n = min(n, p.pageSize)
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

func (p *fakeParent) serveSync(w http.ResponseWriter, r *http.Request, call string) {
	switch call {
	case "activate":
		var h connected.Hello
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil || h.Instance == "" {
			apiError(w, http.StatusBadRequest, "UNSUPPORTED", "bad hello")
			return
		}
		p.activates.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.active != "" && p.active != h.Instance {
			apiError(w, http.StatusConflict, "DENIED", "connected registry is active on instance "+p.active)
			return
		}
		p.active = h.Instance
		json.NewEncoder(w).Encode(p.cfg)
	case "status":
		var st connected.Status
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			apiError(w, http.StatusBadRequest, "UNSUPPORTED", "bad status")
			return
		}
		p.mu.Lock()
		p.statuses = append(p.statuses, st)
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case "events":
		p.eventCalls.Add(1)
		since, err := connected.ParseCursor(r.URL.Query().Get("since"))
		if err != nil {
			apiError(w, http.StatusBadRequest, "UNSUPPORTED", err.Error())
			return
		}
		for range 2 {
			p.mu.Lock()
			if p.badEvents != "" {
				body := p.badEvents
				p.mu.Unlock()
				w.Write([]byte(body))
				return
			}
			last := uint64(len(p.log))
			if since.Region != p.region || since.Seq < p.trimmed || since.Seq > last {
				p.mu.Unlock()
				json.NewEncoder(w).Encode(connected.Events{Region: p.region, Last: last, Resync: true, Events: []connected.Event{}})
				return
			}
			if since.Seq < last {
				evs := p.log[since.Seq:]
				if len(evs) > connected.MaxEvents {
					evs = evs[:connected.MaxEvents]
				}
				ans := connected.Events{Region: p.region, Last: evs[len(evs)-1].Seq, Events: evs}
				p.mu.Unlock()
				json.NewEncoder(w).Encode(ans)
				return
			}
			notify := p.notify
			p.mu.Unlock()
			select {
			case <-notify:
			case <-time.After(200 * time.Millisecond): // a short long poll
			case <-r.Context().Done():
				return
			}
		}
		json.NewEncoder(w).Encode(connected.Events{Region: p.region, Last: since.Seq, Events: []connected.Event{}})
	default:
		apiError(w, http.StatusNotFound, "NAME_UNKNOWN", call)
	}
}

// event records an event; p.mu is held.
func (p *fakeParent) event(e connected.Event) {
	e.Seq = uint64(len(p.log)) + 1
	p.log = append(p.log, e)
	close(p.notify)
	p.notify = make(chan struct{})
}

func (p *fakeParent) repo(name string) *fakeRepo {
	rp := p.repos[name]
	if rp == nil {
		rp = &fakeRepo{tags: map[string]digest.Digest{}, manifests: map[digest.Digest]fakeManifest{}}
		p.repos[name] = rp
	}
	return rp
}

func (p *fakeParent) putManifest(repo, tag, mediaType string, content []byte) digest.Digest {
	d := digest.FromBytes(content)
	p.mu.Lock()
	defer p.mu.Unlock()
	rp := p.repo(repo)
	rp.manifests[d] = fakeManifest{mediaType, content}
	if tag != "" {
		rp.tags[tag] = d
	}
	p.event(connected.Event{Action: "push", Repo: repo, Tag: tag, Digest: d.String(), MediaType: mediaType})
	return d
}

func descriptor(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest.FromBytes(b).String(), "size": len(b)}
}

// pushImage stores an image of the given layers (and a config of its
// own) and tags it.
func (p *fakeParent) pushImage(repo, tag string, layers ...string) digest.Digest {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q,"repo":%q}`, tag, repo))
	p.mu.Lock()
	p.blobs[digest.FromBytes(cfg)] = cfg
	var ls []map[string]any
	for _, l := range layers {
		p.blobs[digest.FromString(l)] = []byte(l)
		ls = append(ls, descriptor("application/vnd.oci.image.layer.v1.tar", []byte(l)))
	}
	p.mu.Unlock()
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest,
		"config": descriptor("application/vnd.oci.image.config.v1+json", cfg), "layers": ls,
	})
	return p.putManifest(repo, tag, oci.MediaTypeOCIManifest, m)
}

// pushIndex stores an index of two images, untagged, and tags the index.
func (p *fakeParent) pushIndex(repo, tag string) digest.Digest {
	var ms []map[string]any
	for _, arch := range []string{"amd64", "arm64"} {
		d := p.pushImage(repo, "", "layer-"+arch+"-"+tag)
		p.mu.Lock()
		c := p.repos[repo].manifests[d].content
		p.mu.Unlock()
		ms = append(ms, descriptor(oci.MediaTypeOCIManifest, c))
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex, "manifests": ms})
	return p.putManifest(repo, tag, oci.MediaTypeOCIIndex, idx)
}

func (p *fakeParent) deleteTag(repo, tag string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.repos[repo].tags, tag)
	p.event(connected.Event{Action: "delete", Repo: repo, Tag: tag})
}

// lastEvent is the newest event's sequence.
func (p *fakeParent) lastEvent() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return uint64(len(p.log))
}

// parentTags returns repo's tags and digests at the parent.
func (p *fakeParent) parentTags(repo string) map[string]digest.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]digest.Digest{}
	if rp := p.repos[repo]; rp != nil {
		for t, d := range rp.tags {
			out[t] = d
		}
	}
	return out
}

func (p *fakeParent) lastStatus() (connected.Status, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.statuses) == 0 {
		return connected.Status{}, false
	}
	return p.statuses[len(p.statuses)-1], true
}

// uniqueBlobBytes sums the bytes of the blobs the synced repositories use.
func (p *fakeParent) uniqueBlobBytes() (n int64, count int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[digest.Digest]bool{}
	for name, rp := range p.repos {
		if !p.cfg.Registry.Syncs(name) {
			continue
		}
		for _, m := range rp.manifests {
			mf, err := oci.ParseManifest(m.mediaType, m.content)
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
