package meta

import (
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestReplicatedBatch applies manifests and tags in one batch: each as it
// would apply alone, a tag whose manifest is missing skipped (named in the
// error) while the rest commits, and a batch that is not only replicated
// image pushes refused whole.
func TestReplicatedBatch(t *testing.T) {
	ctx := context.Background()
	blob := digest.FromString("layer")
	a, b, c := manifest("a", ""), manifest("b", ""), manifest("c", "")
	put := func(m *ManifestRecord, tag string, clock uint64) PutManifest {
		return PutManifest{Repo: "r", Tag: tag, Manifest: *m, Replicated: true, Clock: clock, Origin: "westus",
			Links: []Link{{blob, 5}}, Requires: []digest.Digest{blob}}
	}
	merge := func(tag string, d digest.Digest, clock uint64) MergeTag {
		return MergeTag{Repo: "r", Tag: tag, Digest: d, Clock: clock, Origin: "westus"}
	}

	s := openTest(t)
	err := s.Apply(ctx, ReplicatedBatch{
		Manifests: []PutManifest{put(a, "v1", 10), put(b, "", 11)},
		Tags:      []MergeTag{merge("v2", b.Digest, 12), merge("v3", c.Digest, 13), merge("v1", b.Digest, 5)},
	})
	var missing *MissingContentError
	if !errors.As(err, &missing) || len(missing.Digests) != 1 || missing.Digests[0] != c.Digest {
		t.Fatalf("batch with a tag on a missing manifest: %v, want a *MissingContentError naming %s", err, c.Digest)
	}
	for tag, want := range map[string]digest.Digest{"v1": a.Digest, "v2": b.Digest} {
		if tr, err := s.Tag("r", tag); err != nil || tr.Digest != want {
			t.Errorf("tag %s = %s, %v; want %s (an older merge loses)", tag, tr.Digest, err, want)
		}
	}
	if _, err := s.Tag("r", "v3"); err == nil {
		t.Errorf("tag v3 on a manifest the repository lacks was set")
	}

	bad := []struct {
		name  string
		batch ReplicatedBatch
	}{
		{"a local write", ReplicatedBatch{Manifests: []PutManifest{{Repo: "r", Manifest: *c, Links: []Link{{blob, 5}}}}}},
		{"an index", ReplicatedBatch{Manifests: []PutManifest{func() PutManifest {
			p := put(c, "", 20)
			p.RequiresManifests = []digest.Digest{a.Digest}
			return p
		}()}}},
		{"a blob required and not linked", ReplicatedBatch{Manifests: []PutManifest{func() PutManifest {
			p := put(c, "", 20)
			p.Links = nil
			return p
		}()}}},
		{"too many items", ReplicatedBatch{Tags: make([]MergeTag, MaxBatchItems+1)}},
	}
	for _, tt := range bad {
		before, _ := s.RepoSummaries()
		batch := tt.batch
		batch.Tags = append(batch.Tags, merge("v9", a.Digest, 30))
		if err := s.Apply(ctx, batch); err == nil {
			t.Errorf("%s: applied", tt.name)
		}
		if after, _ := s.RepoSummaries(); after["r"] != before["r"] {
			t.Errorf("%s: refused, but the repository changed", tt.name)
		}
	}
}
