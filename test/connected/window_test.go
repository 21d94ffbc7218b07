package connected

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/testclock"
	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
	"github.com/georeg/georeg/zone"
)

// TestSiteSyncWindows runs a connected registry that syncs 1 h every 6 h
// (issue 18's acceptance) on a test clock an hour every 3 s, behind a
// counting TCP proxy: every connection the site opens to its parent goes
// through the proxy, which the test puts between them, so the counts are
// taken outside the site. Outside its windows the site opens no
// connection and sends no byte; what is pushed in the cloud meanwhile is
// pullable at the site soon after the next window opens; when a window
// ends its connections are closed.
func TestSiteSyncWindows(t *testing.T) {
	const (
		speed = 1200 // an hour every 3 s
		// edge is how long after a window's end (on the real clock)
		// the site may still be closing what it had open: the proxy's
		// timestamps and the site's clock are two processes' readings.
		edge = 50 * time.Millisecond
	)
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	scanner := m.CreateToken(t, "scanner1", "--scope-map", "_repositories_pull")
	must("connected-registry", "create", "--name", "factory1", "--repository", "samples/*", "--client-tokens", scanner.User,
		"--sync-schedule", "0 */6 * * *", "--sync-window", "PT1H")
	cloud := m.Client(30 * time.Second)
	push := func(repo, tag string, seed uint64) {
		t.Helper()
		img := ociclient.NewImage(repo+":"+tag, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 32<<10)))
		if err := cloud.PushImage(ctx, m.URL(), repo, tag, img); err != nil {
			t.Fatal(err)
		}
	}
	push("samples/app", "v1", 1)

	// The site's day starts at 04:00 on its clock: it activates once to
	// learn its schedule (a site that never activated must), then waits
	// for the 06:00 window.
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &testclock.Clock{From: time.Now(), At: day.Add(4 * time.Hour), Speed: speed}
	at := func(h float64) time.Time { return clock.Real(day.Add(time.Duration(h * float64(time.Hour)))) }
	proxy := newCountingProxy(t, m.Nodes[0].HTTP)
	site, _ := startSite(t, m, "factory1", proxy, clock)
	local := ociclient.NewWithCredential(10*time.Second, scanner)
	has := func(repo, tag string) bool {
		_, _, err := local.Do(ctx, http.MethodGet, site.URL(), "/v2/"+repo+"/manifests/"+tag, http.Header{"Accept": {ociclient.MediaManifest}}, nil, http.StatusOK)
		return err == nil
	}

	// Outside the first window, after the activation that learns the
	// schedule: nothing.
	var learned time.Time
	if err := ociclient.Poll(ctx, time.Until(at(6)), 5*time.Millisecond, func() (bool, error) {
		c, _, _ := proxy.between(time.Time{}, time.Now())
		if c > 0 && proxy.open() == 0 {
			learned = time.Now()
			return true, nil
		}
		return false, fmt.Errorf("%d connections so far, %d open", c, proxy.open())
	}); err != nil {
		t.Logf("the site learned its schedule only inside the first window (started slowly): %v", err)
	} else {
		c, up, _ := proxy.between(time.Time{}, learned)
		t.Logf("the site activated once to learn its schedule: %d connections, %d bytes sent, done at %s on its clock", c, up, clock.Reading(learned).Format("15:04"))
	}

	// The 06:00 window: the site takes what the cloud holds.
	time.Sleep(time.Until(at(6)))
	if err := ociclient.Poll(ctx, time.Until(at(7)), 10*time.Millisecond, func() (bool, error) { return has("samples/app", "v1"), nil }); err != nil {
		t.Fatalf("samples/app:v1 not at the site during the 06:00 window\n%s", site.LogTail(4000))
	}
	t.Logf("samples/app:v1 at the site %v after the 06:00 window opened", time.Since(at(6)).Round(time.Millisecond))

	// 07:00 to 12:00: pushes in the cloud, nothing between site and
	// parent.
	pushes := []struct {
		at        float64
		repo, tag string
	}{{7.5, "samples/app", "v2"}, {9, "samples/tools", "v1"}, {11.5, "samples/app", "v3"}}
	for i, p := range pushes {
		time.Sleep(time.Until(at(p.at)))
		push(p.repo, p.tag, uint64(10+i))
	}
	time.Sleep(time.Until(at(11.9)))
	for _, p := range pushes {
		if has(p.repo, p.tag) {
			t.Errorf("%s:%s at the site before the 12:00 window", p.repo, p.tag)
		}
	}
	time.Sleep(time.Until(at(12)))
	if last := proxy.settled(at(7), at(12)); !last.IsZero() {
		_, up, down := proxy.between(at(7), last.Add(time.Nanosecond))
		t.Logf("the 06:00 window's connections closed %v after it ended (%d bytes to the parent, %d from it, meanwhile)", last.Sub(at(7)).Round(100*time.Microsecond), up, down)
	}
	gapFrom, gapTo := at(7).Add(edge), at(12)
	if conns, up, down := proxy.between(gapFrom, gapTo); conns != 0 || up != 0 || down != 0 {
		t.Errorf("between the windows (%s to 12:00 on the clock): %d connections, %d bytes to the parent, %d from it; want 0",
			clock.Reading(gapFrom).Format("15:04:05"), conns, up, down)
	} else {
		t.Logf("between the windows (%s to 12:00 on the clock, %v real): 0 connections, 0 bytes either way, while %d images were pushed in the cloud",
			clock.Reading(gapFrom).Format("15:04:05"), gapTo.Sub(gapFrom).Round(time.Millisecond), len(pushes))
	}
	if !learned.IsZero() {
		if conns, up, down := proxy.between(learned, at(6)); conns != 0 || up != 0 || down != 0 {
			t.Errorf("before the first window, after learning the schedule: %d connections, %d bytes to the parent, %d from it; want 0", conns, up, down)
		}
	}

	// The 12:00 window: everything pushed meanwhile arrives.
	for _, p := range pushes {
		if err := ociclient.Poll(ctx, 30*time.Second, 10*time.Millisecond, func() (bool, error) { return has(p.repo, p.tag), nil }); err != nil {
			t.Fatalf("%s:%s not at the site 30 s after the 12:00 window opened\n%s", p.repo, p.tag, site.LogTail(4000))
		}
	}
	lag := time.Since(at(12))
	t.Logf("all %d images pushed between the windows pullable at the site %v after the 12:00 window opened (%v on its clock)",
		len(pushes), lag.Round(time.Millisecond), (lag * speed).Round(time.Second))
	if lag > 30*time.Second {
		t.Errorf("%v after the window opened, want within 30 s", lag)
	}
	if c, up, down := proxy.between(at(12), at(12).Add(lag)); c == 0 || up == 0 {
		t.Errorf("the proxy counted %d connections and %d bytes in the window: the site does not reach its parent through it", c, up)
	} else {
		t.Logf("in the window until then: %d connections, %d bytes to the parent, %d from it", c, up, down)
	}

	// 13:00: the window ends, and with it every connection.
	time.Sleep(time.Until(at(13).Add(time.Second)))
	if n := proxy.open(); n != 0 {
		t.Errorf("%d connections still open after the 13:00 window ended", n)
	}
	if conns, up, _ := proxy.between(at(13).Add(edge), time.Now()); conns != 0 || up != 0 {
		t.Errorf("after the 13:00 window ended: %d connections, %d bytes to the parent", conns, up)
	}
	last := proxy.last()
	t.Logf("the site's last byte to its parent at %s on its clock", clock.Reading(last).Format("15:04:05"))
}

// TestSiteMessageTTL cuts a site off from its parent (whose test clock
// runs a day every 12 s) for longer than its message TTL of one day,
// while its repositories change in the cloud: tags pushed, moved and
// deleted, a manifest deleted, a repository added. The parent's backlog
// for the site (the events its events call hands a caller at the site's
// cursor, with the site's TTL) holds those changes before the TTL and is
// 0 after it; reconnected, the site compares its repositories whole and
// ends with the cloud's tags, nothing missing and nothing stale.
func TestSiteMessageTTL(t *testing.T) {
	const speed = 7200 // a day every 12 s
	// The parent's clock: the mesh's nodes take it from the environment
	// through `mesh up`. The site runs on the real time (it has no
	// schedule; its TTL is counted by the parent).
	t.Setenv("GEOREG_TESTING", "1")
	t.Setenv("GEOREG_TEST_CLOCK", "speed="+strconv.Itoa(speed))
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	t.Setenv("GEOREG_TEST_CLOCK", "")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	scanner := m.CreateToken(t, "scanner1", "--scope-map", "_repositories_pull")
	must("connected-registry", "create", "--name", "factory1", "--repository", "samples/*", "--client-tokens", scanner.User,
		"--sync-message-ttl", "P1D")
	cloud := m.Client(30 * time.Second)
	parent := m.Nodes[0].URL()
	push := func(repo, tag string, seed uint64) digest.Digest {
		t.Helper()
		img := ociclient.NewImage(repo+":"+tag, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 16<<10)))
		if err := cloud.PushImage(ctx, parent, repo, tag, img); err != nil {
			t.Fatal(err)
		}
		return img.Digest
	}
	push("samples/app", "v1", 1)
	push("samples/app", "v2", 2)
	tools := push("samples/tools", "v1", 3)
	push("other/x", "v1", 4)

	proxy := newCountingProxy(t, m.Nodes[0].HTTP)
	site, cs := startSite(t, m, "factory1", proxy, nil)
	local := ociclient.NewWithCredential(10*time.Second, scanner)
	cloudMap := func() (ociclient.RepoMap, error) { return tagMap(ctx, cloud, parent, "samples/") }
	siteMap := func() (ociclient.RepoMap, error) { return tagMap(ctx, local, site.URL(), "samples/") }
	same := func() (bool, error) {
		want, err := cloudMap()
		if err != nil {
			return false, err
		}
		got, err := siteMap()
		if err != nil {
			return false, err
		}
		if !maps.EqualFunc(want, got, maps.Equal) {
			return false, fmt.Errorf("the cloud's:\n%sthe site's:\n%s", want, got)
		}
		return true, nil
	}
	if err := ociclient.Poll(ctx, 30*time.Second, 50*time.Millisecond, same); err != nil {
		t.Fatalf("the site's first sync: %v\n%s", err, site.LogTail(4000))
	}

	// The site has applied every notice the parent holds (its cursor is
	// the parent's last), so that its backlog below is the changes made
	// while it is away, no more.
	sc := &syncClient{t: t, base: parent, cs: cs, hc: &http.Client{Timeout: 30 * time.Second}}
	end := sc.events(connected.Cursor{}, 0)
	var cursor connected.Cursor
	var resyncs int64
	if err := ociclient.Poll(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := siteStatus(ctx, local, site)
		if err != nil {
			return false, err
		}
		cursor, err = connected.ParseCursor(st.Site.Cursor)
		resyncs = st.Site.Stats.Resyncs
		return err == nil && cursor == connected.Cursor{Region: end.Region, Seq: end.Last}, fmt.Errorf("the site's cursor %q, the parent's last %s:%d", st.Site.Cursor, end.Region, end.Last)
	}); err != nil {
		t.Fatal(err)
	}

	// Away: the link is cut, the cloud changes.
	proxy.cut(true)
	away := time.Now()
	first := time.Now()
	push("samples/app", "v3", 5)
	push("samples/app", "v1", 6) // moved
	push("samples/new", "v1", 7)
	push("other/x", "v2", 8)
	harness.Must(t, cloud.DeleteRef(ctx, parent, "samples/app", "v2"))
	harness.Must(t, cloud.DeleteRef(ctx, parent, "samples/tools", tools.String()))

	// The parent's backlog for the site: what its events call hands a
	// caller at the site's cursor with the site's TTL.
	backlog := func() connected.Events {
		t.Helper()
		code, b := sc.do(http.MethodGet, "events", fmt.Sprintf("?since=%s&wait=0&ttl=%d", cursor, int64(connected.MinMessageTTL/time.Second)), nil)
		var ev connected.Events
		if code != http.StatusOK || json.Unmarshal(b, &ev) != nil {
			t.Fatalf("events since %s: %d %s", cursor, code, b)
		}
		return ev
	}
	if ev := backlog(); ev.Resync || len(ev.Events) != 5 {
		t.Fatalf("the backlog %v (%v on the parent's clock) after the cut: %+v, want the 5 changes to samples/*",
			time.Since(first).Round(time.Millisecond), (time.Since(first) * speed).Round(time.Minute), ev)
	} else {
		t.Logf("the parent's backlog for the site %v after the changes began (%v on its clock): %d events",
			time.Since(first).Round(time.Millisecond), (time.Since(first) * speed).Round(time.Minute), len(ev.Events))
	}
	var empty time.Duration
	if err := ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		ev := backlog()
		empty = time.Since(first)
		return ev.Resync && len(ev.Events) == 0, nil
	}); err != nil {
		t.Fatalf("the parent still hands the site its events %v after they began (%v on its clock)", empty, empty*speed)
	}
	t.Logf("the parent's backlog for the site 0 (a resync) %v after the changes began: %v on its clock, for a TTL of %v",
		empty.Round(time.Millisecond), (empty * speed).Round(time.Minute), connected.MinMessageTTL)
	if empty*speed < connected.MinMessageTTL {
		t.Errorf("the backlog was dropped after %v on the parent's clock, before the TTL", empty*speed)
	}

	// Back: the site compares its repositories whole and ends with the
	// cloud's tags.
	proxy.cut(false)
	healed := time.Now()
	if err := ociclient.Poll(ctx, 30*time.Second, 50*time.Millisecond, same); err != nil {
		t.Fatalf("the site's tags 30 s after it reconnected: %v\n%s", err, site.LogTail(4000))
	}
	want, _ := cloudMap()
	t.Logf("away %v (%v on the parent's clock); reconnected, the site's tags equal the cloud's %v later: %d tags in %d repositories",
		healed.Sub(away).Round(time.Millisecond), (healed.Sub(away) * speed).Round(time.Minute), time.Since(healed).Round(time.Millisecond), want.Tags(), len(want))
	// A resync also deletes the manifests the cloud no longer has: one
	// deleted in the cloud meanwhile is not left at the site by digest.
	if err := ociclient.Poll(ctx, 10*time.Second, 50*time.Millisecond, func() (bool, error) {
		_, _, err := local.Do(ctx, http.MethodGet, site.URL(), "/v2/samples/tools/manifests/"+tools.String(), http.Header{"Accept": {ociclient.MediaManifest}}, nil, http.StatusOK)
		return ociclient.IsStatus(err, http.StatusNotFound), nil
	}); err != nil {
		t.Errorf("samples/tools@%.19s, deleted in the cloud while the site was away, still at the site by digest after its resync: %v", tools, err)
	}
	if st, err := siteStatus(ctx, local, site); err != nil || st.Site.Stats.Resyncs <= resyncs {
		t.Errorf("the site's resyncs: %d before the cut, %+v after (%v): want a resync", resyncs, st.Site, err)
	}
}

// startSite starts a site node of connected registry name whose
// connections to its parent go through proxy, for the life of t, on
// clock (nil: the real time). It returns the node and its connection
// string (a new sync token password; the parent endpoint the proxy).
func startSite(t *testing.T, m *harness.Mesh, name string, proxy *countingProxy, clock *testclock.Clock) (harness.Node, connected.ConnectionString) {
	t.Helper()
	cs := settings(t, m, name)
	cs.ParentEndpoint = proxy.addr()
	dir := t.TempDir()
	file := filepath.Join(dir, name+".connection")
	harness.Must(t, os.WriteFile(file, []byte(cs.String()), 0o600))
	if clock != nil {
		t.Setenv("GEOREG_TESTING", "1")
		t.Setenv("GEOREG_TEST_CLOCK", clock.String())
	}
	p := freeport.Block(t, 4)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p+i) }
	n := harness.Node{Region: name, Zone: 1, HTTP: addr(0), Data: filepath.Join(dir, "data"), Log: filepath.Join(dir, name+".log")}
	harness.Start(t, n.Log, harness.Bin(t, "regiond"), "--http", addr(0), "--grpc", addr(1), "--raft", addr(2), "--gossip", addr(3),
		"--data", n.Data, "--connection-string-file", file)
	return n, cs
}

// settings is connected registry name's connection string, with a new
// sync token password.
func settings(t *testing.T, m *harness.Mesh, name string) connected.ConnectionString {
	t.Helper()
	out := m.MustRun(t, context.Background(), "connected-registry", "get-settings", "--name", name)
	cs, err := connected.ParseConnectionString(strings.Split(out, "\n")[0])
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func siteStatus(ctx context.Context, c *ociclient.Client, n harness.Node) (zone.Status, error) {
	var st zone.Status
	_, body, err := c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/status", nil, nil, http.StatusOK)
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	if err == nil && st.Site == nil {
		err = errors.New("the node's status has no site")
	}
	return st, err
}

// tagMap is what the registry at base serves of the repositories named
// with prefix: their tags and the digests they name. Repositories without
// tags are left out.
func tagMap(ctx context.Context, c *ociclient.Client, base, prefix string) (ociclient.RepoMap, error) {
	repos, err := c.List(ctx, base, "/v2/_catalog", "repositories")
	if err != nil {
		return nil, err
	}
	out := ociclient.RepoMap{}
	for _, repo := range repos {
		if !strings.HasPrefix(repo, prefix) {
			continue
		}
		tags, err := c.Tags(ctx, base, repo)
		if err != nil {
			return nil, err
		}
		for _, tag := range tags {
			d, _, err := c.GetManifest(ctx, base, repo, tag)
			if err != nil {
				return nil, fmt.Errorf("%s:%s: %w", repo, tag, err)
			}
			if out[repo] == nil {
				out[repo] = map[string]digest.Digest{}
			}
			out[repo][tag] = d
		}
	}
	return out, nil
}

// countingProxy is a TCP proxy to one address that records, by the real
// time, every connection it accepts and every byte it carries each way:
// the test's view of a site's link to its parent, from outside the site.
// Cut, it closes what is open and every connection it accepts.
type countingProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	events  []proxyEvent
	conns   map[net.Conn]bool
	isCut   bool
	lastUp  time.Time
	stopped bool
}

// proxyEvent is a connection of the site accepted (conn) or closed
// (closed), or bytes carried to the target (up) or back (down).
type proxyEvent struct {
	at           time.Time
	conn, closed bool
	up, down     int
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	harness.Must(t, err)
	p := &countingProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.stopped = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go p.serve()
	return p
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

func (p *countingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.events = append(p.events, proxyEvent{at: time.Now(), conn: true})
		if p.isCut || p.stopped {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = true
		p.mu.Unlock()
		go p.carry(c)
	}
}

func (p *countingProxy) carry(c net.Conn) {
	defer p.forget(c)
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.isCut || p.stopped {
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = false
	p.mu.Unlock()
	defer p.forget(u)
	done := make(chan struct{}, 2)
	copyCounting := func(dst, src net.Conn, up bool) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				now := time.Now()
				p.mu.Lock()
				e := proxyEvent{at: now}
				if up {
					e.up, p.lastUp = n, now
				} else {
					e.down = n
				}
				p.events = append(p.events, e)
				p.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go copyCounting(u, c, true)
	go copyCounting(c, u, false)
	<-done // either side closed: close both
}

func (p *countingProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	if p.conns[c] {
		p.events = append(p.events, proxyEvent{at: time.Now(), closed: true})
	}
	delete(p.conns, c)
	p.mu.Unlock()
}

// settled is the last time from from (inclusive) to to (exclusive) that
// the proxy carried a byte or closed a connection of the site; zero when
// none.
func (p *countingProxy) settled(from, to time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last time.Time
	for _, e := range p.events {
		if (e.closed || e.up > 0 || e.down > 0) && !e.at.Before(from) && e.at.Before(to) {
			last = e.at
		}
	}
	return last
}

// between counts the connections accepted and the bytes carried each way
// from from (inclusive) to to (exclusive).
func (p *countingProxy) between(from, to time.Time) (conns int, up, down int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e.at.Before(from) || !e.at.Before(to) {
			continue
		}
		if e.conn {
			conns++
		}
		up += int64(e.up)
		down += int64(e.down)
	}
	return conns, up, down
}

// open is the number of the site's connections open through the proxy.
func (p *countingProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, site := range p.conns {
		if site {
			n++
		}
	}
	return n
}

// last is when the proxy last carried a byte to the target.
func (p *countingProxy) last() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastUp
}

// cut closes every open connection and every one accepted until
// cut(false).
func (p *countingProxy) cut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = on
	if on {
		for c := range p.conns {
			c.Close()
		}
	}
}
