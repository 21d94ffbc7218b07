package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
)

func TestMatches(t *testing.T) {
	push := meta.Notice{Action: "push", Repo: "team/app", Tag: "v1"}
	untagged := meta.Notice{Action: "push", Repo: "team/app"}
	del := meta.Notice{Action: "delete", Repo: "team/app", Tag: "v1"}
	tests := []struct {
		name    string
		actions []string
		scope   string
		enabled bool
		n       meta.Notice
		want    bool
	}{
		{"everything", []string{"push"}, "", true, push, true},
		{"disabled", []string{"push"}, "", false, push, false},
		{"other action", []string{"push"}, "", true, del, false},
		{"all actions", []string{"*"}, "", true, del, true},
		{"repo wildcard crosses slashes", []string{"push"}, "team*:*", true, push, true},
		{"repo only means every tag", []string{"push"}, "team/app", true, push, true},
		{"exact tag", []string{"push"}, "team/app:v1", true, push, true},
		{"other tag", []string{"push"}, "team/app:v2", true, push, false},
		{"other repo", []string{"push"}, "other/*:*", true, push, false},
		{"untagged push needs a tag wildcard", []string{"push"}, "team/app:v1", true, untagged, false},
		{"untagged push under tag wildcard", []string{"push"}, "team/app:*", true, untagged, true},
	}
	for _, tt := range tests {
		w := meta.Webhook{Actions: tt.actions, Scope: tt.scope, Enabled: tt.enabled}
		if got := Matches(w, tt.n); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestEventAndPost(t *testing.T) {
	n := meta.Notice{Seq: 7, Action: "push", Repo: "r", Tag: "t", Digest: digest.FromString("m"),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 42, Time: time.Unix(10, 0).UTC()}
	p := Event("eastus", n)
	if p.ID != "eastus-7" || p.Region != "eastus" || p.Target.Length != 42 || p.Target.Tag != "t" || p.Request.UserAgent != "georeg-replication" {
		t.Fatalf("replicated event = %+v", p)
	}
	n.Request = &meta.RequestInfo{ID: "req", Host: "h", Method: "PUT", UserAgent: "docker"}
	if p := Event("eastus", n); p.Request.ID != "req" || p.Request.UserAgent != "docker" || p.ConnectedRegistry != "" {
		t.Fatalf("local event request = %+v", p.Request)
	}
	site := n
	site.Request, site.Connected = nil, "shop0001"
	if p := Event("westus", site); p.ConnectedRegistry != "shop0001" || p.Request.Host != "shop0001" || p.Target.Tag != "t" {
		t.Fatalf("a connected registry's event = %+v", p)
	}

	var got Payload
	var header string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		header = r.Header.Get("X-Test")
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	body, _ := json.Marshal(p)
	code, err := Post(context.Background(), srv.Client(), meta.Webhook{URI: srv.URL, Headers: map[string]string{"X-Test": "yes"}}, body)
	if err != nil || code != http.StatusTeapot || got.ID != "eastus-7" || header != "yes" {
		t.Fatalf("Post = %d, %v; received %+v, header %q", code, err, got, header)
	}
}
