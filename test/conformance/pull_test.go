package conformance

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// baseGroup: API "Determining Support" (end-1).
func (s *suite) baseGroup(t *testing.T) {
	s.check(t, "determining-support/get-v2-200", func(c *C) {
		r := s.do(c, req{method: http.MethodGet, url: "/v2/"})
		c.wantStatus(r, http.StatusOK)
		if v := r.header.Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
			// OPTIONAL in v1.1, but Docker clients look for it.
			c.Warnf("%s: Docker-Distribution-API-Version %q, clients expect registry/2.0", r, v)
		}
	})
}

// pullGroup: workflow category Pull (end-2, end-3).
func (s *suite) pullGroup(t *testing.T) {
	repo := s.repo("pull")
	cfg := s.configBlob("pull-0")
	cfg1 := s.configBlob("pull-1")
	layer := randomLayer(2048)
	byTag := ociManifest(cfg, []blob{layer}, nil)
	byDigest := ociManifest(cfg1, []blob{layer}, nil)
	const tag = "tagtest0"

	if !s.check(t, "setup/push-blobs-and-manifests", func(c *C) {
		for _, b := range []blob{cfg, cfg1, layer} {
			s.pushBlob(c, repo, b)
		}
		s.mustPutManifest(c, repo, tag, byTag)
		s.mustPutManifest(c, repo, byDigest.digest, byDigest)
	}) {
		return
	}

	// Pulling blobs.
	s.check(t, "pulling-blobs/get-200-body-length-digest", func(c *C) {
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + layer.digest}), layer)
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + cfg.digest}), cfg)
	})
	s.check(t, "pulling-blobs/get-unknown-404-BLOB_UNKNOWN", func(c *C) {
		r := s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + sha256Digest([]byte("hello world"))})
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "BLOB_UNKNOWN")
		}
	})
	s.check(t, "pulling-blobs/unknown-repository-404", func(c *C) {
		r := s.do(c, req{method: http.MethodGet, url: "/v2/" + s.repo("never-pushed") + "/blobs/" + layer.digest})
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "BLOB_UNKNOWN", "NAME_UNKNOWN")
		}
	})
	s.check(t, "pulling-blobs/not-in-this-repository-404", func(c *C) {
		// "If the blob is not found in the repository": a blob pushed to
		// another repository is not in this one until mounted or pushed.
		other := s.repo("pull-other")
		s.pushBlob(c, other, cfg1)
		r := s.do(c, req{method: http.MethodGet, url: "/v2/" + other + "/blobs/" + layer.digest})
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "BLOB_UNKNOWN")
		}
	})

	// Checking if content exists in the registry.
	s.check(t, "checking-if-content-exists/head-blob-200-length-digest", func(c *C) {
		c.wantBlob(s.do(c, req{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + layer.digest}), layer)
	})
	s.check(t, "checking-if-content-exists/head-unknown-blob-404", func(c *C) {
		r := s.do(c, req{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + sha256Digest([]byte("hello world"))})
		c.wantStatus(r, http.StatusNotFound)
	})
	s.check(t, "checking-if-content-exists/head-manifest-by-tag-200", func(c *C) {
		c.wantManifest(s.getManifest(c, http.MethodHead, repo, tag), byTag)
	})
	s.check(t, "checking-if-content-exists/head-manifest-by-digest-200", func(c *C) {
		c.wantManifest(s.getManifest(c, http.MethodHead, repo, byTag.digest), byTag)
		c.wantManifest(s.getManifest(c, http.MethodHead, repo, byDigest.digest), byDigest)
	})
	s.check(t, "checking-if-content-exists/head-unknown-manifest-404", func(c *C) {
		c.wantStatus(s.getManifest(c, http.MethodHead, repo, "nosuchtag"), http.StatusNotFound)
		// The official suite uses a reference that is not even a valid tag.
		c.wantStatus(s.getManifest(c, http.MethodHead, repo, ".INVALID_MANIFEST_NAME"), http.StatusNotFound)
	})

	// Range requests (Pulling blobs: "A registry SHOULD support the Range
	// request header"). Once a registry answers one range with 206, every
	// range answer must be right.
	s.rangeChecks(t, repo)

	// Pulling manifests.
	s.check(t, "pulling-manifests/get-by-tag-200", func(c *C) {
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, tag), byTag)
	})
	s.check(t, "pulling-manifests/get-by-digest-200", func(c *C) {
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, byTag.digest), byTag)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, byDigest.digest), byDigest)
	})
	s.check(t, "pulling-manifests/get-with-single-accept-200", func(c *C) {
		r := s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/manifests/" + tag, header: header("Accept", mtOCIManifest)})
		c.wantManifest(r, byTag)
	})
	s.check(t, "pulling-manifests/get-unknown-tag-404-MANIFEST_UNKNOWN", func(c *C) {
		r := s.getManifest(c, http.MethodGet, repo, "nosuchtag")
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "MANIFEST_UNKNOWN")
		}
	})
	s.check(t, "pulling-manifests/get-unknown-digest-404-MANIFEST_UNKNOWN", func(c *C) {
		r := s.getManifest(c, http.MethodGet, repo, sha256Digest(randomBytes(64)))
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "MANIFEST_UNKNOWN")
		}
	})
	s.check(t, "pulling-manifests/not-in-this-repository-404", func(c *C) {
		// "If the manifest is not found in the repository": pushed to
		// another repository is not found in this one.
		other := s.repo("pull-other")
		for _, ref := range []string{byTag.digest, tag} {
			r := s.getManifest(c, http.MethodGet, other, ref)
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")
			}
		}
	})
	s.check(t, "pulling-manifests/get-invalid-reference-404", func(c *C) {
		// Mirrors the official suite's nonexistent manifest.
		c.wantStatus(s.getManifest(c, http.MethodGet, repo, ".INVALID_MANIFEST_NAME"), http.StatusNotFound)
	})
	s.check(t, "pulling-manifests/unknown-repository-404", func(c *C) {
		r := s.getManifest(c, http.MethodGet, s.repo("never-pushed"), tag)
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
		}
	})
	s.check(t, "pulling-manifests/malformed-digest-400-or-404", func(c *C) {
		// The official suite's "Error codes" check: 400 or 404, and a 400
		// carries a spec error code (checked on every answer).
		r := s.getManifest(c, http.MethodGet, repo, "sha256:totallywrong")
		if c.wantStatus(r, http.StatusBadRequest, http.StatusNotFound) && r.status == http.StatusBadRequest && len(r.codes()) == 0 {
			c.Errorf("%s: a 400 must carry a spec error envelope", r)
		}
	})
}

// rangeChecks pulls parts of a 2048-byte blob with Range headers, as the
// official suite does.
func (s *suite) rangeChecks(t *testing.T, repo string) {
	b := randomLayer(2048)
	if !s.check(t, "range-requests/setup", func(c *C) { s.pushBlob(c, repo, b) }) {
		return
	}
	get := func(c *C, rng string) *resp {
		return s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + b.digest, header: header("Range", rng)})
	}
	supported := false
	s.check(t, "range-requests/bytes-500-1499-206", func(c *C) {
		r := get(c, "bytes=500-1499")
		switch r.status {
		case http.StatusPartialContent:
			supported = true
			wantPart(c, r, b.data, 500, 1499)
		case http.StatusOK:
			c.Warnf("%s: Range ignored, full blob returned", r)
			c.wantBody(r, b.data)
		default:
			c.Errorf("%s: want 206 (or 200 without range support)", r)
		}
	})
	if !supported {
		return
	}
	for _, tc := range []struct {
		name, rng  string
		first, end int
	}{
		{"bytes-500-open-206", "bytes=500-", 500, 2047},
		{"bytes-suffix-500-206", "bytes=-500", 1548, 2047},
		{"bytes-2000-5000-clamped-206", "bytes=2000-5000", 2000, 2047},
	} {
		s.check(t, "range-requests/"+tc.name, func(c *C) {
			r := get(c, tc.rng)
			if c.wantStatus(r, http.StatusPartialContent) {
				wantPart(c, r, b.data, tc.first, tc.end)
			}
		})
	}
	s.check(t, "range-requests/unsatisfiable-416", func(c *C) {
		c.wantStatus(get(c, "bytes=5000-10000"), http.StatusRequestedRangeNotSatisfiable)
		c.wantStatus(get(c, "bytes=500-0"), http.StatusRequestedRangeNotSatisfiable)
	})
	// RFC 9110 14.2: "An origin server MUST ignore a Range header field that
	// contains a range unit it does not understand."
	s.check(t, "range-requests/unknown-unit-ignored-200", func(c *C) {
		r := get(c, "items=0-1")
		if c.wantStatus(r, http.StatusOK) {
			c.wantBody(r, b.data)
		}
	})
	// Several ranges: a multipart 206, or the range ignored (200, the
	// whole blob); RFC 9110 allows both.
	s.check(t, "range-requests/several-ranges-206-multipart-or-200", func(c *C) {
		r := get(c, "bytes=0-9,100-109")
		switch {
		case r.status == http.StatusOK:
			c.wantBody(r, b.data)
		case r.status == http.StatusPartialContent:
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/byteranges") {
				c.Errorf("%s: 206 for two ranges with Content-Type %q, want multipart/byteranges", r, ct)
			}
		default:
			c.Errorf("%s: want 206 multipart or 200", r)
		}
	})
}

func wantPart(c *C, r *resp, data []byte, first, end int) {
	c.wantBody(r, data[first:end+1])
	c.wantContentLength(r, end-first+1)
	cr := r.header.Get("Content-Range")
	if cr != fmt.Sprintf("bytes %d-%d/%d", first, end, len(data)) && cr != fmt.Sprintf("bytes %d-%d/*", first, end) {
		c.Errorf("%s: Content-Range %q, want bytes %d-%d/%d", r, cr, first, end, len(data))
	}
}
