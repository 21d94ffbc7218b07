package api

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseRoute(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		path string
		want Route
		code string
	}{
		{"/v2/", Route{Kind: KindBase}, ""},
		{"/v2", Route{Kind: KindBase}, ""},
		{"/v2/_catalog", Route{Kind: KindCatalog}, ""},
		{"/v2/a/b/tags/list", Route{Kind: KindTags, Name: "a/b"}, ""},
		{"/v2/a/manifests/latest", Route{Kind: KindManifest, Name: "a", Ref: "latest"}, ""},
		{"/v2/a/blobs/" + d, Route{Kind: KindBlob, Name: "a", Ref: d}, ""},
		{"/v2/a/blobs/uploads/", Route{Kind: KindUpload, Name: "a"}, ""},
		{"/v2/a/blobs/uploads/xyz", Route{Kind: KindUpload, Name: "a", Ref: "xyz"}, ""},
		{"/v2/x/blobs/uploads/blobs/" + d, Route{Kind: KindBlob, Name: "x/blobs/uploads", Ref: d}, ""},
		{"/v2/manifests/manifests/v1", Route{Kind: KindManifest, Name: "manifests", Ref: "v1"}, ""},
		{"/v2/a/referrers/" + d, Route{Kind: KindReferrers, Name: "a", Ref: d}, ""},
		{"/v2/A/manifests/latest", Route{}, "NAME_INVALID"},
		{"/v2/a/../b/manifests/latest", Route{}, "NAME_INVALID"},
		{"/v2/a//b/tags/list", Route{}, "NAME_INVALID"},
		{"/v2/" + strings.Repeat("a", 256) + "/tags/list", Route{}, "NAME_INVALID"},
		{"/v2/a/whatever", Route{}, "NOT_FOUND"},
		{"/v1/a/manifests/x", Route{}, "NOT_FOUND"},
	}
	for _, tt := range tests {
		got, err := parseRoute(tt.path)
		if tt.code != "" {
			if err == nil || err.Code != tt.code {
				t.Errorf("parseRoute(%q) error = %v, want %s", tt.path, err, tt.code)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v", tt.path, got, err, tt.want)
		}
	}
}

func TestRouteAccess(t *testing.T) {
	tests := []struct {
		rt     Route
		method string
		want   Action
	}{
		{Route{Kind: KindManifest, Name: "a"}, http.MethodGet, ActionContentRead},
		{Route{Kind: KindManifest, Name: "a"}, http.MethodPut, ActionContentWrite},
		{Route{Kind: KindBlob, Name: "a"}, http.MethodDelete, ActionContentDelete},
		{Route{Kind: KindUpload, Name: "a"}, http.MethodPatch, ActionContentWrite},
		{Route{Kind: KindTags, Name: "a"}, http.MethodGet, ActionMetadataRead},
		{Route{Kind: KindCatalog}, http.MethodGet, ActionCatalogRead},
	}
	for _, tt := range tests {
		got := tt.rt.access(tt.method)
		if len(got) != 1 || got[0].Action != tt.want || got[0].Repository != tt.rt.Name {
			t.Errorf("%+v %s: access %+v, want %s", tt.rt, tt.method, got, tt.want)
		}
	}
}
