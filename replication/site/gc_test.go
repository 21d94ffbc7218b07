package site

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/replication/site/sitetest"
	"github.com/georeg/georeg/storage"
)

// dropSilently deletes a manifest at the parent without an event, as a
// site away past its message TTL sees it: only a resync can tell.
func dropSilently(p *sitetest.Parent, repo string, d digest.Digest) {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	rp := p.Repos[repo]
	delete(rp.Manifests, d)
	for t, td := range rp.Tags {
		if td == d {
			delete(rp.Tags, t)
		}
	}
}

func hasManifest(st *site, repo string, d digest.Digest) bool {
	_, err := st.meta.Manifest(repo, d)
	return err == nil
}

func hasBytes(t *testing.T, st *site, d digest.Digest) bool {
	t.Helper()
	_, err := st.blobs.Stat(t.Context(), d)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestPruneManifests checks that a resync deletes the manifests the
// parent no longer holds, and everything of a repository no longer
// synced, but keeps what the parent's tags still name (with an index's
// children) and a ReadWrite site's writes not synced up.
func TestPruneManifests(t *testing.T) {
	for _, mode := range []connected.Mode{connected.ReadOnly, connected.ReadWrite} {
		t.Run(string(mode), func(t *testing.T) {
			ctx := t.Context()
			p := sitetest.New(t, testRegistry(mode))
			p.Cfg = testConfig(p.Cfg.Registry)
			gone := p.PushImage("app/web", "v1", "shared", "web-1")
			kept := p.PushImage("app/web", "v2", "shared", "web-2")
			idx := p.PushIndex("app/api", "multi")
			p.PushImage("base", "v1", "base-layer")
			st := newSite(t, p, "")
			st.start()
			caughtUp(t, p, st)
			// Pushed by digest only: it comes with its event, no tag names
			// it.
			byDigest := p.PushImage("app/web", "", "shared", "web-3")
			caughtUp(t, p, st)
			st.close()
			if !hasManifest(st, "app/web", byDigest) {
				t.Fatal("the manifest pushed by digest did not reach the site")
			}

			// A local write not synced up, of a manifest the parent never
			// had (ReadWrite only: a ReadOnly site has none).
			local := localPush(t, st, "app/web", "mine", "local-layer")

			dropSilently(p, "app/web", gone)
			dropSilently(p, "app/web", byDigest)
			if err := st.s.resync(ctx); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				repo string
				d    digest.Digest
				want bool
			}{
				{"app/web", gone, false},
				{"app/web", byDigest, false},
				{"app/web", kept, true},
				{"app/api", idx, true},
				{"app/web", local, mode == connected.ReadWrite},
			}
			for _, tt := range tests {
				if got := hasManifest(st, tt.repo, tt.d); got != tt.want {
					t.Errorf("%s@%s held = %v, want %v", tt.repo, tt.d, got, tt.want)
				}
			}
			rs, _ := st.meta.RepoState("app/api")
			if len(rs.Manifests) != 3 {
				t.Errorf("app/api holds %d manifests, want the index and its 2 children", len(rs.Manifests))
			}
			if _, err := st.meta.Tag("app/web", "v1"); !errors.Is(err, meta.ErrManifestUnknown) {
				t.Errorf("tag of a deleted manifest: %v", err)
			}

			if rs, _ := st.meta.RepoState("base"); len(rs.Manifests) != 1 {
				t.Errorf("base holds %v before the update", rs.Manifests)
			}
			// base leaves the repositories synced: all of it goes.
			reg := p.Cfg.Registry
			reg.Repositories = []string{"app/*"}
			if err := st.s.applyConfig(ctx, connected.Config{Registry: reg}); err != nil {
				t.Fatal(err)
			}
			if err := st.s.resync(ctx); err != nil {
				t.Fatal(err)
			}
			if rs, _ := st.meta.RepoState("base"); len(rs.Manifests) != 0 {
				t.Errorf("base, no longer synced, holds %v", rs.Manifests)
			}
			if got := st.s.GCStats().ManifestsPruned; got < 3 {
				t.Errorf("ManifestsPruned = %d, want at least 3", got)
			}
		})
	}
}

// localPush stores an image as a client's push at the site (a local write,
// in the outbox) and returns its digest.
func localPush(t *testing.T, st *site, repo, tag, layer string) digest.Digest {
	t.Helper()
	ctx := t.Context()
	cfgBlob := []byte(`{"local":` + `"` + tag + `"}`)
	var links []meta.Link
	var descs []map[string]any
	for _, b := range [][]byte{cfgBlob, []byte(layer)} {
		d := digest.FromBytes(b)
		if _, err := st.blobs.Put(ctx, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := st.meta.Apply(ctx, meta.LinkBlob{Repo: repo, Digest: d, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		links = append(links, meta.Link{Digest: d, Size: int64(len(b))})
		descs = append(descs, map[string]any{"mediaType": "application/octet-stream", "digest": d, "size": len(b)})
	}
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest, "config": descs[0], "layers": descs[1:]})
	d := digest.FromBytes(m)
	err := st.meta.Apply(ctx, meta.PutManifest{Repo: repo, Tag: tag, Time: time.Now().UTC(), Clock: 1, Origin: "factory1",
		Manifest: meta.ManifestRecord{Digest: d, MediaType: oci.MediaTypeOCIManifest, Size: int64(len(m)), Content: m},
		Requires: []digest.Digest{links[0].Digest, links[1].Digest}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGCRound checks what a round of the collector frees: blobs
// unreferenced for the grace, not those still referenced, referenced
// again, touched by a writer, or named by a local write not synced up.
func TestGCRound(t *testing.T) {
	ctx := t.Context()
	p := sitetest.New(t, testRegistry(connected.ReadWrite))
	p.Cfg = testConfig(p.Cfg.Registry)
	gone := p.PushImage("app/web", "v1", "shared", "web-1")
	p.PushImage("app/web", "v2", "shared", "web-2")
	p.PushImage("base", "v1", "base-layer")
	st := newSite(t, p, "")
	st.start()
	caughtUp(t, p, st)
	st.close()
	local := localPush(t, st, "app/web", "mine", "local-layer")
	localRec, _ := st.meta.Manifest("app/web", local)
	lm, _ := oci.ParseManifest(localRec.MediaType, localRec.Content)

	webOnly := digest.FromString("web-1")
	shared := digest.FromString("shared")
	baseLayer := digest.FromString("base-layer")
	dropSilently(p, "app/web", gone)
	p.Mu.Lock()
	delete(p.Repos, "base")
	p.Mu.Unlock()
	if err := st.s.resync(ctx); err != nil {
		t.Fatal(err)
	}
	// An upload in flight: bytes stored, link made, manifest to come.
	upload := digest.FromString("uploading")
	if _, err := st.s.Blobs().Put(ctx, upload, 9, bytes.NewReader([]byte("uploading"))); err != nil {
		t.Fatal(err)
	}
	// Orphaned bytes (a download whose manifest never came).
	orphan := digest.FromString("orphan")
	if _, err := st.blobs.Put(ctx, orphan, 6, bytes.NewReader([]byte("orphan"))); err != nil {
		t.Fatal(err)
	}

	grace := 300 * time.Millisecond
	r1, err := st.s.GCRound(ctx, grace)
	if err != nil {
		t.Fatal(err)
	}
	if r1.BlobsFreed != 0 || r1.Marked == 0 {
		t.Fatalf("first round %+v: want marks only", r1)
	}
	// Referenced again after the mark: base's layer is linked anew.
	if err := st.meta.Apply(ctx, meta.LinkBlob{Repo: "other", Digest: baseLayer, Size: int64(len("base-layer"))}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 50*time.Millisecond)
	st.s.Blobs().Stat(ctx, upload) // the upload's writer looks again: touched
	r2, err := st.s.GCRound(ctx, grace)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rounds: %+v then %+v", r1, r2)
	tests := []struct {
		name  string
		d     digest.Digest
		bytes bool
	}{
		{"layer of a manifest deleted at the parent", webOnly, false},
		{"orphaned bytes", orphan, false},
		{"layer shared with a manifest kept", shared, true},
		{"layer linked again since its mark", baseLayer, true},
		{"upload touched within the grace", upload, true},
		{"layer of a local write not synced up", lm.Layers[0].Digest, true},
	}
	for _, tt := range tests {
		if got := hasBytes(t, st, tt.d); got != tt.bytes {
			t.Errorf("%s: bytes held = %v, want %v", tt.name, got, tt.bytes)
		}
	}
	if _, err := st.meta.Blob(webOnly); !errors.Is(err, meta.ErrBlobUnknown) {
		t.Errorf("collected blob still in the index: %v", err)
	}
	if ok, _ := st.meta.RepositoryExists("base"); ok {
		t.Errorf("base, deleted at the parent and emptied, still listed")
	}
	if r2.BlobsFreed < 3 || r2.Kept != 1 || r2.ReposDropped != 1 {
		t.Errorf("second round %+v: want at least 3 blobs freed (web-1, base's config, orphan), 1 kept (the upload), base dropped", r2)
	}
	if got := st.s.GCStats(); got.BytesFreed != r2.BytesFreed || got.Rounds != 2 {
		t.Errorf("GCStats %+v", got)
	}
}

func TestGCInterval(t *testing.T) {
	tests := []struct{ grace, want time.Duration }{
		{time.Hour, 10 * time.Minute},
		{20 * time.Minute, 5 * time.Minute},
		{2 * time.Second, time.Second},
	}
	for _, tt := range tests {
		if got := gcInterval(tt.grace); got != tt.want {
			t.Errorf("gcInterval(%v) = %v, want %v", tt.grace, got, tt.want)
		}
	}
}

// TestSweep checks what a zone's sweep frees of its own blob files: those
// the blob index has not named for the grace, not those it names or a
// writer of the zone touched.
func TestSweep(t *testing.T) {
	ctx := t.Context()
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	st := newSite(t, p, "")
	put := func(s string) digest.Digest {
		d := digest.FromString(s)
		if _, err := st.blobs.Put(ctx, d, int64(len(s)), bytes.NewReader([]byte(s))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	named, unnamed, touched := put("named"), put("unnamed"), put("touched")
	if err := st.meta.Apply(ctx, meta.LinkBlob{Repo: "app/web", Digest: named, Size: 5}); err != nil {
		t.Fatal(err)
	}
	const grace = 200 * time.Millisecond
	seen := map[digest.Digest]time.Time{}
	if err := st.s.sweep(ctx, grace, seen); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 20*time.Millisecond)
	st.s.Blobs().Stat(ctx, touched)
	if err := st.s.sweep(ctx, grace, seen); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		d    digest.Digest
		want bool
	}{{"named by the index", named, true}, {"unnamed for the grace", unnamed, false}, {"touched by a writer", touched, true}} {
		if got := hasBytes(t, st, tt.d); got != tt.want {
			t.Errorf("%s: held = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := st.s.GCStats(); got.BlobsFreed != 1 || got.BytesFreed != int64(len("unnamed")) {
		t.Errorf("GCStats %+v: want 1 blob, 7 bytes freed", got)
	}
}
