package oci

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"library/alpine", true},
		{"a", true},
		{"a-b__c.d/e_f", true},
		{"a--b", true},
		{"", false},
		{"Upper", false},
		{"a/../b", false},
		{"a//b", false},
		{"a/", false},
		{"/a", false},
		{"a___b", false},
		{"-a", false},
		{"a.", false},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrNameInvalid) {
			t.Errorf("ValidateName(%q) error %v is not ErrNameInvalid", tt.name, err)
		}
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in       string
		isDigest bool
		ok       bool
	}{
		{"latest", false, true},
		{"v1.0_rc-1", false, true},
		{"_x", false, true},
		{".x", false, false},
		{"-x", false, false},
		{strings.Repeat("t", 128), false, true},
		{strings.Repeat("t", 129), false, false},
		{"sha256:" + strings.Repeat("a", 64), true, true},
		{"sha512:" + strings.Repeat("a", 128), true, true},
		{"sha256:" + strings.Repeat("a", 63), true, false},
		{"sha256:" + strings.Repeat("A", 64), true, false},
		{"md5:" + strings.Repeat("a", 32), true, false},
		{"", false, false},
	}
	for _, tt := range tests {
		r, err := ParseReference(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseReference(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err == nil && r.IsDigest() != tt.isDigest {
			t.Errorf("ParseReference(%q).IsDigest() = %v", tt.in, r.IsDigest())
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"0-9", 0, 9, true},
		{"bytes 10-19/*", 10, 19, true},
		{"bytes=5-5", 5, 5, true},
		{"9-0", 0, 0, false},
		{"-1-5", 0, 0, false},
		{"abc", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		s, e, err := ParseContentRange(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (s != tt.start || e != tt.end)) {
			t.Errorf("ParseContentRange(%q) = %d, %d, %v", tt.in, s, e, err)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in   string
		size int64
		want ByteRange
		err  error
	}{
		{"bytes=0-9", 100, ByteRange{0, 9}, nil},
		{"bytes=90-", 100, ByteRange{90, 99}, nil},
		{"bytes=90-200", 100, ByteRange{90, 99}, nil},
		{"bytes=-10", 100, ByteRange{90, 99}, nil},
		{"bytes=-200", 100, ByteRange{0, 99}, nil},
		{"bytes=100-", 100, ByteRange{}, ErrRangeUnsatisfiable},
		{"bytes=-0", 100, ByteRange{}, ErrRangeUnsatisfiable},
		{"bytes=0-1,3-4", 100, ByteRange{}, ErrRangeIgnored},
		{"items=0-1", 100, ByteRange{}, ErrRangeIgnored},
		{"0-1", 100, ByteRange{}, ErrRangeIgnored},
		{"Bytes=0-1", 100, ByteRange{0, 1}, nil},
		{"bytes=abc", 100, ByteRange{}, ErrRangeInvalid},
		{"bytes=5-1", 100, ByteRange{}, ErrRangeInvalid},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in, tt.size)
		if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
			t.Errorf("ParseRange(%q, %d) = %v, %v; want %v, %v", tt.in, tt.size, got, err, tt.want, tt.err)
		}
	}
}

const (
	d1 = "sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:" + "2222222222222222222222222222222222222222222222222222222222222222"
)

func TestParseManifest(t *testing.T) {
	img := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
	  "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d1 + `","size":2},
	  "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + d2 + `","size":3},
	            {"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"` + d2 + `","size":3,"urls":["https://x"]}],
	  "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d1 + `","size":9}}`
	idx := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","artifactType":"a/b",
	  "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d1 + `","size":2}]}`
	tests := []struct {
		name, ct, body string
		err            error
		blobs          int
		artifactType   string
	}{
		{"oci image", MediaTypeOCIManifest, img, nil, 2, "application/vnd.oci.image.config.v1+json"},
		{"oci image no content type", "", img, nil, 2, "application/vnd.oci.image.config.v1+json"},
		{"oci index", MediaTypeOCIIndex, idx, nil, 0, "a/b"},
		{"mismatched content type", MediaTypeOCIIndex, img, ErrManifestInvalid, 0, ""},
		{"unknown media type", "application/json", `{"schemaVersion":2}`, ErrMediaTypeUnsupported, 0, ""},
		{"not json", MediaTypeOCIManifest, `{`, ErrManifestInvalid, 0, ""},
		{"trailing", MediaTypeOCIIndex, idx + "{}", ErrManifestInvalid, 0, ""},
		{"schema 1", MediaTypeOCIManifest, `{"schemaVersion":1}`, ErrManifestInvalid, 0, ""},
		{"no config", MediaTypeOCIManifest, `{"schemaVersion":2,"layers":[]}`, ErrManifestInvalid, 0, ""},
		{"bad digest", MediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}`, ErrManifestInvalid, 0, ""},
		{"negative size", MediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"` + d1 + `","size":-1}]}`, ErrManifestInvalid, 0, ""},
	}
	for _, tt := range tests {
		m, err := ParseManifest(tt.ct, []byte(tt.body))
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if got := len(m.Blobs()); got != tt.blobs {
			t.Errorf("%s: %d blobs, want %d", tt.name, got, tt.blobs)
		}
		if m.ArtifactType != tt.artifactType {
			t.Errorf("%s: artifactType %q, want %q", tt.name, m.ArtifactType, tt.artifactType)
		}
	}
}
