package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Media types the checks push and expect echoed back.
const (
	mtOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mtOCIConfig      = "application/vnd.oci.image.config.v1+json"
	mtOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtOCIEmpty       = "application/vnd.oci.empty.v1+json"
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtOctetStream    = "application/octet-stream"
)

// specErrorCodes are the codes the spec's Error Codes table allows, plus the
// legacy Docker codes it says a client MAY meet.
var specErrorCodes = []string{
	"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
	"MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
	"NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
	"TOOMANYREQUESTS", "TAG_INVALID", "MANIFEST_UNVERIFIED",
}

// req is one HTTP request of a check.
type req struct {
	method string
	// url is a path ("/v2/...", possibly with a query) resolved against the
	// registry, or an absolute URL such as a resolved Location.
	url string
	// query is merged into the URL's own query, keeping the parameters the
	// registry put into a Location (the spec says they MAY be critical).
	query  url.Values
	header http.Header
	body   []byte
	// stream sends body with chunked transfer encoding and no
	// Content-Length, as a streaming client does.
	stream bool
}

// resp is a registry answer with its body read.
type resp struct {
	method string
	url    *url.URL
	status int
	header http.Header
	body   []byte
}

func (r *resp) String() string {
	s := fmt.Sprintf("%s %s -> %d", r.method, r.url.RequestURI(), r.status)
	if codes := r.codes(); len(codes) > 0 {
		s += " " + strings.Join(codes, ",")
	}
	if r.status >= 300 && len(r.body) > 0 && len(r.codes()) == 0 {
		b := r.body
		if len(b) > 200 {
			b = b[:200]
		}
		s += fmt.Sprintf(" body %q", b)
	}
	return s
}

// do sends r and returns the answer. Cross-cutting rules are checked on
// every answer: a JSON 4xx body MUST be the spec's error envelope with codes
// from its table (Error Codes), and Warning headers MUST follow the spec's
// Warnings section.
func (s *suite) do(c *C, r req) *resp {
	u, err := s.base.Parse(r.url)
	if err != nil {
		c.Fatalf("bad URL %q: %v", r.url, err)
	}
	if len(r.query) > 0 {
		q := u.Query()
		for k, vs := range r.query {
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	var body io.Reader
	switch {
	case r.stream:
		// An io.MultiReader hides the length from net/http, which then
		// streams the body chunked.
		body = io.MultiReader(bytes.NewReader(r.body))
	case r.body != nil:
		body = bytes.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(context.Background(), r.method, u.String(), body)
	if err != nil {
		c.Fatalf("%s %s: %v", r.method, u, err)
	}
	for k, vs := range r.header {
		hr.Header[k] = vs
	}
	hresp, err := s.client.Do(hr)
	if err != nil {
		c.Fatalf("%s %s: %v", r.method, u.RequestURI(), err)
	}
	if loc := hresp.Header.Get("Location"); hresp.StatusCode == http.StatusTemporaryRedirect && r.method == http.MethodGet &&
		strings.Contains(u.Path, "/blobs/") && !strings.Contains(u.Path, "/blobs/uploads/") && loc != "" {
		// "the registry MAY redirect" a blob GET (Pulling blobs): a
		// client follows it, and the checks are of the answer it gets.
		hresp.Body.Close()
		to, err := u.Parse(loc)
		if err != nil {
			c.Fatalf("%s %s: redirect to a bad Location %q: %v", r.method, u.RequestURI(), loc, err)
		}
		hr, err = http.NewRequestWithContext(context.Background(), r.method, to.String(), nil)
		if err != nil {
			c.Fatalf("%s %s: %v", r.method, to, err)
		}
		for k, vs := range r.header {
			hr.Header[k] = vs
		}
		if hresp, err = s.client.Do(hr); err != nil {
			c.Fatalf("%s %s (redirected from %s): %v", r.method, to.RequestURI(), u.RequestURI(), err)
		}
		s.redirects++
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, 64<<20))
	if err != nil {
		c.Fatalf("%s %s: reading body: %v", r.method, u.RequestURI(), err)
	}
	out := &resp{method: r.method, url: u, status: hresp.StatusCode, header: hresp.Header, body: b}
	if hresp.ContentLength >= 0 && out.header.Get("Content-Length") == "" {
		// net/http moves a HEAD answer's length out of the header map.
		out.header.Set("Content-Length", strconv.FormatInt(hresp.ContentLength, 10))
	}
	s.checkEnvelope(c, out)
	checkWarnings(c, out)
	return out
}

func (s *suite) checkEnvelope(c *C, r *resp) {
	if r.status < 400 || r.status >= 500 || len(r.body) == 0 {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "application/json" && !json.Valid(r.body) {
		return // a 4xx body MAY be in any format; only JSON must be the envelope
	}
	var env struct {
		Errors *[]map[string]json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Errors == nil || len(*env.Errors) == 0 {
		c.Errorf("error-codes: %s: JSON error body is not {\"errors\":[...]}: %.200s", r, r.body)
		return
	}
	for _, e := range *env.Errors {
		var code string
		if err := json.Unmarshal(e["code"], &code); err != nil {
			c.Errorf("error-codes: %s: error without a string code: %.200s", r, r.body)
			continue
		}
		if !regexp.MustCompile(`^[A-Z_]+$`).MatchString(code) || !slices.Contains(specErrorCodes, code) {
			c.Errorf("error-codes: %s: code %q is not one of the spec's codes", r, code)
		}
		if m, ok := e["message"]; ok {
			var msg string
			if json.Unmarshal(m, &msg) != nil {
				c.Errorf("error-codes: %s: message is not a string: %s", r, m)
			}
		}
	}
}

var warningHeader = regexp.MustCompile(`^299 - "(?:[^"\\]|\\.)*"$`)

func checkWarnings(c *C, r *resp) {
	total := 0
	for _, w := range r.header.Values("Warning") {
		total += len(w)
		if !warningHeader.MatchString(w) {
			c.Errorf("warnings: %s: Warning %q must have warn-code 299, warn-agent - and no warn-date", r, w)
		}
	}
	if total > 4096 {
		c.Errorf("warnings: %s: %d bytes of Warning headers, at most 4096 allowed", r, total)
	}
}

// codes returns the error codes of a spec error envelope body.
func (r *resp) codes() []string {
	var env struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.body, &env) != nil {
		return nil
	}
	var out []string
	for _, e := range env.Errors {
		out = append(out, e.Code)
	}
	return out
}

// location returns the Location header resolved against the request URL
// (it MAY be absolute or relative), or "" when there is none.
func (r *resp) location() string {
	loc := r.header.Get("Location")
	if loc == "" {
		return ""
	}
	u, err := r.url.Parse(loc)
	if err != nil {
		return ""
	}
	return u.String()
}

// locationPath returns the Location header without scheme and host, as the
// official suite compares it.
func (r *resp) locationPath() string {
	loc := r.location()
	if loc == "" {
		return ""
	}
	u, _ := url.Parse(loc)
	return u.RequestURI()
}

// wantStatus records an error unless the answer's status is one of want.
func (c *C) wantStatus(r *resp, want ...int) bool {
	if slices.Contains(want, r.status) {
		return true
	}
	c.Errorf("%s: want status %v", r, want)
	return false
}

// wantCode records an error unless the answer carries a JSON error envelope
// (Content-Type application/json) holding one of the codes.
func (c *C) wantCode(r *resp, codes ...string) {
	got := r.codes()
	for _, g := range got {
		if slices.Contains(codes, g) {
			if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "application/json" {
				c.Errorf("%s: error envelope with Content-Type %q, want application/json", r, r.header.Get("Content-Type"))
			}
			return
		}
	}
	c.Errorf("%s: want an error envelope with code %s", r, strings.Join(codes, " or "))
}

// wantDigestHeader checks Docker-Content-Digest: when present it MUST equal
// want; its absence misses a SHOULD.
func (c *C) wantDigestHeader(r *resp, want string) {
	got := r.header.Get("Docker-Content-Digest")
	switch {
	case got == "":
		c.Warnf("%s: no Docker-Content-Digest header", r)
	case got != want && !strings.HasPrefix(got, strings.SplitN(want, ":", 2)[0]+":"):
		// The spec lets the header name the content with another
		// algorithm, but the official suite compares it with the digest
		// the client used, and so does this check.
		c.Errorf("%s: Docker-Content-Digest %q uses another algorithm than the requested %q; the official suite requires them equal", r, got, want)
	case got != want:
		c.Errorf("%s: Docker-Content-Digest %q, want %q", r, got, want)
	}
}

// wantContentLength checks the Content-Length header against n.
func (c *C) wantContentLength(r *resp, n int) {
	if got := r.header.Get("Content-Length"); got != strconv.Itoa(n) {
		c.Errorf("%s: Content-Length %q, want %d", r, got, n)
	}
}

// wantBody checks the body byte for byte.
func (c *C) wantBody(r *resp, want []byte) {
	if !bytes.Equal(r.body, want) {
		c.Errorf("%s: body of %d bytes differs from the %d bytes pushed", r, len(r.body), len(want))
	}
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func digestQuery(d string) url.Values { return url.Values{"digest": {d}} }

// blob is content with its digest; manifests are blobs too.
type blob struct {
	mediaType string
	data      []byte
	digest    string
}

func sha256Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

func sha512Digest(b []byte) string {
	h := sha512.Sum512(b)
	return "sha512:" + hex.EncodeToString(h[:])
}

func newBlob(mediaType string, data []byte) blob {
	return blob{mediaType: mediaType, data: data, digest: sha256Digest(data)}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func randomLayer(n int) blob { return newBlob(mtOCILayer, randomBytes(n)) }

// configBlob returns an image config unique to this run and label.
func (s *suite) configBlob(label string) blob {
	b, _ := json.MarshalIndent(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"author":       "georeg conformance " + s.run + " " + label,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{}},
	}, "", "\t")
	return newBlob(mtOCIConfig, b)
}

func (b blob) desc() map[string]any {
	return map[string]any{"mediaType": b.mediaType, "digest": b.digest, "size": len(b.data)}
}

func descs(bs []blob) []any {
	out := make([]any, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.desc())
	}
	return out
}

// manifestBlob encodes m with tabs and a trailing newline, so a registry
// that re-encodes instead of storing the exact bytes is caught.
func manifestBlob(mediaType string, m map[string]any, digest func([]byte) string) blob {
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		panic(err)
	}
	b = append(b, '\n')
	return blob{mediaType: mediaType, data: b, digest: digest(b)}
}

// ociManifest returns an OCI image manifest; extra fields are merged in.
func ociManifest(config blob, layers []blob, extra map[string]any) blob {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mtOCIManifest,
		"config":        config.desc(),
		"layers":        descs(layers),
	}
	maps.Copy(m, extra)
	return manifestBlob(mtOCIManifest, m, sha256Digest)
}

// ociIndex returns an OCI image index of the manifests, each given a
// platform.
func ociIndex(manifests []blob, extra map[string]any) blob {
	list := make([]any, 0, len(manifests))
	for i, m := range manifests {
		d := m.desc()
		d["platform"] = map[string]any{"architecture": []string{"amd64", "arm64", "s390x"}[i%3], "os": "linux"}
		list = append(list, d)
	}
	m := map[string]any{"schemaVersion": 2, "mediaType": mtOCIIndex, "manifests": list}
	maps.Copy(m, extra)
	return manifestBlob(mtOCIIndex, m, sha256Digest)
}

// index is the part of an OCI image index the checks read.
type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// tagList is the body of GET /v2/<name>/tags/list.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// pushBlob uploads b with POST then PUT and ends the check unless the
// registry stores it.
func (s *suite) pushBlob(c *C, repo string, b blob) {
	r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
	if r.status != http.StatusAccepted || r.location() == "" {
		c.Fatalf("pushing blob %s: %s: want 202 with a Location", b.digest, r)
	}
	r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(b.digest),
		header: header("Content-Type", mtOctetStream), body: b.data})
	if r.status != http.StatusCreated {
		c.Fatalf("pushing blob %s: %s: want 201", b.digest, r)
	}
}

// putManifest sends m to /v2/<repo>/manifests/<ref> with its media type.
func (s *suite) putManifest(c *C, repo, ref string, m blob) *resp {
	return s.do(c, req{method: http.MethodPut, url: "/v2/" + repo + "/manifests/" + ref,
		header: header("Content-Type", m.mediaType), body: m.data})
}

// mustPutManifest puts m and ends the check unless the registry answers 201.
func (s *suite) mustPutManifest(c *C, repo, ref string, m blob) *resp {
	r := s.putManifest(c, repo, ref, m)
	if r.status != http.StatusCreated {
		c.Fatalf("pushing manifest %s as %s: %s: want 201", m.digest, ref, r)
	}
	return r
}

// getManifest fetches a manifest, accepting every type the checks push.
func (s *suite) getManifest(c *C, method, repo, ref string) *resp {
	return s.do(c, req{method: method, url: "/v2/" + repo + "/manifests/" + ref,
		header: header("Accept", mtOCIManifest, "Accept", mtOCIIndex, "Accept", mtDockerManifest, "Accept", mtDockerList)})
}

// wantManifest checks a GET or HEAD of a stored manifest: 200, the exact
// bytes pushed, the pushed media type as Content-Type, Content-Length and
// Docker-Content-Digest (Pulling manifests, Checking if content exists).
func (c *C) wantManifest(r *resp, m blob) {
	if !c.wantStatus(r, http.StatusOK) {
		return
	}
	if r.method == http.MethodGet {
		c.wantBody(r, m.data)
	} else if len(r.body) != 0 {
		c.Errorf("%s: HEAD answer has a body", r)
	}
	if ct := r.header.Get("Content-Type"); ct != m.mediaType {
		base, _, _ := mime.ParseMediaType(ct)
		if base == m.mediaType {
			c.Errorf("%s: Content-Type %q has parameters; the registry SHOULD NOT add them and the official suite compares it exactly to %q", r, ct, m.mediaType)
		} else {
			c.Errorf("%s: Content-Type %q, want the pushed %q", r, ct, m.mediaType)
		}
	}
	c.wantContentLength(r, len(m.data))
	c.wantDigestHeader(r, m.digest)
}

// wantBlob checks a GET or HEAD of a stored blob (Pulling blobs, Checking if
// content exists).
func (c *C) wantBlob(r *resp, b blob) {
	if !c.wantStatus(r, http.StatusOK) {
		return
	}
	if r.method == http.MethodGet {
		c.wantBody(r, b.data)
	} else if len(r.body) != 0 {
		c.Errorf("%s: HEAD answer has a body", r)
	}
	c.wantContentLength(r, len(b.data))
	c.wantDigestHeader(r, b.digest)
}

// wantAbsent checks that a rejected request left nothing behind: no blob
// under the digests, no manifest under the refs.
func (s *suite) wantAbsent(c *C, repo string, blobs, refs []string) {
	// An invalid name may be answered 400 NAME_INVALID instead of 404
	// (HEAD has no body to tell, so any 400 counts).
	absent := func(r *resp) bool {
		return r.status == http.StatusNotFound ||
			r.status == http.StatusBadRequest && (r.method == http.MethodHead || slices.Contains(r.codes(), "NAME_INVALID"))
	}
	for _, d := range blobs {
		if r := s.do(c, req{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + d}); !absent(r) {
			c.Errorf("bad input changed something: %s: want 404", r)
		}
	}
	for _, ref := range refs {
		if r := s.getManifest(c, http.MethodHead, repo, ref); !absent(r) {
			c.Errorf("bad input changed something: %s: want 404", r)
		}
	}
}

// listTags fetches the tag list with the given query and decodes it.
func (s *suite) listTags(c *C, repo string, q url.Values) (*resp, tagList) {
	r := s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/tags/list", query: q})
	var tl tagList
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &tl); err != nil {
			c.Errorf("%s: body is not {\"name\":...,\"tags\":[...]}: %v", r, err)
		}
	}
	return r, tl
}

var linkNext = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?next"?`)

// nextLink returns the target of an RFC 5988 rel="next" Link header resolved
// against the request, "" when there is none, and records an error when a
// Link header is there but not in that form.
func (c *C) nextLink(r *resp) string {
	link := r.header.Get("Link")
	if link == "" {
		return ""
	}
	m := linkNext.FindStringSubmatch(link)
	if m == nil {
		c.Errorf("%s: Link %q is not an RFC 5988 link with rel=\"next\"", r, link)
		return ""
	}
	u, err := r.url.Parse(m[1])
	if err != nil {
		c.Errorf("%s: Link target %q: %v", r, m[1], err)
		return ""
	}
	return u.String()
}
