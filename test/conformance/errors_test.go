package conformance

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// errorsGroup: the grammars the spec puts on <name>, <reference> and
// <digest>, and the rule behind every rejection: bad input changes nothing.
func (s *suite) errorsGroup(t *testing.T) {
	s.repositoryNames(t)
	s.tagNames(t)
	s.digestSyntax(t)
}

// repositoryNames: "<name> MUST match the following regular expression:
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*".
func (s *suite) repositoryNames(t *testing.T) {
	const sect = "repository-name/"
	cfg := s.configBlob("names")
	img := ociManifest(cfg, nil, nil)
	for _, name := range []string{
		"a", "a0", "a.b", "a_b", "a__b", "a-b", "a--b", "a---b", "a.b-c_d",
		"a/b/c/d/e/f", "0/1/2", "x.y__z--w/v_u",
	} {
		s.check(t, sect+"valid-accepted/"+name, func(c *C) {
			repo := s.run + "/" + name
			s.pushBlob(c, repo, cfg)
			s.mustPutManifest(c, repo, "latest", img)
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, "latest"), img)
			r, tl := s.listTags(c, repo, nil)
			if c.wantStatus(r, http.StatusOK) && tl.Name != repo {
				c.Errorf("%s: name %q, want %q", r, tl.Name, repo)
			}
		})
	}
	for _, tc := range []struct{ name, component string }{
		{"uppercase", "Upper"},
		{"all-uppercase", "UPPER"},
		{"double-dot", "a..b"},
		{"dot-dash", "a.-b"},
		{"triple-underscore", "a___b"},
		{"dot-underscore", "a._b"},
		{"leading-dash", "-a"},
		{"trailing-dash", "a-"},
		{"leading-dot", ".a"},
		{"trailing-underscore", "a_"},
		{"empty-component", "a//b"},
		{"non-ascii", "caf%C3%A9"},
		{"space", "a%20b"},
	} {
		s.check(t, sect+"invalid-rejected-"+tc.name, func(c *C) {
			repo := s.run + "/" + tc.component
			want := func(r *resp) {
				// NAME_INVALID is the spec's code; a 404 (no such route) is
				// what the official suite tolerates for unroutable names.
				switch r.status {
				case http.StatusBadRequest:
					c.wantCode(r, "NAME_INVALID")
				case http.StatusNotFound:
				case http.StatusMovedPermanently, http.StatusPermanentRedirect:
					// HTTP path cleaning; nothing is created, but a client
					// following it would act on another repository.
					c.Warnf("%s: an invalid name is redirected to %q instead of rejected", r, r.header.Get("Location"))
				default:
					c.Errorf("%s: want 400 NAME_INVALID or 404", r)
				}
			}
			want(s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/"}))
			want(s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", query: digestQuery(cfg.digest),
				header: header("Content-Type", mtOctetStream), body: cfg.data}))
			want(s.putManifest(c, repo, "latest", img))
			want(s.getManifest(c, http.MethodGet, repo, "latest"))
			// Nothing created, not under the name as given nor as a
			// registry might normalise it.
			for _, alias := range []string{repo, strings.ToLower(repo), strings.ReplaceAll(repo, "//", "/")} {
				if r := s.getManifest(c, http.MethodGet, alias, "latest"); r.status == http.StatusOK {
					c.Errorf("bad input changed something: %s: a rejected name became visible", r)
				}
			}
		})
	}
	s.check(t, sect+"over-255-characters-consistent", func(c *C) {
		// v1.1 sets no length limit (only an implementer's note about
		// clients limiting host/name to 255); registries may accept or
		// reject, but a rejection must leave nothing behind.
		repo := s.run + "/" + strings.Repeat("abcdefghij/", 25) + "z"
		r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", query: digestQuery(cfg.digest),
			header: header("Content-Type", mtOctetStream), body: cfg.data})
		switch r.status {
		case http.StatusCreated, http.StatusAccepted:
			if r.status == http.StatusAccepted {
				r = s.do(c, req{method: http.MethodPut, url: r.location(), query: digestQuery(cfg.digest), header: header("Content-Type", mtOctetStream), body: cfg.data})
				c.wantStatus(r, http.StatusCreated)
			}
			s.mustPutManifest(c, repo, "latest", img)
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, "latest"), img)
		case http.StatusBadRequest:
			c.wantCode(r, "NAME_INVALID")
			s.wantAbsent(c, repo, []string{cfg.digest}, []string{"latest"})
		case http.StatusNotFound:
			s.wantAbsent(c, repo, []string{cfg.digest}, []string{"latest"})
		default:
			c.Errorf("%s: want 201/202, or 400 NAME_INVALID", r)
		}
	})
}

// tagNames: "<reference> as a tag MUST be at most 128 characters in length
// and MUST match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}".
func (s *suite) tagNames(t *testing.T) {
	const sect = "manifest-reference/"
	repo := s.repo("tag-names")
	cfg := s.configBlob("tag-names")
	img := ociManifest(cfg, nil, nil)
	valid := []string{"_", "A", "Z9", "_under", "v1.2.3-rc.1_x", strings.Repeat("t", 128)}
	if !s.check(t, sect+"valid-tags-accepted", func(c *C) {
		s.pushBlob(c, repo, cfg)
		for _, tag := range valid {
			s.mustPutManifest(c, repo, tag, img)
			c.wantManifest(s.getManifest(c, http.MethodGet, repo, tag), img)
		}
	}) {
		return
	}
	for _, tc := range []struct{ name, tag string }{
		{"129-characters", strings.Repeat("t", 129)},
		{"leading-dot", ".bad"},
		{"leading-dash", "-bad"},
		{"plus", "bad+tag"},
		{"colon", "bad:tag"},
		{"percent-encoded-space", "bad%20tag"},
	} {
		s.check(t, sect+"invalid-tag-rejected-"+tc.name, func(c *C) {
			m := ociManifest(cfg, nil, map[string]any{"annotations": map[string]string{"org.example.tag": tc.name}})
			r := s.putManifest(c, repo, tc.tag, m)
			c.wantStatus(r, http.StatusBadRequest, http.StatusNotFound)
			r, tl := s.listTags(c, repo, nil)
			if c.wantStatus(r, http.StatusOK) && !slices.Equal(tl.Tags, sortedCopy(valid)) {
				c.Errorf("bad input changed something: %s: tags %q, want %q", r, tl.Tags, sortedCopy(valid))
			}
			s.wantAbsent(c, repo, nil, []string{m.digest})
		})
	}
}

func sortedCopy(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

// digestSyntax: digests outside the grammar algorithm ":" encoded, or with
// an encoded part of the wrong form for the algorithm.
func (s *suite) digestSyntax(t *testing.T) {
	const sect = "digest/"
	repo := s.repo("digests")
	cfg := s.configBlob("digests")
	if !s.check(t, sect+"setup", func(c *C) { s.pushBlob(c, repo, cfg) }) {
		return
	}
	bad := []string{
		"sha256:xyz",
		"sha256:" + strings.Repeat("a", 63),
		"sha256:" + strings.Repeat("A", 64),
		"sha256:" + strings.Repeat("g", 64),
		"sha512:" + strings.Repeat("a", 64),
		"sha256",
	}
	s.check(t, sect+"malformed-blob-digest-400-DIGEST_INVALID-or-404", func(c *C) {
		for _, d := range bad {
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodDelete} {
				r := s.do(c, req{method: method, url: "/v2/" + repo + "/blobs/" + d})
				if c.wantStatus(r, http.StatusBadRequest, http.StatusNotFound) && r.status == http.StatusBadRequest && method != http.MethodHead {
					c.wantCode(r, "DIGEST_INVALID")
				}
			}
		}
		c.wantBlob(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + cfg.digest}), cfg)
	})
	s.check(t, sect+"malformed-mount-digest-not-201", func(c *C) {
		for _, d := range bad {
			r := s.do(c, req{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", query: map[string][]string{"mount": {d}, "from": {repo}}})
			c.wantStatus(r, http.StatusAccepted, http.StatusBadRequest, http.StatusNotFound)
		}
	})
	s.check(t, sect+"malformed-manifest-digest-400-or-404", func(c *C) {
		for _, d := range bad {
			r := s.getManifest(c, http.MethodGet, repo, d)
			c.wantStatus(r, http.StatusBadRequest, http.StatusNotFound)
		}
	})
}

// knownDeviations lists, per target, checks where that registry is known
// not to follow the spec (or the official suite). They are reported but do
// not fail the run.
var knownDeviations = map[string]map[string]string{
	"distribution": {
		"push/post-then-put/unknown-session-404-BLOB_UPLOAD_UNKNOWN":                      "PATCH and PUT of a session URL without its _state token answer BLOB_UPLOAD_INVALID",
		"push/pushing-a-blob-in-chunks/resend-first-chunk-416":                            rangeInvalid,
		"push/pushing-a-blob-in-chunks/out-of-order-first-chunk-416-then-resume":          rangeInvalid,
		"push/pushing-a-blob-in-chunks/out-of-order-final-chunk-in-put-416":               rangeInvalid,
		"push/pushing-manifests-with-subject/missing-subject-201-OCI-Subject":             noReferrers,
		"pull/range-requests/unknown-unit-ignored-200":                                    "Go's http.ServeContent answers 416 to a Range unit other than bytes",
		"digests/sha512/post-then-put-blob-201":                                           sha512Canonical,
		"digests/sha512/get-and-head-blob-200":                                            sha512Canonical,
		"digests/sha512/chunked-blob-201":                                                 sha512Canonical,
		"digests/sha512/single-post-blob-201-or-202":                                      sha512Canonical,
		"digests/sha512/mount-blob-201-or-202":                                            sha512Canonical,
		"digests/sha512/manifest-put-by-digest-201-digest-equals":                         sha512Canonical,
		"digests/sha512/manifest-get-and-head-by-digest-200":                              sha512Canonical,
		"digests/sha512/index-of-sha512-manifest-by-digest-201":                           sha512Canonical,
		"digests/sha512/delete-manifest-and-blob-202-then-404":                            sha512Canonical,
		"content-discovery/pushing-manifests-with-subject/before-subject-201-OCI-Subject": noReferrers,
		"content-discovery/pushing-manifests-with-subject/after-subject-201-OCI-Subject":  noReferrers,
		"content-discovery/pushing-manifests-with-subject/absent-subject-201-OCI-Subject": noReferrers,
		"content-discovery/listing-referrers/subject-200-all-referrers":                   noReferrers,
		"content-discovery/listing-referrers/artifactType-filter-OCI-Filters-Applied":     noReferrers,
		"content-discovery/listing-referrers/absent-subject-lists-its-referrer":           noReferrers,
		"content-discovery/listing-referrers/unknown-digest-200-empty-index":              noReferrers,
		"content-discovery/listing-referrers/unknown-repository-200-empty-index":          noReferrers,
		"content-discovery/listing-referrers/invalid-digest-400":                          noReferrers,
		"content-discovery/listing-referrers/deleted-referrer-unlisted":                   noReferrers,
		"content-discovery/listing-referrers/sha512-subject":                              noReferrers,
		"content-discovery/listing-referrers/other-repository-referrers-not-listed":       noReferrers,
		"errors/repository-name/over-255-characters-consistent":                           "a long, well-formed name gets 500 UNKNOWN instead of 201 or 400 NAME_INVALID",
	},
}

const (
	noReferrers     = "v3.1.2 does not implement the referrers API (no OCI-Subject, /referrers/ is 404)"
	sha512Canonical = "sha512 content is named by its sha256 in Docker-Content-Digest and manifests cannot be pushed by sha512 digest"
	rangeInvalid    = "416 answers carry code RANGE_INVALID, which is not in the spec's table"
)
