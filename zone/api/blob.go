package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
)

// errCorrupt means a stored copy did not match its digest. The copy has been
// removed from the store so that it can never be served; a later push, or a
// repair from another zone, brings it back.
var errCorrupt = errors.New("stored copy does not match its digest")

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
	trusted, err := h.ensureVerified(ctx, dgst)
	if errors.Is(err, errCorrupt) {
		// The corrupt copy is gone; a zone-replicated store fetches a good
		// one from another zone on the next read.
		trusted, err = h.ensureVerified(ctx, dgst)
	}
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, errCorrupt) {
		return ErrBlobUnknown.WithDetail(map[string]string{"digest": dgst.String(), "reason": err.Error()})
	}
	if err != nil {
		return err
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Docker-Content-Digest", dgst.String())
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("ETag", `"`+dgst.String()+`"`)
	br := oci.ByteRange{Start: 0, End: size - 1}
	status := http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" && size > 0 {
		br, err = oci.ParseRange(rh, size)
		if err != nil {
			e := ErrRangeInvalid.WithDetail(err.Error())
			e.Header = http.Header{"Content-Range": {fmt.Sprintf("bytes */%d", size)}}
			return e
		}
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.Start, br.End, size))
	}
	if status == http.StatusPartialContent && !trusted {
		// A range cannot be checked against the digest on its own: check the
		// whole blob first.
		if err := h.verify(ctx, dgst); err != nil {
			return ErrBlobUnknown.WithDetail(map[string]string{"digest": dgst.String(), "reason": err.Error()})
		}
		trusted = true
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
	if trusted {
		// io.CopyN over an *os.File lets net/http use sendfile.
		if _, err := io.CopyN(w, rc, length); err != nil && ctx.Err() == nil {
			h.log.Warn("blob response cut short", "digest", dgst, "err", err)
		}
		return nil
	}
	if err := copyVerified(w, rc, dgst, size); err != nil {
		if errors.Is(err, errCorrupt) {
			h.quarantine(ctx, dgst)
		}
		h.log.Error("blob response aborted", "digest", dgst, "err", err)
		// Headers are gone: cut the connection so the client sees a
		// truncated body, never a complete wrong one.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// copyVerified streams a whole blob while hashing it, holding back the last
// chunk until the digest is known to match.
func copyVerified(w io.Writer, r io.Reader, dgst digest.Digest, size int64) error {
	v := dgst.Verifier()
	bufs := [2][]byte{make([]byte, 256<<10), make([]byte, 256<<10)}
	var pending []byte
	var total int64
	for i := 0; ; i ^= 1 {
		n, err := io.ReadFull(r, bufs[i])
		if n > 0 {
			if pending != nil {
				if _, werr := w.Write(pending); werr != nil {
					return werr
				}
			}
			pending = bufs[i][:n]
			v.Write(pending)
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if total != size || !v.Verified() {
		return fmt.Errorf("%w: %s", errCorrupt, dgst)
	}
	if pending != nil {
		_, err := w.Write(pending)
		return err
	}
	return nil
}

// ensureVerified reports whether the stored copy of dgst is known to match
// its digest, hashing it first unless the node's record of verified copies
// says it is unchanged since it was written or last hashed. A corrupt copy
// is removed. Stores without stamps are never trusted; their reads are
// verified while streaming.
func (h *Handler) ensureVerified(ctx context.Context, dgst digest.Digest) (bool, error) {
	if _, ok := h.cfg.Blobs.(storage.Stamper); !ok {
		_, err := h.cfg.Blobs.Stat(ctx, dgst)
		return false, err
	}
	if err := h.verify(ctx, dgst); err != nil {
		return false, err
	}
	return true, nil
}

// verify hashes the stored copy of dgst unless it is known good, and
// quarantines it when it does not match.
func (h *Handler) verify(ctx context.Context, dgst digest.Digest) error {
	err := h.verified.Check(ctx, h.cfg.Blobs, dgst)
	if errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch) {
		h.quarantine(ctx, dgst)
		return fmt.Errorf("%w: %s: %v", errCorrupt, dgst, err)
	}
	return err
}

// stored reports whether the store held a copy of dgst already: a write
// of bytes it already holds leaves that copy as it was, so it must not be
// marked verified on the strength of the new bytes (it may have rotted).
func (h *Handler) stored(ctx context.Context, dgst digest.Digest) bool {
	_, err := h.cfg.Blobs.Stat(ctx, dgst)
	return err == nil
}

// markVerified records that the stored copy of dgst was just written from
// bytes that hashed to dgst. Callers check first that no copy was there.
func (h *Handler) markVerified(ctx context.Context, dgst digest.Digest) {
	h.verified.Mark(ctx, h.cfg.Blobs, dgst)
}

func (h *Handler) quarantine(ctx context.Context, dgst digest.Digest) {
	h.log.Error("corrupt blob copy removed from the store", "digest", dgst)
	h.verified.Forget(dgst)
	if err := h.cfg.Blobs.Delete(context.WithoutCancel(ctx), dgst); err != nil && !errors.Is(err, storage.ErrNotFound) {
		h.log.Error("removing corrupt blob copy", "digest", dgst, "err", err)
	}
}

func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	dgst, err := parseDigestParam(ref)
	if err != nil {
		return err
	}
	err = h.cfg.Meta.Apply(r.Context(), meta.Command{Op: meta.OpUnlinkBlob, Repo: name, Digest: dgst})
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
