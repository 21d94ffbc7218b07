package site

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/replication/site/sitetest"
	"github.com/georeg/georeg/storage"
)

func testRegistry(mode connected.Mode) connected.Registry {
	return connected.Registry{
		Name: "factory1", Mode: mode, Repositories: []string{"app/*", "base"},
		ClientTokens: []string{"puller"}, SyncToken: connected.SyncTokenName("factory1"),
		LogLevel: "Information", Activation: connected.Active,
	}
}

func testConfig(reg connected.Registry) connected.Config {
	now := time.Now().UTC().Truncate(time.Second)
	return connected.Config{
		Registry: reg,
		ScopeMaps: []access.ScopeMap{{Name: "site-pull", Created: now,
			Permissions: []access.Permission{{Pattern: "app/*", Actions: []access.Action{"content/read", "metadata/read"}}}}},
		ClientTokens: []access.Token{
			{Name: "puller", ScopeMap: "site-pull", Status: access.Enabled, Created: now},
			{Name: "reader", ScopeMap: "_repositories_pull", Status: access.Enabled, Created: now},
		},
	}
}

type site struct {
	meta  *meta.Store
	blobs *storage.FS
	dir   string
	s     *Syncer
	stop  context.CancelFunc
	done  chan error
}

func newSite(t *testing.T, p *sitetest.Parent, dir string) *site {
	return newSiteWith(t, p, dir, nil)
}

func newSiteWith(t *testing.T, p *sitetest.Parent, dir string, tweak func(*Config)) *site {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ms, err := meta.Open(meta.Config{Path: filepath.Join(dir, "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := storage.NewFS(storage.FSConfig{Root: filepath.Join(dir, "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Connection: p.Conn, Meta: ms, Blobs: fs, Dir: dir,
		Wait: time.Second, StatusInterval: 50 * time.Millisecond, ActivateInterval: 100 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := &site{meta: ms, blobs: fs, dir: dir, s: s}
	t.Cleanup(func() { st.close(); ms.Close() })
	return st
}

func (st *site) start() {
	ctx, cancel := context.WithCancel(context.Background())
	st.stop, st.done = cancel, make(chan error, 1)
	go func() { st.done <- st.s.Run(ctx) }()
}

func (st *site) close() {
	if st.stop != nil {
		st.stop()
		<-st.done
		st.stop = nil
	}
}

// caughtUp waits until the site has applied every event of the parent.
func caughtUp(t *testing.T, p *sitetest.Parent, st *site) {
	t.Helper()
	want := connected.Cursor{Region: p.Region, Seq: p.LastEvent()}
	waitFor(t, "cursor "+want.String(), func() bool { return st.s.Cursor() == want })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sameTags checks the site holds exactly the parent's tags of repo, with
// every manifest's blobs.
func sameTags(t *testing.T, p *sitetest.Parent, st *site, repo string) {
	t.Helper()
	want := p.Tags(repo)
	have, _, err := st.meta.Tags(repo, "", 0)
	if err != nil && !errors.Is(err, meta.ErrRepositoryUnknown) {
		t.Fatal(err)
	}
	if len(have) != len(want) {
		t.Fatalf("%s: site has tags %v, parent %v", repo, have, want)
	}
	for tag, d := range want {
		rec, err := st.meta.Tag(repo, tag)
		if err != nil || rec.Digest != d {
			t.Fatalf("%s:%s: site has %v (%v), parent %s", repo, tag, rec.Digest, err, d)
		}
		if _, err := st.meta.Manifest(repo, d); err != nil {
			t.Fatalf("%s@%s: %v", repo, d, err)
		}
	}
}

func TestResyncThenEvents(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	// Three repositories of the parent are synced (base, app/web, app/api:
	// more than a catalog page of 2), one is not.
	p.PushImage("base", "v1", "shared-layer", "base-layer")
	p.PushImage("app/web", "v1", "shared-layer", "web-layer-1")
	p.PushImage("app/web", "v2", "shared-layer", "web-layer-2")
	p.PushImage("app/web", "v3", "shared-layer", "web-layer-3")
	p.PushIndex("app/api", "multi")
	p.PushImage("secret", "v1", "secret-layer")
	st := newSite(t, p, "")
	st.start()
	caughtUp(t, p, st)
	for _, r := range []string{"base", "app/web", "app/api"} {
		sameTags(t, p, st, r)
	}
	if ok, _ := st.meta.RepositoryExists("secret"); ok {
		t.Fatal("a repository the connected registry does not sync was copied")
	}
	unique, count := p.UniqueBlobBytes()
	if got := p.BlobBytes.Load(); got != unique || p.BlobGets.Load() != int64(count) {
		t.Fatalf("parent sent %d bytes in %d blobs, want the %d unique bytes of %d blobs", got, p.BlobGets.Load(), unique, count)
	}
	t.Logf("resync: %d blobs, %d bytes sent for %d unique; stats %+v", p.BlobGets.Load(), p.BlobBytes.Load(), unique, st.s.Stats())

	// Access: the client tokens and their scope map, authentication on.
	as, err := st.meta.AccessState()
	if err != nil {
		t.Fatal(err)
	}
	if !as.Settings.AuthEnabled || len(as.Tokens) != 2 || len(as.ScopeMaps) != 1 {
		t.Fatalf("access state %+v", as)
	}

	// Events: a push sharing a layer (only the new bytes come), a delete.
	sent := p.BlobBytes.Load()
	p.PushImage("app/web", "v4", "shared-layer", "web-layer-4")
	p.DeleteTag("app/web", "v1")
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	cfgLen := int64(len(`{"architecture":"amd64","os":"linux","tag":"v4","repo":"app/web"}`))
	if got := p.BlobBytes.Load() - sent; got != int64(len("web-layer-4"))+cfgLen {
		t.Fatalf("the push sent %d blob bytes, want only the new layer and config (%d)", got, int64(len("web-layer-4"))+cfgLen)
	}
	if st.s.Stats().EventsApplied != 2 {
		t.Fatalf("stats %+v: want 2 events applied", st.s.Stats())
	}
	// A tag deleted while another tag points at the same manifest: the
	// manifest and the other tag stay.
	d4 := p.Tags("app/web")["v4"]
	p.PutManifest("app/web", "latest", p.Repos["app/web"].Manifests[d4].MediaType, p.Repos["app/web"].Manifests[d4].Content)
	caughtUp(t, p, st)
	p.DeleteTag("app/web", "latest")
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	if st.s.Stats().EventsApplied != 4 {
		t.Fatalf("stats %+v: want 4 events applied", st.s.Stats())
	}

	// A delete and a push again of the same content: the later write wins
	// at the site too.
	d3 := p.Tags("app/web")["v3"]
	p.DeleteManifest("app/web", d3)
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	if _, err := st.meta.Manifest("app/web", d3); err == nil {
		t.Fatal("a manifest deleted at the parent is still at the site")
	}
	p.PushImage("app/web", "v3", "shared-layer", "web-layer-3")
	p.PushImage("app/web", "v1", "shared-layer", "web-layer-1")
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	// What the site syncs is replicated writes: nothing for its own
	// outbox.
	if evs, _ := st.meta.OutboxAfter(0, 10); len(evs) != 0 {
		t.Fatalf("the site's outbox holds %d events of synced content", len(evs))
	}
	waitFor(t, "an Online status", func() bool {
		s, ok := p.LastStatus()
		return ok && s.State == connected.Online && s.Instance == st.s.Instance() && !s.LastSync.IsZero()
	})

	// Config changes apply at the next activation: a token dropped.
	p.Mu.Lock()
	p.Cfg.ClientTokens = p.Cfg.ClientTokens[:1]
	p.Mu.Unlock()
	waitFor(t, "the dropped token gone", func() bool {
		as, _ := st.meta.AccessState()
		return len(as.Tokens) == 1 && as.Tokens[0].Name == "puller"
	})
	versions := p.Activates.Load()
	as, _ = st.meta.AccessState()
	waitFor(t, "two more activations", func() bool { return p.Activates.Load() >= versions+2 })
	if as2, _ := st.meta.AccessState(); as2.Version != as.Version {
		t.Fatalf("an unchanged config rewrote the access state (version %d -> %d)", as.Version, as2.Version)
	}
}

func TestResyncDeletesAndRestart(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	p.PushImage("app/web", "v2", "l2")
	p.PushImage("app/old", "v1", "l3")
	dir := t.TempDir()
	st := newSite(t, p, dir)
	st.start()
	caughtUp(t, p, st)
	st.close()
	st.meta.Close()

	// While the site is down, the parent deletes and pushes, and trims
	// its events: the site's cursor is too old and it must resync.
	p.Mu.Lock()
	delete(p.Repos["app/web"].Tags, "v1")
	delete(p.Repos, "app/old")
	p.Mu.Unlock()
	p.PushImage("app/web", "v3", "l4")
	p.Mu.Lock()
	p.Trimmed = uint64(len(p.Log))
	p.Mu.Unlock()
	p.PushImage("app/web", "v2", "l5") // moves v2

	st2 := newSite(t, p, dir)
	if st2.s.Instance() != st.s.Instance() {
		t.Fatalf("a restart changed the instance ID: %s -> %s", st.s.Instance(), st2.s.Instance())
	}
	if st2.s.Mode() != connected.ReadOnly {
		t.Fatalf("mode %q kept across the restart, want ReadOnly", st2.s.Mode())
	}
	resyncs := st2.s.Stats().Resyncs
	st2.start()
	caughtUp(t, p, st2)
	if st2.s.Stats().Resyncs == resyncs {
		t.Fatal("no resync after the events were trimmed")
	}
	sameTags(t, p, st2, "app/web")
	sameTags(t, p, st2, "app/old")
}

// TestActiveElsewhere: an instance refused because another is Active
// keeps asking, says why, serves nothing new, and starts syncing once the
// other is deactivated.
func TestActiveElsewhere(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	p.Active = "another-instance"
	st := newSite(t, p, "")
	st.start()
	waitFor(t, "three refused activations", func() bool { return p.Activates.Load() >= 3 })
	if err := st.s.Status().LastError; !strings.Contains(err, "georeg connected-registry deactivate factory1") {
		t.Fatalf("LastError %q, want the refusal naming the deactivate command", err)
	}
	if p.EventCalls.Load() != 0 {
		t.Fatalf("%d events calls while refused", p.EventCalls.Load())
	}
	select {
	case err := <-st.done:
		st.stop = nil
		t.Fatalf("Run stopped on a refused activation: %v", err)
	default:
	}
	p.Mu.Lock()
	p.Active = "" // deactivate
	p.Mu.Unlock()
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	// Taken again by another instance: syncing stops, asking goes on.
	p.Mu.Lock()
	p.Active = "another-instance"
	p.Mu.Unlock()
	n := p.Activates.Load()
	waitFor(t, "refused activations again", func() bool { return p.Activates.Load() >= n+3 })
	calls := p.EventCalls.Load()
	time.Sleep(300 * time.Millisecond)
	if c := p.EventCalls.Load(); c > calls+1 {
		t.Fatalf("%d events calls after another instance took the activation", c-calls)
	}
}

func TestOfflineThenReconnect(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	st := newSite(t, p, "")
	st.start()
	caughtUp(t, p, st)

	p.Down.Store(true)
	p.PushImage("app/web", "v2", "l2")
	time.Sleep(time.Second)
	// The site serves what it holds, and records why it is behind.
	if rec, err := st.meta.Tag("app/web", "v1"); err != nil || rec.Deleted {
		t.Fatalf("the site lost app/web:v1 while cut off: %v", err)
	}
	if st.s.Status().LastError == "" {
		t.Fatal("no LastError while the parent is unreachable")
	}
	calls := p.EventCalls.Load()
	down := time.Now()
	p.Down.Store(false)
	caughtUp(t, p, st)
	t.Logf("caught up %v after the parent came back (%d events calls while down)", time.Since(down), p.EventCalls.Load()-calls)
	sameTags(t, p, st, "app/web")
	waitFor(t, "an Online status with no error", func() bool {
		s, ok := p.LastStatus()
		return ok && s.State == connected.Online && s.LastError == ""
	})
}

func TestMalformedRefused(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	st := newSite(t, p, "")
	st.start()
	caughtUp(t, p, st)
	before := st.s.Cursor()

	for _, bad := range []string{
		`{"region":"cloud","last":99,"events":[{"seq":99,"action":"explode","repo":"app/web","tag":"v1"}]}`,
		`{"region":"cloud","last":99,"events":[{"seq":99,"action":"push","repo":"../etc","tag":"v1"}]}`,
		`{"region":"cloud","last":99,"events":[{"seq":99,"action":"delete","repo":"app/web","digest":"sha256:zz"}]}`,
		`not json`,
	} {
		p.Mu.Lock()
		p.BadEvents = bad
		p.Mu.Unlock()
		calls := p.EventCalls.Load()
		waitFor(t, "two events calls", func() bool { return p.EventCalls.Load() >= calls+2 })
		if st.s.Cursor() != before {
			t.Fatalf("%s: the cursor moved to %s", bad, st.s.Cursor())
		}
		if e := st.s.Status().LastError; !strings.Contains(e, "malformed") {
			t.Fatalf("%s: LastError %q", bad, e)
		}
	}
	p.Mu.Lock()
	p.BadEvents = ""
	p.Mu.Unlock()

	// A manifest that does not match its digest is not stored.
	d := p.PushImage("app/web", "v2", "l2")
	p.Mu.Lock()
	p.Tamper[d] = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	p.Mu.Unlock()
	waitFor(t, "the tampered manifest refused", func() bool {
		return strings.Contains(st.s.Status().LastError, "does not match")
	})
	if _, err := st.meta.Tag("app/web", "v2"); err == nil {
		t.Fatal("a tampered manifest was stored")
	}
	p.Mu.Lock()
	delete(p.Tamper, d)
	p.Mu.Unlock()
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
}

func TestDamagedStateFile(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	ms, err := meta.Open(meta.Config{Path: filepath.Join(dir, "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	fs, _ := storage.NewFS(storage.FSConfig{Root: filepath.Join(dir, "blobs")})
	if _, err := New(Config{Connection: p.Conn, Meta: ms, Blobs: fs, Dir: dir}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("New with a damaged state file: %v", err)
	}
}

// TestBlobResume: a blob download cut midway, or stalled, resumes where it
// stopped: the parent sends every byte once.
func TestBlobResume(t *testing.T) {
	for _, c := range []struct {
		name  string
		knob  func(*sitetest.Parent) *atomic.Int64
		after int64
	}{
		{"cut", func(p *sitetest.Parent) *atomic.Int64 { return &p.CutBlobOnce }, 100_000},
		{"stalled", func(p *sitetest.Parent) *atomic.Int64 { return &p.StallBlobOnce }, 300_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := sitetest.New(t, testRegistry(connected.ReadOnly))
			p.Cfg = testConfig(p.Cfg.Registry)
			p.PushImage("app/big", "v1", strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
			c.knob(p).Store(c.after)
			st := newSiteWith(t, p, "", func(cfg *Config) { cfg.BlobIdleTimeout = 300 * time.Millisecond })
			start := time.Now()
			st.start()
			caughtUp(t, p, st)
			sameTags(t, p, st, "app/big")
			unique, _ := p.UniqueBlobBytes()
			if got := p.BlobBytes.Load(); got != unique || st.s.Stats().BlobsResumed != 1 {
				t.Fatalf("parent sent %d bytes for %d unique, %d resumed downloads; want every byte once and 1 resumed", got, unique, st.s.Stats().BlobsResumed)
			}
			if ents, _ := os.ReadDir(filepath.Join(st.dir, "partial")); len(ents) != 0 {
				t.Fatalf("partial files left: %v", ents)
			}
			t.Logf("%s after %d bytes: synced in %v, %d bytes sent for %d unique", c.name, c.after, time.Since(start), p.BlobBytes.Load(), unique)
		})
	}
}

// TestBadAccessConfigStillSyncs: a Config whose access state the site
// cannot apply (a token of a scope map it does not list) leaves the site's
// access as it was, and the content still syncs.
func TestBadAccessConfigStillSyncs(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.Cfg.ClientTokens = append(p.Cfg.ClientTokens, access.Token{Name: "orphan", ScopeMap: "missing", Status: access.Enabled})
	p.PushImage("app/web", "v1", "l1")
	st := newSite(t, p, "")
	st.start()
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	as, _ := st.meta.AccessState()
	for _, tok := range as.Tokens {
		if tok.Name == "orphan" {
			t.Fatal("a token of an unknown scope map was stored")
		}
	}
}

// TestAntiEntropy: what the events did not bring (here, a tag lost at the
// site) is repaired by the periodic full comparison.
func TestAntiEntropy(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	st := newSiteWith(t, p, "", func(c *Config) { c.ResyncInterval = 300 * time.Millisecond })
	st.start()
	caughtUp(t, p, st)
	if err := st.meta.Apply(context.Background(), meta.DeleteTag{Repo: "app/web", Tag: "v1", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	resyncs := st.s.Stats().Resyncs
	waitFor(t, "app/web:v1 restored", func() bool {
		rec, err := st.meta.Tag("app/web", "v1")
		return err == nil && !rec.Deleted
	})
	// A resync running when the tag was deleted may restore it before
	// it counts itself.
	waitFor(t, "the resync that restored it", func() bool { return st.s.Stats().Resyncs > resyncs })
}

// TestEventBurst: a burst of pushes to many repositories is applied
// repositories at once, in order within each.
func TestEventBurst(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/r0", "v1", "l")
	st := newSite(t, p, "")
	st.start()
	caughtUp(t, p, st)
	p.Delay.Store(int64(20 * time.Millisecond)) // a 20 ms round trip
	start := time.Now()
	const repos = 20
	for i := range repos {
		repo := "app/r" + strconv.Itoa(i)
		p.PushImage(repo, "v2", "layer-a-"+repo)
		p.PushImage(repo, "v2", "layer-b-"+repo) // moves v2: the later push wins
		p.DeleteTag(repo, "v1")
	}
	caughtUp(t, p, st)
	took := time.Since(start)
	for i := range repos {
		sameTags(t, p, st, "app/r"+strconv.Itoa(i))
	}
	t.Logf("%d pushes and %d deletes over %d repositories at a 20 ms round trip applied in %v", 2*repos, repos, repos, took)
}

// TestWrongSyncPassword: a refused sync password is retried (it may be
// fixed in the cloud) with an error naming get-settings.
func TestWrongSyncPassword(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	conn := p.Conn
	p.Conn.SyncPassword = "rotated"
	st := newSite(t, p, "")
	st.s.c.pass = conn.SyncPassword // the site's copy is the old one
	err := st.s.activate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "georeg connected-registry get-settings --name factory1") {
		t.Fatalf("activate with a wrong password: %v", err)
	}
}

// TestNotifications: the site's own events that its patterns cover reach
// the parent in status reports, each once the parent took it, resent
// while the parent refuses reports, and not again after a restart.
func TestNotifications(t *testing.T) {
	reg := testRegistry(connected.ReadOnly)
	reg.Notifications = []string{"app/web:*:push"}
	p := sitetest.New(t, reg)
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	p.PushImage("app/other", "v1", "l2")
	dir := t.TempDir()
	st := newSite(t, p, dir)
	st.start()
	caughtUp(t, p, st)
	// taken lists the notifications the parent took, by tag.
	taken := func() []string {
		p.Mu.Lock()
		defer p.Mu.Unlock()
		var out []string
		for _, s := range p.Statuses {
			for _, n := range s.Notifications {
				out = append(out, n.Repo+":"+n.Tag+":"+n.Action)
			}
		}
		return out
	}
	waitFor(t, "the notification of app/web:v1", func() bool { return len(taken()) == 1 })
	if got := taken(); got[0] != "app/web:v1:push" {
		t.Fatalf("notifications %v, want app/web:v1:push only", got)
	}
	// cursor is the site's saved notification cursor.
	cursor := func() uint64 {
		st.s.stateMu.Lock()
		defer st.s.stateMu.Unlock()
		return st.s.st.Notified
	}
	waitFor(t, "the site to record the first report", func() bool { return cursor() > 0 })
	afterV1 := cursor()
	// The parent refuses reports: the next one waits at the site.
	p.RefuseStatus.Store(true)
	p.PushImage("app/web", "v2", "l3")
	caughtUp(t, p, st)
	time.Sleep(300 * time.Millisecond)
	p.RefuseStatus.Store(false)
	waitFor(t, "the notification of app/web:v2", func() bool { return len(taken()) == 2 })
	// The parent took the report before the site moved its cursor past
	// it: closing in between would send v2 again, which a real parent
	// drops by sequence (meta's ReportConnected) and this fake counts.
	waitFor(t, "the site to record the report", func() bool { return cursor() > afterV1 })
	st.close()
	st.meta.Close()
	// A restart sends nothing again.
	st2 := newSite(t, p, dir)
	st2.start()
	time.Sleep(500 * time.Millisecond)
	if got := taken(); len(got) != 2 || got[1] != "app/web:v2:push" {
		t.Fatalf("notifications %v after a restart, want app/web:v1 and v2 once", got)
	}
	if n := st.s.Stats().Notifications; n != 2 {
		t.Errorf("Stats().Notifications = %d, want 2", n)
	}
}

// manualClock is a Clock the test moves by hand.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	changed chan struct{}
}

func newManualClock(t time.Time) *manualClock {
	return &manualClock{now: t, changed: make(chan struct{})}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *manualClock) SleepUntil(ctx context.Context, t time.Time) bool {
	for {
		c.mu.Lock()
		now, ch := c.now, c.changed
		c.mu.Unlock()
		if !now.Before(t) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

// countingDialer counts the connections a site opens to its parent and
// the bytes it sends and receives on them, as the WAN's counters would.
type countingDialer struct {
	conns, sent, received atomic.Int64
}

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.conns.Add(1)
	return &countingConn{Conn: c, d: d}, nil
}

func (d *countingDialer) snapshot() [3]int64 {
	return [3]int64{d.conns.Load(), d.sent.Load(), d.received.Load()}
}

type countingConn struct {
	net.Conn
	d *countingDialer
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.d.received.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.d.sent.Add(int64(n))
	return n, err
}

// TestSyncWindows: a window of 1 h every 6 h, on a clock the test moves.
// Outside its windows the site opens no connection to its parent and
// sends nothing; at a window's start it syncs what was pushed meanwhile;
// when the window ends it stops. A site restarted outside its window
// waits for the next one without dialing.
func TestSyncWindows(t *testing.T) {
	reg := testRegistry(connected.ReadOnly)
	reg.SyncSchedule, reg.SyncWindow = "0 */6 * * *", "PT1H"
	p := sitetest.New(t, reg)
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	clock := newManualClock(day.Add(30 * time.Minute)) // inside 00:00-01:00
	wan := &countingDialer{}
	dir := t.TempDir()
	st := newSiteWith(t, p, dir, func(c *Config) { c.Clock, c.Dial = clock, wan.dial })
	st.start()
	caughtUp(t, p, st)

	clock.Set(day.Add(time.Hour)) // the window closes
	waitFor(t, "the sync to stop", func() bool { return st.s.windowsWaited.Load() == 1 })
	time.Sleep(100 * time.Millisecond)
	before, calls := wan.snapshot(), p.EventCalls.Load()
	p.PushImage("app/web", "v2", "l2")
	p.PushImage("app/api", "v1", "l3")
	for _, h := range []time.Duration{2 * time.Hour, 4 * time.Hour, 6*time.Hour - time.Second} {
		clock.Set(day.Add(h))
		time.Sleep(300 * time.Millisecond)
	}
	after := wan.snapshot()
	t.Logf("outside the window (01:00 to 05:59:59 on the clock, %v real): %d connections, %d bytes sent, %d received",
		900*time.Millisecond, after[0]-before[0], after[1]-before[1], after[2]-before[2])
	if after != before || p.EventCalls.Load() != calls {
		t.Fatalf("outside the window: connections/sent/received %v -> %v, events calls %d -> %d; want nothing",
			before, after, calls, p.EventCalls.Load())
	}

	opened := time.Now()
	clock.Set(day.Add(6 * time.Hour)) // the next window opens
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
	sameTags(t, p, st, "app/api")
	t.Logf("what was pushed outside the window was at the site %v after the window opened (%d connections in it)",
		time.Since(opened).Round(time.Millisecond), wan.conns.Load()-after[0])

	// Restarted outside its window: it knows its schedule, waits.
	clock.Set(day.Add(7 * time.Hour))
	st.close()
	st.meta.Close()
	before = wan.snapshot()
	st2 := newSiteWith(t, p, dir, func(c *Config) { c.Clock, c.Dial = clock, wan.dial })
	st2.start()
	waitFor(t, "the restarted site to wait", func() bool { return st2.s.windowsWaited.Load() == 1 })
	time.Sleep(300 * time.Millisecond)
	if after := wan.snapshot(); after != before {
		t.Fatalf("a site restarted outside its window dialed its parent: %v -> %v", before, after)
	}
	p.PushImage("app/web", "v3", "l4")
	clock.Set(day.Add(12 * time.Hour))
	caughtUp(t, p, st2)
	sameTags(t, p, st2, "app/web")
}

// TestFirstActivationOutsideWindow: a site that never activated, started
// outside its window, activates once to learn its schedule, then syncs
// nothing and keeps no connection until the window opens.
func TestFirstActivationOutsideWindow(t *testing.T) {
	reg := testRegistry(connected.ReadOnly)
	reg.SyncSchedule, reg.SyncWindow = "0 */6 * * *", "PT1H"
	p := sitetest.New(t, reg)
	p.Cfg = testConfig(p.Cfg.Registry)
	p.PushImage("app/web", "v1", "l1")
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	clock := newManualClock(day.Add(2 * time.Hour))
	wan := &countingDialer{}
	st := newSiteWith(t, p, "", func(c *Config) { c.Clock, c.Dial = clock, wan.dial })
	st.start()
	waitFor(t, "the site to wait for its window", func() bool { return st.s.windowsWaited.Load() == 1 })
	learned := wan.snapshot()
	time.Sleep(300 * time.Millisecond)
	if after := wan.snapshot(); after != learned || p.EventCalls.Load() != 0 {
		t.Fatalf("after learning its schedule outside the window: connections/sent/received %v -> %v, %d events calls; want nothing",
			learned, after, p.EventCalls.Load())
	}
	clock.Set(day.Add(6 * time.Hour))
	caughtUp(t, p, st)
	sameTags(t, p, st, "app/web")
}

// TestScheduleChangeApplies: a site syncing continuously learns a schedule
// at its next activation and follows it from then on.
func TestScheduleChangeApplies(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	p.Cfg = testConfig(p.Cfg.Registry)
	day := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	clock := newManualClock(day.Add(2 * time.Hour))
	st := newSiteWith(t, p, "", func(c *Config) { c.Clock = clock })
	st.start()
	caughtUp(t, p, st)
	p.Mu.Lock()
	p.Cfg.Registry.SyncSchedule, p.Cfg.Registry.SyncWindow = "0 */6 * * *", "PT1H"
	p.Mu.Unlock()
	waitFor(t, "the site to wait for its window", func() bool { return st.s.windowsWaited.Load() == 1 })
	calls := p.EventCalls.Load()
	time.Sleep(300 * time.Millisecond)
	if c := p.EventCalls.Load(); c != calls {
		t.Fatalf("%d events calls outside the window", c-calls)
	}
}

// countingMeta counts the reads of the site's shared record.
type countingMeta struct {
	Metadata
	sites atomic.Int32
}

func (c *countingMeta) Site() (meta.Site, bool, error) {
	c.sites.Add(1)
	return c.Metadata.Site()
}

// TestSharedDefinitionCached: Mode and Syncs, asked on every request the
// site authorizes, read the shared record once per write to the store,
// and see a new definition as soon as it is written.
func TestSharedDefinitionCached(t *testing.T) {
	p := sitetest.New(t, testRegistry(connected.ReadOnly))
	var cm *countingMeta
	st := newSiteWith(t, p, "", func(c *Config) {
		cm = &countingMeta{Metadata: c.Meta}
		c.Meta = cm
	})
	ask := func() {
		for range 100 {
			st.s.Mode()
			st.s.Syncs("app/web")
		}
	}
	ask()
	if n := cm.sites.Load(); n != 1 {
		t.Fatalf("200 questions before any definition read the record %d times, want once", n)
	}
	if st.s.Mode() != connected.ReadOnly || st.s.Syncs("app/web") {
		t.Fatalf("before any definition: mode %s, syncs app/web %v; want ReadOnly and none", st.s.Mode(), st.s.Syncs("app/web"))
	}
	reg := testRegistry(connected.ReadWrite)
	if err := st.meta.Apply(t.Context(), meta.PutSite{Site: meta.Site{Instance: st.s.Instance(), Registry: reg}}); err != nil {
		t.Fatal(err)
	}
	if st.s.Mode() != connected.ReadWrite {
		t.Fatalf("mode %s right after the definition was written, want ReadWrite", st.s.Mode())
	}
	for _, repo := range []string{"app/web", "base"} {
		if !st.s.Syncs(repo) {
			t.Fatalf("%s not synced right after the definition listing it was written", repo)
		}
	}
	before := cm.sites.Load()
	ask()
	if n := cm.sites.Load() - before; n != 0 {
		t.Fatalf("200 questions with no write between read the record %d times, want none", n)
	}
}
