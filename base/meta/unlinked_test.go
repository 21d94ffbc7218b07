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

// TestDeleteStamp checks that a deleted tag or manifest reports its
// delete's stamp until it is written again, whether the delete was made
// here or replicated, and that a delete older than the write it meets does
// not count.
func TestDeleteStamp(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	blob := digest.FromString("layer")
	m := manifest("m", "")
	put := func(tag string, clock uint64) Command {
		return PutManifest{Repo: "r", Tag: tag, Manifest: *m, Replicated: true, Clock: clock, Origin: "westus",
			Links: []Link{{blob, 5}}, Requires: []digest.Digest{blob}}
	}
	type stamp struct {
		clock  uint64
		origin string
		ok     bool
	}
	steps := []struct {
		name          string
		cmd           Command
		tag, manifest stamp // want DeleteStamp of "t" and of m's digest
	}{
		{"pushed", put("t", 10), stamp{}, stamp{}},
		{"tag deleted", DeleteTag{Repo: "r", Tag: "t", Clock: 20, Origin: "westus"}, stamp{20, "westus", true}, stamp{}},
		{"tag pushed again", put("t", 30), stamp{}, stamp{}},
		{"an older replicated delete", DeleteManifest{Repo: "r", Digest: m.Digest, Replicated: true, Clock: 25, Origin: "eastus"}, stamp{}, stamp{}},
		{"manifest deleted", DeleteManifest{Repo: "r", Digest: m.Digest, Replicated: true, Clock: 40, Origin: "eastus"}, stamp{40, "eastus", true}, stamp{40, "eastus", true}},
		{"pushed again", put("t", 50), stamp{}, stamp{}},
	}
	for _, st := range steps {
		if err := s.Apply(ctx, st.cmd); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for ref, want := range map[string]stamp{"t": st.tag, m.Digest.String(): st.manifest} {
			var got stamp
			got.clock, got.origin, got.ok = s.DeleteStamp("r", ref)
			if got != want {
				t.Errorf("%s: DeleteStamp(%s) = %+v, want %+v", st.name, ref, got, want)
			}
		}
		if _, _, ok := s.DeleteStamp("other", "t"); ok {
			t.Errorf("%s: another repository's tag is reported deleted", st.name)
		}
		if _, _, ok := s.DeleteStamp("r", "never"); ok {
			t.Errorf("%s: a tag never written is reported deleted", st.name)
		}
	}
}

func TestNewerWrite(t *testing.T) {
	tests := []struct {
		clock  uint64
		origin string
		want   bool
	}{
		{21, "a", true}, {19, "z", false}, {20, "westus", false}, {20, "x", true}, {20, "a", false},
	}
	for _, tt := range tests {
		if got := NewerWrite(tt.clock, tt.origin, 20, "westus"); got != tt.want {
			t.Errorf("NewerWrite(%d, %s) over (20, westus) = %v, want %v", tt.clock, tt.origin, got, tt.want)
		}
	}
}
