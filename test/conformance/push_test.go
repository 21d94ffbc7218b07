package conformance

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var uuidPattern = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// pushGroup: workflow category Push (end-4a, end-4b, end-5, end-6, end-7,
// end-11, end-13).
func (s *suite) pushGroup(t *testing.T) {
	repo := s.repo("push")
	s.postThenPut(t, repo)
	s.singlePost(t, repo)
	s.chunked(t, repo)
	s.streamed(t, repo)
	s.cancelUpload(t, repo)
	s.closingErrors(t, repo)
	s.wellKnownBlobs(t, repo)
	s.pushManifests(t, repo)
	s.mount(t)
}

// postThenPut: Pushing a blob monolithically, POST then PUT.
func (s *suite) postThenPut(t *testing.T, repo string) {
	b := randomLayer(1500)
	var session string
	s.check(t, "post-then-put/post-202-location-uuid", func(c *C) {
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
		if !c.wantStatus(r, http.StatusAccepted) {
			return
		}
		session = r.location()
		if session == "" {
			c.Fatalf("%s: no Location", r)
		}
		if !uuidPattern.MatchString(session) {
			c.Errorf("%s: Location %q MUST contain a UUID naming the session", r, r.header.Get("Location"))
		}
		r2 := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
		if c.wantStatus(r2, http.StatusAccepted) && r2.location() == session {
			c.Errorf("two POSTs returned the same session %q; each MUST be unique", session)
		}
	})
	if session == "" {
		return
	}
	var done *resp
	s.check(t, "post-then-put/put-201-location", func(c *C) {
		done = s.do(c, req{method: http.MethodPut, url: session, query: digestQuery(b.digest),
			header: header("Content-Type", mtOctetStream), body: b.data})
		if !c.wantStatus(done, http.StatusCreated) {
			return
		}
		c.wantDigestHeader(done, b.digest)
		loc := done.location()
		if loc == "" {
			c.Fatalf("%s: no Location", done)
		}
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: loc}), b)
	})
	s.check(t, "post-then-put/blob-pullable", func(c *C) {
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + b.digest}), b)
	})
	s.check(t, "post-then-put/closed-session-404-BLOB_UPLOAD_UNKNOWN", func(c *C) {
		r := s.do(c, req{method: http.MethodGet, url: session})
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "BLOB_UPLOAD_UNKNOWN")
		}
	})
	s.check(t, "post-then-put/repush-existing-201", func(c *C) {
		s.pushBlob(c, repo, b)
	})
	s.check(t, "post-then-put/unknown-session-404-BLOB_UPLOAD_UNKNOWN", func(c *C) {
		u := "/v2/" + repo + "/blobs/uploads/0e3f3a6b-2c2e-4a4e-9d7c-4b1f5a8e9c10"
		for _, r := range []*resp{
			s.do(c, req{method: http.MethodGet, url: u}),
			s.do(c, req{method: http.MethodPatch, url: u, header: header("Content-Type", mtOctetStream, "Content-Range", "0-3"), body: []byte("abcd")}),
			s.do(c, req{method: http.MethodPut, url: u, query: digestQuery(b.digest), header: header("Content-Type", mtOctetStream), body: b.data}),
		} {
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "BLOB_UPLOAD_UNKNOWN")
			}
		}
	})
}

// singlePost: Pushing a blob monolithically, Single POST (MAY; 202 falls
// back to POST then PUT).
func (s *suite) singlePost(t *testing.T, repo string) {
	b := randomLayer(1024)
	s.check(t, "single-post/post-with-digest-201-or-202", func(c *C) {
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", query: digestQuery(b.digest),
			header: header("Content-Type", mtOctetStream), body: b.data})
		if !c.wantStatus(r, http.StatusCreated, http.StatusAccepted) {
			return
		}
		loc := r.location()
		if loc == "" {
			c.Fatalf("%s: no Location", r)
		}
		if r.status == http.StatusAccepted {
			c.Warnf("%s: single POST not supported, fell back to POST then PUT", r)
			// The official suite: after a 202 the blob is not there yet.
			c.wantStatus(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + b.digest}), http.StatusNotFound)
			r = s.do(c, req{method: http.MethodPut, url: loc, query: digestQuery(b.digest),
				header: header("Content-Type", mtOctetStream), body: b.data})
			if !c.wantStatus(r, http.StatusCreated) {
				return
			}
			loc = r.location()
			if loc == "" {
				c.Fatalf("%s: no Location", r)
			}
		}
		c.wantDigestHeader(r, b.digest)
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: loc}), b)
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + b.digest}), b)
	})
	s.check(t, "single-post/digest-mismatch-400-DIGEST_INVALID", func(c *C) {
		bad := randomBytes(700)
		claimed := sha256Digest(randomBytes(700))
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", query: digestQuery(claimed),
			header: header("Content-Type", mtOctetStream), body: bad})
		if !c.wantStatus(r, http.StatusBadRequest, http.StatusAccepted) {
			return
		}
		if r.status == http.StatusAccepted {
			if loc := r.location(); loc != "" {
				r = s.do(c, req{method: http.MethodPut, url: loc, query: digestQuery(claimed),
					header: header("Content-Type", mtOctetStream), body: bad})
				if c.wantStatus(r, http.StatusBadRequest) {
					c.wantCode(r, "DIGEST_INVALID")
				}
			}
		} else {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, []string{claimed, sha256Digest(bad)}, nil)
	})
}

// startSession POSTs with Content-Length: 0, as a chunked upload MUST, and
// returns the Location and the OCI-Chunk-Min-Length, if any.
func (s *suite) startSession(c *C, repo string) (string, int) {
	r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", header: header("Content-Length", "0")})
	if r.status != http.StatusAccepted || r.location() == "" {
		c.Fatalf("%s: want 202 with a Location", r)
	}
	minLen := 0
	if v := r.header.Get("OCI-Chunk-Min-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			c.Errorf("%s: OCI-Chunk-Min-Length %q is not a size", r, v)
		}
		minLen = n
	}
	return r.location(), minLen
}

// patchChunk sends data[first:end+1] with Content-Range first-end.
func (s *suite) patchChunk(c *C, loc string, data []byte, first, end int) *resp {
	return s.do(c, req{method: http.MethodPatch, url: loc,
		header: header("Content-Type", mtOctetStream, "Content-Range", fmt.Sprintf("%d-%d", first, end)),
		body:   data[first : end+1]})
}

// wantChunkAccepted checks a chunk's answer: 202, a Location and Range
// 0-<end> (Pushing a blob in chunks).
func (c *C) wantChunkAccepted(r *resp, end int) bool {
	if !c.wantStatus(r, http.StatusAccepted) {
		return false
	}
	if r.location() == "" {
		c.Errorf("%s: no Location", r)
		return false
	}
	if got, want := r.header.Get("Range"), fmt.Sprintf("0-%d", end); got != want {
		c.Errorf("%s: Range %q, want %q", r, got, want)
	}
	return true
}

// chunked: Pushing a blob in chunks, and the upload status GET (end-13).
func (s *suite) chunked(t *testing.T, repo string) {
	const sect = "pushing-a-blob-in-chunks/"
	size := 3000
	var data []byte
	var first, session, cur string
	var split int
	if !s.check(t, sect+"post-content-length-0-202", func(c *C) {
		var minLen int
		session, minLen = s.startSession(c, repo)
		if minLen*2 > size {
			size = minLen*2 + 10
		}
		data = randomBytes(size)
		split = max(size/2, minLen)
		first = sha256Digest(data)
	}) {
		return
	}
	s.check(t, sect+"patch-first-chunk-202-location-range", func(c *C) {
		r := s.patchChunk(c, session, data, 0, split-1)
		if c.wantChunkAccepted(r, split-1) {
			cur = r.location()
		}
	})
	if cur == "" {
		return
	}
	s.check(t, sect+"resend-first-chunk-416", func(c *C) {
		c.wantStatus(s.patchChunk(c, session, data, 0, split-1), http.StatusRequestedRangeNotSatisfiable)
	})
	s.check(t, sect+"status-get-204-location-range", func(c *C) {
		r := s.do(c, req{method: http.MethodGet, url: session})
		if !c.wantStatus(r, http.StatusNoContent) {
			return
		}
		if r.location() == "" {
			c.Errorf("%s: no Location", r)
		} else {
			cur = r.location()
		}
		if got, want := r.header.Get("Range"), fmt.Sprintf("0-%d", split-1); got != want {
			c.Errorf("%s: Range %q, want %q", r, got, want)
		}
	})
	s.check(t, sect+"patch-second-chunk-202", func(c *C) {
		r := s.patchChunk(c, cur, data, split, size-1)
		if c.wantChunkAccepted(r, size-1) {
			cur = r.location()
		}
	})
	s.check(t, sect+"put-close-201-location", func(c *C) {
		r := s.do(c, req{method: http.MethodPut, url: cur, query: digestQuery(first),
			header: header("Content-Type", mtOctetStream, "Content-Length", "0")})
		if !c.wantStatus(r, http.StatusCreated) {
			return
		}
		c.wantDigestHeader(r, first)
		loc := r.location()
		if loc == "" {
			c.Fatalf("%s: no Location", r)
		}
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: loc}), newBlob("", data))
	})

	s.check(t, sect+"out-of-order-first-chunk-416-then-resume", func(c *C) {
		data := randomBytes(2400)
		loc, _ := s.startSession(c, repo)
		c.wantStatus(s.patchChunk(c, loc, data, 800, 1599), http.StatusRequestedRangeNotSatisfiable)
		// The session survives a 416: GET tells where to resume.
		r := s.do(c, req{method: http.MethodGet, url: loc})
		if c.wantStatus(r, http.StatusNoContent) && !strings.HasPrefix(r.header.Get("Range"), "0-") {
			c.Errorf("%s: Range %q, want 0-<end-of-range>", r, r.header.Get("Range"))
		}
		if r.location() != "" {
			loc = r.location()
		}
		r = s.patchChunk(c, loc, data, 0, 799)
		if !c.wantChunkAccepted(r, 799) {
			return
		}
		loc = r.location()
		r = s.patchChunk(c, loc, data, 1600, 2399)
		c.wantStatus(r, http.StatusRequestedRangeNotSatisfiable)
		r = s.patchChunk(c, loc, data, 800, 2399)
		if !c.wantChunkAccepted(r, 2399) {
			return
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(sha256Digest(data)),
			header: header("Content-Type", mtOctetStream)})
		if c.wantStatus(r, http.StatusCreated) {
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + sha256Digest(data)}), newBlob("", data))
		}
	})
	s.check(t, sect+"final-chunk-in-put-201", func(c *C) {
		data := randomBytes(2000)
		loc, _ := s.startSession(c, repo)
		r := s.patchChunk(c, loc, data, 0, 999)
		if !c.wantChunkAccepted(r, 999) {
			return
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(sha256Digest(data)),
			header: header("Content-Type", mtOctetStream, "Content-Range", "1000-1999"), body: data[1000:]})
		if c.wantStatus(r, http.StatusCreated) {
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + sha256Digest(data)}), newBlob("", data))
		}
	})
	s.check(t, sect+"out-of-order-final-chunk-in-put-416", func(c *C) {
		data := randomBytes(2000)
		loc, _ := s.startSession(c, repo)
		r := s.patchChunk(c, loc, data, 0, 999)
		if !c.wantChunkAccepted(r, 999) {
			return
		}
		loc = r.location()
		r = s.do(c, req{method: http.MethodPut, url: loc, query: digestQuery(sha256Digest(data)),
			header: header("Content-Type", mtOctetStream, "Content-Range", "1200-1999"), body: data[1200:]})
		c.wantStatus(r, http.StatusRequestedRangeNotSatisfiable)
		s.wantAbsent(c, repo, []string{sha256Digest(data)}, nil)
		r = s.do(c, req{method: http.MethodGet, url: loc})
		if c.wantStatus(r, http.StatusNoContent) && r.header.Get("Range") != "0-999" {
			c.Errorf("%s: Range %q after a refused chunk, want 0-999", r, r.header.Get("Range"))
		}
	})
}

// streamed: a PATCH without Content-Range carrying the whole blob, as the
// official suite's "Blob Upload Streamed" sends it.
func (s *suite) streamed(t *testing.T, repo string) {
	const sect = "pushing-a-blob-in-chunks/"
	for _, tc := range []struct {
		name   string
		stream bool
	}{
		{"streamed-patch-chunked-encoding-then-put-201", true},
		{"streamed-patch-with-length-then-put-201", false},
	} {
		s.check(t, sect+tc.name, func(c *C) {
			b := randomLayer(4000)
			r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
			if !c.wantStatus(r, http.StatusAccepted) || r.location() == "" {
				c.Fatalf("%s: want 202 with a Location", r)
			}
			r = s.do(c, req{method: http.MethodPatch, url: r.location(), header: header("Content-Type", mtOctetStream), body: b.data, stream: tc.stream})
			if !c.wantStatus(r, http.StatusAccepted) {
				return
			}
			if r.location() == "" {
				c.Fatalf("%s: no Location", r)
			}
			if got := r.header.Get("Range"); got != fmt.Sprintf("0-%d", len(b.data)-1) {
				c.Errorf("%s: Range %q, want 0-%d", r, got, len(b.data)-1)
			}
			r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(b.digest),
				header: header("Content-Type", mtOctetStream)})
			if !c.wantStatus(r, http.StatusCreated) {
				return
			}
			if r.location() == "" {
				c.Errorf("%s: no Location", r)
			}
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + b.digest}), b)
		})
	}
}

// cancelUpload: DELETE of an upload session (the official suite's "post
// cancel": 204), after which the session is unknown.
func (s *suite) cancelUpload(t *testing.T, repo string) {
	s.check(t, "cancel-upload/delete-204-then-404-BLOB_UPLOAD_UNKNOWN", func(c *C) {
		data := randomBytes(1000)
		loc, _ := s.startSession(c, repo)
		r := s.patchChunk(c, loc, data, 0, 499)
		if c.wantChunkAccepted(r, 499) {
			loc = r.location()
		}
		r = s.do(c, req{method: http.MethodDelete, url: loc})
		c.wantStatus(r, http.StatusNoContent)
		for _, r := range []*resp{
			s.do(c, req{method: http.MethodGet, url: loc}),
			s.patchChunk(c, loc, data, 500, 999),
			s.do(c, req{method: http.MethodPut, url: loc, query: digestQuery(sha256Digest(data)), header: header("Content-Type", mtOctetStream), body: data[500:]}),
		} {
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "BLOB_UPLOAD_UNKNOWN")
			}
		}
		s.wantAbsent(c, repo, []string{sha256Digest(data), sha256Digest(data[:500])}, nil)
	})
}

// closingErrors: the closing PUT with a digest that does not match, is
// malformed or is missing (code-4 DIGEST_INVALID). Nothing may become
// visible.
func (s *suite) closingErrors(t *testing.T, repo string) {
	const sect = "closing-upload/"
	put := func(c *C, q map[string][]string, body []byte) *resp {
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
		if r.status != http.StatusAccepted || r.location() == "" {
			c.Fatalf("%s: want 202 with a Location", r)
		}
		return s.do(c, req{method: http.MethodPut, url: r.location(), query: q, header: header("Content-Type", mtOctetStream), body: body})
	}
	s.check(t, sect+"digest-mismatch-400-DIGEST_INVALID", func(c *C) {
		data := randomBytes(1200)
		claimed := sha256Digest(randomBytes(1200))
		r := put(c, digestQuery(claimed), data)
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, []string{claimed, sha256Digest(data)}, nil)
	})
	s.check(t, sect+"chunked-digest-mismatch-400-DIGEST_INVALID", func(c *C) {
		data := randomBytes(1200)
		claimed := sha256Digest(append(append([]byte{}, data...), "oh no"...))
		loc, _ := s.startSession(c, repo)
		r := s.patchChunk(c, loc, data, 0, 599)
		if !c.wantChunkAccepted(r, 599) {
			return
		}
		r = s.patchChunk(c, r.location(), data, 600, 1199)
		if !c.wantChunkAccepted(r, 1199) {
			return
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(claimed), header: header("Content-Type", mtOctetStream)})
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, []string{claimed, sha256Digest(data)}, nil)
	})
	s.check(t, sect+"streamed-digest-mismatch-400-DIGEST_INVALID", func(c *C) {
		data := randomBytes(1200)
		claimed := sha256Digest(randomBytes(10))
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
		if r.status != http.StatusAccepted {
			c.Fatalf("%s: want 202", r)
		}
		r = s.do(c, req{method: http.MethodPatch, url: r.location(), header: header("Content-Type", mtOctetStream), body: data, stream: true})
		if !c.wantStatus(r, http.StatusAccepted) {
			return
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(claimed), header: header("Content-Type", mtOctetStream)})
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, []string{claimed, sha256Digest(data)}, nil)
	})
	for _, tc := range []struct{ name, digest string }{
		{"malformed-digest-400-DIGEST_INVALID", "sha256:xyz"},
		{"short-hex-400-DIGEST_INVALID", "sha256:" + strings.Repeat("a", 63)},
		{"no-algorithm-400-DIGEST_INVALID", strings.Repeat("a", 64)},
	} {
		s.check(t, sect+tc.name, func(c *C) {
			data := randomBytes(300)
			r := put(c, digestQuery(tc.digest), data)
			if c.wantStatus(r, http.StatusBadRequest) {
				c.wantCode(r, "DIGEST_INVALID")
			}
			s.wantAbsent(c, repo, []string{sha256Digest(data)}, nil)
		})
	}
	s.check(t, sect+"unsupported-algorithm-400", func(c *C) {
		data := randomBytes(300)
		r := put(c, digestQuery("md5:0123456789abcdef0123456789abcdef"), data)
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID", "UNSUPPORTED")
		}
		s.wantAbsent(c, repo, []string{sha256Digest(data)}, nil)
	})
	s.check(t, sect+"missing-digest-400", func(c *C) {
		// The closing PUT MUST include the digest; without it nothing can be
		// verified, so nothing may be stored.
		data := randomBytes(300)
		r := put(c, nil, data)
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID", "BLOB_UPLOAD_INVALID")
		}
		s.wantAbsent(c, repo, []string{sha256Digest(data)}, nil)
	})
}

// wellKnownBlobs: the empty blob and the empty JSON object {} that
// artifacts use as a config (the official suite pushes both).
func (s *suite) wellKnownBlobs(t *testing.T, repo string) {
	for _, tc := range []struct {
		name string
		b    blob
	}{
		{"empty-blob", newBlob(mtOctetStream, []byte{})},
		{"empty-json-blob", newBlob(mtOCIEmpty, []byte("{}"))},
	} {
		s.check(t, "pushing-blobs/"+tc.name, func(c *C) {
			s.pushBlob(c, repo, tc.b)
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + tc.b.digest}), tc.b)
			c.wantBlob(s.do(c, req{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + tc.b.digest}), tc.b)
		})
	}
}

// pushManifests: Pushing Manifests and Pushing Manifests with Subject.
func (s *suite) pushManifests(t *testing.T, repo string) {
	const sect = "pushing-manifests/"
	cfg := s.configBlob("push")
	layer := randomLayer(1800)
	img := ociManifest(cfg, []blob{layer}, nil)
	if !s.check(t, sect+"setup", func(c *C) {
		s.pushBlob(c, repo, cfg)
		s.pushBlob(c, repo, layer)
	}) {
		return
	}

	s.check(t, sect+"put-by-tag-201-location-digest", func(c *C) {
		r := s.mustPutManifest(c, repo, "test0", img)
		c.wantDigestHeader(r, img.digest)
		loc := r.location()
		if loc == "" {
			c.Fatalf("%s: no Location", r)
		}
		c.wantManifest(s.getManifestURL(c, loc), img)
	})
	s.check(t, sect+"put-same-manifest-under-more-tags-201", func(c *C) {
		for i := 1; i < 4; i++ {
			r := s.putManifest(c, repo, fmt.Sprintf("test%d", i), img)
			if c.wantStatus(r, http.StatusCreated) && r.location() == "" {
				c.Errorf("%s: no Location", r)
			}
		}
		for i := range 4 {
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, fmt.Sprintf("test%d", i)), img)
		}
	})
	s.check(t, sect+"put-by-digest-201-digest-equals", func(c *C) {
		m := ociManifest(cfg, []blob{layer}, map[string]any{"annotations": map[string]string{"org.example.by": "digest"}})
		r := s.mustPutManifest(c, repo, m.digest, m)
		// "MUST be equal to the client provided digest".
		c.wantDigestHeader(r, m.digest)
		if r.location() == "" {
			c.Errorf("%s: no Location", r)
		} else {
			c.wantManifest(s.getManifestURL(c, r.location()), m)
		}
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, m.digest), m)
	})
	s.check(t, sect+"no-layers-201", func(c *C) {
		m := ociManifest(cfg, nil, nil)
		s.mustPutManifest(c, repo, "emptylayer", m)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, "emptylayer"), m)
	})
	s.check(t, sect+"unknown-fields-kept-byte-exact", func(c *C) {
		d := cfg.desc()
		d["data"] = cfg.data // base64 in JSON; the descriptor's data field
		d["newUnspecifiedField"] = "aGVsbG8gd29ybGQ="
		m := manifestBlob(mtOCIManifest, map[string]any{
			"schemaVersion": 2, "mediaType": mtOCIManifest, "config": d, "layers": descs([]blob{layer}),
			"org.example.extension": map[string]any{"x": 1},
		}, sha256Digest)
		s.mustPutManifest(c, repo, "unknown-fields", m)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, "unknown-fields"), m)
	})
	s.check(t, sect+"retag-points-tag-at-new-manifest", func(c *C) {
		m := ociManifest(cfg, []blob{layer}, map[string]any{"annotations": map[string]string{"org.example.v": "2"}})
		s.mustPutManifest(c, repo, "moving", img)
		s.mustPutManifest(c, repo, "moving", m)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, "moving"), m)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, img.digest), img)
	})
	var idx blob
	s.check(t, sect+"oci-index-201-content-type-echoed", func(c *C) {
		other := ociManifest(cfg, nil, map[string]any{"annotations": map[string]string{"org.example.platform": "arm64"}})
		s.mustPutManifest(c, repo, other.digest, other)
		idx = ociIndex([]blob{img, other}, nil)
		r := s.mustPutManifest(c, repo, "index", idx)
		c.wantDigestHeader(r, idx.digest)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, "index"), idx)
		c.wantManifest(s.getManifest(c, http.MethodHead, repo, idx.digest), idx)
	})
	s.check(t, sect+"docker-schema2-201-content-type-echoed", func(c *C) {
		dcfg := newBlob(mtDockerConfig, s.configBlob("docker").data)
		dlayer := newBlob(mtDockerLayer, randomBytes(900))
		s.pushBlob(c, repo, dcfg)
		s.pushBlob(c, repo, dlayer)
		dm := manifestBlob(mtDockerManifest, map[string]any{
			"schemaVersion": 2, "mediaType": mtDockerManifest, "config": dcfg.desc(), "layers": descs([]blob{dlayer}),
		}, sha256Digest)
		s.mustPutManifest(c, repo, "docker", dm)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, "docker"), dm)
		c.wantManifest(s.getManifest(c, http.MethodHead, repo, dm.digest), dm)

		list := manifestBlob(mtDockerList, map[string]any{
			"schemaVersion": 2, "mediaType": mtDockerList,
			"manifests": []any{map[string]any{"mediaType": mtDockerManifest, "digest": dm.digest, "size": len(dm.data),
				"platform": map[string]any{"architecture": "amd64", "os": "linux"}}},
		}, sha256Digest)
		s.mustPutManifest(c, repo, "docker-list", list)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, "docker-list"), list)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, list.digest), list)
	})
	s.check(t, sect+"large-manifest-3.9MB-201", func(c *C) {
		// "Client and registry implementations SHOULD expect to be able to
		// support manifest pushes of at least 4 megabytes"; the official
		// suite pushes this one and requires success.
		ann := map[string]string{}
		for i := range 390 {
			ann[fmt.Sprintf("large-annotation-%d", i)] = strings.Repeat("A", 10000)
		}
		m := ociManifest(cfg, []blob{layer}, map[string]any{"annotations": ann})
		s.mustPutManifest(c, repo, m.digest, m)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, m.digest), m)
	})
	s.check(t, sect+"oversize-manifest-413", func(c *C) {
		m := ociManifest(cfg, []blob{layer}, map[string]any{"annotations": map[string]string{"big": strings.Repeat("B", 5<<20)}})
		r := s.putManifest(c, repo, "oversize", m)
		switch r.status {
		case http.StatusRequestEntityTooLarge:
			s.wantAbsent(c, repo, nil, []string{"oversize", m.digest})
		case http.StatusCreated:
			c.Warnf("%s: a 5 MiB manifest was accepted; a registry SHOULD enforce a limit", r)
		default:
			c.Warnf("%s: an oversize manifest SHOULD get 413", r)
			if r.status < 400 || r.status >= 500 {
				c.Errorf("%s: want 413 or 201", r)
			}
			s.wantAbsent(c, repo, nil, []string{"oversize", m.digest})
		}
	})

	// Rejections: a rejected manifest leaves no tag and no digest behind.
	s.check(t, sect+"missing-layer-MANIFEST_BLOB_UNKNOWN", func(c *C) {
		missing := randomLayer(100)
		m := ociManifest(cfg, []blob{layer, missing}, nil)
		s.wantBlobUnknownOrAccepted(c, repo, "missing-layer", m)
	})
	s.check(t, sect+"missing-config-MANIFEST_BLOB_UNKNOWN", func(c *C) {
		m := ociManifest(s.configBlob("never-pushed"), []blob{layer}, nil)
		s.wantBlobUnknownOrAccepted(c, repo, "missing-config", m)
	})
	s.check(t, sect+"index-missing-child-MANIFEST_BLOB_UNKNOWN", func(c *C) {
		ghost := ociManifest(s.configBlob("ghost"), nil, nil)
		m := ociIndex([]blob{img, ghost}, nil)
		s.wantBlobUnknownOrAccepted(c, repo, "missing-child", m)
	})
	s.check(t, sect+"invalid-json-400-MANIFEST_INVALID", func(c *C) {
		m := blob{mediaType: mtOCIManifest, data: []byte("blablabla"), digest: sha256Digest([]byte("blablabla"))}
		r := s.putManifest(c, repo, "invalid", m)
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "MANIFEST_INVALID")
		}
		s.wantAbsent(c, repo, nil, []string{"invalid", m.digest})
	})
	s.check(t, sect+"empty-body-400-MANIFEST_INVALID", func(c *C) {
		r := s.do(c, req{method: http.MethodPut, url: "/v2/" + repo + "/manifests/empty-body", header: header("Content-Type", mtOCIManifest)})
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "MANIFEST_INVALID")
		}
		s.wantAbsent(c, repo, nil, []string{"empty-body"})
	})
	s.check(t, sect+"wrong-schema-400-MANIFEST_INVALID", func(c *C) {
		m := manifestBlob(mtOCIManifest, map[string]any{"schemaVersion": 2, "mediaType": mtOCIManifest, "config": "not a descriptor", "layers": 7}, sha256Digest)
		r := s.putManifest(c, repo, "wrong-schema", m)
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "MANIFEST_INVALID")
		}
		s.wantAbsent(c, repo, nil, []string{"wrong-schema", m.digest})
	})
	s.check(t, sect+"digest-mismatch-400-DIGEST_INVALID", func(c *C) {
		// The official suite's "bad digest image": trailing whitespace
		// makes the body's digest differ from the reference.
		m := ociManifest(cfg, []blob{layer}, map[string]any{"annotations": map[string]string{"org.example.bad": "digest"}})
		body := append(append([]byte{}, m.data...), "  "...)
		r := s.do(c, req{method: http.MethodPut, url: "/v2/" + repo + "/manifests/" + m.digest, header: header("Content-Type", mtOCIManifest), body: body})
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, nil, []string{m.digest, sha256Digest(body)})
	})
	s.check(t, sect+"malformed-digest-reference-400", func(c *C) {
		m := ociManifest(cfg, []blob{layer}, map[string]any{"annotations": map[string]string{"org.example.bad": "reference"}})
		r := s.putManifest(c, repo, "sha256:baddigeststring", m)
		c.wantStatus(r, http.StatusBadRequest)
		s.wantAbsent(c, repo, nil, []string{m.digest})
	})
	s.check(t, "pushing-manifests-with-subject/missing-subject-201-OCI-Subject", func(c *C) {
		// "A registry MUST initially accept an otherwise valid manifest with
		// a subject field that references a manifest that does not exist".
		subject := ociManifest(s.configBlob("absent-subject"), nil, nil)
		empty := newBlob(mtOCIEmpty, []byte("{}"))
		s.pushBlob(c, repo, empty)
		m := ociManifest(empty, []blob{empty}, map[string]any{"artifactType": "application/vnd.example.sbom.v1", "subject": subject.desc()})
		r := s.mustPutManifest(c, repo, m.digest, m)
		if got := r.header.Get("OCI-Subject"); got != subject.digest {
			c.Errorf("%s: OCI-Subject %q, want %q (the registry supports the referrers API)", r, got, subject.digest)
		}
	})
}

// getManifestURL fetches a manifest by a Location URL.
func (s *suite) getManifestURL(c *C, loc string) *resp {
	return s.do(c, req{method: http.MethodGet, url: loc,
		header: header("Accept", mtOCIManifest, "Accept", mtOCIIndex, "Accept", mtDockerManifest, "Accept", mtDockerList)})
}

// wantBlobUnknownOrAccepted: "A registry MAY reject a manifest ... with
// descriptors ... that reference a manifest or blob that does not exist";
// when it does, "it MUST result in one or more MANIFEST_BLOB_UNKNOWN errors".
func (s *suite) wantBlobUnknownOrAccepted(c *C, repo, tag string, m blob) {
	r := s.putManifest(c, repo, tag, m)
	switch r.status {
	case http.StatusCreated:
		c.Warnf("%s: a manifest referencing missing content was accepted (allowed)", r)
	case http.StatusBadRequest:
		c.wantCode(r, "MANIFEST_BLOB_UNKNOWN")
		s.wantAbsent(c, repo, nil, []string{tag, m.digest})
	default:
		c.Errorf("%s: want 201, or 400 MANIFEST_BLOB_UNKNOWN", r)
		s.wantAbsent(c, repo, nil, []string{tag, m.digest})
	}
}

// mount: Mounting a blob from another repository (end-11).
func (s *suite) mount(t *testing.T) {
	const sect = "mounting-a-blob/"
	src := s.repo("mount-source")
	dst := s.repo("mount-target")
	b := randomLayer(1300)
	if !s.check(t, sect+"setup", func(c *C) { s.pushBlob(c, src, b) }) {
		return
	}
	mountReq := func(c *C, to, digest, from string) *resp {
		q := map[string][]string{"mount": {digest}}
		if from != "" {
			q["from"] = []string{from}
		}
		return s.do(c, req{method: http.MethodPost, url: "/v2/" + to + "/blobs/uploads/", query: q})
	}
	// finishSession completes a 202 fallback session the way a client does.
	finishSession := func(c *C, r *resp, to string, b blob) {
		if !strings.HasPrefix(r.locationPath(), "/v2/"+to+"/blobs/uploads/") {
			c.Errorf("%s: Location %q is not an upload session of %s", r, r.header.Get("Location"), to)
		}
		if r.location() == "" {
			return
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(b.digest), header: header("Content-Type", mtOctetStream), body: b.data})
		if c.wantStatus(r, http.StatusCreated) {
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + to + "/blobs/" + b.digest}), b)
		}
	}
	s.check(t, sect+"mount-from-201-location-digest", func(c *C) {
		r := mountReq(c, dst, b.digest, src)
		switch r.status {
		case http.StatusCreated:
			if want := "/v2/" + dst + "/blobs/" + b.digest; r.locationPath() != want {
				c.Errorf("%s: Location %q, the official suite wants %q", r, r.header.Get("Location"), want)
			}
			c.wantDigestHeader(r, b.digest)
			if r.location() != "" {
				c.wantBlob(s.do(c, req{method: http.MethodGet, url: r.location()}), b)
			}
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + dst + "/blobs/" + b.digest}), b)
		case http.StatusAccepted:
			c.Warnf("%s: blob present in %s was not mounted", r, src)
			finishSession(c, r, dst, b)
		default:
			c.Errorf("%s: want 201 (mounted) or 202 (upload session)", r)
		}
	})
	s.check(t, sect+"mount-without-from-unknown-digest-202-session", func(c *C) {
		missing := randomLayer(200)
		r := mountReq(c, dst, missing.digest, "")
		if c.wantStatus(r, http.StatusAccepted) {
			finishSession(c, r, dst, missing)
		}
	})
	s.check(t, sect+"mount-missing-in-source-202-session", func(c *C) {
		missing := randomLayer(200)
		r := mountReq(c, dst, missing.digest, src)
		if c.wantStatus(r, http.StatusAccepted) {
			finishSession(c, r, dst, missing)
		}
	})
	s.check(t, sect+"mount-from-unknown-repository-202-session", func(c *C) {
		other := randomLayer(200)
		s.pushBlob(c, src, other)
		r := mountReq(c, dst, other.digest, s.repo("no-such-repository"))
		if c.wantStatus(r, http.StatusAccepted) {
			finishSession(c, r, dst, other)
		}
	})
	s.check(t, sect+"mount-without-from-existing-blob-201-or-202", func(c *C) {
		// "The registry MAY treat the from parameter as optional".
		other := randomLayer(200)
		s.pushBlob(c, src, other)
		to := s.repo("mount-anonymous")
		r := mountReq(c, to, other.digest, "")
		switch r.status {
		case http.StatusCreated:
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + to + "/blobs/" + other.digest}), other)
		case http.StatusAccepted:
			finishSession(c, r, to, other)
		default:
			c.Errorf("%s: want 201 or 202", r)
		}
	})
	s.check(t, sect+"mounted-blob-survives-delete-in-source", func(c *C) {
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + src + "/blobs/" + b.digest})
		switch r.status {
		case http.StatusAccepted:
		case http.StatusMethodNotAllowed, http.StatusBadRequest:
			c.Warnf("%s: blob deletion disabled, nothing to check", r)
			return
		default:
			c.Fatalf("%s: want 202", r)
		}
		c.wantStatus(s.do(c, req{method: http.MethodGet, url: "/v2/" + src + "/blobs/" + b.digest}), http.StatusNotFound)
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + dst + "/blobs/" + b.digest}), b)
	})
}
