package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
)

// TestWrite drives the write call of a ReadWrite child against a real
// metadata store: tags merged last writer wins by the child's stamp,
// forwarded to the outbox when they win, conflicts counted, and bad or
// unpermitted writes refused with nothing changed.
func TestWrite(t *testing.T) {
	ctx := context.Background()
	store, err := meta.Open(meta.Config{Path: filepath.Join(t.TempDir(), "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	put := func(content, tag string, clock uint64) digest.Digest {
		t.Helper()
		d := digest.FromString(content)
		if err := store.Apply(ctx, meta.PutManifest{Repo: "samples/app", Tag: tag, Clock: clock, Origin: "westus",
			Manifest: meta.ManifestRecord{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Content: []byte(content)}}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	now := uint64(time.Now().UnixMilli()) << 16
	cloud := put("cloud", "v1", now)
	site := put("site", "", now)
	site2 := put("site2", "", now)
	rw := access.ScopeMap{Name: connected.SyncScopeMapName("factory1"), Permissions: []access.Permission{{Pattern: "samples/*",
		Actions: []access.Action{access.ContentRead, access.MetadataRead, access.ContentWrite, access.MetadataWrite}}}}
	ro := access.ScopeMap{Name: connected.SyncScopeMapName("shop00001"), Permissions: []access.Permission{{Pattern: "samples/*",
		Actions: []access.Action{access.ContentRead, access.MetadataRead}}}}
	conflicts := map[string]int{}
	g := New(Config{Region: "westus", Auth: fakeAuth{}, Access: fakeAccess{rw.Name: rw, ro.Name: ro}, Notices: &fakeNotices{},
		Home: fakeHome{}, Writer: store, Conflict: func(name string) { conflicts[name]++ }})
	body := func(w connected.Write) string {
		b, _ := json.Marshal(w)
		return string(b)
	}
	tag := func(d digest.Digest, clock uint64, prev digest.Digest) connected.Write {
		return connected.Write{Op: connected.WriteTag, Repo: "samples/app", Tag: "v1", Digest: d.String(), Clock: clock, Origin: "factory1", Prev: prev.String()}
	}
	future := uint64(time.Now().Add(2*connected.MaxClockSkew).UnixMilli()) << 16
	tests := []struct {
		name     string
		user     string
		w        connected.Write
		status   int
		want     connected.WriteResult
		tag      digest.Digest // the tag afterwards ("" deleted)
		forwards bool
	}{
		{"an older site write that raced the cloud's loses: a conflict", "factory1-sync-token", tag(site, now-1, ""), 200,
			connected.WriteResult{Digest: cloud.String(), Conflict: true}, cloud, false},
		{"a later site write that saw the cloud's wins, forwarded", "factory1-sync-token", tag(site, now+10, cloud), 200,
			connected.WriteResult{Digest: site.String(), Won: true}, site, true},
		{"the site's own next write is no conflict", "factory1-sync-token", tag(site2, now+20, site), 200,
			connected.WriteResult{Digest: site2.String(), Won: true}, site2, true},
		{"a tag delete", "factory1-sync-token", connected.Write{Op: connected.WriteTag, Repo: "samples/app", Tag: "v1", Deleted: true, Clock: now + 30, Origin: "factory1", Prev: site2.String()}, 200,
			connected.WriteResult{Deleted: true, Won: true}, "", true},
		{"a tag of a manifest not here", "factory1-sync-token", tag(digest.FromString("absent"), now+40, ""), 404, connected.WriteResult{}, "", false},
		{"a ReadOnly registry's sync token", "shop00001-sync-token", tag(site, now+50, ""), 403, connected.WriteResult{}, "", false},
		{"outside its repositories", "factory1-sync-token", connected.Write{Op: connected.WriteTag, Repo: "other/x", Tag: "v1", Digest: site.String(), Clock: now + 60, Origin: "factory1"}, 403, connected.WriteResult{}, "", false},
		{"a clock far in the future", "factory1-sync-token", tag(site, future, ""), 400, connected.WriteResult{}, "", false},
		{"no clock", "factory1-sync-token", tag(site, 0, ""), 400, connected.WriteResult{}, "", false},
		{"a bad origin", "factory1-sync-token", connected.Write{Op: connected.WriteTag, Repo: "samples/app", Tag: "v1", Digest: site.String(), Clock: now + 70, Origin: "a/b"}, 400, connected.WriteResult{}, "", false},
		{"an unknown op", "factory1-sync-token", connected.Write{Op: "move", Repo: "samples/app", Tag: "v1", Digest: site.String(), Clock: now + 80, Origin: "factory1"}, 400, connected.WriteResult{}, "", false},
		{"a bad tag", "factory1-sync-token", connected.Write{Op: connected.WriteTag, Repo: "samples/app", Tag: "-x", Digest: site.String(), Clock: now + 90, Origin: "factory1"}, 400, connected.WriteResult{}, "", false},
	}
	for _, tt := range tests {
		seq := store.LastSeq()
		w, _ := call(t, g, http.MethodPost, connected.APIPrefix+"/"+strings.TrimSuffix(tt.user, "-sync-token")+"/write", tt.user, body(tt.w))
		if w.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, w.Code, w.Body, tt.status)
			continue
		}
		if forwarded := store.LastSeq() > seq; forwarded != tt.forwards {
			t.Errorf("%s: forwarded = %v, want %v", tt.name, forwarded, tt.forwards)
		}
		if tt.status != 200 {
			continue
		}
		var got connected.WriteResult
		json.Unmarshal(w.Body.Bytes(), &got)
		if got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
		rec, err := store.Tag("samples/app", "v1")
		if tt.tag == "" && err == nil || tt.tag != "" && rec.Digest != tt.tag {
			t.Errorf("%s: the tag is %s (%v), want %q", tt.name, rec.Digest, err, tt.tag)
		}
	}
	if conflicts["factory1"] != 1 {
		t.Errorf("conflicts counted: %v, want factory1: 1", conflicts)
	}
	// A manifest delete is forwarded too.
	seq := store.LastSeq()
	w, _ := call(t, g, http.MethodPost, connected.APIPrefix+"/factory1/write", "factory1-sync-token",
		body(connected.Write{Op: connected.WriteDeleteManifest, Repo: "samples/app", Digest: site.String(), Clock: now + 100, Origin: "factory1"}))
	if w.Code != 200 || store.LastSeq() == seq {
		t.Errorf("a manifest delete: %d %s, forwarded %v", w.Code, w.Body, store.LastSeq() > seq)
	}
	if _, err := store.Manifest("samples/app", site); err == nil {
		t.Errorf("the manifest the site deleted is still here")
	}
}
