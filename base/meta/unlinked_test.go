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
