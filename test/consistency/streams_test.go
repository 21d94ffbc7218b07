package consistency

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// A stream is one read endpoint under test together with the writes it must
// reflect. Writes are numbered 1, 2, ...; each changes what the endpoint
// answers, so that an answer tells which writes it reflects. read reports
// that as a version: v when the answer shows write v and every write before
// it, 0 when it shows none.
//
// A stream is used by one goroutine: setup first, then write and read in
// any order, with v one more at each write. A write that failed may be made
// again with the same v.
type stream interface {
	// setup makes what every write needs (blobs, a subject manifest)
	// through base.
	setup(ctx context.Context, base string) error
	// write makes write v through base and returns the answer that
	// acknowledged it.
	write(ctx context.Context, base string, v int) (*http.Response, error)
	// read asks base and returns what the answer shows. An answer that
	// breaks the spec or shows a write never made is an error.
	read(ctx context.Context, base string) (answer, error)
}

// answer is what one read showed.
type answer struct {
	// version is the last write the answer reflects together with every
	// write before it.
	version int
	// by names the zone that answered, or the zones when the pages of a
	// listing came from several ("westus/1+westus/3").
	by string
	// what describes the answer for failure reports.
	what string
}

// endpoints are the read endpoints under test, in the order the pairs of
// TestReadYourWrites visit them. new returns a stream whose repositories
// are under prefix.
var endpoints = []struct {
	name string
	new  func(c *ociclient.Client, prefix string) stream
}{
	{"tags list", func(c *ociclient.Client, prefix string) stream {
		return &tagsStream{c: c, repo: prefix + "/tags"}
	}},
	{"referrers", func(c *ociclient.Client, prefix string) stream {
		return &referrersStream{c: c, repo: prefix + "/referrers", digests: map[digest.Digest]int{}}
	}},
	{"_catalog", func(c *ociclient.Client, prefix string) stream {
		return &catalogStream{c: c, root: prefix + "/catalog"}
	}},
	{"manifest GET by tag", func(c *ociclient.Client, prefix string) stream {
		return &tagMoveStream{c: c, repo: prefix + "/moving", tag: "get", method: http.MethodGet, digests: map[digest.Digest]int{}}
	}},
	{"manifest HEAD by tag", func(c *ociclient.Client, prefix string) stream {
		return &tagMoveStream{c: c, repo: prefix + "/moving", tag: "head", method: http.MethodHead, digests: map[digest.Digest]int{}}
	}},
	{"blob HEAD", func(c *ociclient.Client, prefix string) stream {
		h := fnv.New64a()
		h.Write([]byte(prefix))
		return &blobStream{c: c, repo: prefix + "/blobs", seed: h.Sum64()}
	}},
}

// Media types the streams use besides those of ociclient's images.
const (
	mediaIndex       = "application/vnd.oci.image.index.v1+json"
	mediaEmpty       = "application/vnd.oci.empty.v1+json"
	mediaOctetStream = "application/octet-stream"
	artifactType     = "application/vnd.georeg.test.consistency"
)

const (
	// writeAnnotation carries a write's number in the manifests that
	// would otherwise be identical.
	writeAnnotation = "org.georeg.test.write"
	// listPageSize is the n of tags and catalog listings: small enough
	// that a listing of a few hundred writes takes several pages.
	listPageSize = 100
	// blobSize is the size of each blob of the blob HEAD stream.
	blobSize = 4 << 10
)

// tagsStream: write v pushes tag v%04d; GET tags/list must list it.
type tagsStream struct {
	c    *ociclient.Client
	repo string
	img  ociclient.Image
	n    int
}

func tagName(v int) string { return fmt.Sprintf("v%04d", v) }

func (s *tagsStream) setup(ctx context.Context, base string) error {
	s.img = ociclient.NewImage(s.repo)
	_, err := pushBlob(ctx, s.c, base, s.repo, s.img.Config)
	return err
}

func (s *tagsStream) write(ctx context.Context, base string, v int) (*http.Response, error) {
	resp, err := putManifest(ctx, s.c, base, s.repo, tagName(v), ociclient.MediaManifest, s.img.Manifest)
	if err == nil {
		s.n = v
	}
	return resp, err
}

func (s *tagsStream) read(ctx context.Context, base string) (answer, error) {
	path := "/v2/" + s.repo + "/tags/list?n=" + strconv.Itoa(listPageSize)
	tags, by, err := list(ctx, s.c, base, path, "tags", nil)
	if ociclient.IsStatus(err, http.StatusNotFound) {
		return answer{by: by, what: "404: repository unknown"}, nil
	}
	if err != nil {
		return answer{by: by}, err
	}
	return prefixAnswer(tags, s.n, tagName, "tags", by)
}

// referrersStream: write v pushes a manifest whose subject is one image of
// the repository; GET referrers/<subject> must list it.
type referrersStream struct {
	c       *ociclient.Client
	repo    string
	subject ociclient.Image
	empty   ociclient.Blob
	digests map[digest.Digest]int
	n       int
}

func referrerName(v int) string { return "the referrer of write " + strconv.Itoa(v) }

func (s *referrersStream) setup(ctx context.Context, base string) error {
	s.subject = ociclient.NewImage(s.repo + " subject")
	s.empty = ociclient.NewBlob(mediaEmpty, []byte("{}"))
	for _, b := range []ociclient.Blob{s.subject.Config, s.empty} {
		if _, err := pushBlob(ctx, s.c, base, s.repo, b); err != nil {
			return err
		}
	}
	_, err := putManifest(ctx, s.c, base, s.repo, s.subject.Digest.String(), ociclient.MediaManifest, s.subject.Manifest)
	return err
}

// artifact returns an artifact manifest (empty config, one empty layer)
// with subject and write number v as an annotation.
func (s *referrersStream) artifact(v int) []byte {
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int           `json:"size"`
	}
	empty := desc{mediaEmpty, s.empty.Digest, len(s.empty.Data)}
	b, err := json.Marshal(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        desc              `json:"config"`
		Layers        []desc            `json:"layers"`
		Subject       desc              `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}{
		SchemaVersion: 2,
		MediaType:     ociclient.MediaManifest,
		ArtifactType:  artifactType,
		Config:        empty,
		Layers:        []desc{empty},
		Subject:       desc{ociclient.MediaManifest, s.subject.Digest, len(s.subject.Manifest)},
		Annotations:   map[string]string{writeAnnotation: strconv.Itoa(v)},
	})
	if err != nil {
		panic(err) // strings and numbers always marshal
	}
	return b
}

func (s *referrersStream) write(ctx context.Context, base string, v int) (*http.Response, error) {
	m := s.artifact(v)
	d := digest.FromBytes(m)
	resp, err := putManifest(ctx, s.c, base, s.repo, d.String(), ociclient.MediaManifest, m)
	if err == nil {
		s.digests[d] = v
		s.n = v
	}
	return resp, err
}

func (s *referrersStream) read(ctx context.Context, base string) (answer, error) {
	path := "/v2/" + s.repo + "/referrers/" + s.subject.Digest.String()
	var items []string
	next, by := path, ""
	for next != "" {
		resp, body, err := s.c.Do(ctx, http.MethodGet, base, next, nil, nil, http.StatusOK)
		by = joinZone(by, resp)
		if err != nil {
			return answer{by: by}, err
		}
		if ct := resp.Header.Get("Content-Type"); ct != mediaIndex {
			return answer{by: by}, fmt.Errorf("GET %s: Content-Type %q, want %s", next, ct, mediaIndex)
		}
		var idx struct {
			Manifests []struct {
				Digest digest.Digest `json:"digest"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			return answer{by: by}, fmt.Errorf("GET %s: %w", next, err)
		}
		for _, m := range idx.Manifests {
			v, ok := s.digests[m.Digest]
			if !ok {
				return answer{by: by}, fmt.Errorf("GET %s lists %s, which was never pushed with that subject", next, m.Digest)
			}
			items = append(items, referrerName(v))
		}
		next = nextLink(resp)
	}
	return prefixAnswer(items, s.n, referrerName, "referrers", by)
}

// catalogStream: write v pushes an empty image index, which references no
// blob, as the first content of a new repository <root>/r%04d; GET
// _catalog, paged from last=<root>, must list the repository.
type catalogStream struct {
	c    *ociclient.Client
	root string
	n    int
}

func (s *catalogStream) repo(v int) string { return fmt.Sprintf("%s/r%04d", s.root, v) }

func (s *catalogStream) setup(ctx context.Context, base string) error { return nil }

func (s *catalogStream) write(ctx context.Context, base string, v int) (*http.Response, error) {
	// "While this property MUST be present, the size of the array MAY be
	// zero" (image-spec, image index): one request makes the repository.
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[],"annotations":{%q:"%d"}}`, mediaIndex, writeAnnotation, v)
	resp, err := putManifest(ctx, s.c, base, s.repo(v), "latest", mediaIndex, []byte(index))
	if err == nil {
		s.n = v
	}
	return resp, err
}

func (s *catalogStream) read(ctx context.Context, base string) (answer, error) {
	// Every repository of this stream sorts right after root, which is a
	// valid repository name itself: the listing starts there and stops at
	// the first name outside root.
	q := url.Values{"n": {strconv.Itoa(listPageSize)}, "last": {s.root}}
	under := func(name string) bool { return strings.HasPrefix(name, s.root+"/") }
	names, by, err := list(ctx, s.c, base, "/v2/_catalog?"+q.Encode(), "repositories", under)
	if err != nil {
		return answer{by: by}, err
	}
	var mine []string
	for _, name := range names {
		if under(name) {
			mine = append(mine, name)
		}
	}
	return prefixAnswer(mine, s.n, s.repo, "repositories", by)
}

// tagMoveStream: write v pushes a new manifest (annotated with v) as the
// same tag; GET or HEAD of the tag must answer that manifest.
type tagMoveStream struct {
	c       *ociclient.Client
	repo    string
	tag     string
	method  string
	config  ociclient.Blob
	digests map[digest.Digest]int
	sizes   map[digest.Digest]int
	n       int
}

func (s *tagMoveStream) setup(ctx context.Context, base string) error {
	s.config = ociclient.NewImage(s.repo + " " + s.tag).Config
	s.sizes = map[digest.Digest]int{}
	_, err := pushBlob(ctx, s.c, base, s.repo, s.config)
	return err
}

func (s *tagMoveStream) write(ctx context.Context, base string, v int) (*http.Response, error) {
	m := ociclient.Manifest(s.config, nil, map[string]string{writeAnnotation: strconv.Itoa(v)})
	resp, err := putManifest(ctx, s.c, base, s.repo, s.tag, ociclient.MediaManifest, m)
	if err == nil {
		d := digest.FromBytes(m)
		s.digests[d], s.sizes[d] = v, len(m)
		s.n = v
	}
	return resp, err
}

func (s *tagMoveStream) read(ctx context.Context, base string) (answer, error) {
	path := "/v2/" + s.repo + "/manifests/" + s.tag
	hdr := http.Header{"Accept": {ociclient.MediaManifest, mediaIndex}}
	resp, body, err := s.c.Do(ctx, s.method, base, path, hdr, nil, http.StatusOK, http.StatusNotFound)
	by := joinZone("", resp)
	if err != nil {
		return answer{by: by}, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return answer{by: by, what: "404: tag unknown"}, nil
	}
	named := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
	v, ok := s.digests[named]
	if !ok {
		return answer{by: by}, fmt.Errorf("%s %s answered Docker-Content-Digest %q, never pushed as %s", s.method, path, named, s.tag)
	}
	if s.method == http.MethodGet {
		if got := digest.FromBytes(body); got != named {
			return answer{by: by}, fmt.Errorf("%w: GET %s answered %s, Docker-Content-Digest says %s", ociclient.ErrWrongBytes, path, got, named)
		}
	} else if resp.ContentLength != int64(s.sizes[named]) {
		return answer{by: by}, fmt.Errorf("HEAD %s: Content-Length %d, want %d for %s", path, resp.ContentLength, s.sizes[named], named)
	}
	return answer{version: v, by: by, what: fmt.Sprintf("the manifest of write %d (%.19s)", v, named)}, nil
}

// blobStream: write v uploads a new blob, in one POST when v is odd and in
// a session (POST, then PUT) when even; HEAD of the blob must find it.
type blobStream struct {
	c     *ociclient.Client
	repo  string
	seed  uint64
	blobs []ociclient.Blob
}

func (s *blobStream) setup(ctx context.Context, base string) error { return nil }

func (s *blobStream) write(ctx context.Context, base string, v int) (*http.Response, error) {
	b := ociclient.NewBlob(mediaOctetStream, ociclient.RandomBytes(s.seed+uint64(v), blobSize))
	var resp *http.Response
	var err error
	if v%2 == 1 {
		resp, err = pushBlob(ctx, s.c, base, s.repo, b)
	} else {
		var loc string
		if loc, err = s.c.StartUpload(ctx, base, s.repo); err == nil {
			sep := "?"
			if strings.Contains(loc, "?") {
				sep = "&"
			}
			resp, _, err = s.c.Do(ctx, http.MethodPut, base, loc+sep+"digest="+url.QueryEscape(b.Digest.String()),
				http.Header{"Content-Type": {mediaOctetStream}}, b.Data, http.StatusCreated)
		}
	}
	if err == nil {
		s.blobs = append(s.blobs, b)
	}
	return resp, err
}

func (s *blobStream) read(ctx context.Context, base string) (answer, error) {
	n := len(s.blobs)
	b := s.blobs[n-1]
	path := "/v2/" + s.repo + "/blobs/" + b.Digest.String()
	resp, _, err := s.c.Do(ctx, http.MethodHead, base, path, nil, nil, http.StatusOK, http.StatusNotFound)
	by := joinZone("", resp)
	if err != nil {
		return answer{by: by}, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return answer{version: n - 1, by: by, what: fmt.Sprintf("404 for the blob of write %d", n)}, nil
	}
	if resp.ContentLength != int64(len(b.Data)) || resp.Header.Get("Docker-Content-Digest") != b.Digest.String() {
		return answer{by: by}, fmt.Errorf("HEAD %s: Content-Length %d and Docker-Content-Digest %q, want %d and %s",
			path, resp.ContentLength, resp.Header.Get("Docker-Content-Digest"), len(b.Data), b.Digest)
	}
	return answer{version: n, by: by, what: fmt.Sprintf("the blob of write %d", n)}, nil
}

// pushBlob uploads b into repo in one POST and returns the answer.
func pushBlob(ctx context.Context, c *ociclient.Client, base, repo string, b ociclient.Blob) (*http.Response, error) {
	resp, _, err := c.Do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+url.QueryEscape(b.Digest.String()),
		http.Header{"Content-Type": {mediaOctetStream}}, b.Data, http.StatusCreated)
	return resp, err
}

// putManifest pushes manifest m as repo:ref, checks the digest the registry
// answers and returns the answer.
func putManifest(ctx context.Context, c *ociclient.Client, base, repo, ref, mediaType string, m []byte) (*http.Response, error) {
	resp, _, err := c.Do(ctx, http.MethodPut, base, "/v2/"+repo+"/manifests/"+ref, http.Header{"Content-Type": {mediaType}}, m, http.StatusCreated)
	if err != nil {
		return resp, err
	}
	if got, want := resp.Header.Get("Docker-Content-Digest"), digest.FromBytes(m).String(); got != want {
		return resp, fmt.Errorf("PUT %s:%s answered Docker-Content-Digest %q, want %s", repo, ref, got, want)
	}
	return resp, nil
}

// list GETs a paginated listing (tags or catalog) from path and returns
// the field key of every page, following rel="next" Link headers while
// keep, when set, holds for every name so far. by names the zones that
// answered the pages.
func list(ctx context.Context, c *ociclient.Client, base, path, key string, keep func(string) bool) (names []string, by string, err error) {
	for next := path; next != ""; {
		resp, body, err := c.Do(ctx, http.MethodGet, base, next, nil, nil, http.StatusOK)
		by = joinZone(by, resp)
		if err != nil {
			return nil, by, err
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, by, fmt.Errorf("GET %s: %w", next, err)
		}
		var items []string
		if raw, ok := page[key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, by, fmt.Errorf("GET %s: %s: %w", next, key, err)
			}
		}
		names = append(names, items...)
		next = nextLink(resp)
		for _, name := range items {
			if keep != nil && !keep(name) {
				next = ""
			}
		}
	}
	return names, by, nil
}

var linkNext = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?next"?`)

// nextLink returns the target of the answer's RFC 5988 rel="next" Link
// header, "" when there is none.
func nextLink(resp *http.Response) string {
	m := linkNext.FindStringSubmatch(resp.Header.Get("Link"))
	if m == nil {
		return ""
	}
	return m[1]
}

// joinZone adds the zone that sent resp (its Georeg-Region and Georeg-Zone
// headers) to by, a "+"-separated list without repeats.
func joinZone(by string, resp *http.Response) string {
	if resp == nil {
		return by
	}
	z := resp.Header.Get("Georeg-Region") + "/" + resp.Header.Get("Georeg-Zone")
	if z == "/" {
		z = "?"
	}
	for _, have := range strings.Split(by, "+") {
		if have == z {
			return by
		}
	}
	if by == "" {
		return z
	}
	return by + "+" + z
}

// prefixAnswer turns a listing into an answer after n writes: the version
// is the largest k such that name(1) ... name(k) are all listed. A name
// listed twice or not among name(1) ... name(n) is an error.
func prefixAnswer(listed []string, n int, name func(int) string, what, by string) (answer, error) {
	written := make(map[string]bool, n)
	for v := 1; v <= n; v++ {
		written[name(v)] = true
	}
	have := make(map[string]bool, len(listed))
	for _, l := range listed {
		if !written[l] {
			return answer{by: by}, fmt.Errorf("listing shows %q, which was never written", l)
		}
		if have[l] {
			return answer{by: by}, fmt.Errorf("listing shows %q twice", l)
		}
		have[l] = true
	}
	v := 0
	for v < n && have[name(v+1)] {
		v++
	}
	a := answer{version: v, by: by, what: fmt.Sprintf("%d %s, all %d written", len(listed), what, n)}
	if v < n {
		a.what = fmt.Sprintf("%d %s of the %d written, the first missing %s", len(listed), what, n, name(v+1))
	}
	return a, nil
}
