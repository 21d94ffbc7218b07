package georep

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// hookEvent is the JSON body georeg POSTs to a webhook.
type hookEvent struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    struct {
		MediaType  string `json:"mediaType"`
		Size       int64  `json:"size"`
		Digest     string `json:"digest"`
		Length     int64  `json:"length"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		ID        string `json:"id"`
		Host      string `json:"host"`
		Method    string `json:"method"`
		UserAgent string `json:"useragent"`
	} `json:"request"`
	Region string `json:"region"`
}

// received is one POST the receiver answered.
type received struct {
	Hook   string
	Event  hookEvent
	Status int
	Header http.Header
	// Held is why the webhook's region did not yet show what the event
	// announces when the event arrived; nil when it did.
	Held error
	At   time.Time
}

// receiver is a webhook endpoint: /hook/NAME. It answers 500 to the first
// delivery of every event id and 200 to the next ones (pings always get
// 200), and records every delivery.
type receiver struct {
	srv *httptest.Server
	// held checks, before the receiver accepts an event, that the
	// webhook's region shows what it announces.
	held func(hook string, ev hookEvent) error

	mu    sync.Mutex
	tries map[string]int
	got   []received
}

func newReceiver(t testing.TB, held func(string, hookEvent) error) *receiver {
	rc := &receiver{held: held, tries: map[string]int{}}
	rc.srv = httptest.NewServer(rc)
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) uri(hook string) string { return rc.srv.URL + "/hook/" + hook }

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hook, ok := strings.CutPrefix(r.URL.Path, "/hook/")
	body, err := io.ReadAll(r.Body)
	var ev hookEvent
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	if !ok || r.Method != http.MethodPost || err != nil {
		http.Error(w, fmt.Sprintf("want a JSON event POSTed to /hook/NAME: %v", err), http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if ev.Action != "ping" {
		rc.mu.Lock()
		rc.tries[hook+" "+ev.ID]++
		if rc.tries[hook+" "+ev.ID] == 1 {
			status = http.StatusInternalServerError
		}
		rc.mu.Unlock()
	}
	rec := received{Hook: hook, Event: ev, Status: status, Header: r.Header.Clone(), At: time.Now()}
	if status == http.StatusOK && ev.Action != "ping" {
		rec.Held = rc.held(hook, ev)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, rec)
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// deliveries returns what hook received, oldest first.
func (rc *receiver) deliveries(hook string) []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []received
	for _, r := range rc.got {
		if r.Hook == hook {
			out = append(out, r)
		}
	}
	return out
}

// hookDelivery is one row of `georeg webhook list-events --json`.
type hookDelivery struct {
	ID       string    `json:"id"`
	Webhook  string    `json:"webhook"`
	Seq      uint64    `json:"seq"`
	Action   string    `json:"action"`
	Repo     string    `json:"repo"`
	Tag      string    `json:"tag"`
	Digest   string    `json:"digest"`
	Status   int       `json:"status"`
	Error    string    `json:"error"`
	Attempt  int       `json:"attempt"`
	Final    bool      `json:"final"`
	Time     time.Time `json:"time"`
	Duration float64   `json:"durationSeconds"`
}

// TestWebhooks creates a push webhook in every region (one scoped to a
// repository pattern) and a delete webhook in westeurope, all pointing at a
// receiver that fails every event's first delivery, pushes four images to
// westus and deletes a tag: every webhook must get exactly one accepted
// event per image it covers, announcing its own region, only once that
// region holds the image, after a retried 500 with the same event id; and
// list-events must show both attempts.
func TestWebhooks(t *testing.T) {
	m := startMesh(t, 1)
	ctx := context.Background()
	hookRegion := map[string]string{
		"hookwestus": "westus", "hookeastus": "eastus", "hookwesteurope": "westeurope", "hookdeletes": "westeurope",
	}
	imgs := map[digest.Digest]image{}
	rc := newReceiver(t, func(hook string, ev hookEvent) error {
		n := m.first(hookRegion[hook])
		listed, err := m.c.HasTag(ctx, n.URL(), ev.Target.Repository, ev.Target.Tag)
		if err != nil {
			return err
		}
		if ev.Action == "delete" {
			if listed {
				return fmt.Errorf("%s still lists %s:%s", n, ev.Target.Repository, ev.Target.Tag)
			}
			return nil
		}
		if !listed {
			return fmt.Errorf("%s does not list %s:%s yet", n, ev.Target.Repository, ev.Target.Tag)
		}
		img, ok := imgs[digest.Digest(ev.Target.Digest)]
		if !ok {
			return fmt.Errorf("the test pushed no image %s", ev.Target.Digest)
		}
		for _, b := range img.Blobs() {
			if ok, err := m.c.HasBlob(ctx, n.URL(), ev.Target.Repository, b.Digest); !ok || err != nil {
				return fmt.Errorf("%s lacks blob %.19s of %s (%v)", n, b.Digest, ev.Target.Repository, err)
			}
		}
		return nil
	})

	// Invalid definitions are refused.
	for _, args := range [][]string{
		{"--name", "abc", "--uri", rc.uri("abc"), "--actions", "push"},
		{"--name", "hookbadregion", "--uri", rc.uri("x"), "--actions", "push", "--region", "southpole"},
		{"--name", "hookbadaction", "--uri", rc.uri("x"), "--actions", "pull"},
	} {
		if out, errOut, err := m.cli(t, ctx, "webhook", "create", args...); err == nil {
			t.Errorf("webhook create %s succeeded: %s", strings.Join(args, " "), out)
		} else {
			t.Logf("webhook: create %s refused: %s", strings.Join(args, " "), strings.TrimSpace(out+errOut))
		}
	}
	for _, args := range [][]string{
		{"--name", "hookwestus", "--actions", "push", "--region", "westus", "--headers", "X-Georep-Test=westus"},
		{"--name", "hookeastus", "--actions", "push", "--region", "eastus", "--scope", "hooks/*"},
		{"--name", "hookwesteurope", "--actions", "push", "--region", "westeurope"},
		{"--name", "hookdeletes", "--actions", "delete", "--region", "westeurope"},
	} {
		var w struct {
			Name, Region string
		}
		m.cliJSON(t, ctx, &w, "webhook", "create", append(args, "--uri", rc.uri(args[1]))...)
		if w.Name != args[1] || w.Region != hookRegion[args[1]] {
			t.Errorf("webhook create %s printed %+v", strings.Join(args, " "), w)
		}
	}
	var hooks []struct {
		Name    string            `json:"name"`
		URI     string            `json:"uri"`
		Actions []string          `json:"actions"`
		Scope   string            `json:"scope"`
		Region  string            `json:"region"`
		Headers map[string]string `json:"headers"`
		Enabled bool              `json:"enabled"`
	}
	m.cliJSON(t, ctx, &hooks, "webhook", "list", "--json")
	if len(hooks) != len(hookRegion) {
		t.Errorf("webhook list shows %d webhooks, want %d: %+v", len(hooks), len(hookRegion), hooks)
	}
	for _, h := range hooks {
		if h.Region != hookRegion[h.Name] || !h.Enabled || h.URI != rc.uri(h.Name) {
			t.Errorf("webhook list: %+v", h)
		}
	}
	var shown struct {
		Scope   string            `json:"scope"`
		Headers map[string]string `json:"headers"`
	}
	m.cliJSON(t, ctx, &shown, "webhook", "show", "--name", "hookeastus")
	if shown.Scope != "hooks/*" {
		t.Errorf("webhook show --name hookeastus: scope %q, want hooks/*", shown.Scope)
	}
	var ping hookDelivery
	m.cliJSON(t, ctx, &ping, "webhook", "ping", "--name", "hookwestus")
	pings := rc.deliveries("hookwestus")
	if ping.Status != http.StatusOK || len(pings) != 1 || pings[0].Event.Action != "ping" || pings[0].Event.Region != "westus" {
		t.Errorf("webhook ping --name hookwestus printed %+v; the receiver got %+v", ping, pings)
	} else {
		t.Logf("webhook: ping --name hookwestus: status %d in %.1f ms", ping.Status, ping.Duration*1000)
	}
	if len(pings) > 0 && pings[0].Header.Get("X-Georep-Test") != "westus" {
		t.Errorf("the ping to hookwestus came with X-Georep-Test %q, want westus (--headers)", pings[0].Header.Get("X-Georep-Test"))
	}
	// Header values are write-only: show prints them masked (the ping above
	// got the stored value).
	var westShown struct {
		Headers map[string]string `json:"headers"`
	}
	m.cliJSON(t, ctx, &westShown, "webhook", "show", "--name", "hookwestus")
	if len(westShown.Headers) != 1 || westShown.Headers["X-Georep-Test"] != "****" {
		t.Errorf("webhook show --name hookwestus: headers %v, want X-Georep-Test masked (****)", westShown.Headers)
	}
	noRedirects(t, ctx, m)

	// Four images pushed to westus; hookeastus's scope covers three.
	west := m.first("westus")
	type push struct {
		repo, tag string
		img       image
		acked     time.Time
	}
	var pushes []*push
	for i, ref := range []struct{ repo, tag string }{{"hooks/app", "v1"}, {"hooks/app", "v2"}, {"hooks/app", "v3"}, {"other/app", "v1"}} {
		img := ociclient.NewImage("webhook-"+ref.repo+ref.tag, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(4000+i), 512<<10)))
		pushes = append(pushes, &push{repo: ref.repo, tag: ref.tag, img: img})
	}
	// The receiver reads imgs: it is complete before the first push.
	for _, p := range pushes {
		imgs[p.img.Digest] = p.img
	}
	for i, p := range pushes {
		for _, b := range p.img.Blobs() {
			if err := m.c.PushBlob(ctx, west.URL(), p.repo, b); err != nil {
				t.Fatal(err)
			}
		}
		hdr := http.Header{"X-Request-Id": {fmt.Sprintf("georep-%d", i)}, "User-Agent": {"georep-webhook-test"}}
		if _, _, err := m.c.putManifestWith(ctx, west.URL(), p.repo, p.tag, p.img, hdr); err != nil {
			t.Fatal(err)
		}
		p.acked = time.Now()
	}
	covers := func(hook string, p *push) bool {
		return hook != "hookdeletes" && (hook != "hookeastus" || strings.HasPrefix(p.repo, "hooks/"))
	}
	pushHooks := []string{"hookwestus", "hookeastus", "hookwesteurope"}
	err := ociclient.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
		for _, hook := range pushHooks {
			for _, p := range pushes {
				if covers(hook, p) && len(accepted(rc.deliveries(hook), "push", p.repo, p.img.Digest)) == 0 {
					return false, fmt.Errorf("%s has accepted no push event for %s:%s", hook, p.repo, p.tag)
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("webhooks: %v", err)
	}
	// list-events must record every attempt, and late duplicates must have
	// a chance to show up.
	events := map[string][]hookDelivery{}
	err = ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		for _, hook := range pushHooks {
			var ds []hookDelivery
			m.cliJSON(t, ctx, &ds, "webhook", "list-events", "--name", hook, "--json")
			events[hook] = ds
			final := 0
			for _, d := range ds {
				if d.Final {
					final++
				}
			}
			want := 0
			for _, p := range pushes {
				if covers(hook, p) {
					want++
				}
			}
			if final < want {
				return false, fmt.Errorf("list-events --name %s shows %d final deliveries, want %d", hook, final, want)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("webhook list-events: %v", err)
	}
	time.Sleep(time.Second)

	for _, hook := range pushHooks {
		region := hookRegion[hook]
		got := rc.deliveries(hook)
		var lines []string
		for _, p := range pushes {
			acc := accepted(got, "push", p.repo, p.img.Digest)
			if !covers(hook, p) {
				if len(acc) > 0 {
					t.Errorf("%s (scope hooks/*) got a push event for %s:%s", hook, p.repo, p.tag)
				}
				continue
			}
			if len(acc) != 1 {
				t.Errorf("%s accepted %d push events for %s:%s (%.19s), want exactly 1: %+v", hook, len(acc), p.repo, p.tag, p.img.Digest, acc)
				continue
			}
			ev := acc[0].Event
			checkPushEvent(t, hook, region, ev, p.repo, p.tag, p.img)
			if acc[0].Held != nil {
				t.Errorf("%s announced %s:%s before %s held it: %v", hook, p.repo, p.tag, region, acc[0].Held)
			}
			if region == "westus" && (ev.Request.ID == "" || !strings.HasPrefix(ev.Request.ID, "georep-") || ev.Request.UserAgent != "georep-webhook-test" || ev.Request.Method != http.MethodPut) {
				t.Errorf("%s: the event for %s:%s describes request %+v, want the test's PUT (X-Request-Id georep-N, User-Agent georep-webhook-test)", hook, p.repo, p.tag, ev.Request)
			}
			// Every delivery of the event: the first answered 500, the
			// retry carried the same id.
			var tries []received
			for _, r := range got {
				if r.Event.ID == ev.ID {
					tries = append(tries, r)
				}
			}
			if len(tries) != 2 || tries[0].Status != http.StatusInternalServerError || tries[1].Status != http.StatusOK {
				t.Errorf("%s: event %s (%s:%s) was delivered %d times, want a 500 then a 200: %s", hook, ev.ID, p.repo, p.tag, len(tries), statuses(tries))
			}
			for _, r := range got {
				if r.Event.ID != ev.ID && r.Event.Target.Digest == ev.Target.Digest && r.Event.Target.Repository == p.repo && r.Event.Action == "push" {
					t.Errorf("%s: %s:%s came as two events, %s and %s", hook, p.repo, p.tag, ev.ID, r.Event.ID)
				}
			}
			if len(tries) == 2 {
				lines = append(lines, fmt.Sprintf("%s:%s id %s accepted %d ms after the push (retry %d ms after the 500)",
					p.repo, p.tag, ev.ID, tries[1].At.Sub(p.acked).Milliseconds(), tries[1].At.Sub(tries[0].At).Milliseconds()))
			}
			checkListEvents(t, hook, events[hook], ev, p.repo, p.tag, p.img.Digest)
		}
		for _, r := range got {
			if r.Event.Action != "push" && r.Event.Action != "ping" {
				t.Errorf("%s (actions push) got a %s event: %+v", hook, r.Event.Action, r.Event)
			}
		}
		var req any
		if acc := accepted(got, "push", pushes[0].repo, pushes[0].img.Digest); len(acc) > 0 {
			req = acc[0].Event.Request
		}
		t.Logf("webhook: %s (%s): %d deliveries (the first event's request: %+v):\n    %s", hook, region, len(got), req, strings.Join(lines, "\n    "))
		if !sortedNewestFirst(events[hook]) {
			t.Errorf("webhook list-events --name %s is not newest first: %+v", hook, events[hook])
		}
	}
	if got := rc.deliveries("hookdeletes"); len(got) > 0 {
		t.Errorf("hookdeletes (actions delete) got events for pushes: %s", statuses(got))
	}
	for _, r := range rc.deliveries("hookwestus") {
		if r.Event.Action != "ping" && r.Header.Get("X-Georep-Test") != "westus" {
			t.Errorf("hookwestus: event %s came with X-Georep-Test %q, want westus (--headers)", r.Event.ID, r.Header.Get("X-Georep-Test"))
		}
	}

	// A tag deleted in westus: hookdeletes announces it once westeurope no
	// longer lists it; the push webhooks stay quiet.
	del := pushes[0]
	if err := m.c.DeleteRef(ctx, west.URL(), del.repo, del.tag); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var acc []received
	err = ociclient.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
		acc = nil
		for _, r := range rc.deliveries("hookdeletes") {
			if r.Status == http.StatusOK && r.Event.Action == "delete" {
				acc = append(acc, r)
			}
		}
		return len(acc) > 0, fmt.Errorf("hookdeletes accepted no delete event: %s", statuses(rc.deliveries("hookdeletes")))
	})
	if err != nil {
		t.Fatalf("delete of %s:%s: %v", del.repo, del.tag, err)
	}
	time.Sleep(time.Second)
	got := rc.deliveries("hookdeletes")
	acc = nil
	for _, r := range got {
		if r.Status == http.StatusOK {
			acc = append(acc, r)
		}
	}
	if len(acc) != 1 || len(got) != 2 {
		t.Fatalf("hookdeletes: %d deliveries, %d accepted, want a 500 then one accepted delete event: %s", len(got), len(acc), statuses(got))
	}
	ev := acc[0].Event
	if ev.Action != "delete" || ev.Region != "westeurope" || ev.Target.Repository != del.repo || ev.Target.Tag != del.tag || !strings.HasPrefix(ev.ID, "westeurope-") {
		t.Errorf("hookdeletes got %+v, want a westeurope delete event for %s:%s", ev, del.repo, del.tag)
	}
	if acc[0].Held != nil {
		t.Errorf("hookdeletes announced the delete of %s:%s before westeurope applied it: %v", del.repo, del.tag, acc[0].Held)
	}
	t.Logf("webhook: hookdeletes (westeurope): delete event %s for %s:%s (digest %q) accepted %d ms after the DELETE in westus; request %+v",
		ev.ID, ev.Target.Repository, ev.Target.Tag, ev.Target.Digest, acc[0].At.Sub(deleted).Milliseconds(), ev.Request)
	for _, hook := range pushHooks {
		for _, r := range rc.deliveries(hook) {
			if r.Event.Action == "delete" {
				t.Errorf("%s (actions push) got a delete event: %+v", hook, r.Event)
			}
		}
	}

	out, errOut, err := m.cli(t, ctx, "webhook", "delete", "--name", "hookeastus")
	if err != nil {
		t.Errorf("webhook delete --name hookeastus: %v\n%s%s", err, out, errOut)
	}
	hooks = nil
	m.cliJSON(t, ctx, &hooks, "webhook", "list", "--json")
	names := []string{}
	for _, h := range hooks {
		names = append(names, h.Name)
	}
	if slices.Contains(names, "hookeastus") || len(names) != len(hookRegion)-1 {
		t.Errorf("after webhook delete --name hookeastus, webhook list shows %v", names)
	}
}

// accepted returns the deliveries of got that the receiver answered 200 for
// action on repo@dgst.
func accepted(got []received, action, repo string, dgst digest.Digest) []received {
	var out []received
	for _, r := range got {
		if r.Status == http.StatusOK && r.Event.Action == action && r.Event.Target.Repository == repo && r.Event.Target.Digest == dgst.String() {
			out = append(out, r)
		}
	}
	return out
}

// checkPushEvent checks an accepted push event's fields against the image.
func checkPushEvent(t *testing.T, hook, region string, ev hookEvent, repo, tag string, img image) {
	t.Helper()
	tg := ev.Target
	if ev.Region != region || !strings.HasPrefix(ev.ID, region+"-") || ev.Timestamp.IsZero() ||
		tg.MediaType != mediaManifest || tg.Size != int64(len(img.Manifest)) || tg.Length != tg.Size || tg.Tag != tag ||
		ev.Request.ID == "" || ev.Request.Host == "" || ev.Request.Method == "" || ev.Request.UserAgent == "" {
		b, _ := json.Marshal(ev)
		t.Errorf("%s: event for %s:%s: %s; want region %s, id %s-N, mediaType %s, size %d, tag %s and a request", hook, repo, tag, b, region, region, mediaManifest, len(img.Manifest), tag)
	}
}

// checkListEvents checks that list-events shows the failed attempt and the
// accepted retry of event ev.
func checkListEvents(t *testing.T, hook string, ds []hookDelivery, ev hookEvent, repo, tag string, dgst digest.Digest) {
	t.Helper()
	byAttempt := map[int]hookDelivery{}
	for _, d := range ds {
		if d.ID == ev.ID {
			byAttempt[d.Attempt] = d
		}
	}
	first, second := byAttempt[1], byAttempt[2]
	if len(byAttempt) != 2 || first.Status != http.StatusInternalServerError || first.Final ||
		second.Status != http.StatusOK || !second.Final ||
		second.Action != "push" || second.Repo != repo || second.Tag != tag || second.Digest != dgst.String() || second.Webhook != hook {
		t.Errorf("webhook list-events --name %s shows for event %s (%s:%s): %+v; want attempt 1 status 500 not final, attempt 2 status 200 final", hook, ev.ID, repo, tag, slices.Collect(maps.Values(byAttempt)))
	}
}

func sortedNewestFirst(ds []hookDelivery) bool {
	return slices.IsSortedFunc(ds, func(a, b hookDelivery) int { return b.Time.Compare(a.Time) })
}

func statuses(rs []received) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %s %s:%s -> %d", r.Event.ID, r.Event.Action, r.Event.Target.Repository, r.Event.Target.Tag, r.Status))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// noRedirects pings a webhook whose receiver answers 307 to another
// server: the ping is a failed delivery with status 307, and neither the
// request nor its Authorization header reaches the redirect target.
func noRedirects(t *testing.T, ctx context.Context, m *geoMesh) {
	t.Helper()
	var stolen atomic.Int32
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen.Add(1) }))
	defer thief.Close()
	var auth atomic.Value
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		http.Redirect(w, r, thief.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	// Its scope matches no image: it only gets the ping.
	var w struct{}
	m.cliJSON(t, ctx, &w, "webhook", "create", "--name", "hookredirect", "--uri", redirector.URL+"/hook", "--actions", "delete",
		"--region", "westus", "--scope", "nothing/here:*", "--headers", "Authorization=Bearer s3cret")
	var ping hookDelivery
	m.cliJSON(t, ctx, &ping, "webhook", "ping", "--name", "hookredirect")
	if ping.Status != http.StatusTemporaryRedirect || !strings.Contains(ping.Error, "not followed") {
		t.Errorf("webhook ping --name hookredirect printed %+v, want status 307 and a redirect-not-followed error", ping)
	}
	if got, _ := auth.Load().(string); got != "Bearer s3cret" {
		t.Errorf("the redirecting receiver got Authorization %q, want the stored value", got)
	}
	if n := stolen.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests, want none", n)
	}
	t.Logf("webhook: ping of a receiver answering 307: status %d, %q; redirect target asked %d times", ping.Status, ping.Error, stolen.Load())
	if out, errOut, err := m.cli(t, ctx, "webhook", "delete", "--name", "hookredirect"); err != nil {
		t.Errorf("webhook delete --name hookredirect: %v\n%s%s", err, out, errOut)
	}
}

// TestWebhookPrivateTargets starts a one-node registry without
// --webhook-allow-private (mesh up --webhook-allow-private=false): webhooks
// to loopback, private and metadata addresses are refused with an error
// naming the rule and the flag, and the receiver hears nothing.
func TestWebhookPrivateTargets(t *testing.T) {
	hm := harness.StartMesh(t, "--regions", "westus", "--zones", "1", "--no-trafficmgr", "--webhook-allow-private=false")
	m := &geoMesh{Mesh: hm, c: newClient(hm)}
	ctx := context.Background()
	if err := m.WaitLeaders(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	for _, tt := range []struct{ uri, rule string }{
		{"http://127.0.0.1:" + port + "/hook", "loopback"},
		{"http://localhost:" + port + "/hook", "loopback"},
		{"http://[::1]:" + port + "/hook", "loopback"},
		{"http://169.254.169.254/latest/meta-data/", "link-local"},
		{"http://10.0.0.1/hook", "private"},
	} {
		out, errOut, err := m.cli(t, ctx, "webhook", "create", "--name", "hooklocal", "--uri", tt.uri, "--actions", "push")
		if err == nil {
			t.Errorf("webhook create --uri %s succeeded without --webhook-allow-private: %s", tt.uri, out)
			continue
		}
		if !strings.Contains(errOut, tt.rule) || !strings.Contains(errOut, "--webhook-allow-private") {
			t.Errorf("webhook create --uri %s: %q does not name the rule %q and the flag", tt.uri, errOut, tt.rule)
		}
		t.Logf("webhook: create --uri %s refused: %s", tt.uri, strings.TrimSpace(errOut))
	}
	var hooks []struct{}
	m.cliJSON(t, ctx, &hooks, "webhook", "list", "--json")
	if len(hooks) != 0 || hits.Load() != 0 {
		t.Errorf("after the refusals: %d webhooks listed, %d requests to the loopback receiver; want none", len(hooks), hits.Load())
	}
}
