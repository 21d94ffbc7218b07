package conformance

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// discoveryGroup: workflow category Content Discovery (end-8a, end-8b,
// end-12a, end-12b).
func (s *suite) discoveryGroup(t *testing.T) {
	s.listingTags(t)
	s.listingReferrers(t)
}

// listingTags: Listing Tags.
func (s *suite) listingTags(t *testing.T) {
	const sect = "listing-tags/"
	repo := s.repo("tags")
	// Lowercase tags only: the spec's "lexical order (i.e. case-insensitive
	// alphanumeric order)" and byte order agree on them.
	tags := []string{"latest", "v1", "v1.0", "v1.1", "v10", "v2", "alpha", "beta_1", "beta-2", "zeta"}
	slices.Sort(tags)
	cfg := s.configBlob("tags")
	img := ociManifest(cfg, nil, nil)
	if !s.check(t, sect+"setup", func(c *C) {
		s.pushBlob(c, repo, cfg)
		for _, tag := range tags {
			s.mustPutManifest(c, repo, tag, img)
		}
	}) {
		return
	}
	wantTags := func(c *C, r *resp, tl tagList, want []string) {
		if tl.Name != repo {
			c.Errorf("%s: name %q, want %q", r, tl.Name, repo)
		}
		if !slices.Equal(tl.Tags, want) {
			c.Errorf("%s: tags %q, want %q", r, tl.Tags, want)
		}
	}
	s.check(t, sect+"all-200-sorted", func(c *C) {
		r, tl := s.listTags(c, repo, nil)
		if c.wantStatus(r, http.StatusOK) {
			wantTags(c, r, tl, tags)
		}
	})
	s.check(t, sect+"n-limits-count", func(c *C) {
		// "MAY return fewer than <int> results, but only when the total
		// number of tags ... is less than <int> or a Link header is
		// provided. Otherwise, the response MUST include <int> results."
		for _, n := range []int{1, 2, 5, len(tags) - 1} {
			r, tl := s.listTags(c, repo, url.Values{"n": {strconv.Itoa(n)}})
			if !c.wantStatus(r, http.StatusOK) {
				continue
			}
			if len(tl.Tags) < n && r.header.Get("Link") == "" {
				c.Errorf("%s: %d tags and no Link header, want %d", r, len(tl.Tags), n)
			}
			if len(tl.Tags) > n {
				c.Errorf("%s: %d tags, want at most %d", r, len(tl.Tags), n)
			}
			if !slices.Equal(tl.Tags, tags[:len(tl.Tags)]) {
				c.Errorf("%s: tags %q, want the first of %q", r, tl.Tags, tags)
			}
		}
	})
	s.check(t, sect+"n-and-last-continue-after-last", func(c *C) {
		for _, i := range []int{0, 3, len(tags) - 3} {
			r, tl := s.listTags(c, repo, url.Values{"n": {"2"}, "last": {tags[i]}})
			if c.wantStatus(r, http.StatusOK) {
				want := tags[i+1 : i+3]
				if len(tl.Tags) < 2 && r.header.Get("Link") != "" {
					want = want[:len(tl.Tags)]
				}
				wantTags(c, r, tl, want)
			}
		}
	})
	s.check(t, sect+"last-without-n", func(c *C) {
		// "When using the last query parameter, the n parameter is OPTIONAL."
		r, tl := s.listTags(c, repo, url.Values{"last": {tags[4]}})
		if c.wantStatus(r, http.StatusOK) && r.header.Get("Link") == "" {
			wantTags(c, r, tl, tags[5:])
		}
	})
	s.check(t, sect+"last-is-final-tag-empty", func(c *C) {
		r, tl := s.listTags(c, repo, url.Values{"n": {"3"}, "last": {tags[len(tags)-1]}})
		if c.wantStatus(r, http.StatusOK) && len(tl.Tags) != 0 {
			c.Errorf("%s: tags %q after the last tag, want none", r, tl.Tags)
		}
		if r.header.Get("Link") != "" {
			c.Warnf("%s: Link header with no further tags", r)
		}
	})
	s.check(t, sect+"n-0-empty-no-link", func(c *C) {
		// "When n is zero, this endpoint MUST return an empty list, and MUST
		// NOT include a Link header."
		r, tl := s.listTags(c, repo, url.Values{"n": {"0"}})
		if !c.wantStatus(r, http.StatusOK) {
			return
		}
		if len(tl.Tags) != 0 {
			c.Errorf("%s: %d tags, want an empty list", r, len(tl.Tags))
		}
		if r.header.Get("Link") != "" {
			c.Errorf("%s: Link header %q, MUST NOT be there", r, r.header.Get("Link"))
		}
	})
	s.check(t, sect+"n-over-total-all-tags", func(c *C) {
		r, tl := s.listTags(c, repo, url.Values{"n": {"1000"}})
		if c.wantStatus(r, http.StatusOK) {
			if r.header.Get("Link") == "" {
				wantTags(c, r, tl, tags)
			} else if !slices.Equal(tl.Tags, tags[:len(tl.Tags)]) {
				c.Errorf("%s: tags %q, want the first of %q", r, tl.Tags, tags)
			}
		}
	})
	s.check(t, sect+"paginate-with-link-or-last", func(c *C) {
		// Walk the list three at a time, following Link when given (the
		// spec says clients should prefer it) and last otherwise.
		var got []string
		next := "/v2/" + repo + "/tags/list?n=3"
		for page := 0; next != "" && page < 20; page++ {
			r := s.do(c, req{method: http.MethodGet, url: next})
			if !c.wantStatus(r, http.StatusOK) {
				return
			}
			var tl tagList
			if err := json.Unmarshal(r.body, &tl); err != nil {
				c.Fatalf("%s: %v", r, err)
			}
			got = append(got, tl.Tags...)
			next = c.nextLink(r)
			if next == "" && len(tl.Tags) == 3 {
				next = "/v2/" + repo + "/tags/list?n=3&last=" + url.QueryEscape(tl.Tags[2])
			}
		}
		if !slices.Equal(got, tags) {
			c.Errorf("paging collected %q, want %q", got, tags)
		}
	})
	s.check(t, sect+"unknown-repository-404-or-empty", func(c *C) {
		// Not found: end-8a's failure code 404; the new official suite also
		// accepts an empty 200.
		r, tl := s.listTags(c, s.repo("never-pushed"), nil)
		switch r.status {
		case http.StatusNotFound:
			c.wantCode(r, "NAME_UNKNOWN")
		case http.StatusOK:
			if len(tl.Tags) != 0 {
				c.Errorf("%s: tags %q for a repository never pushed", r, tl.Tags)
			}
		default:
			c.Errorf("%s: want 404 (or an empty 200)", r)
		}
	})
}

// referrer is a manifest with a subject and the descriptor the referrers
// API must list for it.
type referrer struct {
	m    blob
	want descriptor
}

// listingReferrers: Pushing Manifests with Subject and Listing Referrers,
// mirroring the official suite's referrers setup.
func (s *suite) listingReferrers(t *testing.T) {
	const sect = "listing-referrers/"
	repo := s.repo("referrers")
	const (
		typeA     = "application/vnd.nhl.peanut.butter.bagel"
		typeB     = "application/vnd.nba.strawberry.jam.croissant"
		typeIndex = "application/vnd.food.stand"
		annKey    = "org.opencontainers.conformance.test"
	)
	cfg := s.configBlob("referrers")
	subject := ociManifest(cfg, nil, nil)
	absent := ociManifest(s.configBlob("referrers-absent-subject"), nil, nil)
	empty := newBlob(mtOCIEmpty, []byte("{}"))
	blobA := newBlob(typeA, []byte("NHL Peanut Butter on my NHL bagel "+s.run))
	blobB := newBlob(typeB, []byte("NBA Strawberry Jam on my NBA croissant "+s.run))

	mk := func(config blob, layers []blob, artifactType string, subj blob, ann string) referrer {
		extra := map[string]any{"subject": subj.desc()}
		if artifactType != "" {
			extra["artifactType"] = artifactType
		}
		if ann != "" {
			extra["annotations"] = map[string]string{annKey: ann}
		}
		m := ociManifest(config, layers, extra)
		want := descriptor{MediaType: mtOCIManifest, Digest: m.digest, Size: int64(len(m.data)), ArtifactType: artifactType}
		if artifactType == "" {
			// "If the artifactType is empty or missing in the image manifest,
			// the value of artifactType MUST be set to the config descriptor
			// mediaType value."
			want.ArtifactType = config.mediaType
		}
		if ann != "" {
			want.Annotations = map[string]string{annKey: ann}
		}
		return referrer{m: m, want: want}
	}
	configA := mk(blobA, []blob{empty}, "", subject, "test config a")
	layerA := mk(empty, []blob{blobA}, typeA, subject, "test layer a")
	configB := mk(blobB, []blob{empty}, "", subject, "test config b")
	layerB := mk(empty, []blob{blobB}, typeB, subject, "test layer b")
	toAbsent := mk(empty, []blob{blobB}, typeB, absent, "")
	idx := ociIndex([]blob{configA.m, layerA.m}, map[string]any{
		"artifactType": typeIndex, "subject": subject.desc(),
		"annotations": map[string]string{annKey: "test index"},
	})
	idxRef := referrer{m: idx, want: descriptor{MediaType: mtOCIIndex, Digest: idx.digest, Size: int64(len(idx.data)),
		ArtifactType: typeIndex, Annotations: map[string]string{annKey: "test index"}}}
	// "If the artifactType is empty or missing in an index, the
	// artifactType MUST be omitted."
	idx2 := ociIndex([]blob{configB.m}, map[string]any{"subject": subject.desc()})
	idx2Ref := referrer{m: idx2, want: descriptor{MediaType: mtOCIIndex, Digest: idx2.digest, Size: int64(len(idx2.data))}}
	all := []referrer{configA, layerA, idxRef, configB, layerB, idx2Ref}

	putReferrer := func(c *C, ref referrer, subj blob, in ...string) {
		to := repo
		if len(in) > 0 {
			to = in[0]
		}
		r := s.mustPutManifest(c, to, ref.m.digest, ref.m)
		if got := r.header.Get("OCI-Subject"); got != subj.digest {
			c.Errorf("%s: OCI-Subject %q, want %q", r, got, subj.digest)
		}
	}
	// Referrers go in before and after their subject, as in the official
	// suite: the registry must accept both orders.
	s.check(t, "pushing-manifests-with-subject/before-subject-201-OCI-Subject", func(c *C) {
		s.pushBlob(c, repo, empty)
		s.pushBlob(c, repo, blobA)
		putReferrer(c, configA, subject)
		putReferrer(c, layerA, subject)
		putReferrer(c, idxRef, subject)
	})
	s.check(t, "pushing-manifests-with-subject/after-subject-201-OCI-Subject", func(c *C) {
		s.pushBlob(c, repo, cfg)
		s.mustPutManifest(c, repo, "tagtest0", subject)
		s.pushBlob(c, repo, blobB)
		putReferrer(c, configB, subject)
		putReferrer(c, layerB, subject)
		putReferrer(c, idx2Ref, subject)
	})
	s.check(t, "pushing-manifests-with-subject/absent-subject-201-OCI-Subject", func(c *C) {
		putReferrer(c, toAbsent, absent)
	})

	list := func(c *C, d string, q url.Values) (*resp, index) {
		r := s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/referrers/" + d, query: q})
		var ix index
		if !c.wantStatus(r, http.StatusOK) {
			return r, ix
		}
		if ct := r.header.Get("Content-Type"); ct != mtOCIIndex {
			c.Errorf("%s: Content-Type %q, MUST be %s", r, ct, mtOCIIndex)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(r.body, &raw); err != nil {
			c.Fatalf("%s: body is not JSON: %v", r, err)
		}
		if m, ok := raw["manifests"]; !ok || string(m) == "null" {
			c.Errorf("%s: manifests must be a list, got %s", r, m)
		}
		_ = json.Unmarshal(r.body, &ix)
		if ix.SchemaVersion != 2 || ix.MediaType != mtOCIIndex {
			c.Errorf("%s: schemaVersion %d mediaType %q, want an image index (2, %s)", r, ix.SchemaVersion, ix.MediaType, mtOCIIndex)
		}
		if link := c.nextLink(r); link != "" {
			c.Errorf("%s: paginated a handful of referrers (Link %q); the checks here expect one page", r, link)
		}
		return r, ix
	}
	wantListed := func(c *C, r *resp, ix index, want []referrer) {
		if len(ix.Manifests) != len(want) {
			c.Errorf("%s: %d descriptors, want %d", r, len(ix.Manifests), len(want))
		}
		for _, w := range want {
			i := slices.IndexFunc(ix.Manifests, func(d descriptor) bool { return d.Digest == w.want.Digest })
			if i < 0 {
				c.Errorf("%s: referrer %s missing", r, w.want.Digest)
				continue
			}
			got := ix.Manifests[i]
			if got.MediaType != w.want.MediaType || got.Size != w.want.Size || got.ArtifactType != w.want.ArtifactType ||
				!maps.Equal(got.Annotations, w.want.Annotations) {
				c.Errorf("%s: descriptor %+v, want %+v", r, got, w.want)
			}
		}
	}
	s.check(t, sect+"subject-200-all-referrers", func(c *C) {
		r, ix := list(c, subject.digest, nil)
		wantListed(c, r, ix, all)
	})
	s.check(t, sect+"artifactType-filter-OCI-Filters-Applied", func(c *C) {
		for _, at := range []string{typeA, typeB, typeIndex, "application/vnd.example.none"} {
			r, ix := list(c, subject.digest, url.Values{"artifactType": {at}})
			applied := slices.ContainsFunc(strings.Split(r.header.Get("OCI-Filters-Applied"), ","), func(f string) bool {
				return strings.TrimSpace(f) == "artifactType"
			})
			if !applied {
				c.Warnf("%s: no OCI-Filters-Applied: artifactType; the registry SHOULD filter", r)
				wantListed(c, r, ix, all)
				continue
			}
			if h := r.header.Get("OCI-Filters-Applied"); h != "artifactType" {
				c.Errorf("%s: OCI-Filters-Applied %q, the official suite wants exactly artifactType", r, h)
			}
			var want []referrer
			for _, ref := range all {
				if ref.want.ArtifactType == at {
					want = append(want, ref)
				}
			}
			wantListed(c, r, ix, want)
		}
	})
	s.check(t, sect+"absent-subject-lists-its-referrer", func(c *C) {
		r, ix := list(c, absent.digest, nil)
		wantListed(c, r, ix, []referrer{toAbsent})
	})
	s.check(t, sect+"unknown-digest-200-empty-index", func(c *C) {
		r, ix := list(c, sha256Digest([]byte("hello world")), nil)
		wantListed(c, r, ix, nil)
	})
	s.check(t, sect+"unknown-repository-200-empty-index", func(c *C) {
		// "If the registry supports the referrers API, the registry MUST NOT
		// return a 404 Not Found to a referrers API request"; the official
		// suite asks an empty repository first thing.
		r := s.do(c, req{method: http.MethodGet, url: "/v2/" + s.repo("never-pushed") + "/referrers/" + subject.digest})
		if c.wantStatus(r, http.StatusOK) {
			var ix index
			if err := json.Unmarshal(r.body, &ix); err != nil || len(ix.Manifests) != 0 {
				c.Errorf("%s: want an empty image index", r)
			}
		}
	})
	s.check(t, sect+"invalid-digest-400", func(c *C) {
		// "If the request is invalid, such as a <digest> with an invalid
		// syntax, a 400 Bad Request MUST be returned."
		for _, d := range []string{"sha256:totallywrong", "notadigest"} {
			c.wantStatus(s.do(c, req{method: http.MethodGet, url: "/v2/" + repo + "/referrers/" + d}), http.StatusBadRequest)
		}
	})
	s.check(t, sect+"deleted-referrer-unlisted", func(c *C) {
		r := s.do(c, req{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/" + layerB.m.digest})
		if r.status == http.StatusMethodNotAllowed || r.status == http.StatusBadRequest {
			c.Warnf("%s: deletion disabled", r)
			return
		}
		if !c.wantStatus(r, http.StatusAccepted) {
			return
		}
		r, ix := list(c, subject.digest, nil)
		wantListed(c, r, ix, []referrer{configA, layerA, idxRef, configB, idx2Ref})
	})
	s.check(t, sect+"other-repository-referrers-not-listed", func(c *C) {
		// "Each descriptor is of an image manifest or index in the same
		// <name> namespace".
		other := s.repo("referrers-other")
		s.pushBlob(c, other, empty)
		s.pushBlob(c, other, blobA)
		ref := mk(empty, []blob{blobA}, typeA, subject, "other repository")
		putReferrer(c, ref, subject, other)
		r, ix := list(c, subject.digest, nil)
		wantListed(c, r, ix, []referrer{configA, layerA, idxRef, configB, idx2Ref})
	})
	s.check(t, sect+"sha512-subject", func(c *C) {
		subj := subject
		subj.digest = sha512Digest(subj.data)
		ref := mk(empty, []blob{blobA}, typeA, subj, fmt.Sprintf("sha512 %s", s.run))
		putReferrer(c, ref, subj)
		r, ix := list(c, subj.digest, nil)
		wantListed(c, r, ix, []referrer{ref})
	})
}
