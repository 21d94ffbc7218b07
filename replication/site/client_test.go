package site

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
)

func TestValidEvents(t *testing.T) {
	d := digest.FromString("x").String()
	many := make([]connected.Event, connected.MaxEvents+1)
	for i := range many {
		many[i] = connected.Event{Seq: uint64(i + 1), Action: "push", Repo: "app/web", Tag: "v1"}
	}
	for _, c := range []struct {
		name string
		ev   connected.Events
		ok   bool
	}{
		{"empty", connected.Events{Region: "westus"}, true},
		{"push tag", connected.Events{Region: "westus", Events: []connected.Event{{Action: "push", Repo: "app/web", Tag: "v1"}}}, true},
		{"delete digest", connected.Events{Region: "westus", Events: []connected.Event{{Action: "delete", Repo: "app/web", Digest: d}}}, true},
		{"no region", connected.Events{}, false},
		{"unknown action", connected.Events{Region: "westus", Events: []connected.Event{{Action: "move", Repo: "app/web", Tag: "v1"}}}, false},
		{"bad repository", connected.Events{Region: "westus", Events: []connected.Event{{Action: "push", Repo: "App/../x", Tag: "v1"}}}, false},
		{"bad tag", connected.Events{Region: "westus", Events: []connected.Event{{Action: "push", Repo: "app/web", Tag: "-v1"}}}, false},
		{"bad digest", connected.Events{Region: "westus", Events: []connected.Event{{Action: "push", Repo: "app/web", Digest: "sha256:12"}}}, false},
		{"neither tag nor digest", connected.Events{Region: "westus", Events: []connected.Event{{Action: "push", Repo: "app/web"}}}, false},
		{"too many", connected.Events{Region: "westus", Events: many}, false},
	} {
		if err := validEvents(c.ev); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// TestBoundedAnswers: answers over their bounds, or not matching their
// digest, are refused.
func TestBoundedAnswers(t *testing.T) {
	big := strings.Repeat("x", maxManifest+1)
	good := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"` + digest.FromString("c").String() + `","size":1},"layers":[]}`
	pages := 0 // one request at a time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/_catalog":
			w.Write([]byte(`{"repositories":["` + strings.Repeat("a", maxJSON) + `"]}`))
		case "/v2/endless/tags/list":
			// Pages of new tags forever, each linking the next.
			pages++
			var tags []string
			for i := range pageSize {
				tags = append(tags, fmt.Sprintf("p%06d-%04d", pages, i))
			}
			w.Header().Set("Link", `<next>; rel="next"`)
			json.NewEncoder(w).Encode(map[string]any{"tags": tags})
		case "/v2/big/manifests/v1":
			w.Header().Set("Docker-Content-Digest", digest.FromString(big).String())
			w.Write([]byte(big))
		case "/v2/lying/manifests/v1":
			w.Header().Set("Docker-Content-Digest", digest.FromString("other").String())
			w.Write([]byte(good))
		case "/v2/good/manifests/v1":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", digest.FromString(good).String())
			w.Write([]byte(good))
		}
	}))
	defer srv.Close()
	c := &client{base: srv.URL, http: srv.Client()}
	ctx := context.Background()
	if _, err := c.catalog(ctx); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("a catalog over %d bytes: %v", maxJSON, err)
	}
	if _, err := c.tags(ctx, "endless"); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("endless tag pages: %v", err)
	}
	if _, _, _, err := c.manifest(ctx, "big", "v1"); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("a manifest over %d bytes: %v", maxManifest, err)
	}
	if _, _, _, err := c.manifest(ctx, "lying", "v1"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a manifest not matching its Docker-Content-Digest: %v", err)
	}
	if _, _, _, err := c.manifest(ctx, "good", digest.FromString("other").String()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a manifest not matching the digest asked for: %v", err)
	}
	if content, _, d, err := c.manifest(ctx, "good", "v1"); err != nil || d != digest.FromString(good) || string(content) != good {
		t.Errorf("a good manifest: %v", err)
	}
}
