package oci

import (
	"testing"
)

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"library/alpine", "a/../b", "A", "a__b-c.d/e", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) == nil && (len(s) > MaxNameLength || s == "") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", d1, "sha512:abc", "sha256:", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("ParseReference(%q).String() = %q", s, r.String())
		}
		if r.IsDigest() && r.Digest.Validate() != nil {
			t.Fatalf("accepted invalid digest %q", s)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-9", int64(100))
	f.Add("bytes=-5", int64(3))
	f.Add("bytes=5-", int64(0))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		r, err := ParseRange(h, size)
		if err != nil {
			return
		}
		if r.Start < 0 || r.End < r.Start || r.End >= size {
			t.Fatalf("ParseRange(%q, %d) = %+v outside the blob", h, size, r)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("0-9")
	f.Add("bytes 1-2/3")
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := ParseContentRange(s)
		if err == nil && (start < 0 || end < start) {
			t.Fatalf("ParseContentRange(%q) = %d, %d", s, start, end)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add(MediaTypeOCIManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"`+d1+`","size":1},"layers":[]}`))
	f.Add(MediaTypeOCIIndex, []byte(`{"schemaVersion":2,"manifests":[]}`))
	f.Add("", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		m, err := ParseManifest(ct, body)
		if err != nil {
			return
		}
		if !SupportedMediaType(m.MediaType) {
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		for _, d := range append(m.Blobs(), m.Manifests...) {
			if d.Digest.Validate() != nil || d.Size < 0 {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
	})
}
