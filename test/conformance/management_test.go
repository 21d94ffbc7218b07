package conformance

import (
	"net/http"
	"slices"
	"testing"
)

// managementGroup: workflow category Content Management (end-9, end-10).
// "Registries MAY implement deletion or they MAY disable it"; disabled
// deletion MUST answer 400 or 405, and the checks that follow a delete then
// have nothing to check.
func (s *suite) managementGroup(t *testing.T) {
	repo := s.repo("management")
	cfg := s.configBlob("management")
	layer := randomLayer(1600)
	img := ociManifest(cfg, []blob{layer}, nil)
	keep := ociManifest(cfg, nil, nil)
	if !s.check(t, "setup", func(c *C) {
		s.pushBlob(c, repo, cfg)
		s.pushBlob(c, repo, layer)
		for _, tag := range []string{"tagtest0", "second", "third"} {
			s.mustPutManifest(c, repo, tag, img)
		}
		s.mustPutManifest(c, repo, "keep", keep)
	}) {
		return
	}
	tagsNow := func(c *C) []string {
		r, tl := s.listTags(c, repo, nil)
		c.wantStatus(r, http.StatusOK)
		return tl.Tags
	}
	disabled := func(c *C, r *resp) bool {
		if r.status == http.StatusBadRequest || r.status == http.StatusMethodNotAllowed {
			c.Warnf("%s: deletion disabled", r)
			if r.status == http.StatusBadRequest {
				// The official suite: a 400 here carries UNSUPPORTED.
				c.wantCode(r, "UNSUPPORTED")
			}
			return true
		}
		return false
	}

	tagDeleted := false
	s.check(t, "deleting-tags/delete-tag-202", func(c *C) {
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/tagtest0"})
		if disabled(c, r) {
			return
		}
		tagDeleted = c.wantStatus(r, http.StatusAccepted)
	})
	if tagDeleted {
		s.check(t, "deleting-tags/tag-gone-404", func(c *C) {
			// "Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404."
			r := s.getManifest(c, http.MethodGet, repo, "tagtest0")
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "MANIFEST_UNKNOWN")
			}
			c.wantStatus(s.getManifest(c, http.MethodHead, repo, "tagtest0"), http.StatusNotFound)
		})
		s.check(t, "deleting-tags/manifest-and-other-tags-kept", func(c *C) {
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, img.digest), img)
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, "second"), img)
			if tags := tagsNow(c); !slices.Equal(tags, []string{"keep", "second", "third"}) {
				c.Errorf("tags %q after deleting tagtest0, want [keep second third]", tags)
			}
		})
		s.check(t, "deleting-tags/delete-unknown-tag-404", func(c *C) {
			r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/tagtest0"})
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "MANIFEST_UNKNOWN")
			}
		})
	}

	manifestDeleted := false
	s.check(t, "deleting-manifests/delete-by-digest-202", func(c *C) {
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/" + img.digest})
		if disabled(c, r) {
			return
		}
		manifestDeleted = c.wantStatus(r, http.StatusAccepted)
	})
	if manifestDeleted {
		s.check(t, "deleting-manifests/digest-and-its-tags-404", func(c *C) {
			// "Once deleted, a GET to /v2/<name>/manifests/<digest> and any
			// tag pointing to that digest will return a 404."
			for _, ref := range []string{img.digest, "second", "third"} {
				r := s.getManifest(c, http.MethodGet, repo, ref)
				if c.wantStatus(r, http.StatusNotFound) {
					c.wantCode(r, "MANIFEST_UNKNOWN")
				}
				c.wantStatus(s.getManifest(c, http.MethodHead, repo, ref), http.StatusNotFound)
			}
		})
		s.check(t, "deleting-manifests/tags-list-reflects-delete", func(c *C) {
			if tags := tagsNow(c); !slices.Equal(tags, []string{"keep"}) {
				c.Errorf("tags %q after deleting the manifest, want [keep]", tags)
			}
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, "keep"), keep)
		})
		s.check(t, "deleting-manifests/delete-again-404", func(c *C) {
			r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/" + img.digest})
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "MANIFEST_UNKNOWN")
			}
		})
		s.check(t, "deleting-manifests/repush-after-delete-201", func(c *C) {
			s.mustPutManifest(c, repo, "again", img)
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, img.digest), img)
		})
	}
	s.check(t, "deleting-manifests/unknown-repository-404", func(c *C) {
		// "If the repository does not exist, the response MUST return 404."
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + s.repo("never-pushed") + "/manifests/" + img.digest})
		if c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
		}
	})

	blobDeleted := false
	s.check(t, "deleting-blobs/delete-202", func(c *C) {
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/blobs/" + layer.digest})
		if disabled(c, r) {
			return
		}
		blobDeleted = c.wantStatus(r, http.StatusAccepted)
	})
	if blobDeleted {
		s.check(t, "deleting-blobs/blob-gone-404", func(c *C) {
			r := s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + layer.digest})
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "BLOB_UNKNOWN")
			}
			c.wantStatus(s.do(c, req{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + layer.digest}), http.StatusNotFound)
		})
		s.check(t, "deleting-blobs/delete-again-404", func(c *C) {
			// "If the blob is not found, a 404 Not Found code MUST be returned."
			r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/blobs/" + layer.digest})
			if c.wantStatus(r, http.StatusNotFound) {
				c.wantCode(r, "BLOB_UNKNOWN")
			}
		})
		s.check(t, "deleting-blobs/other-blobs-kept", func(c *C) {
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + cfg.digest}), cfg)
		})
		s.check(t, "deleting-blobs/repush-after-delete-201", func(c *C) {
			s.pushBlob(c, repo, layer)
			c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + layer.digest}), layer)
		})
	}
	s.check(t, "deleting-blobs/unknown-blob-404", func(c *C) {
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/blobs/" + sha256Digest(randomBytes(32))})
		if !disabled(c, r) && c.wantStatus(r, http.StatusNotFound) {
			c.wantCode(r, "BLOB_UNKNOWN")
		}
	})
}
