package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
)

// resolve turns a manifest reference into a digest, reading the tag when it
// is one.
func (h *Handler) resolve(name string, ref oci.Reference) (digest.Digest, error) {
	if ref.IsDigest() {
		return ref.Digest, nil
	}
	t, err := h.cfg.Meta.Tag(name, ref.Tag)
	if errors.Is(err, meta.ErrManifestUnknown) {
		return "", ErrManifestUnknown.WithDetail(map[string]string{"tag": ref.Tag})
	}
	return t.Digest, err
}

// parseRef parses a manifest reference from the URL. A malformed digest is
// DIGEST_INVALID; a malformed tag can name no manifest, so reads answer
// MANIFEST_UNKNOWN and writes MANIFEST_INVALID.
func parseRef(s string, write bool) (oci.Reference, error) {
	ref, err := oci.ParseReference(s)
	switch {
	case err == nil:
		return ref, nil
	case errors.Is(err, oci.ErrDigestInvalid):
		return ref, ErrDigestInvalid.WithDetail(err.Error())
	case write:
		return ref, ErrManifestInvalid.WithDetail(err.Error())
	default:
		return ref, ErrManifestUnknown.WithDetail(err.Error())
	}
}

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, name, refStr string) error {
	ref, err := parseRef(refStr, false)
	if err != nil {
		return err
	}
	if err := h.settle(r.Context()); err != nil {
		return err
	}
	rec, err := h.lookupManifest(name, ref)
	var e *Error
	if errors.As(err, &e) && e.Code == ErrManifestUnknown.Code && h.cfg.ReadThrough != nil {
		switch ferr := h.cfg.ReadThrough.FetchManifest(r.Context(), name, ref.String()); {
		case ferr == nil:
			rec, err = h.lookupManifest(name, ref)
		case errors.Is(ferr, storage.ErrNotFound):
			noteUnasked(w, ferr)
		default:
			// A region may hold it but could not deliver it yet, or
			// could not be asked: "unknown" would be a guess.
			return unavailable(ferr)
		}
	}
	if err != nil {
		return err
	}
	dgst := rec.Digest
	if dgst.Algorithm().FromBytes(rec.Content) != dgst {
		h.log.Error("stored manifest does not match its digest", "repo", name, "digest", dgst)
		return fmt.Errorf("stored manifest %s of %s does not match its digest", dgst, name)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", rec.MediaType)
	hdr.Set("Docker-Content-Digest", dgst.String())
	hdr.Set("Content-Length", strconv.Itoa(len(rec.Content)))
	hdr.Set("ETag", `"`+dgst.String()+`"`)
	if r.Method == http.MethodHead {
		return nil
	}
	w.Write(rec.Content)
	return nil
}

func (h *Handler) lookupManifest(name string, ref oci.Reference) (meta.ManifestRecord, error) {
	dgst, err := h.resolve(name, ref)
	if err != nil {
		return meta.ManifestRecord{}, err
	}
	rec, err := h.cfg.Meta.Manifest(name, dgst)
	if errors.Is(err, meta.ErrManifestUnknown) {
		return rec, ErrManifestUnknown.WithDetail(map[string]string{"digest": dgst.String()})
	}
	return rec, err
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, name, refStr string) error {
	ref, err := parseRef(refStr, true)
	if err != nil {
		return err
	}
	regions, err := h.geoDurability(r)
	if err != nil {
		return err
	}
	limit := h.cfg.MaxManifestBytes
	if r.ContentLength > limit {
		return ErrManifestTooLarge.WithDetailf("%d bytes; the limit is %d", r.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrSizeInvalid.WithDetail(err.Error())
		}
		return err
	}
	if int64(len(body)) > limit {
		return ErrManifestTooLarge.WithDetailf("more than %d bytes", limit)
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			ct = mt
		}
	}
	m, err := oci.ParseManifest(ct, body)
	if err != nil {
		return ErrManifestInvalid.WithDetail(err.Error())
	}
	dgst := digest.FromBytes(body)
	if ref.IsDigest() {
		if got := ref.Digest.Algorithm().FromBytes(body); got != ref.Digest {
			return ErrDigestInvalid.WithDetailf("manifest content is %s, the URL says %s", got, ref.Digest)
		}
		dgst = ref.Digest
	}
	cmd := meta.PutManifest{
		Repo:    name,
		Tag:     ref.Tag,
		Time:    time.Now().UTC(),
		Request: requestInfo(r),
		Manifest: meta.ManifestRecord{
			Digest:       dgst,
			MediaType:    m.MediaType,
			Size:         int64(len(body)),
			ArtifactType: m.ArtifactType,
			Annotations:  m.Annotations,
			Content:      body,
		},
	}
	if m.Subject != nil {
		cmd.Manifest.Subject = m.Subject.Digest
	}
	for _, b := range m.Blobs() {
		if size, err := h.cfg.Meta.BlobLink(name, b.Digest); err == nil && size != b.Size {
			return ErrManifestInvalid.WithDetailf("descriptor of %s says %d bytes; the blob has %d", b.Digest, b.Size, size)
		}
		cmd.Requires = append(cmd.Requires, b.Digest)
	}
	for _, c := range m.Manifests {
		cmd.RequiresManifests = append(cmd.RequiresManifests, c.Digest)
	}
	err = h.cfg.Meta.Apply(r.Context(), cmd)
	var missing *meta.MissingContentError
	if errors.As(err, &missing) && h.cfg.ReadThrough != nil {
		// Blobs or child manifests pushed through another region: fetch
		// them from there, then try once more.
		ferr := h.fetchMissing(r.Context(), name, missing.Digests, cmd.RequiresManifests)
		// A peer that could not be asked in time (slow on a loaded host,
		// electing a leader) may hold what the client pushed through it a
		// moment ago: ask again before answering.
		for try := 1; try < fetchTries && ferr != nil && !absentEverywhere(ferr); try++ {
			select {
			case <-r.Context().Done():
				return r.Context().Err()
			case <-time.After(fetchRetryPause):
			}
			ferr = h.fetchMissing(r.Context(), name, missing.Digests, cmd.RequiresManifests)
		}
		if ferr != nil && !errors.Is(ferr, storage.ErrNotFound) {
			// A region holds it but could not deliver it yet: "unknown"
			// would fail for good a push whose blobs another region
			// acknowledged, where 503 makes the client try again.
			return unavailable(ferr)
		}
		if ferr == nil {
			err = h.cfg.Meta.Apply(r.Context(), cmd)
		}
	}
	if errors.As(err, &missing) {
		return ErrManifestBlobUnknown.WithDetail(map[string]any{"digests": missing.Digests})
	}
	if err != nil {
		return err
	}
	if err := h.waitGeoDurable(r, name, dgst, regions); err != nil {
		return err
	}
	if m.Subject != nil {
		w.Header().Set("OCI-Subject", m.Subject.Digest.String())
	}
	return created(w, "/v2/"+name+"/manifests/"+dgst.String(), dgst)
}

// fetchTries is how many times a manifest push reads its missing content
// through while a region could not be asked or could not deliver,
// fetchRetryPause the pause between tries.
const (
	fetchTries      = 3
	fetchRetryPause = 200 * time.Millisecond
)

// fetchMissing reads through the blobs and child manifests a manifest
// needs from the regions that hold them, and returns the first failure.
func (h *Handler) fetchMissing(ctx context.Context, name string, missing, manifests []digest.Digest) error {
	isManifest := map[digest.Digest]bool{}
	for _, d := range manifests {
		isManifest[d] = true
	}
	for _, d := range missing {
		var err error
		if isManifest[d] {
			err = h.cfg.ReadThrough.FetchManifest(ctx, name, d.String())
		} else {
			err = h.cfg.ReadThrough.FetchBlob(ctx, name, d)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	return nil
}

// absentEverywhere reports whether a read-through error says that no
// region holds the content: every peer region was asked and answered.
func absentEverywhere(err error) bool {
	return errors.Is(err, storage.ErrNotFound) && len(unaskedRegions(err)) == 0
}

func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, name, refStr string) error {
	ref, err := parseRef(refStr, false)
	if err != nil {
		return err
	}
	var cmd meta.Command = meta.DeleteManifest{Repo: name, Digest: ref.Digest, Time: time.Now().UTC(), Request: requestInfo(r)}
	if !ref.IsDigest() {
		cmd = meta.DeleteTag{Repo: name, Tag: ref.Tag, Time: time.Now().UTC(), Request: requestInfo(r)}
	}
	err = h.cfg.Meta.Apply(r.Context(), cmd)
	if errors.Is(err, meta.ErrManifestUnknown) {
		return ErrManifestUnknown.WithDetail(map[string]string{"reference": ref.String()})
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// requestInfo describes r for webhook events.
func requestInfo(r *http.Request) *meta.RequestInfo {
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		id = uuid.NewString()
	}
	return &meta.RequestInfo{ID: id, Host: r.Host, Method: r.Method, UserAgent: r.UserAgent()}
}

// geoDurability returns how many regions a push asks to hold the manifest
// before it is acknowledged: the Georeg-Geo-Durability header, else the
// registry's MinRegions. A malformed header is refused before anything is
// stored.
func (h *Handler) geoDurability(r *http.Request) (int, error) {
	n := h.cfg.MinRegions
	if v := r.Header.Get(GeoDurabilityHeader); v != "" {
		x, err := strconv.Atoi(v)
		if err != nil || x < 1 {
			return 0, ErrManifestInvalid.WithDetailf("%s: want a number of regions >= 1, got %q", GeoDurabilityHeader, v)
		}
		n = x
	}
	return n, nil
}

// waitGeoDurable holds the acknowledgement of a push until n regions hold
// the manifest. The manifest stays committed here either way; a client that
// gets 503 may retry the PUT, which is idempotent.
func (h *Handler) waitGeoDurable(r *http.Request, name string, dgst digest.Digest, n int) error {
	if n <= 1 || h.cfg.GeoDurability == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.GeoTimeout)
	defer cancel()
	return h.cfg.GeoDurability.WaitReplicated(ctx, name, dgst, n)
}
