package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/zone/api"
)

// fakeAuth takes the user of the Basic credential at its word.
type fakeAuth struct{}

func (fakeAuth) Caller(_ context.Context, r *http.Request) (string, error) {
	user, _, ok := r.BasicAuth()
	if !ok {
		return "", api.ErrUnauthorized.WithDetail("no credential")
	}
	return user, nil
}

type fakeAccess map[string]access.ScopeMap

func (f fakeAccess) ScopeMap(name string) (access.ScopeMap, bool) { m, ok := f[name]; return m, ok }

type fakeNotices struct {
	mu      sync.Mutex
	notices []meta.Notice // seqs first..last
}

func (f *fakeNotices) add(repo, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(1)
	if len(f.notices) > 0 {
		seq = f.notices[len(f.notices)-1].Seq + 1
	}
	f.notices = append(f.notices, meta.Notice{Seq: seq, Action: "push", Repo: repo, Tag: tag, Digest: digest.FromString(repo + tag), Time: time.Now()})
}

func (f *fakeNotices) NoticesAfter(seq uint64, n int) ([]meta.Notice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []meta.Notice
	for _, x := range f.notices {
		if x.Seq > seq && len(out) < n {
			out = append(out, x)
		}
	}
	return out, nil
}

func (f *fakeNotices) LastNotice() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.notices) == 0 {
		return 0
	}
	return f.notices[len(f.notices)-1].Seq
}

type fakeHome struct{ err error }

func (h fakeHome) Activate(_ context.Context, name, instance, _, basic string) (connected.Config, error) {
	if h.err != nil {
		return connected.Config{}, h.err
	}
	return connected.Config{Registry: connected.Registry{Name: name, Instance: instance}}, nil
}

func (h fakeHome) Report(context.Context, string, connected.Status, string) error { return h.err }

func newGateway(n *fakeNotices, home fakeHome) *Gateway {
	sm := access.ScopeMap{Name: connected.SyncScopeMapName("factory1"), Permissions: []access.Permission{{Pattern: "samples/*", Actions: []access.Action{access.ContentRead}}}}
	return New(Config{Region: "westus", Auth: fakeAuth{}, Access: fakeAccess{sm.Name: sm}, Notices: n, Home: home})
}

func call(t *testing.T, g *Gateway, method, path, user, body string) (*httptest.ResponseRecorder, connected.Events) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if user != "" {
		r.SetBasicAuth(user, "pw")
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	var ev connected.Events
	if w.Code == http.StatusOK && strings.Contains(path, "/events") {
		if err := json.Unmarshal(w.Body.Bytes(), &ev); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, w.Body)
		}
	}
	return w, ev
}

func TestGatewayRefusals(t *testing.T) {
	n := &fakeNotices{}
	g := newGateway(n, fakeHome{})
	const sync = "factory1-sync-token"
	cases := []struct {
		name, method, path, user, body string
		status                         int
		code                           string
	}{
		{"anonymous", "GET", connected.APIPrefix + "/factory1/events", "", "", 401, "UNAUTHORIZED"},
		{"another token", "GET", connected.APIPrefix + "/factory1/events", "ci-bot", "", 403, "DENIED"},
		{"another registry's sync token", "GET", connected.APIPrefix + "/factory1/events", "shop00001-sync-token", "", 403, "DENIED"},
		{"unknown registry", "GET", connected.APIPrefix + "/nothere1/events", "nothere1-sync-token", "", 404, "NAME_UNKNOWN"},
		{"bad name", "GET", connected.APIPrefix + "/f-1/events", sync, "", 400, "NAME_INVALID"},
		{"unknown call", "GET", connected.APIPrefix + "/factory1/secrets", sync, "", 405, "UNSUPPORTED"},
		{"no call", "GET", connected.APIPrefix + "/factory1", sync, "", 405, "UNSUPPORTED"},
		{"wrong method", "DELETE", connected.APIPrefix + "/factory1/events", sync, "", 405, "UNSUPPORTED"},
		{"bad cursor", "GET", connected.APIPrefix + "/factory1/events?since=westus:x", sync, "", 400, "UNSUPPORTED"},
		{"bad wait", "GET", connected.APIPrefix + "/factory1/events?since=westus:0&wait=-1", sync, "", 400, "UNSUPPORTED"},
		{"bad body", "POST", connected.APIPrefix + "/factory1/activate", sync, "{", 400, "UNSUPPORTED"},
		{"huge body", "POST", connected.APIPrefix + "/factory1/status", sync, `{"instance":"` + strings.Repeat("x", maxBody) + `"}`, 400, "SIZE_INVALID"},
	}
	for _, tc := range cases {
		w, _ := call(t, g, tc.method, tc.path, tc.user, tc.body)
		if w.Code != tc.status || !strings.Contains(w.Body.String(), `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, w.Code, w.Body, tc.status, tc.code)
		}
	}
}

func TestGatewayEvents(t *testing.T) {
	n := &fakeNotices{}
	n.add("samples/a", "v1")
	n.add("other/x", "v1")
	g := newGateway(n, fakeHome{})
	const sync = "factory1-sync-token"
	events := func(since, wait string) connected.Events {
		t.Helper()
		w, ev := call(t, g, "GET", connected.APIPrefix+"/factory1/events?since="+since+"&wait="+wait, sync, "")
		if w.Code != 200 {
			t.Fatalf("events since %q: %d %s", since, w.Code, w.Body)
		}
		return ev
	}
	for _, since := range []string{"", "eastus:1", "westus:9"} {
		if ev := events(since, "0"); !ev.Resync || ev.Cursor() != (connected.Cursor{Region: "westus", Seq: 2}) {
			t.Errorf("since %q: %+v, want a resync from westus:2", since, ev)
		}
	}
	ev := events("westus:0", "0")
	if ev.Resync || ev.Last != 2 || len(ev.Events) != 1 || ev.Events[0].Repo != "samples/a" {
		t.Fatalf("since westus:0: %+v, want samples/a only, up to 2", ev)
	}
	// A long poll answers as soon as a notice comes.
	go func() {
		time.Sleep(200 * time.Millisecond)
		n.add("samples/b", "v2")
	}()
	start := time.Now()
	ev = events("westus:2", "10")
	if took := time.Since(start); took > 5*time.Second || len(ev.Events) != 1 || ev.Events[0].Tag != "v2" || ev.Last != 3 {
		t.Fatalf("long poll: %+v after %v", ev, took)
	}
	// Nothing new: the poll ends after its wait with the same cursor.
	if ev := events("westus:3", "1"); ev.Resync || ev.Last != 3 || len(ev.Events) != 0 {
		t.Fatalf("empty poll: %+v", ev)
	}
	// A connected registry's notification is not content of the region:
	// the cursor moves past it, no event names it.
	n.add("samples/c", "v3")
	n.mu.Lock()
	n.notices[len(n.notices)-1].Connected = "shop0001"
	n.mu.Unlock()
	if ev := events("westus:3", "1"); ev.Resync || ev.Last != 4 || len(ev.Events) != 0 {
		t.Fatalf("after a site's notification: %+v, want no event up to 4", ev)
	}
	// Trimmed notices: a resync.
	n.mu.Lock()
	n.notices = n.notices[2:]
	n.mu.Unlock()
	if ev := events("westus:1", "0"); !ev.Resync || ev.Last != 4 {
		t.Fatalf("after trimming: %+v, want a resync", ev)
	}
}

func TestGatewayHomeCalls(t *testing.T) {
	const sync = "factory1-sync-token"
	cases := []struct {
		name   string
		err    error
		status int
	}{
		{"ok", nil, 200},
		{"another instance", status.Error(codes.FailedPrecondition, `connected registry "factory1" is already Active`), 409},
		{"wrong password", status.Error(codes.Unauthenticated, "wrong sync token"), 401},
		{"home down", errors.New("the home region is unavailable (westus)"), 503},
	}
	for _, tc := range cases {
		g := newGateway(&fakeNotices{}, fakeHome{err: tc.err})
		w, _ := call(t, g, "POST", connected.APIPrefix+"/factory1/activate", sync, `{"instance":"i-1"}`)
		if w.Code != tc.status {
			t.Errorf("activate, %s: %d %s, want %d", tc.name, w.Code, w.Body, tc.status)
		}
		want := tc.status
		if want == 200 {
			want = 204
		}
		if w, _ := call(t, g, "POST", connected.APIPrefix+"/factory1/status", sync, `{"instance":"i-1","state":"Online"}`); w.Code != want {
			t.Errorf("status, %s: %d %s, want %d", tc.name, w.Code, w.Body, want)
		}
	}
}

// TestGatewayMessageTTL: the events meant for a child are kept for its
// message TTL: a cursor whose next events are older gets a resync and no
// event (its backlog is 0), a younger one its events; a TTL out of range
// is refused.
func TestGatewayMessageTTL(t *testing.T) {
	n := &fakeNotices{}
	n.add("samples/a", "v1")
	n.add("samples/a", "v2")
	g := newGateway(n, fakeHome{})
	now := time.Now()
	g.cfg.Since = func(t time.Time) time.Duration { return now.Sub(t) }
	events := func(query string) (int, connected.Events) {
		t.Helper()
		w, ev := call(t, g, "GET", connected.APIPrefix+"/factory1/events?since=westus:0&wait=0"+query, "factory1-sync-token", "")
		return w.Code, ev
	}
	if code, ev := events("&ttl=86400"); code != 200 || ev.Resync || len(ev.Events) != 2 {
		t.Fatalf("within the TTL: %d %+v, want both events", code, ev)
	}
	now = now.Add(25 * time.Hour) // a day's TTL has passed
	if code, ev := events("&ttl=86400"); code != 200 || !ev.Resync || len(ev.Events) != 0 || ev.Last != 2 {
		t.Fatalf("past a 1-day TTL: %d %+v, want a resync from westus:2 and no event", code, ev)
	}
	if code, ev := events(""); code != 200 || ev.Resync || len(ev.Events) != 2 {
		t.Fatalf("within the default TTL (P2D): %d %+v, want both events", code, ev)
	}
	for _, bad := range []string{"&ttl=x", "&ttl=-1", "&ttl=7776001"} {
		if code, _ := events(bad); code != 400 {
			t.Errorf("events%s: %d, want 400", bad, code)
		}
	}
}

// fakeLineage is a nested site's view of the registries below it:
// line1 and line2 are its children, cell1 is line1's.
type fakeLineage map[string]string

func (f fakeLineage) ConnectedParent(name string) (string, bool) { p, ok := f[name]; return p, ok }

// TestGatewayRelay: on a nested connected registry, a child makes the
// activation and status calls of itself and of the registries below it,
// which the site relays; events and writes are its own only, and a
// sibling or a registry not below is refused before anything goes out.
// On the cloud (no Lineage) the home region decides who may relay.
func TestGatewayRelay(t *testing.T) {
	lineage := fakeLineage{"line1": "factory1", "line2": "factory1", "cell1": "line1"}
	maps := fakeAccess{}
	for _, c := range []string{"line1", "line2"} {
		maps[connected.SyncScopeMapName(c)] = access.ScopeMap{Name: connected.SyncScopeMapName(c),
			Permissions: []access.Permission{{Pattern: "samples/*", Actions: []access.Action{access.ContentRead}}}}
	}
	var asked []string
	home := homeFunc(func(name string) error { asked = append(asked, name); return nil })
	site := New(Config{Region: "factory1", Auth: fakeAuth{}, Access: maps, Notices: &fakeNotices{}, Home: home, Lineage: lineage})
	cloud := New(Config{Region: "westus", Auth: fakeAuth{}, Access: maps, Notices: &fakeNotices{}, Home: home})
	cases := []struct {
		name   string
		g      *Gateway
		method string
		path   string
		user   string
		status int
		relay  string // the name Home was asked for
	}{
		{"a child activates", site, "POST", "/line1/activate", "line1-sync-token", 200, "line1"},
		{"a child relays its child's activation", site, "POST", "/cell1/activate", "line1-sync-token", 200, "cell1"},
		{"a child relays its child's status", site, "POST", "/cell1/status", "line1-sync-token", 204, "cell1"},
		{"a sibling's child", site, "POST", "/cell1/activate", "line2-sync-token", 403, ""},
		{"a child for its parent", site, "POST", "/line1/activate", "cell1-sync-token", 403, ""},
		{"not below", site, "POST", "/shop00001/activate", "line1-sync-token", 403, ""},
		{"a client token", site, "POST", "/cell1/activate", "scanner1", 403, ""},
		{"another's events", site, "GET", "/cell1/events", "line1-sync-token", 403, ""},
		{"another's write", site, "POST", "/cell1/write", "line1-sync-token", 403, ""},
		{"the cloud leaves it to home", cloud, "POST", "/cell1/activate", "line1-sync-token", 200, "cell1"},
		{"the cloud: a client token", cloud, "POST", "/cell1/activate", "scanner1", 403, ""},
	}
	for _, tc := range cases {
		asked = nil
		body := `{"instance":"i-1","state":"Online"}`
		w, _ := call(t, tc.g, tc.method, connected.APIPrefix+tc.path, tc.user, body)
		if w.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.status)
		}
		if got := strings.Join(asked, ","); got != tc.relay {
			t.Errorf("%s: home asked for %q, want %q", tc.name, got, tc.relay)
		}
	}
	// A relay's refusal in the API's terms reaches the child as it is.
	refused := New(Config{Region: "factory1", Auth: fakeAuth{}, Access: maps, Notices: &fakeNotices{}, Lineage: lineage,
		Home: homeFunc(func(string) error {
			return api.ErrorCode{Code: "DENIED", Message: "another instance is active", Status: http.StatusConflict}.WithDetail("x")
		})})
	if w, _ := call(t, refused, "POST", connected.APIPrefix+"/cell1/activate", "line1-sync-token", `{"instance":"i-1"}`); w.Code != 409 || !strings.Contains(w.Body.String(), "DENIED") {
		t.Errorf("a relayed conflict: %d %s, want 409 DENIED", w.Code, w.Body)
	}
}

// homeFunc is a Home whose both calls answer f(name).
type homeFunc func(name string) error

func (f homeFunc) Activate(_ context.Context, name, instance, _, _ string) (connected.Config, error) {
	return connected.Config{Registry: connected.Registry{Name: name, Instance: instance}}, f(name)
}

func (f homeFunc) Report(_ context.Context, name string, _ connected.Status, _ string) error {
	return f(name)
}

func TestRelayCall(t *testing.T) {
	tests := []struct {
		method, path string
		want         bool
	}{
		{http.MethodPost, connected.APIPrefix + "/line1/activate", true},
		{http.MethodPost, connected.APIPrefix + "/line1/status", true},
		{http.MethodGet, connected.APIPrefix + "/line1/activate", false},
		{http.MethodGet, connected.APIPrefix + "/line1/events", false},
		{http.MethodPost, connected.APIPrefix + "/line1/write", false},
		{http.MethodPost, connected.APIPrefix + "/line1/x/activate", false},
		{http.MethodPost, connected.APIPrefix + "/activate", false},
		{http.MethodPost, "/v2/line1/activate", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		if got := RelayCall(r); got != tt.want {
			t.Errorf("RelayCall(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}
