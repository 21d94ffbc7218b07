package conformance

import (
	"net/http"
	"testing"
)

// digestsGroup: content addressed by sha512 (OCI image spec descriptor
// digests; the spec's referrers tag schema names sha512, and the official
// suite pushes sha512 blobs with every upload method and sha512 manifests
// by digest — "non-canonical digests require tag parameters to push tags,
// so only test by digest").
func (s *suite) digestsGroup(t *testing.T) {
	const sect = "sha512/"
	repo := s.repo("sha512")
	sha := func(mt string, data []byte) blob { return blob{mediaType: mt, data: data, digest: sha512Digest(data)} }

	cfg := sha(mtOCIConfig, s.configBlob("sha512").data)
	layer := sha(mtOCILayer, randomBytes(2500))
	s.check(t, sect+"post-then-put-blob-201", func(c *C) {
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
		if !c.wantStatus(r, http.StatusAccepted) || r.location() == "" {
			c.Fatalf("%s: want 202 with a Location", r)
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(cfg.digest), header: header("Content-Type", mtOctetStream), body: cfg.data})
		if !c.wantStatus(r, http.StatusCreated) {
			return
		}
		c.wantDigestHeader(r, cfg.digest)
		if r.location() == "" {
			c.Errorf("%s: no Location", r)
		} else {
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: r.location()}), cfg)
		}
	})
	s.check(t, sect+"get-and-head-blob-200", func(c *C) {
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + cfg.digest}), cfg)
		c.wantBlob(s.do(c, req{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + cfg.digest}), cfg)
	})
	s.check(t, sect+"chunked-blob-201", func(c *C) {
		loc, _ := s.startSession(c, repo)
		r := s.patchChunk(c, loc, layer.data, 0, 1199)
		if !c.wantChunkAccepted(r, 1199) {
			return
		}
		r = s.patchChunk(c, r.location(), layer.data, 1200, len(layer.data)-1)
		if !c.wantChunkAccepted(r, len(layer.data)-1) {
			return
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(layer.digest), header: header("Content-Type", mtOctetStream)})
		if c.wantStatus(r, http.StatusCreated) {
			c.wantDigestHeader(r, layer.digest)
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + layer.digest}), layer)
		}
	})
	s.check(t, sect+"single-post-blob-201-or-202", func(c *C) {
		b := sha(mtOCILayer, randomBytes(700))
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", query: digestQuery(b.digest), header: header("Content-Type", mtOctetStream), body: b.data})
		if !c.wantStatus(r, http.StatusCreated, http.StatusAccepted) || r.location() == "" {
			c.Fatalf("%s: want 201 or 202 with a Location", r)
		}
		if r.status == http.StatusAccepted {
			r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(b.digest), header: header("Content-Type", mtOctetStream), body: b.data})
			if !c.wantStatus(r, http.StatusCreated) {
				return
			}
		}
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + b.digest}), b)
	})
	s.check(t, sect+"digest-mismatch-400-DIGEST_INVALID", func(c *C) {
		data := randomBytes(600)
		claimed := sha512Digest(randomBytes(600))
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"})
		if r.status != http.StatusAccepted {
			c.Fatalf("%s: want 202", r)
		}
		r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(claimed), header: header("Content-Type", mtOctetStream), body: data})
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, []string{claimed, sha512Digest(data), sha256Digest(data)}, nil)
	})
	s.check(t, sect+"mount-blob-201-or-202", func(c *C) {
		to := s.repo("sha512-mount")
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + to + "/blobs/uploads/", query: map[string][]string{"mount": {cfg.digest}, "from": {repo}}})
		switch r.status {
		case http.StatusCreated:
			c.wantDigestHeader(r, cfg.digest)
		case http.StatusAccepted:
			c.Warnf("%s: sha512 blob was not mounted", r)
			r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(cfg.digest), header: header("Content-Type", mtOctetStream), body: cfg.data})
			c.wantStatus(r, http.StatusCreated)
		default:
			c.Fatalf("%s: want 201 or 202", r)
		}
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + to + "/blobs/" + cfg.digest}), cfg)
	})

	img := func() blob {
		m := ociManifest(cfg, []blob{layer}, nil)
		m.digest = sha512Digest(m.data)
		return m
	}()
	s.check(t, sect+"manifest-put-by-digest-201-digest-equals", func(c *C) {
		r := s.mustPutManifest(c, repo, img.digest, img)
		c.wantDigestHeader(r, img.digest)
		if r.location() == "" {
			c.Errorf("%s: no Location", r)
		} else {
			c.wantManifest(s.getManifestURL(c, r.location()), img)
		}
	})
	s.check(t, sect+"manifest-get-and-head-by-digest-200", func(c *C) {
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, img.digest), img)
		c.wantManifest(s.getManifest(c, http.MethodHead, repo, img.digest), img)
	})
	s.check(t, sect+"manifest-digest-mismatch-400", func(c *C) {
		m := ociManifest(cfg, nil, map[string]any{"annotations": map[string]string{"org.example.bad": "sha512"}})
		body := append(append([]byte{}, m.data...), ' ')
		r := s.do(c, req{method: http.MethodPut, url: "/v2/" + repo + "/manifests/" + sha512Digest(m.data), header: header("Content-Type", mtOCIManifest), body: body})
		if c.wantStatus(r, http.StatusBadRequest) {
			c.wantCode(r, "DIGEST_INVALID")
		}
		s.wantAbsent(c, repo, nil, []string{sha512Digest(m.data), sha512Digest(body), sha256Digest(body)})
	})
	idx := ociIndex([]blob{img}, nil)
	idx.digest = sha512Digest(idx.data)
	s.check(t, sect+"index-of-sha512-manifest-by-digest-201", func(c *C) {
		r := s.mustPutManifest(c, repo, idx.digest, idx)
		c.wantDigestHeader(r, idx.digest)
		c.wantManifest(s.getManifest(c, http.MethodGet, repo, idx.digest), idx)
	})
	s.check(t, sect+"delete-manifest-and-blob-202-then-404", func(c *C) {
		for _, m := range []blob{idx, img} {
			r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/" + m.digest})
			if r.status == http.StatusMethodNotAllowed || r.status == http.StatusBadRequest {
				c.Warnf("%s: deletion disabled", r)
				return
			}
			if c.wantStatus(r, http.StatusAccepted) {
				c.wantStatus(s.getManifest(c, http.MethodGet, repo, m.digest), http.StatusNotFound)
			}
		}
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/blobs/" + layer.digest})
		if c.wantStatus(r, http.StatusAccepted) {
			c.wantStatus(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + layer.digest}), http.StatusNotFound)
		}
	})
}
