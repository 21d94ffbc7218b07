package connected

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// syncClient makes a connected registry's sync calls, as an instance does.
type syncClient struct {
	t    *testing.T
	base string
	cs   connected.ConnectionString
	hc   *http.Client
}

func (c *syncClient) do(method, call, query string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+connected.APIPrefix+"/"+c.cs.Name+"/"+call+query, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.SetBasicAuth(c.cs.SyncToken, c.cs.SyncPassword)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, call, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *syncClient) events(since connected.Cursor, wait int) connected.Events {
	c.t.Helper()
	code, b := c.do(http.MethodGet, "events", fmt.Sprintf("?since=%s&wait=%d", since, wait), nil)
	var ev connected.Events
	if code != http.StatusOK || json.Unmarshal(b, &ev) != nil {
		c.t.Fatalf("events since %s: %d %s", since, code, b)
	}
	return ev
}

// TestSyncCalls drives the cloud side of the sync protocol through the
// endpoint of a mesh of two regions, as a connected registry's instance
// would: activation (and a second instance refused until deactivate), the
// configuration with the client tokens, events as a long poll, and the
// status the cloud then shows.
func TestSyncCalls(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus,eastus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	must("token", "create", "--name", "scanner1", "--scope-map", "_repositories_pull")
	must("connected-registry", "create", "--name", "factory1", "--repository", "samples/*", "--client-tokens", "scanner1")
	cs, err := connected.ParseConnectionString(strings.Split(must("connected-registry", "get-settings", "--name", "factory1"), "\n")[0])
	if err != nil {
		t.Fatal(err)
	}
	c := &syncClient{t: t, base: cs.BaseURL(), cs: cs, hc: &http.Client{Timeout: time.Minute}}

	// The sync token may take a moment to reach every region.
	var code int
	var body []byte
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
		if code, body = c.do(http.MethodPost, "activate", "", connected.Hello{Instance: "site-a"}); code == http.StatusOK {
			break
		}
	}
	var cfg connected.Config
	if code != http.StatusOK || json.Unmarshal(body, &cfg) != nil {
		t.Fatalf("activate: %d %s", code, body)
	}
	if cfg.Registry.Name != "factory1" || cfg.Registry.Mode != connected.ReadOnly || len(cfg.ClientTokens) != 1 || cfg.ClientTokens[0].Name != "scanner1" || len(cfg.ClientTokens[0].Passwords) != 2 {
		t.Fatalf("config: %+v", cfg)
	}
	if code, body := c.do(http.MethodPost, "activate", "", connected.Hello{Instance: "site-b"}); code != http.StatusConflict {
		t.Errorf("a second instance: %d %s, want 409", code, body)
	}

	ev := c.events(connected.Cursor{}, 0)
	if !ev.Resync || ev.Region == "" {
		t.Fatalf("first events: %+v, want a resync with a cursor", ev)
	}
	admin := m.Client(time.Minute)
	img := ociclient.NewImage("samples/app:v1", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(11, 2048)))
	other := ociclient.NewImage("other/x:v1", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(12, 2048)))
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := admin.PushImage(ctx, m.URL(), "other/x", "v1", other); err != nil {
			t.Error(err)
		}
		if err := admin.PushImage(ctx, m.URL(), "samples/app", "v1", img); err != nil {
			t.Error(err)
		}
	}()
	var got []connected.Event
	start := time.Now()
	cur := ev.Cursor()
	for len(got) == 0 && time.Since(start) < 20*time.Second {
		ev = c.events(cur, 10)
		if ev.Resync {
			t.Fatalf("events from %s: a resync", cur)
		}
		got, cur = append(got, ev.Events...), ev.Cursor()
	}
	t.Logf("the push reached the long poll %v after it started", time.Since(start).Round(time.Millisecond))
	if len(got) != 1 || got[0].Repo != "samples/app" || got[0].Tag != "v1" || got[0].Action != "push" {
		t.Fatalf("events: %+v, want the push of samples/app:v1 only", got)
	}

	if code, body := c.do(http.MethodPost, "status", "", connected.Status{Instance: "site-a", State: connected.Online, LastSync: time.Now()}); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	var shown struct {
		State string `json:"connectionState"`
	}
	json.Unmarshal([]byte(must("connected-registry", "show", "--name", "factory1", "--json")), &shown)
	if shown.State != connected.Online {
		t.Errorf("connected-registry show after a status report: %q, want Online", shown.State)
	}
	if code, _ := c.do(http.MethodPost, "status", "", connected.Status{Instance: "site-b", State: connected.Online}); code == http.StatusNoContent {
		t.Errorf("a status report from an inactive instance was taken")
	}

	must("connected-registry", "deactivate", "--name", "factory1")
	if code, body := c.do(http.MethodPost, "activate", "", connected.Hello{Instance: "site-b"}); code != http.StatusOK {
		t.Errorf("the second instance after deactivate: %d %s", code, body)
	}
	// A wrong password is refused at the edge.
	c.cs.SyncPassword = "wrong"
	if code, _ := c.do(http.MethodGet, "events", "", nil); code != http.StatusUnauthorized {
		t.Errorf("a wrong sync password: %d, want 401", code)
	}
}
