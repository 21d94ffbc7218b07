package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ErrorCode is an OCI distribution-spec error code with the HTTP status
// georeg answers it with.
type ErrorCode struct {
	Code    string
	Message string
	Status  int
}

// The error codes of the distribution spec, plus UNAVAILABLE for a region
// that cannot accept writes (no zone majority).
var (
	ErrBlobUnknown         = ErrorCode{"BLOB_UNKNOWN", "blob unknown to registry", http.StatusNotFound}
	ErrBlobUploadInvalid   = ErrorCode{"BLOB_UPLOAD_INVALID", "blob upload invalid", http.StatusBadRequest}
	ErrBlobUploadUnknown   = ErrorCode{"BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", http.StatusNotFound}
	ErrDigestInvalid       = ErrorCode{"DIGEST_INVALID", "provided digest did not match uploaded content", http.StatusBadRequest}
	ErrManifestBlobUnknown = ErrorCode{"MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", http.StatusBadRequest}
	ErrManifestInvalid     = ErrorCode{"MANIFEST_INVALID", "manifest invalid", http.StatusBadRequest}
	ErrManifestUnknown     = ErrorCode{"MANIFEST_UNKNOWN", "manifest unknown to registry", http.StatusNotFound}
	ErrNameInvalid         = ErrorCode{"NAME_INVALID", "invalid repository name", http.StatusBadRequest}
	ErrNameUnknown         = ErrorCode{"NAME_UNKNOWN", "repository name not known to registry", http.StatusNotFound}
	ErrSizeInvalid         = ErrorCode{"SIZE_INVALID", "provided length did not match content length", http.StatusBadRequest}
	ErrUnauthorized        = ErrorCode{"UNAUTHORIZED", "authentication required", http.StatusUnauthorized}
	ErrDenied              = ErrorCode{"DENIED", "requested access to the resource is denied", http.StatusForbidden}
	ErrUnsupported         = ErrorCode{"UNSUPPORTED", "the operation is unsupported", http.StatusMethodNotAllowed}
	ErrTooManyRequests     = ErrorCode{"TOOMANYREQUESTS", "too many requests", http.StatusTooManyRequests}
	// ErrRangeInvalid answers an upload chunk that does not start where
	// the session ends (the spec's 416 on PATCH).
	ErrRangeInvalid = ErrorCode{"BLOB_UPLOAD_INVALID", "requested range not satisfiable", http.StatusRequestedRangeNotSatisfiable}
	// ErrBlobRangeInvalid answers a blob GET whose bytes Range is malformed
	// or lies outside the blob. The spec's table has no range code and its
	// codes are the only ones allowed; SIZE_INVALID says what is wrong (the
	// range does not fit the blob's size) without the upload code, which
	// would send a client looking for an upload it never started.
	ErrBlobRangeInvalid = ErrorCode{"SIZE_INVALID", "requested range not satisfiable", http.StatusRequestedRangeNotSatisfiable}
	ErrManifestTooLarge = ErrorCode{"MANIFEST_INVALID", "manifest exceeds the size limit", http.StatusRequestEntityTooLarge}
	ErrUnavailable      = ErrorCode{"UNAVAILABLE", "service unavailable", http.StatusServiceUnavailable}
	ErrInternal         = ErrorCode{"UNKNOWN", "internal error", http.StatusInternalServerError}
)

// Error is an ErrorCode with a detail for one response.
type Error struct {
	ErrorCode
	Detail any
	// Header holds extra response headers (Range on 416, Retry-After on 429).
	Header http.Header
}

// WithDetail returns the code as an error carrying detail.
func (c ErrorCode) WithDetail(detail any) *Error { return &Error{ErrorCode: c, Detail: detail} }

// WithDetailf returns the code with a formatted string detail.
func (c ErrorCode) WithDetailf(format string, args ...any) *Error {
	return c.WithDetail(fmt.Sprintf(format, args...))
}

func (e *Error) Error() string {
	if e.Detail != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// ServeError writes err in the spec's error envelope. An error that is not an
// *Error is an internal error; its text is logged by the caller, not sent.
func ServeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = ErrInternal.WithDetail(nil)
	}
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.Header().Del("Docker-Content-Digest")
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return
	}
	json.NewEncoder(w).Encode(struct {
		Errors []errorBody `json:"errors"`
	}{[]errorBody{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
}
