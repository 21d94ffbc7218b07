package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
)

func parseDigestParam(s string) (digest.Digest, error) {
	d, err := oci.ParseDigest(s)
	if err != nil {
		return "", ErrDigestInvalid.WithDetail(err.Error())
	}
	return d, nil
}

func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	dgst, err := parseDigestParam(ref)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if err := h.settle(ctx); err != nil {
		return err
	}
	size, err := h.cfg.Meta.BlobLink(name, dgst)
	// HEAD is how clients ask "must I upload this?": answering it from other
	// regions would make every push pay a round trip per layer.
	if errors.Is(err, meta.ErrBlobUnknown) && h.cfg.ReadThrough != nil && r.Method == http.MethodGet {
		switch ferr := h.cfg.ReadThrough.FetchBlob(ctx, name, dgst); {
		case ferr == nil:
			size, err = h.cfg.Meta.BlobLink(name, dgst)
		case errors.Is(ferr, storage.ErrNotFound):
			noteUnasked(w, ferr)
		default:
			return unavailable(ferr)
		}
	}
	if errors.Is(err, meta.ErrBlobUnknown) {
		return ErrBlobUnknown.WithDetail(map[string]string{"digest": dgst.String()})
	}
	if err != nil {
		return err
	}
	// The blob layer owns the bytes' integrity: it hashes the copy unless
	// it knows it good, and replaces a corrupt one, before anything is sent.
	if err := h.cfg.Blobs.Check(ctx, dgst); err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrCorrupt) {
			return ErrBlobUnknown.WithDetail(map[string]string{"digest": dgst.String(), "reason": err.Error()})
		}
		return err
	}
	hdr := w.Header()
	if loc, ok := r.Header[DataLocationHeader]; ok && r.Method == http.MethodGet && len(loc) == 1 && size >= h.cfg.DataRedirectMinBytes && !IsSignedBlobRead(r) {
		// The traffic manager asks for a redirect, now that the blob is
		// known to be here and good: the client fetches the bytes from
		// this node's data endpoint, not through the endpoint's relay. A
		// signed URL sent through the endpoint is served here: its caller
		// showed no credentials to sign a new one for.
		if u := h.dataURL(r, loc[0], name, dgst); u != "" {
			hdr.Set("Location", u)
			hdr.Set(DataRedirectHeader, "1")
			hdr.Set("Docker-Content-Digest", dgst.String())
			hdr.Set("Content-Length", "0")
			hdr.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return nil
		}
	}
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Docker-Content-Digest", dgst.String())
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("ETag", `"`+dgst.String()+`"`)
	br := oci.ByteRange{Start: 0, End: size - 1}
	status := http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" && size > 0 {
		switch part, err := oci.ParseRange(rh, size); {
		case errors.Is(err, oci.ErrRangeIgnored):
			// Another unit, or several ranges: the whole blob (RFC 9110).
		case err != nil:
			e := ErrBlobRangeInvalid.WithDetail(map[string]any{"range": rh, "size": size, "reason": err.Error()})
			e.Header = http.Header{"Content-Range": {fmt.Sprintf("bytes */%d", size)}}
			return e
		default:
			br = part
			status = http.StatusPartialContent
			hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.Start, br.End, size))
		}
	}
	length := br.Length()
	if size == 0 {
		length = 0
	}
	hdr.Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	rc, err := h.cfg.Blobs.Open(ctx, dgst, br.Start)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.WriteHeader(status)
	// A copy cut short leaves the body shorter than Content-Length, which
	// the client sees as a broken transfer.
	if err := h.sendBody(w, rc, length); err != nil && ctx.Err() == nil {
		h.log.Warn("blob response cut short", "digest", dgst, "client", h.clientAddr(r), "err", err)
	}
	return nil
}

// sendChunk is how much of a blob's body one write deadline covers: a
// client must take 64 KiB per BodyIdleTimeout (2 KiB/s at the default
// 30 s) or lose the connection, rather than hold it and its file open
// for ever by reading nothing.
const sendChunk = 64 << 10

// sendBody copies length bytes of rc to w in chunks, each with a write
// deadline BodyIdleTimeout ahead. io.CopyN over an *os.File still lets
// net/http use sendfile for each chunk.
func (h *Handler) sendBody(w http.ResponseWriter, rc io.Reader, length int64) error {
	if h.cfg.BodyIdleTimeout < 0 {
		_, err := io.CopyN(w, rc, length)
		return err
	}
	rctl := http.NewResponseController(w)
	defer rctl.SetWriteDeadline(time.Time{}) // the connection may serve another request
	for length > 0 {
		if err := rctl.SetWriteDeadline(time.Now().Add(h.cfg.BodyIdleTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		n, err := io.CopyN(w, rc, min(length, sendChunk))
		length -= n
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	dgst, err := parseDigestParam(ref)
	if err != nil {
		return err
	}
	err = h.cfg.Meta.Apply(r.Context(), meta.UnlinkBlob{Repo: name, Digest: dgst})
	if errors.Is(err, meta.ErrBlobUnknown) {
		return ErrBlobUnknown.WithDetail(map[string]string{"digest": dgst.String()})
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
