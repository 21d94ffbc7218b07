package zone_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/replication/site/sitetest"
	"github.com/georeg/georeg/zone"
	"github.com/georeg/georeg/zone/zonetest"
)

// TestConnectedSite starts a node as a connected registry's site against
// a fake parent: it syncs the parent's image, its clients log in with the
// client tokens of the Config, and ReadOnly refuses pushes (DENIED) and
// deletes (UNSUPPORTED) with nothing stored.
func TestConnectedSite(t *testing.T) {
	reg := connected.Registry{
		Name: "factory1", Mode: connected.ReadOnly, Repositories: []string{"app/*"},
		ClientTokens: []string{"puller", "admin1"}, SyncToken: connected.SyncTokenName("factory1"),
		LogLevel: "Information", Activation: connected.Active,
	}
	p := sitetest.New(t, reg)
	now := time.Now().UTC()
	pullSecret, pullPw, err := access.NewPassword(access.Password1, now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	adminSecret, adminPw, _ := access.NewPassword(access.Password1, now, time.Time{})
	p.Cfg.ClientTokens = []access.Token{
		{Name: "puller", ScopeMap: access.PullScopeMap, Status: access.Enabled, Created: now, Passwords: []access.Password{pullPw}},
		{Name: "admin1", ScopeMap: access.AdminScopeMap, Status: access.Enabled, Created: now, Passwords: []access.Password{adminPw}},
	}
	d := p.PushImage("app/web", "v1", "layer-1")

	m := zonetest.Start(t, zonetest.Config{Connected: &p.Conn})
	node := m.Nodes()[0]
	do := func(method, path, user, pass string, body []byte, ct string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, node.URL+path, bytes.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	start := time.Now()
	for {
		code, _ := do("GET", "/v2/app/web/manifests/v1", "puller", pullSecret, nil, "")
		if code == http.StatusOK {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("app/web:v1 not served by the site after 30 s (last %d)", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the site served the parent's image %v after it started", time.Since(start))
	if code, _ := do("GET", "/v2/app/web/manifests/v1", "", "", nil, ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous pull: %d, want 401", code)
	}

	manifest := p.Repos["app/web"].Manifests[d]
	for _, c := range []struct {
		method, path string
		body         []byte
		ct           string
		status       int
		code         string
	}{
		{"PUT", "/v2/app/web/manifests/v2", manifest.Content, manifest.MediaType, http.StatusForbidden, "DENIED"},
		{"POST", "/v2/app/web/blobs/uploads/", nil, "", http.StatusForbidden, "DENIED"},
		{"DELETE", "/v2/app/web/manifests/" + d.String(), nil, "", http.StatusMethodNotAllowed, "UNSUPPORTED"},
	} {
		code, body := do(c.method, c.path, "admin1", adminSecret, c.body, c.ct)
		var env struct {
			Errors []struct{ Code string } `json:"errors"`
		}
		json.Unmarshal([]byte(body), &env)
		if code != c.status || len(env.Errors) == 0 || env.Errors[0].Code != c.code || !strings.Contains(body, "ReadOnly") {
			t.Fatalf("%s %s on a ReadOnly site: %d %s, want %d %s", c.method, c.path, code, body, c.status, c.code)
		}
	}
	if code, _ := do("GET", "/v2/app/web/manifests/v2", "admin1", adminSecret, nil, ""); code != http.StatusNotFound {
		t.Fatalf("a refused push stored app/web:v2 (%d)", code)
	}
	if code, _ := do("GET", "/v2/app/web/manifests/"+d.String(), "admin1", adminSecret, nil, ""); code != http.StatusOK {
		t.Fatalf("a refused delete removed the manifest (%d)", code)
	}
	// The parent's next push arrives through the events.
	start = time.Now()
	p.PushImage("app/web", "v2", "layer-2")
	for {
		if code, _ := do("GET", "/v2/app/web/manifests/v2", "puller", pullSecret, nil, ""); code == http.StatusOK {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the parent's push of app/web:v2 did not reach the site in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a push at the parent was served by the site %v later", time.Since(start))

	// The node's status shows the sync.
	_, body := do("GET", "/_georeg/status", "", "", nil, "")
	var st zone.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Site == nil {
		t.Fatalf("status: %v %s", err, body)
	}
	if st.Site.Name != "factory1" || st.Site.Mode != connected.ReadOnly || st.Site.Cursor == "" || st.Site.Stats.BlobsFetched == 0 {
		t.Fatalf("status of the site: %+v", *st.Site)
	}
}
