package meta

import (
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestCollectBlobs checks that a blob is collected only when its mark is
// older than the collection's Before and no write referenced it since the
// mark, and that only empty repositories are dropped.
func TestCollectBlobs(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	layer := digest.FromString("layer")
	manifest := ManifestRecord{Digest: digest.FromString("manifest"), MediaType: "m", Size: 2, Content: []byte("{}")}
	tests := []struct {
		name string
		// between runs after the mark (at t0) and before the collection
		// (Before t0 + 1 min).
		between   []Command
		before    time.Time
		repos     []string
		collected bool
		repoLeft  bool
	}{
		{"unreferenced past the grace", nil, t0.Add(time.Minute), []string{"a"}, true, false},
		{"mark younger than Before", nil, t0.Add(-time.Second), []string{"a"}, false, true},
		{"linked again since the mark", []Command{LinkBlob{Repo: "a", Digest: layer, Size: 5}}, t0.Add(time.Minute), []string{"a"}, false, true},
		// a holds no manifest: dropped with its link, the blob stays for b.
		{"linked into another repository", []Command{LinkBlob{Repo: "b", Digest: layer, Size: 5}}, t0.Add(time.Minute), []string{"a"}, false, false},
		{"required by a manifest since", []Command{PutManifest{Repo: "a", Manifest: manifest, Requires: []digest.Digest{layer}, Time: t0}},
			t0.Add(time.Minute), []string{"a"}, false, true},
		{"unmarked", []Command{MarkBlobs{Unmark: []digest.Digest{layer}}}, t0.Add(time.Minute), []string{"a"}, false, false},
		{"repository written to since its mark", []Command{MergeTag{Repo: "a", Tag: "x", Deleted: true, Clock: 1, Origin: "o"}},
			t0.Add(time.Minute), []string{"a"}, true, true},
		{"marked again later keeps the first mark", []Command{MarkBlobs{Mark: []digest.Digest{layer}, Time: t0.Add(time.Hour)}},
			t0.Add(time.Minute), nil, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			ctx := t.Context()
			for _, c := range []Command{LinkBlob{Repo: "a", Digest: layer, Size: 5}, MarkBlobs{Mark: []digest.Digest{layer}, Repositories: []string{"a"}, Time: t0}} {
				if err := s.Apply(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range tt.between {
				if err := s.Apply(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Apply(ctx, CollectBlobs{Digests: []digest.Digest{layer}, Before: tt.before, Repositories: tt.repos}); err != nil {
				t.Fatal(err)
			}
			_, err := s.Blob(layer)
			if got := errors.Is(err, ErrBlobUnknown); got != tt.collected {
				t.Errorf("collected = %v (Blob: %v), want %v", got, err, tt.collected)
			}
			if _, err := s.BlobLink("a", layer); tt.collected && !errors.Is(err, ErrBlobUnknown) {
				t.Errorf("link left in a: %v", err)
			}
			if ok, _ := s.RepositoryExists("a"); ok != tt.repoLeft {
				t.Errorf("repository a exists = %v, want %v", ok, tt.repoLeft)
			}
			marks, err := s.BlobMarks()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := marks[layer]; ok && tt.collected {
				t.Errorf("mark left after the collection")
			}
		})
	}
}

// TestCollectKeepsRepositories checks that a repository holding a
// manifest or a live tag is not dropped, one with tombstones only is.
// (A repository marked while it held something was written to since, and
// its mark is gone: here the marks come after the writes.)
func TestCollectKeepsRepositories(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	m := ManifestRecord{Digest: digest.FromString("m"), MediaType: "m", Size: 2, Content: []byte("{}")}
	m2 := ManifestRecord{Digest: digest.FromString("m2"), MediaType: "m", Size: 2, Content: []byte("{}")}
	for _, c := range []Command{
		PutManifest{Repo: "kept", Tag: "v1", Manifest: m},
		PutManifest{Repo: "gone", Tag: "v1", Manifest: m2},
		DeleteManifest{Repo: "gone", Digest: m2.Digest},
		MarkBlobs{Repositories: []string{"kept", "gone", "never"}, Time: time.Unix(1, 0)},
		CollectBlobs{Repositories: []string{"kept", "gone", "never"}, Before: time.Unix(2, 0)},
	} {
		if err := s.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	names, _, err := s.Repositories("", 0)
	if err != nil || len(names) != 1 || names[0] != "kept" {
		t.Errorf("repositories = %v, %v; want [kept]", names, err)
	}
	var seen []RepoContent
	if err := s.WalkRepositories(ctx, func(rc RepoContent) error { seen = append(seen, rc); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || len(seen[0].Manifests) != 1 || seen[0].LiveTags != 1 {
		t.Errorf("WalkRepositories = %+v", seen)
	}
}
