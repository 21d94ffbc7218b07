package meta

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(Config{Path: filepath.Join(t.TempDir(), "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func manifest(content string, subject digest.Digest) *ManifestRecord {
	return &ManifestRecord{
		Digest: digest.FromString(content), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size: int64(len(content)), Content: []byte(content), Subject: subject, ArtifactType: "a/b",
	}
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	blob := digest.FromString("layer")
	m1 := manifest("m1", "")
	sig := manifest("sig", m1.Digest)
	at := time.Unix(100, 0)
	tests := []struct {
		name string
		cmd  Command
		want error
	}{
		{"manifest before its blob", PutManifest{Time: at, Repo: "r", Tag: "v1", Manifest: *m1, Requires: []digest.Digest{blob}}, &MissingContentError{}},
		{"link blob", LinkBlob{Repo: "r", Digest: blob, Size: 5}, nil},
		{"manifest", PutManifest{Time: at, Repo: "r", Tag: "v1", Manifest: *m1, Requires: []digest.Digest{blob}}, nil},
		{"index missing child", PutManifest{Time: at, Repo: "r", Manifest: *manifest("idx", ""), RequiresManifests: []digest.Digest{digest.FromString("nope")}}, &MissingContentError{}},
		{"referrer", PutManifest{Time: at, Repo: "r", Manifest: *sig}, nil},
		{"delete unknown tag", DeleteTag{Repo: "r", Tag: "nope"}, ErrManifestUnknown},
		{"unlink unknown blob", UnlinkBlob{Repo: "other", Digest: blob}, ErrBlobUnknown},
	}
	s := openTest(t)
	for _, tt := range tests {
		err := s.Apply(ctx, tt.cmd)
		switch want := tt.want.(type) {
		case nil:
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		case *MissingContentError:
			var got *MissingContentError
			if !errors.As(err, &got) {
				t.Fatalf("%s: err %v, want MissingContentError", tt.name, err)
			}
		default:
			if !errors.Is(err, want) {
				t.Fatalf("%s: err %v, want %v", tt.name, err, want)
			}
		}
	}
	if tr, err := s.Tag("r", "v1"); err != nil || tr.Digest != m1.Digest {
		t.Fatalf("Tag = %v, %v", tr, err)
	}
	refs, err := s.Referrers("r", m1.Digest)
	if err != nil || len(refs) != 1 || refs[0].Digest != sig.Digest || refs[0].ArtifactType != "a/b" {
		t.Fatalf("Referrers = %+v, %v", refs, err)
	}
	// Deleting the manifest removes its tags; deleting the referrer removes
	// its index entry.
	for _, d := range []digest.Digest{m1.Digest, sig.Digest} {
		if err := s.Apply(ctx, DeleteManifest{Repo: "r", Digest: d}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Tag("r", "v1"); !errors.Is(err, ErrManifestUnknown) {
		t.Fatalf("tag survived its manifest: %v", err)
	}
	if refs, _ := s.Referrers("r", m1.Digest); len(refs) != 0 {
		t.Fatalf("referrer survived: %+v", refs)
	}
}

func TestPagination(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for _, repo := range []string{"c", "a", "b", "d"} {
		if err := s.Apply(ctx, LinkBlob{Repo: repo, Digest: digest.FromString(repo), Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		last string
		n    int
		want []string
		more bool
	}{
		{"", 0, []string{"a", "b", "c", "d"}, false},
		{"", 2, []string{"a", "b"}, true},
		{"b", 2, []string{"c", "d"}, false},
		{"bb", 1, []string{"c"}, true},
		{"d", 5, []string{}, false},
	}
	for _, tt := range tests {
		got, more, err := s.Repositories(tt.last, tt.n)
		if err != nil || !reflect.DeepEqual(got, tt.want) || more != tt.more {
			t.Errorf("Repositories(%q, %d) = %v, %v, %v; want %v, %v", tt.last, tt.n, got, more, err, tt.want, tt.more)
		}
	}
	if _, _, err := s.Tags("nope", "", 0); !errors.Is(err, ErrRepositoryUnknown) {
		t.Errorf("Tags of unknown repo: %v", err)
	}
}
