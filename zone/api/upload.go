package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/zone/upload"
)

func uploadLocation(name, id string) string { return "/v2/" + name + "/blobs/uploads/" + id }
func blobLocation(name string, d digest.Digest) string {
	return "/v2/" + name + "/blobs/" + d.String()
}

// rangeHeader is the Range an upload reports: the inclusive range of bytes
// received. An empty session reports "0-0", as registries have always done
// and clients expect.
func rangeHeader(size int64) string {
	return fmt.Sprintf("0-%d", max(size-1, 0))
}

func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, name string) error {
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		dgst, err := parseDigestParam(mount)
		if err != nil {
			return err
		}
		if ok, err := h.mount(ctx, r, name, dgst, q.Get("from")); err != nil {
			return err
		} else if ok {
			return created(w, blobLocation(name, dgst), dgst)
		}
		// Not mountable: the spec says to fall back to a new session.
	}
	if d := q.Get("digest"); d != "" {
		dgst, err := parseDigestParam(d)
		if err != nil {
			return err
		}
		if err := h.putMonolithic(ctx, r, name, dgst); err != nil {
			return err
		}
		return created(w, blobLocation(name, dgst), dgst)
	}
	client := h.clientAddr(r)
	s, err := h.cfg.Uploads.StartFor(name, client)
	switch {
	case errors.Is(err, upload.ErrTooMany):
		e := ErrTooManyRequests.WithDetail("too many open upload sessions on this node; finish or cancel some")
		e.Header = http.Header{"Retry-After": {"10"}}
		return e
	case errors.Is(err, upload.ErrTooManyForClient):
		e := ErrTooManyRequests.WithDetail(map[string]string{"client": client,
			"reason": "this client holds too many open upload sessions; finish or cancel some (idle ones expire)"})
		e.Header = http.Header{"Retry-After": {"10"}}
		return e
	}
	if err != nil {
		return err
	}
	return uploadAccepted(w, http.StatusAccepted, name, s.ID, 0)
}

// mount links a blob of another repository into name when the client may
// read it there and the node holds it.
func (h *Handler) mount(ctx context.Context, r *http.Request, name string, dgst digest.Digest, from string) (bool, error) {
	if from == "" || oci.ValidateName(from) != nil {
		return false, nil
	}
	if a := h.cfg.Authorizer; a != nil {
		if a.Authorize(ctx, r, []Access{{from, ActionContentRead}}) != nil {
			return false, nil
		}
	}
	// The source link may have been written through another zone a moment
	// ago: settle first, or a follower would refuse a mount the client can
	// see is possible (and the client would upload the bytes again).
	if err := h.settle(ctx); err != nil {
		return false, nil
	}
	size, err := h.cfg.Meta.BlobLink(from, dgst)
	if err != nil {
		return false, nil
	}
	if _, err := h.cfg.Blobs.Stat(ctx, dgst); err != nil {
		return false, nil
	}
	if err := h.link(ctx, name, dgst, size); err != nil {
		return false, err
	}
	return true, nil
}

func (h *Handler) link(ctx context.Context, name string, dgst digest.Digest, size int64) error {
	return h.cfg.Meta.Apply(ctx, meta.LinkBlob{Repo: name, Digest: dgst, Size: size})
}

// linkStored links a blob a client just stored into name, and tells early
// replication (not a mount's: its bytes were here before, and so, most
// likely, in the other regions).
func (h *Handler) linkStored(ctx context.Context, name string, dgst digest.Digest, size int64) error {
	if err := h.link(ctx, name, dgst, size); err != nil {
		return err
	}
	if e := h.cfg.EarlyReplication; e != nil {
		e.BlobLanded(name, dgst, size)
	}
	return nil
}

// putMonolithic stores a whole blob sent in one request.
func (h *Handler) putMonolithic(ctx context.Context, r *http.Request, name string, dgst digest.Digest) error {
	n, err := h.cfg.Blobs.Put(ctx, dgst, r.ContentLength, r.Body)
	if err != nil {
		return blobWriteError(err, dgst)
	}
	return h.linkStored(ctx, name, dgst, n)
}

func blobWriteError(err error, dgst digest.Digest) error {
	switch {
	case errors.Is(err, storage.ErrDigestMismatch), errors.Is(err, upload.ErrDigestMismatch):
		return ErrDigestInvalid.WithDetail(map[string]string{"digest": dgst.String(), "reason": err.Error()})
	case errors.Is(err, storage.ErrSizeMismatch), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, upload.ErrShortBody), errors.Is(err, upload.ErrLongBody):
		return ErrSizeInvalid.WithDetail(err.Error())
	}
	return err
}

// busyError answers a request on an upload session that another request
// is still writing to (a chunk arriving): 409 Conflict at once, with the
// session's Range as it stands without that chunk, rather than queueing
// behind a client that may be slow. The client retries, or asks the
// status, once its other request is over.
func busyError(name string, s *upload.Session, size int64) *Error {
	e := ErrBlobUploadInvalid.WithDetail(map[string]string{"uuid": s.ID,
		"reason": "another request on this upload session is in progress; retry when it is over"})
	e.Status = http.StatusConflict
	e.Header = http.Header{
		"Location":           {uploadLocation(name, s.ID)},
		"Range":              {rangeHeader(size)},
		"Docker-Upload-UUID": {s.ID},
	}
	return e
}

func uploadAccepted(w http.ResponseWriter, status int, name, id string, size int64) error {
	hdr := w.Header()
	hdr.Set("Location", uploadLocation(name, id))
	hdr.Set("Range", rangeHeader(size))
	hdr.Set("Docker-Upload-UUID", id)
	hdr.Set("Content-Length", "0")
	w.WriteHeader(status)
	return nil
}

func created(w http.ResponseWriter, location string, dgst digest.Digest) error {
	hdr := w.Header()
	hdr.Set("Location", location)
	hdr.Set("Docker-Content-Digest", dgst.String())
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (h *Handler) session(name, id string) (*upload.Session, error) {
	s, err := h.cfg.Uploads.Get(name, id)
	if errors.Is(err, upload.ErrUnknown) {
		return nil, ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
	}
	return s, err
}

func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, name, id string) error {
	s, err := h.session(name, id)
	if err != nil {
		return err
	}
	size, err := h.cfg.Uploads.Size(s)
	if err != nil {
		return ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
	}
	return uploadAccepted(w, http.StatusNoContent, name, id, size)
}

// appendChunk writes the request body to the session, honouring an optional
// Content-Range. It answers 416 with the session's current Range when the
// chunk does not start where the session ends.
func (h *Handler) appendChunk(r *http.Request, name string, s *upload.Session) (int64, error) {
	start, length := int64(-1), r.ContentLength
	if cr := r.Header.Get("Content-Range"); cr != "" {
		a, b, err := oci.ParseContentRange(cr)
		if err != nil {
			return 0, h.rangeError(name, s, err)
		}
		start = a
		if length >= 0 && length != b-a+1 {
			return 0, ErrSizeInvalid.WithDetailf("Content-Range %s is %d bytes, Content-Length is %d", cr, b-a+1, length)
		}
		length = b - a + 1
	}
	size, err := h.cfg.Uploads.Append(r.Context(), s, start, length, r.Body)
	switch {
	case errors.Is(err, upload.ErrBusy):
		return 0, busyError(name, s, size)
	case errors.Is(err, upload.ErrOutOfOrder):
		return 0, h.rangeError(name, s, err)
	case errors.Is(err, upload.ErrUnknown):
		return 0, ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": s.ID})
	case err != nil:
		return 0, blobWriteError(err, "")
	}
	return size, nil
}

func (h *Handler) rangeError(name string, s *upload.Session, cause error) error {
	size, _ := h.cfg.Uploads.Size(s)
	e := ErrRangeInvalid.WithDetail(cause.Error())
	e.Header = http.Header{
		"Location":           {uploadLocation(name, s.ID)},
		"Range":              {rangeHeader(size)},
		"Docker-Upload-UUID": {s.ID},
	}
	return e
}

func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, name, id string) error {
	s, err := h.session(name, id)
	if err != nil {
		return err
	}
	size, err := h.appendChunk(r, name, s)
	if err != nil {
		return err
	}
	return uploadAccepted(w, http.StatusAccepted, name, id, size)
}

func (h *Handler) putUpload(w http.ResponseWriter, r *http.Request, name, id string) error {
	s, err := h.session(name, id)
	if err != nil {
		return err
	}
	dgst, err := parseDigestParam(r.URL.Query().Get("digest"))
	if err != nil {
		return err
	}
	if stored, err := h.putWhole(r, name, s, dgst); stored || err != nil {
		if err != nil {
			return err
		}
		return created(w, blobLocation(name, dgst), dgst)
	}
	if r.ContentLength != 0 {
		if _, err := h.appendChunk(r, name, s); err != nil {
			return err
		}
	}
	path, size, err := h.cfg.Uploads.Finish(s, dgst)
	if err != nil {
		if errors.Is(err, upload.ErrUnknown) {
			return ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
		}
		if errors.Is(err, upload.ErrBusy) {
			size, _ := h.cfg.Uploads.Size(s)
			return busyError(name, s, size)
		}
		return blobWriteError(err, dgst)
	}
	defer h.cfg.Uploads.Remove(s)
	ctx := r.Context()
	if err := h.ingest(ctx, dgst, size, path); err != nil {
		return blobWriteError(err, dgst)
	}
	if err := h.linkStored(ctx, name, dgst, size); err != nil {
		return err
	}
	return created(w, blobLocation(name, dgst), dgst)
}

// putWhole stores the body of a PUT that carries the whole blob, on a
// session that holds nothing yet, the way putMonolithic does: straight into
// the blob store, which streams it to the other zones while it arrives
// instead of after it was staged and synced here. It returns false when the
// request is not such a PUT (the session holds bytes, or the body is empty
// or positioned by Content-Range) and the caller stages it as usual.
func (h *Handler) putWhole(r *http.Request, name string, s *upload.Session, dgst digest.Digest) (bool, error) {
	if r.ContentLength == 0 || r.Header.Get("Content-Range") != "" {
		return false, nil
	}
	ctx := r.Context()
	var n int64
	stored, err := h.cfg.Uploads.StoreWhole(s, func() error {
		var err error
		n, err = h.cfg.Blobs.Put(ctx, dgst, r.ContentLength, r.Body)
		return err
	})
	switch {
	case errors.Is(err, upload.ErrUnknown):
		return false, ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": s.ID})
	case errors.Is(err, upload.ErrBusy):
		size, _ := h.cfg.Uploads.Size(s)
		return false, busyError(name, s, size)
	case !stored:
		return false, nil
	case errors.Is(err, storage.ErrDigestMismatch):
		// As when a staged session fails its digest: the session is over.
		h.cfg.Uploads.Remove(s)
		return true, blobWriteError(err, dgst)
	case err != nil:
		return true, blobWriteError(err, dgst)
	}
	return true, h.linkStored(ctx, name, dgst, n)
}

// ingest moves a finished upload into the blob store, by rename when the
// store can take the file.
func (h *Handler) ingest(ctx context.Context, dgst digest.Digest, size int64, path string) error {
	if fi, ok := h.cfg.Blobs.(storage.FileIngester); ok {
		return fi.IngestFile(ctx, dgst, size, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = h.cfg.Blobs.Put(ctx, dgst, size, f)
	return err
}

// cancelUpload answers 204 when the session is gone, and 202 Accepted when
// a request was still writing to it: the session is cancelled at once (no
// request can use it any more, its slot is free) and its files go when
// that request ends, which then fails with BLOB_UPLOAD_UNKNOWN.
func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, name, id string) error {
	status := http.StatusNoContent
	switch err := h.cfg.Uploads.Cancel(name, id); {
	case errors.Is(err, upload.ErrUnknown):
		return ErrBlobUploadUnknown.WithDetail(map[string]string{"uuid": id})
	case errors.Is(err, upload.ErrBusy):
		status = http.StatusAccepted
	case err != nil:
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
	return nil
}
