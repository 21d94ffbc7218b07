package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// Media types of the artifacts the workload pushes as referrers.
const (
	mediaEmpty    = "application/vnd.oci.empty.v1+json"
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	artifactType  = "application/vnd.georeg.chaos.signature"
	geoDurability = "Georeg-Geo-Durability"
)

// Recorder is an OCI client that records every operation it performs in a
// History, with what the client saw: the outcome, the region that answered,
// and whether any byte it received failed its digest or size. It is safe for
// concurrent use.
type Recorder struct {
	h *History
	m *Mesh
	c *ociclient.Client
	// local are the clients of the mesh's sites, by site name: they send
	// the site's client token.
	local map[string]*ociclient.Client
}

// NewRecorder returns a recorder for mesh m writing into h. Requests give
// up after timeout.
func NewRecorder(m *Mesh, h *History, timeout time.Duration) *Recorder {
	c := ociclient.New(timeout)
	c.HTTP.Transport = m.Transport(&http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64})
	rc := &Recorder{h: h, m: m, c: c, local: map[string]*ociclient.Client{}}
	for _, s := range m.sites {
		lc := ociclient.New(timeout)
		lc.HTTP.Transport = s.cred.Transport(&http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64})
		rc.local[s.spec.Name] = lc
	}
	return rc
}

// CloseIdle closes the recorder's idle connections, so that resource counts
// taken next do not include the nodes' side of them.
func (rc *Recorder) CloseIdle() {
	rc.c.HTTP.CloseIdleConnections()
	for _, c := range rc.local {
		c.HTTP.CloseIdleConnections()
	}
}

// client returns the client of location loc: a site's own for its local
// clients, the mesh's credential elsewhere.
func (rc *Recorder) client(loc string) *ociclient.Client {
	if c, ok := rc.local[loc]; ok {
		return c
	}
	return rc.c
}

// base returns the base URL of a location, a site (its node: its local
// clients), a "direct:<region>/<zone>" node, or a full URL.
func (rc *Recorder) base(loc string) (string, error) {
	if u, ok := rc.m.Locations[loc]; ok {
		return u, nil
	}
	if n, ok := rc.m.Sites[loc]; ok {
		return n.URL(), nil
	}
	if name, ok := strings.CutPrefix(loc, "direct:"); ok {
		if n, ok := rc.m.Node(name); ok {
			return n.URL(), nil
		}
	}
	if strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://") {
		return loc, nil
	}
	return "", fmt.Errorf("chaos: no location %q", loc)
}

// PushSpec describes one push: an image or artifact, where it goes, and how
// the client retries.
type PushSpec struct {
	Kind OpKind
	// Location is where the client is (a key of Mesh.Locations, a site's
	// name, or "direct:<region>/<zone>").
	Location string
	// Via, when set, picks the location of each request of the push anew
	// (the blobs and the manifest may go through different regions);
	// Location then only labels the operation.
	Via  func() string
	Repo string
	// Tag is the tag to push to; empty pushes by digest.
	Tag string
	// Blobs are uploaded first, then the manifest.
	Blobs    []ociclient.Blob
	Manifest []byte
	// MediaType is the manifest's media type (default: OCI image manifest).
	MediaType string
	// Subject is the manifest a referrer names.
	Subject digest.Digest
	// Chunked uploads every blob larger than 1 KiB in a session (POST,
	// PATCH, PATCH, PUT) instead of one POST.
	Chunked bool
	// GeoDurability, when above 0, asks for the push to be acknowledged
	// only once that many regions hold it.
	GeoDurability int
	// Attempts is how many times the client tries the whole push before it
	// gives up, as registry clients do (default 3).
	Attempts int
}

// Push pushes s and records the operation.
func (rc *Recorder) Push(ctx context.Context, s PushSpec) Op {
	if s.MediaType == "" {
		s.MediaType = ociclient.MediaManifest
	}
	if s.Attempts == 0 {
		s.Attempts = 3
	}
	op := Op{Kind: s.Kind, Location: s.Location, Repo: s.Repo, Tag: s.Tag, Digest: digest.FromBytes(s.Manifest),
		Start: time.Now(), Blobs: map[digest.Digest]int64{}, Subject: s.Subject}
	for _, b := range s.Blobs {
		op.Blobs[b.Digest] = int64(len(b.Data))
		op.Size += int64(len(b.Data))
	}
	op.Size += int64(len(s.Manifest))
	op.ManifestSize = int64(len(s.Manifest))
	for attempt := 1; ; attempt++ {
		op.Attempts = attempt
		err := rc.pushOnce(ctx, s, &op)
		if err == nil {
			op.Acked, op.Err = true, ""
			break
		}
		op.Err = err.Error()
		if attempt >= s.Attempts || !sleepCtx(ctx, time.Duration(attempt)*500*time.Millisecond) {
			break
		}
	}
	op.End = time.Now()
	return rc.h.Add(op)
}

func (rc *Recorder) pushOnce(ctx context.Context, s PushSpec, op *Op) error {
	c := rc.client(s.Location)
	loc := func() (string, error) {
		if s.Via != nil {
			return rc.base(s.Via())
		}
		return rc.base(s.Location)
	}
	for _, b := range s.Blobs {
		base, err := loc()
		if err != nil {
			return err
		}
		if s.Chunked && len(b.Data) > 1024 {
			err = rc.uploadChunked(ctx, c, base, loc, s.Repo, b)
		} else {
			var resp *http.Response
			resp, _, err = c.Do(ctx, http.MethodPost, base, "/v2/"+s.Repo+"/blobs/uploads/?digest="+url.QueryEscape(b.Digest.String()),
				http.Header{"Content-Type": {"application/octet-stream"}}, b.Data, http.StatusCreated)
			op.Status = status(resp, err)
		}
		if err != nil {
			return fmt.Errorf("blob %.19s: %w", b.Digest, err)
		}
	}
	base, err := loc()
	if err != nil {
		return err
	}
	ref := s.Tag
	if ref == "" {
		ref = op.Digest.String()
	}
	hdr := http.Header{"Content-Type": {s.MediaType}}
	if s.GeoDurability > 0 {
		hdr.Set(geoDurability, strconv.Itoa(s.GeoDurability))
	}
	resp, _, err := c.Do(ctx, http.MethodPut, base, "/v2/"+s.Repo+"/manifests/"+ref, hdr, s.Manifest, http.StatusCreated)
	op.Status = status(resp, err)
	if resp != nil {
		op.Region, op.Zone = resp.Header.Get("Georeg-Region"), resp.Header.Get("Georeg-Zone")
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != op.Digest.String() {
		return fmt.Errorf("manifest PUT answered Docker-Content-Digest %q, want %s", got, op.Digest)
	}
	return nil
}

// uploadChunked uploads b with client c in a session of two PATCHes and a
// PUT, starting at base; each later request goes through next() (the same base, or
// another location when the push spreads its requests). A session the
// client gives up on is cancelled (DELETE), as a careful client does, so
// that abandoned sessions in the counts are the registry's doing.
func (rc *Recorder) uploadChunked(ctx context.Context, c *ociclient.Client, base string, next func() (string, error), repo string, b ociclient.Blob) error {
	loc, err := c.StartUpload(ctx, base, repo)
	if err != nil {
		return err
	}
	// The session's URL goes to whichever listener the next request
	// uses: the traffic manager pins the session to its node by its id.
	if u, perr := url.Parse(loc); perr == nil && u.IsAbs() {
		loc = u.RequestURI()
	}
	half := len(b.Data) / 2
	patch := func(chunk []byte, off int) func(string) error {
		return func(base string) error {
			n, err := c.PatchUpload(ctx, base, loc, chunk, off)
			if err == nil {
				loc = n
			}
			return err
		}
	}
	steps := []func(base string) error{
		patch(b.Data[:half], 0),
		patch(b.Data[half:], half),
		func(base string) error { return c.FinishUpload(ctx, base, loc, b.Digest, nil) },
	}
	for _, step := range steps {
		if base, err = next(); err == nil {
			err = step(base)
		}
		if err == nil {
			if u, perr := url.Parse(loc); perr == nil && u.IsAbs() {
				loc = u.RequestURI()
			}
			continue
		}
		if !ociclient.IsStatus(err, http.StatusNotFound) {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.Do(cctx, http.MethodDelete, base, loc, nil, nil, http.StatusNoContent, http.StatusAccepted, http.StatusNotFound)
			cancel()
		}
		return err
	}
	return nil
}

// Delete deletes repo:tag through loc and records the operation. A retry
// that finds the tag gone counts as acknowledged: the first try took
// effect.
func (rc *Recorder) Delete(ctx context.Context, loc, repo, tag string) Op {
	op := Op{Kind: OpDelete, Location: loc, Repo: repo, Tag: tag, Start: time.Now()}
	for attempt := 1; ; attempt++ {
		op.Attempts = attempt
		base, err := rc.base(loc)
		var resp *http.Response
		if err == nil {
			resp, _, err = rc.client(loc).Do(ctx, http.MethodDelete, base, "/v2/"+repo+"/manifests/"+tag, nil, nil, http.StatusAccepted)
			op.Status = status(resp, err)
		}
		if resp != nil {
			op.Region, op.Zone = resp.Header.Get("Georeg-Region"), resp.Header.Get("Georeg-Zone")
		}
		if err == nil || (attempt > 1 && op.Status == http.StatusNotFound) {
			op.Acked, op.Err = true, ""
			break
		}
		op.Err = err.Error()
		if attempt >= 3 || !sleepCtx(ctx, time.Duration(attempt)*500*time.Millisecond) {
			break
		}
	}
	op.End = time.Now()
	return rc.h.Add(op)
}

// PullSpec describes one pull.
type PullSpec struct {
	// Kind is OpPull (by digest) or OpPullTag.
	Kind OpKind
	// Location is where the client is: a key of Mesh.Locations, a site's
	// name, or "direct:<region>/<zone>".
	Location string
	Repo     string
	// Ref is a tag or a digest.
	Ref string
}

// descriptor is the part of an OCI descriptor a pull needs.
type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

// manifestBlobs returns the blobs an image manifest (or an artifact
// manifest of the same shape) names.
func manifestBlobs(body []byte) ([]descriptor, error) {
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	out := []descriptor{}
	if m.Config.Digest != "" {
		out = append(out, m.Config)
	}
	return append(out, m.Layers...), nil
}

// Pull fetches a manifest and every blob it names through s.Location,
// checks every byte against its digest and size, and records the
// operation.
func (rc *Recorder) Pull(ctx context.Context, s PullSpec) Op {
	op := Op{Kind: s.Kind, Location: s.Location, Repo: s.Repo, Start: time.Now(), Attempts: 1, Blobs: map[digest.Digest]int64{}}
	if d, err := digest.Parse(s.Ref); err == nil {
		op.Digest = d
	} else {
		op.Tag = s.Ref
	}
	err := rc.pull(ctx, s, &op)
	if err != nil {
		op.Err = err.Error()
	}
	op.End = time.Now()
	return rc.h.Add(op)
}

func (rc *Recorder) pull(ctx context.Context, s PullSpec, op *Op) error {
	base, err := rc.base(s.Location)
	if err != nil {
		return err
	}
	c := rc.client(s.Location)
	hdr := http.Header{"Accept": {ociclient.MediaManifest + ", " + mediaIndex}}
	resp, body, err := c.Do(ctx, http.MethodGet, base, "/v2/"+s.Repo+"/manifests/"+s.Ref, hdr, nil, http.StatusOK)
	op.Status = status(resp, err)
	if resp != nil {
		op.Region, op.Zone = resp.Header.Get("Georeg-Region"), resp.Header.Get("Georeg-Zone")
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	got := digest.FromBytes(body)
	op.Size += int64(len(body))
	op.ManifestSize = int64(len(body))
	if named := resp.Header.Get("Docker-Content-Digest"); named != got.String() {
		op.BadBytes = true
		return fmt.Errorf("%w: manifest %s:%s from %s is %s, Docker-Content-Digest says %q", ociclient.ErrWrongBytes, s.Repo, s.Ref, op.Region, got, named)
	}
	if op.Digest != "" && got != op.Digest {
		op.BadBytes = true
		return fmt.Errorf("%w: manifest %s@%s from %s is %s", ociclient.ErrWrongBytes, s.Repo, op.Digest, op.Region, got)
	}
	op.Digest = got
	blobs, err := manifestBlobs(body)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", got, err)
	}
	for _, d := range blobs {
		bresp, data, err := c.Do(ctx, http.MethodGet, base, "/v2/"+s.Repo+"/blobs/"+d.Digest.String(), nil, nil, http.StatusOK)
		op.Status = status(bresp, err)
		if err != nil {
			by := "no answer"
			if bresp != nil {
				by = "answered by " + bresp.Header.Get("Georeg-Region") + "/" + bresp.Header.Get("Georeg-Zone")
			}
			if op.Status == http.StatusNotFound {
				op.MissingBlob = true
				return fmt.Errorf("blob %.19s of manifest %.19s served by %s/%s, %s: %w", d.Digest, got, op.Region, op.Zone, by, err)
			}
			return fmt.Errorf("blob %.19s (%s): %w", d.Digest, by, err)
		}
		op.Size += int64(len(data))
		if int64(len(data)) != d.Size || digest.FromBytes(data) != d.Digest {
			op.BadBytes = true
			return fmt.Errorf("%w: blob %s of %s from %s is %d bytes %s, want %d", ociclient.ErrWrongBytes, d.Digest, s.Repo,
				bresp.Header.Get("Georeg-Region"), len(data), digest.FromBytes(data), d.Size)
		}
		op.Blobs[d.Digest] = d.Size
	}
	return nil
}

// Referrers lists subject's referrers in repo through loc, checks the
// answer is an image index, and records the operation.
func (rc *Recorder) Referrers(ctx context.Context, loc, repo string, subject digest.Digest) Op {
	op := Op{Kind: OpReferrers, Location: loc, Repo: repo, Digest: subject, Subject: subject, Start: time.Now(), Attempts: 1}
	err := func() error {
		base, err := rc.base(loc)
		if err != nil {
			return err
		}
		resp, body, err := rc.client(loc).Do(ctx, http.MethodGet, base, "/v2/"+repo+"/referrers/"+subject.String(), nil, nil, http.StatusOK)
		op.Status = status(resp, err)
		if resp != nil {
			op.Region, op.Zone = resp.Header.Get("Georeg-Region"), resp.Header.Get("Georeg-Zone")
		}
		if err != nil {
			return err
		}
		op.Size = int64(len(body))
		var idx struct {
			MediaType string       `json:"mediaType"`
			Manifests []descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil || idx.MediaType != mediaIndex {
			return fmt.Errorf("referrers of %s: not an image index (%v): %.200s", subject, err, body)
		}
		return nil
	}()
	if err != nil {
		op.Err = err.Error()
	}
	op.End = time.Now()
	return rc.h.Add(op)
}

// status returns the HTTP status of an answer, or 0 when there was none.
func status(resp *http.Response, err error) int {
	var e *ociclient.Error
	if errors.As(err, &e) {
		return e.Status
	}
	if resp != nil {
		return resp.StatusCode
	}
	return 0
}

// sleepCtx sleeps for d and reports whether ctx is still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
