package meta

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestBlobUnlinked checks that a blob deleted from a repository is
// remembered as deleted there, and forgotten once it is linked again.
func TestBlobUnlinked(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	d := digest.FromString("layer")
	steps := []struct {
		name string
		cmd  Command
		want bool
	}{
		{"linked", LinkBlob{Repo: "a", Digest: d, Size: 5}, false},
		{"deleted", UnlinkBlob{Repo: "a", Digest: d}, true},
		{"linked again", LinkBlob{Repo: "a", Digest: d, Size: 5}, false},
		{"deleted again", UnlinkBlob{Repo: "a", Digest: d}, true},
	}
	for _, st := range steps {
		if err := s.Apply(ctx, st.cmd); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := s.BlobUnlinked("a", d); got != st.want {
			t.Errorf("%s: BlobUnlinked = %v, want %v", st.name, got, st.want)
		}
		if s.BlobUnlinked("b", d) {
			t.Errorf("%s: another repository sees the blob as deleted", st.name)
		}
	}
}

// TestManifestDeleted checks that a deleted tag or manifest is reported
// deleted until it is written again, whether the delete was made here or
// replicated, and that a delete older than the write it meets is not.
func TestManifestDeleted(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	blob := digest.FromString("layer")
	m := manifest("m", "")
	put := func(tag string, clock uint64) Command {
		return PutManifest{Repo: "r", Tag: tag, Manifest: *m, Replicated: true, Clock: clock, Origin: "westus",
			Links: []Link{{blob, 5}}, Requires: []digest.Digest{blob}}
	}
	steps := []struct {
		name          string
		cmd           Command
		tag, manifest bool // want ManifestDeleted of "t" and of m's digest
	}{
		{"pushed", put("t", 10), false, false},
		{"tag deleted", DeleteTag{Repo: "r", Tag: "t", Clock: 20, Origin: "westus"}, true, false},
		{"tag pushed again", put("t", 30), false, false},
		{"an older replicated delete", DeleteManifest{Repo: "r", Digest: m.Digest, Replicated: true, Clock: 25, Origin: "eastus"}, false, false},
		{"manifest deleted", DeleteManifest{Repo: "r", Digest: m.Digest, Replicated: true, Clock: 40, Origin: "eastus"}, true, true},
		{"pushed again", put("t", 50), false, false},
	}
	for _, st := range steps {
		if err := s.Apply(ctx, st.cmd); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := s.ManifestDeleted("r", "t"); got != st.tag {
			t.Errorf("%s: ManifestDeleted(tag) = %v, want %v", st.name, got, st.tag)
		}
		if got := s.ManifestDeleted("r", m.Digest.String()); got != st.manifest {
			t.Errorf("%s: ManifestDeleted(digest) = %v, want %v", st.name, got, st.manifest)
		}
		if s.ManifestDeleted("other", "t") || s.ManifestDeleted("r", "never") {
			t.Errorf("%s: what was never written is reported deleted", st.name)
		}
	}
}
