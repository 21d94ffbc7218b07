package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// DataLocationHeader is the request header with which the traffic manager
// asks a node to answer a blob GET with a redirect to the node's data
// endpoint for clients of the named location, rather than with the bytes.
const DataLocationHeader = "Georeg-Data-Location"

// DataRedirectHeader marks a 307 whose Location is a node's data endpoint,
// an absolute URL the traffic manager passes on unchanged.
const DataRedirectHeader = "Georeg-Data-Redirect"

// DefaultDataRedirectMinBytes is Config.DataRedirectMinBytes's default:
// below 1 MiB, relaying a blob through the endpoint costs less than the
// redirect's extra request (a round trip to the endpoint and a connection
// to the data endpoint).
const DefaultDataRedirectMinBytes = 1 << 20

// SignatureParam is the query parameter that carries a signed blob URL's
// signature.
const SignatureParam = "georeg-sig"

// BlobSigner signs and checks the URLs of blob downloads on data
// endpoints. Both methods are safe for concurrent use.
type BlobSigner interface {
	// SignBlobURL returns the query that lets the caller of r, already
	// authorized to read it, download the blob at path for a short while.
	SignBlobURL(ctx context.Context, r *http.Request, path string) (url.Values, error)
	// VerifyBlobURL checks a request carrying such a query, in place of
	// Authorizer; an *Error (DENIED) goes to the client.
	VerifyBlobURL(ctx context.Context, r *http.Request, repo string) error
}

// IsSignedBlobRead reports whether r is a GET or HEAD of a blob with a
// signed URL: the only requests a data endpoint serves.
func IsSignedBlobRead(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	rt, err := parseRoute(r.URL.Path)
	return err == nil && rt.Kind == KindBlob && r.URL.Query().Has(SignatureParam)
}

// dataURL returns where a client of location downloads dgst of name from
// this node, signed for the caller of r, or "" when the handler should
// serve the bytes itself (no data endpoint, no key).
func (h *Handler) dataURL(r *http.Request, location, name string, dgst digest.Digest) string {
	if h.cfg.Signer == nil || len(h.cfg.DataEndpoints) == 0 {
		return ""
	}
	base, ok := h.cfg.DataEndpoints[location]
	if !ok {
		if base, ok = h.cfg.DataEndpoints[""]; !ok {
			return ""
		}
	}
	path := "/v2/" + name + "/blobs/" + dgst.String()
	q, err := h.cfg.Signer.SignBlobURL(r.Context(), r, path)
	if err != nil {
		h.log.Debug("cannot sign a blob URL; serving the bytes", "err", err)
		return ""
	}
	return strings.TrimSuffix(base, "/") + path + "?" + q.Encode()
}
