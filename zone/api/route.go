package api

import (
	"net/http"
	"strings"

	"github.com/georeg/georeg/base/oci"
)

// Kind names the resource a request addresses.
type Kind int

// The resources of the distribution API.
const (
	KindBase Kind = iota
	KindCatalog
	KindTags
	KindManifest
	KindBlob
	KindUpload
	KindReferrers
)

// Route is a parsed /v2/ request path.
type Route struct {
	Kind Kind
	// Name is the repository, validated against the grammar.
	Name string
	// Ref is the manifest reference, blob or subject digest, or upload ID
	// (empty when starting an upload).
	Ref string
}

// Action is what a request does to a repository, after ACR's repository
// permissions.
type Action string

// Actions a request may need.
const (
	ActionContentRead    Action = "content/read"
	ActionContentWrite   Action = "content/write"
	ActionContentDelete  Action = "content/delete"
	ActionMetadataRead   Action = "metadata/read"
	ActionMetadataWrite  Action = "metadata/write"
	ActionCatalogRead    Action = "catalog/read"
	ActionRegistryAccess Action = "registry/access"
)

// Access is the permission one request needs.
type Access struct {
	Repository string
	Action     Action
}

// parseRoute splits a /v2/ path. Repository names may contain slashes and
// even path elements named "blobs" or "manifests", so the resource is read
// from the end of the path, where its shape is fixed.
func parseRoute(path string) (Route, *Error) {
	rest, ok := strings.CutPrefix(path, "/v2")
	if !ok {
		return Route{}, ErrNotFound()
	}
	if rest == "" || rest == "/" {
		return Route{Kind: KindBase}, nil
	}
	rest = rest[1:]
	if rest == "_catalog" {
		return Route{Kind: KindCatalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var rt Route
	var nameEnd int
	switch {
	case n >= 3 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		rt, nameEnd = Route{Kind: KindUpload, Ref: segs[n-1]}, n-3
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		rt, nameEnd = Route{Kind: KindTags}, n-2
	case n >= 3 && segs[n-2] == "manifests":
		rt, nameEnd = Route{Kind: KindManifest, Ref: segs[n-1]}, n-2
	case n >= 3 && segs[n-2] == "blobs":
		rt, nameEnd = Route{Kind: KindBlob, Ref: segs[n-1]}, n-2
	case n >= 3 && segs[n-2] == "referrers":
		rt, nameEnd = Route{Kind: KindReferrers, Ref: segs[n-1]}, n-2
	default:
		return Route{}, ErrNotFound()
	}
	rt.Name = strings.Join(segs[:nameEnd], "/")
	if err := oci.ValidateName(rt.Name); err != nil {
		return Route{}, ErrNameInvalid.WithDetail(err.Error())
	}
	return rt, nil
}

// ErrNotFound is the answer to a path outside the API.
func ErrNotFound() *Error {
	return &Error{ErrorCode: ErrorCode{"NOT_FOUND", "no such API endpoint", http.StatusNotFound}}
}

// access returns what a request on rt with method needs.
func (rt Route) access(method string) []Access {
	read := method == http.MethodGet || method == http.MethodHead
	switch rt.Kind {
	case KindBase:
		return nil
	case KindCatalog:
		return []Access{{Action: ActionCatalogRead}}
	case KindTags, KindReferrers:
		return []Access{{rt.Name, ActionMetadataRead}}
	case KindManifest, KindBlob:
		switch {
		case read:
			return []Access{{rt.Name, ActionContentRead}}
		case method == http.MethodDelete:
			return []Access{{rt.Name, ActionContentDelete}}
		default:
			return []Access{{rt.Name, ActionContentWrite}}
		}
	case KindUpload:
		return []Access{{rt.Name, ActionContentWrite}}
	}
	return nil
}
