package site

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/hlc"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/storage"
)

// Metadata is what the Syncer needs of the site's metadata: reads of the
// local replica and writes through the region's Raft group.
// *region.Group implements it (and *meta.Store, in tests).
type Metadata interface {
	Apply(ctx context.Context, cmd meta.Command) error
	Manifest(repo string, dgst digest.Digest) (meta.ManifestRecord, error)
	Tag(repo, tag string) (meta.TagRecord, error)
	Tags(repo, last string, n int) ([]string, bool, error)
	Repositories(last string, n int) ([]string, bool, error)
	AccessState() (meta.AccessState, error)
	// NoticesAfter and LastNotice read the site's own notice log, whose
	// events the Syncer reports as notifications.
	NoticesAfter(seq uint64, n int) ([]meta.Notice, error)
	LastNotice() uint64
	// OutboxAfter and Cursors read the site's outbox: its local writes,
	// which a ReadWrite site syncs up (OutboxPeer).
	OutboxAfter(seq uint64, n int) ([]meta.Event, error)
	Cursors() map[string]uint64
	LastSeq() uint64
	// Site reads what the site's zones share about the site itself.
	Site() (meta.Site, bool, error)
	// Changed returns a channel closed by the next write to the store
	// (meta.Reader.Changed): the Syncer keeps what Site returned until
	// then.
	Changed() <-chan struct{}
}

// Config configures a Syncer.
type Config struct {
	// Connection is the connected registry's connection string.
	Connection connected.ConnectionString
	Meta       Metadata
	// Blobs is the site's blob store (region.Blobs in a node); Put
	// verifies the digest of what the parent sends.
	Blobs storage.BlobStore
	// Dir keeps the Syncer's state file (StateFile).
	Dir string
	// Client, when set, makes the requests to the parent; nil builds one
	// with Dial (nil: direct) and timeouts.
	Client *http.Client
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, is the client TLS configuration for an https parent
	// (a private CA); nil trusts the system's roots.
	TLS    *tls.Config
	Logger *slog.Logger
	// Version is this instance's georeg version, told at activation.
	Version string
	// Wait is the events long poll (default 25 s, at most
	// connected.MaxWait).
	Wait time.Duration
	// StatusInterval (default connected.StatusInterval), ActivateInterval
	// (default 30 s: Config changes, such as client tokens, take effect
	// within it) and MaxBackoff (default 10 s) pace the Syncer.
	StatusInterval   time.Duration
	ActivateInterval time.Duration
	MaxBackoff       time.Duration
	// ResyncInterval is the time between full comparisons with the
	// parent beside the events (default 10 min): anti-entropy, repairing
	// what the events did not bring. A site also compares in full once
	// after it starts.
	ResyncInterval time.Duration
	// MaxFetches bounds the blob downloads running at once (default 8).
	MaxFetches int
	// BlobIdleTimeout gives up a blob download that delivers nothing for
	// this long (default 60 s); the bytes received are kept to resume.
	BlobIdleTimeout time.Duration
	// Clock is the time the sync windows follow (nil: the real time);
	// tests run a day of windows in seconds with their own.
	Clock Clock
}

// Clock tells the time of sync windows. The Syncer calls it from several
// goroutines at once.
type Clock interface {
	Now() time.Time
	// SleepUntil returns true once Now reaches t, false if ctx ends
	// first.
	SleepUntil(ctx context.Context, t time.Time) bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// StateFile is the name of the Syncer's state file in Config.Dir.
const StateFile = "connected-state.json"

// state is what the Syncer keeps across restarts.
type state struct {
	// Instance identifies this instance to the parent (connected.Hello).
	Instance string `json:"instance"`
	// Cursor is how far the site has applied the parent's events.
	Cursor string `json:"cursor,omitempty"`
	// Mode and Repositories are the connected registry's at the last
	// activation, so that a site restarted while cut off keeps enforcing
	// them.
	Mode         connected.Mode `json:"mode,omitempty"`
	Repositories []string       `json:"repositories,omitempty"`
	// Notified is the last notice of the site's log the parent took in
	// a status report (as a notification, or skipped as not matching).
	Notified uint64 `json:"notified,omitempty"`
	// SyncSchedule and SyncWindow are the connected registry's sync
	// windows at the last activation, so that a site restarted outside
	// its window waits for the next one instead of dialing its parent.
	SyncSchedule string `json:"syncSchedule,omitempty"`
	SyncWindow   string `json:"syncWindow,omitempty"`
}

// Stats are the Syncer's counters.
type Stats struct {
	// BlobsFetched and BytesFetched count the blobs stored from the
	// parent and the blob bytes received (resumed downloads included).
	BlobsFetched int64 `json:"blobsFetched"`
	BytesFetched int64 `json:"bytesFetched"`
	// BlobsDeduped counts blobs the site already held when a manifest
	// needed them; BlobsResumed the downloads resumed by range.
	BlobsDeduped   int64 `json:"blobsDeduped"`
	BlobsResumed   int64 `json:"blobsResumed"`
	Manifests      int64 `json:"manifests"`
	Resyncs        int64 `json:"resyncs"`
	EventsApplied  int64 `json:"eventsApplied"`
	Activations    int64 `json:"activations"`
	StatusReported int64 `json:"statusReported"`
	// Notifications counts the site's events the parent took for its
	// webhooks.
	Notifications int64 `json:"notifications"`
	// The upload direction (ReadWrite): local writes the parent
	// acknowledged, blobs and manifests sent, those the parent held
	// already, blob bytes sent, uploads resumed, and tags written here
	// that the parent had meanwhile moved elsewhere (Conflicts).
	WritesSynced     int64 `json:"writesSynced"`
	BlobsSent        int64 `json:"blobsSent"`
	BytesSent        int64 `json:"bytesSent"`
	BlobsSkipped     int64 `json:"blobsSkipped"`
	ManifestsSent    int64 `json:"manifestsSent"`
	ManifestsSkipped int64 `json:"manifestsSkipped"`
	UploadsResumed   int64 `json:"uploadsResumed"`
	// BlobsMounted counts blobs the parent linked from another repository
	// it had them in (a cross-repository mount) instead of an upload.
	BlobsMounted int64 `json:"blobsMounted"`
	Conflicts    int64 `json:"conflicts"`
}

// Syncer syncs a connected registry from its parent. Run it on the site
// region's Raft leader only.
type Syncer struct {
	cfg Config
	log *slog.Logger
	c   *client

	stateMu sync.Mutex
	st      state

	statusMu  sync.Mutex
	state     string
	lastSync  time.Time
	lastError string

	mode     atomic.Value // connected.Mode
	registry atomic.Pointer[connected.Registry]
	// site caches shared's answer: Mode and Syncs are asked on every
	// request the site authorizes.
	site     atomic.Pointer[sharedSite]
	fetches  singleflight.Group
	slots    chan struct{}
	configMu sync.Mutex // one Config applied at a time
	// clock stamps what the site syncs, as replication stamps what it
	// brings from another region: replicated writes, ordered by (clock,
	// origin), that stay out of the site's own outbox. origin is the
	// parent's answering region.
	clock  *hlc.Clock
	origin atomic.Value // string
	// windowKey is the schedule the running sync session follows.
	windowKey     atomic.Value // string
	windowsWaited atomic.Int64
	// lastResync is when the last full comparison ended (the sync loop's
	// own).
	lastResync time.Time
	// lastApply is the Config of the last activation (relay.go reads its
	// Children).
	lastApply atomic.Pointer[connected.Config]
	// restarted says that the site activated before it started (its
	// state file says so): it knows its client tokens (Ready).
	restarted bool
	// connected says that the Syncer is activated and inside a sync
	// window: relayed calls of the registries below it may go out.
	connected atomic.Bool
	// refresh asks control for an activation now (Refresh), and
	// refreshedAt (unix nanoseconds) is when it was last asked.
	refresh     chan struct{}
	refreshedAt atomic.Int64

	blobsFetched, bytesFetched, blobsDeduped, blobsResumed, manifests atomic.Int64
	resyncs, eventsApplied, activations, statuses, notified           atomic.Int64

	// The upload direction (upload.go): sessions are the parent's upload
	// sessions of blobs whose upload was cut, by repository and digest,
	// to resume.
	sessionsMu                                       sync.Mutex
	sessions                                         map[string]string
	held                                             map[digest.Digest]string // guarded by sessionsMu
	writesSynced, blobsSent, bytesSent, blobsSkipped atomic.Int64
	manifestsSent, manifestsSkipped, uploadsResumed  atomic.Int64
	conflicts, blobsMounted                          atomic.Int64
	pendingMu                                        sync.Mutex
	pendingAt                                        [2]uint64 // the cursor and last event pendingSet was read at
	pendingSet                                       map[string]bool
	// linkUp wakes the upload loop from its backoff when another call
	// to the parent got through (the link is back).
	linkUp chan struct{}

	// guard is Config.Blobs as the collector guards it (gc.go).
	guard *GuardedBlobs
	gc    gcCounters
}

// New returns a Syncer, reading its state file (or creating it with a new
// instance ID).
func New(cfg Config) (*Syncer, error) {
	if cfg.Meta == nil || cfg.Blobs == nil || cfg.Dir == "" {
		return nil, errors.New("site: Meta, Blobs and Dir are required")
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 25 * time.Second
	}
	cfg.Wait = min(cfg.Wait, connected.MaxWait)
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = connected.StatusInterval
	}
	if cfg.ActivateInterval <= 0 {
		cfg.ActivateInterval = 30 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.MaxFetches <= 0 {
		cfg.MaxFetches = 8
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 10 * time.Minute
	}
	if cfg.BlobIdleTimeout <= 0 {
		cfg.BlobIdleTimeout = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	hc := cfg.Client
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.Dial != nil {
			tr.DialContext = cfg.Dial
		}
		if cfg.TLS != nil {
			tr.TLSClientConfig = cfg.TLS
		}
		// The long poll answers within Wait; anything slower is a dead
		// link.
		tr.ResponseHeaderTimeout = cfg.Wait + pollSlack
		hc = &http.Client{Transport: tr}
	}
	s := &Syncer{
		cfg: cfg, log: lg.With("connected", cfg.Connection.Name),
		c:        &client{base: cfg.Connection.BaseURL(), user: cfg.Connection.SyncToken, pass: cfg.Connection.SyncPassword, http: hc},
		slots:    make(chan struct{}, cfg.MaxFetches),
		state:    connected.Syncing,
		clock:    hlc.New(nil),
		sessions: map[string]string{},
		held:     map[digest.Digest]string{},
		linkUp:   make(chan struct{}, 1),
		refresh:  make(chan struct{}, 1),
	}
	s.origin.Store("parent")
	s.guard = &GuardedBlobs{BlobStore: cfg.Blobs, touched: map[digest.Digest]time.Time{}}
	s.cfg.Blobs = s.guard
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "partial"), 0o755); err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	s.cleanPartials()
	b, err := os.ReadFile(filepath.Join(cfg.Dir, StateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		id := make([]byte, 16)
		rand.Read(id)
		s.st.Instance = hex.EncodeToString(id)
		if err := s.saveState(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("site: %w", err)
	default:
		if err := json.Unmarshal(b, &s.st); err != nil || s.st.Instance == "" {
			return nil, fmt.Errorf("site: state file %s is damaged (remove it to start over: the site resyncs and activates as a new instance): %v",
				filepath.Join(cfg.Dir, StateFile), err)
		}
	}
	mode := s.st.Mode
	if mode == "" {
		mode = connected.ReadOnly // until the parent says otherwise
	}
	s.mode.Store(mode)
	if len(s.st.Repositories) > 0 {
		s.registry.Store(&connected.Registry{Name: cfg.Connection.Name, Mode: mode, Repositories: s.st.Repositories})
		// It activated before: its client tokens are in its Raft log.
		s.restarted = true
	}
	return s, nil
}

// stalePartial is the age after which a partial download is dropped
// (its blob is likely no longer wanted).
const stalePartial = 24 * time.Hour

func (s *Syncer) cleanPartials() {
	dir := filepath.Join(s.cfg.Dir, "partial")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > stalePartial {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Instance is this instance's ID.
func (s *Syncer) Instance() string {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.st.Instance
}

// Mode is the connected registry's mode: what the parent said at the last
// activation (in the site's Raft log, so every zone of the site agrees;
// kept across restarts), ReadOnly before any.
func (s *Syncer) Mode() connected.Mode {
	if r, ok := s.shared(); ok {
		return r.Mode
	}
	return s.mode.Load().(connected.Mode)
}

// Syncs reports whether the connected registry syncs repository name (as
// the parent said at the last activation, like Mode); before any
// activation, none.
func (s *Syncer) Syncs(name string) bool {
	if r, ok := s.shared(); ok {
		return r.Syncs(name)
	}
	r := s.registry.Load()
	return r != nil && r.Syncs(name)
}

// Cursor is how far the site has applied the parent's events.
func (s *Syncer) Cursor() connected.Cursor {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	c, _ := connected.ParseCursor(s.st.Cursor)
	return c
}

// Status is what the Syncer reports to the parent.
func (s *Syncer) Status() connected.Status {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	st := connected.Status{Instance: s.Instance(), State: s.state, LastSync: s.lastSync, LastError: s.lastError, Conflicts: s.conflicts.Load()}
	if s.Mode() == connected.ReadWrite {
		st.Pending = int64(s.cfg.Meta.LastSeq() - s.cfg.Meta.Cursors()[OutboxPeer])
	}
	return st
}

// Report is what a site shows of its sync (the node's /_georeg/status).
type Report struct {
	Name     string           `json:"name"`
	Parent   string           `json:"parent"` // the parent's base URL
	Mode     connected.Mode   `json:"mode"`
	Instance string           `json:"instance"`
	Cursor   string           `json:"cursor"`
	Status   connected.Status `json:"status"`
	Stats    Stats            `json:"stats"`
	GC       GCStats          `json:"gc"`
}

// Report returns the site's view of its sync.
func (s *Syncer) Report() Report {
	return Report{
		Name: s.cfg.Connection.Name, Parent: s.cfg.Connection.BaseURL(), Mode: s.Mode(), Instance: s.Instance(),
		Cursor: s.Cursor().String(), Status: s.Status(), Stats: s.Stats(), GC: s.GCStats(),
	}
}

// Stats returns the Syncer's counters.
func (s *Syncer) Stats() Stats {
	return Stats{
		BlobsFetched: s.blobsFetched.Load(), BytesFetched: s.bytesFetched.Load(), BlobsDeduped: s.blobsDeduped.Load(), BlobsResumed: s.blobsResumed.Load(),
		Manifests: s.manifests.Load(), Resyncs: s.resyncs.Load(), EventsApplied: s.eventsApplied.Load(),
		Activations: s.activations.Load(), StatusReported: s.statuses.Load(), Notifications: s.notified.Load(),
		WritesSynced: s.writesSynced.Load(), BlobsSent: s.blobsSent.Load(), BytesSent: s.bytesSent.Load(), BlobsSkipped: s.blobsSkipped.Load(),
		ManifestsSent: s.manifestsSent.Load(), ManifestsSkipped: s.manifestsSkipped.Load(), UploadsResumed: s.uploadsResumed.Load(), BlobsMounted: s.blobsMounted.Load(),
		Conflicts: s.conflicts.Load(),
	}
}

func (s *Syncer) saveState() error {
	b, err := json.Marshal(s.st)
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.Dir, StateFile)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("site: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("site: saving %s: %w", path, err)
	}
	return nil
}

func (s *Syncer) setCursor(c connected.Cursor) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.st.Cursor = c.String()
	return s.saveState()
}

func (s *Syncer) setStatus(state string, err error) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if state != "" {
		s.state = state
	}
	if err != nil {
		s.lastError = err.Error()
	} else if state == connected.Online {
		s.lastError = ""
		s.lastSync = time.Now().UTC()
	}
}

// Run syncs until ctx ends. An unreachable parent is retried with
// backoff, and so is a refused activation (another instance holds it:
// ErrActive), which is logged with what to do about it; this instance
// starts syncing once the other is deactivated. The site serves its local
// store meanwhile.
func (s *Syncer) Run(ctx context.Context) error {
	backoff := newBackoff(s.cfg.MaxBackoff)
	for {
		err := s.adoptSite(ctx)
		if err == nil {
			break
		}
		s.log.Warn("reading the site's shared state", "err", err)
		if !backoff.wait(ctx) {
			return nil
		}
	}
	for ctx.Err() == nil {
		wctx, cancel, ok := s.window(ctx)
		if !ok {
			return nil
		}
		if s.activateLoop(wctx, backoff) {
			backoff.reset()
			if _, key := s.schedule(); key != s.windowKey.Load() {
				// The activation brought another schedule (a site's
				// first, or one changed while it was away): follow it
				// before syncing anything, rather than at the next
				// activation.
				s.log.Info("the sync schedule changed: following the new one")
			} else if err := s.syncWhileConnected(wctx, backoff); errors.Is(err, ErrActive) {
				// Another instance took the activation (after a
				// deactivate): this one waits until it is free again.
				s.log.Error("connected registry taken by another instance: syncing stops until it is deactivated", "err", err)
				s.setStatus("", err)
			}
		}
		cancel(nil)
		// Outside a window not even an idle connection stays open.
		s.c.http.CloseIdleConnections()
	}
	return nil
}

// errScheduleChanged ends a sync session whose schedule the last
// activation changed, so that the next one follows the new schedule.
var errScheduleChanged = errors.New("the sync schedule changed")

// schedule is the connected registry's sync schedule as last known
// (continuous before any activation, or when malformed).
func (s *Syncer) schedule() (connected.Schedule, string) {
	s.stateMu.Lock()
	expr, window := s.st.SyncSchedule, s.st.SyncWindow
	s.stateMu.Unlock()
	sched, err := connected.ParseSchedule(expr, window)
	if err != nil {
		s.log.Warn("malformed sync schedule: syncing continuously", "err", err)
	}
	return sched, expr + "|" + window
}

// window waits for the next sync window (at once when continuous or
// inside one) and returns a context that ends when the window closes or
// the schedule changes; false when ctx ended first. Outside its windows a
// site opens no connection to its parent: nothing of the Syncer runs.
func (s *Syncer) window(ctx context.Context) (context.Context, context.CancelCauseFunc, bool) {
	sched, key := s.schedule()
	s.windowKey.Store(key)
	wctx, cancel := context.WithCancelCause(ctx)
	if sched.Continuous() {
		return wctx, cancel, true
	}
	start, end, in := sched.At(s.cfg.Clock.Now())
	if !in {
		s.windowsWaited.Add(1)
		s.log.Info("outside the sync window: nothing goes to the parent until it opens", "opens", start.UTC(), "closes", end.UTC())
		if start.IsZero() || !s.cfg.Clock.SleepUntil(ctx, start) {
			// A schedule that never fires waits for ctx.
			<-ctx.Done()
			cancel(nil)
			return nil, nil, false
		}
		_, end, _ = sched.At(start)
	}
	s.log.Info("sync window open", "closes", end.UTC())
	go func() {
		if s.cfg.Clock.SleepUntil(wctx, end) {
			s.log.Info("sync window closed: nothing goes to the parent until the next one")
			cancel(nil)
		}
	}()
	return wctx, cancel, true
}

// activateLoop activates until it succeeds (true) or ctx ends (false).
func (s *Syncer) activateLoop(ctx context.Context, backoff *backoff) bool {
	for {
		err := s.activate(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrActive) {
			s.setStatus("", err)
			s.log.Error("connected registry not activated; retrying until the other instance is deactivated; serving the local store",
				"err", err, "retry_in", min(backoff.next, s.cfg.MaxBackoff))
		} else {
			s.log.Warn("parent unreachable, serving the local store", "err", err)
		}
		if !backoff.wait(ctx) {
			return false
		}
	}
}

// syncWhileConnected runs syncWhileActive with relayed calls of the
// registries below let out meanwhile.
func (s *Syncer) syncWhileConnected(ctx context.Context, backoff *backoff) error {
	s.connected.Store(true)
	defer s.connected.Store(false)
	return s.syncWhileActive(ctx, backoff)
}

// syncWhileActive syncs until ctx ends or another instance takes the
// activation (its error, wrapping ErrActive).
func (s *Syncer) syncWhileActive(ctx context.Context, backoff *backoff) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// It returns once control has stopped too: nothing of this run
	// writes after it (a next run, on this node leading again, starts
	// clean).
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Go(func() { s.control(ctx, cancel) })
	wg.Go(func() { s.uploadLoop(ctx) })
	for ctx.Err() == nil {
		if err := s.syncOnce(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("sync", "err", err, "cursor", s.Cursor().String())
			if !backoff.wait(ctx) {
				break
			}
			continue
		}
		backoff.reset()
	}
	if err := context.Cause(ctx); errors.Is(err, ErrActive) {
		return err
	}
	return nil
}

// control reports the status every StatusInterval, and at once when the
// site's notice log has grown (notifications wait no longer than
// notifyEvery), and activates again every ActivateInterval, so that
// changes of the Config apply.
func (s *Syncer) control(ctx context.Context, cancel context.CancelCauseFunc) {
	st := time.NewTicker(s.cfg.StatusInterval)
	defer st.Stop()
	act := time.NewTicker(s.cfg.ActivateInterval)
	defer act.Stop()
	nt := time.NewTicker(notifyEvery)
	defer nt.Stop()
	s.report(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.C:
			s.report(ctx)
		case <-nt.C:
			if s.cfg.Meta.LastNotice() > s.notifiedThrough() {
				s.report(ctx)
			}
		case <-s.refresh:
			s.log.Info("activating out of turn: a child's sync credential was refused, its password may be new")
			act.Reset(s.cfg.ActivateInterval)
			if err := s.activate(ctx); errors.Is(err, ErrActive) {
				cancel(err)
				return
			} else if err != nil && ctx.Err() == nil {
				s.log.Warn("activating again", "err", err)
			}
		case <-act.C:
			if err := s.activate(ctx); errors.Is(err, ErrActive) {
				cancel(err)
				return
			} else if err != nil && ctx.Err() == nil {
				s.log.Warn("activating again", "err", err)
			}
			if _, key := s.schedule(); key != s.windowKey.Load() {
				s.log.Info("the sync schedule changed: following the new one")
				cancel(errScheduleChanged)
				return
			}
		}
	}
}

// notifyEvery is how often the Syncer looks for new events of the site
// to notify.
const notifyEvery = 250 * time.Millisecond

func (s *Syncer) notifiedThrough() uint64 {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.st.Notified
}

// report sends the status with the notifications pending: the site's
// events after the last one the parent took, those the connected
// registry's patterns cover. Once the parent takes the report, the state
// file moves past them; until then they are sent again (the parent
// announces each once).
func (s *Syncer) report(ctx context.Context) {
	st := s.Status()
	from := s.notifiedThrough()
	through := from
	notices, err := s.cfg.Meta.NoticesAfter(from, connected.MaxReportNotifications)
	if err != nil {
		s.log.Warn("reading the site's notices", "err", err)
	}
	reg := s.reg()
	for _, n := range notices {
		through = n.Seq
		if !reg.Notifies(n.Action, n.Repo, n.Tag, n.Digest.String()) {
			continue
		}
		st.Notifications = append(st.Notifications, connected.Notification{Seq: n.Seq, Action: n.Action, Repo: n.Repo, Tag: n.Tag,
			Digest: n.Digest.String(), MediaType: n.MediaType, Size: n.Size, Time: n.Time})
	}
	if err := s.c.status(ctx, s.cfg.Connection.Name, st); err != nil {
		if ctx.Err() == nil {
			s.log.Debug("reporting status", "err", err)
		}
		return
	}
	s.statuses.Add(1)
	if through > from {
		s.notified.Add(int64(len(st.Notifications)))
		s.stateMu.Lock()
		s.st.Notified = through
		err := s.saveState()
		s.stateMu.Unlock()
		if err != nil {
			s.log.Warn("saving the notification cursor", "err", err)
		}
	}
	s.reachedParent()
}

// reachedParent records that a call to the parent got through.
func (s *Syncer) reachedParent() {
	select {
	case s.linkUp <- struct{}{}:
	default:
	}
}

// activate activates the connected registry and applies its Config.
func (s *Syncer) activate(ctx context.Context) error {
	cfg, err := s.c.activate(ctx, s.cfg.Connection.Name, connected.Hello{Instance: s.Instance(), Version: s.cfg.Version})
	if err != nil {
		return err
	}
	s.activations.Add(1)
	if err := s.applyConfig(ctx, cfg); err != nil {
		s.setStatus(connected.Unhealthy, err)
		if s.registry.Load() == nil {
			return fmt.Errorf("applying the config: %w", err)
		}
		// The content still syncs: the site's clients keep the access
		// state they had, and the next activation tries again.
		s.log.Warn("applying the config's access state", "err", err)
	}
	return nil
}

// applyConfig makes the local access state the Config's: its client
// tokens and their custom scope maps, authentication on. Only what
// changed is written.
func (s *Syncer) applyConfig(ctx context.Context, cfg connected.Config) error {
	s.configMu.Lock()
	defer s.configMu.Unlock()
	reg := cfg.Registry
	if err := reg.Validate(); err != nil {
		return fmt.Errorf("malformed config: %w", err)
	}
	if len(cfg.ClientTokens) > connected.MaxClientTokens || len(cfg.ScopeMaps) > access.MaxScopeMaps ||
		len(cfg.Children) > connected.MaxRegistries || len(cfg.SyncTokens) > connected.MaxRegistries {
		return fmt.Errorf("malformed config: %d tokens, %d scope maps, %d registries below, %d sync tokens",
			len(cfg.ClientTokens), len(cfg.ScopeMaps), len(cfg.Children), len(cfg.SyncTokens))
	}
	for _, c := range cfg.Children {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("malformed config: a registry below: %w", err)
		}
	}
	old := s.registry.Swap(&reg)
	s.lastApply.Store(&cfg)
	if old != nil && !slices.Equal(old.Repositories, reg.Repositories) {
		// What falls outside goes now, not at the next resync (prune.go).
		s.pruneOutside(ctx)
	}
	if s.mode.Load().(connected.Mode) != reg.Mode {
		s.log.Info("mode", "mode", reg.Mode)
		s.mode.Store(reg.Mode)
	}
	s.stateMu.Lock()
	if s.st.Mode != reg.Mode || s.st.SyncSchedule != reg.SyncSchedule || s.st.SyncWindow != reg.SyncWindow || !slices.Equal(s.st.Repositories, reg.Repositories) {
		s.st.Mode, s.st.SyncSchedule, s.st.SyncWindow, s.st.Repositories = reg.Mode, reg.SyncSchedule, reg.SyncWindow, slices.Clone(reg.Repositories)
		if err := s.saveState(); err != nil {
			s.stateMu.Unlock()
			return err
		}
	}
	s.stateMu.Unlock()
	st, err := s.cfg.Meta.AccessState()
	if err != nil {
		return err
	}
	maps := map[string]access.ScopeMap{}
	for _, m := range st.ScopeMaps {
		maps[m.Name] = m
	}
	toks := map[string]access.Token{}
	for _, t := range st.Tokens {
		toks[t.Name] = t
	}
	wantMaps := map[string]bool{}
	for _, m := range cfg.ScopeMaps {
		if _, ok := access.BuiltIn(m.Name); ok || m.BuiltIn {
			continue
		}
		wantMaps[m.Name] = true
		old, ok := maps[m.Name]
		if ok && sameJSON(old, m) {
			continue
		}
		if err := s.cfg.Meta.Apply(ctx, meta.PutScopeMap{ScopeMap: m, Create: !ok}); err != nil {
			return fmt.Errorf("scope map %s: %w", m.Name, err)
		}
	}
	wantToks := map[string]bool{}
	// The children's sync tokens are checked here like client tokens.
	for _, t := range slices.Concat(cfg.ClientTokens, cfg.SyncTokens) {
		wantToks[t.Name] = true
		old, ok := toks[t.Name]
		if ok {
			cmp := old
			cmp.Version, cmp.Created = t.Version, t.Created
			if sameJSON(cmp, t) {
				continue
			}
		}
		if err := s.cfg.Meta.Apply(ctx, meta.PutToken{Token: t, Create: !ok}); err != nil {
			return fmt.Errorf("token %s: %w", t.Name, err)
		}
	}
	for name := range toks {
		if !wantToks[name] {
			if err := s.cfg.Meta.Apply(ctx, meta.DeleteToken{Name: name}); err != nil && !errors.Is(err, meta.ErrAccessUnknown) {
				return fmt.Errorf("token %s: %w", name, err)
			}
		}
	}
	for name := range maps {
		if !wantMaps[name] {
			if err := s.cfg.Meta.Apply(ctx, meta.DeleteScopeMap{Name: name}); err != nil && !errors.Is(err, meta.ErrAccessUnknown) {
				return fmt.Errorf("scope map %s: %w", name, err)
			}
		}
	}
	if !st.Settings.AuthEnabled || st.Settings.AdminEnabled || st.Settings.AnonymousPull {
		if err := s.cfg.Meta.Apply(ctx, meta.PutAccessConfig{Settings: &access.Settings{AuthEnabled: true}}); err != nil {
			return fmt.Errorf("access settings: %w", err)
		}
	}
	// Last: the site's zones take the definition, and its clients'
	// logins (Ready), once the access state it brings is in.
	if err := s.shareDefinition(ctx, reg); err != nil {
		return fmt.Errorf("recording the definition for the site's zones: %w", err)
	}
	return nil
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// syncOnce makes one events call and applies its answer: a resync, or
// the events in order. The cursor moves once the whole answer applied.
func (s *Syncer) syncOnce(ctx context.Context) error {
	cur := s.Cursor()
	ttl, _ := connected.ParseMessageTTL(s.reg().SyncMessageTTL)
	ev, err := s.c.events(ctx, s.cfg.Connection.Name, cur, s.cfg.Wait, ttl)
	if err != nil {
		s.setStatus("", err)
		return err
	}
	s.reachedParent()
	s.origin.Store(ev.Region)
	if ev.Resync || cur.Region == "" || time.Since(s.lastResync) > s.cfg.ResyncInterval {
		s.setStatus(connected.Syncing, nil)
		if err := s.resync(ctx); err != nil {
			s.setStatus("", err)
			return fmt.Errorf("resync: %w", err)
		}
		s.resyncs.Add(1)
		s.lastResync = time.Now()
	} else {
		if err := s.applyEvents(ctx, ev.Events); err != nil {
			s.setStatus("", err)
			return err
		}
	}
	if err := s.setCursor(ev.Cursor()); err != nil {
		s.setStatus(connected.Unhealthy, err)
		return err
	}
	s.setStatus(connected.Online, nil)
	return nil
}

// applyEvents applies a batch of events: in order within a repository,
// repositories at once (up to MaxFetches), since each event of an image
// costs round trips to the parent that would otherwise add up across a
// burst.
func (s *Syncer) applyEvents(ctx context.Context, events []connected.Event) error {
	byRepo := map[string][]connected.Event{}
	var order []string
	for _, e := range events {
		if _, ok := byRepo[e.Repo]; !ok {
			order = append(order, e.Repo)
		}
		byRepo[e.Repo] = append(byRepo[e.Repo], e)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.MaxFetches)
	for _, repo := range order {
		g.Go(func() error {
			for _, e := range byRepo[repo] {
				if err := s.applyEvent(gctx, e); err != nil {
					return fmt.Errorf("event %d (%s %s): %w", e.Seq, e.Action, e.Repo, err)
				}
				s.eventsApplied.Add(1)
			}
			return nil
		})
	}
	return g.Wait()
}

func (s *Syncer) reg() connected.Registry {
	if r := s.registry.Load(); r != nil {
		return *r
	}
	return connected.Registry{}
}

func (s *Syncer) applyEvent(ctx context.Context, e connected.Event) error {
	if !s.reg().Syncs(e.Repo) {
		return nil // not ours: the parent filters, but a stale Config may differ
	}
	if s.isPending(e.Repo, e.Tag, e.Digest) {
		// A local write of it is not synced up yet: the parent merges
		// the two when it arrives, and the site takes what wins then.
		return nil
	}
	switch e.Action {
	case "push":
		if e.Tag != "" {
			return s.pull(ctx, e.Repo, e.Tag, e.Tag, 0)
		}
		return s.pull(ctx, e.Repo, e.Digest, "", 0)
	default: // delete
		if e.Tag != "" {
			// A tag's delete names the digest it pointed at; the
			// manifest itself stays (other tags, or by digest).
			return s.deleteTag(ctx, e.Repo, e.Tag)
		}
		return s.cfg.Meta.Apply(ctx, meta.DeleteManifest{Repo: e.Repo, Digest: digest.Digest(e.Digest), Time: time.Now().UTC(),
			Replicated: true, Clock: s.clock.Now(), Origin: s.origin.Load().(string)})
	}
}

func (s *Syncer) deleteTag(ctx context.Context, repo, tag string) error {
	s.observeTag(repo, tag)
	return s.cfg.Meta.Apply(ctx, meta.MergeTag{Repo: repo, Tag: tag, Deleted: true, Time: time.Now().UTC(),
		Clock: s.clock.Now(), Origin: s.origin.Load().(string)})
}

// resync compares every repository the connected registry syncs with the
// parent's: missing or moved tags are fetched, tags the parent no longer
// has are deleted (in ReadOnly mode; a ReadWrite site keeps its own
// pushes).
func (s *Syncer) resync(ctx context.Context) error {
	reg := s.reg()
	repos, err := s.c.catalog(ctx)
	if err != nil {
		return err
	}
	parent := map[string]bool{}
	for _, r := range repos {
		if reg.Syncs(r) {
			parent[r] = true
		}
	}
	local, _, err := s.cfg.Meta.Repositories("", 0)
	if err != nil {
		return err
	}
	for _, r := range local {
		var err error
		switch {
		case !reg.Syncs(r) && len(reg.Repositories) > 0:
			// Outside the repositories after an update: what the site
			// holds of it goes (prune.go).
			err = s.pruneManifests(ctx, r, nil, true)
		case parent[r]:
		case reg.Mode == connected.ReadOnly:
			err = s.resyncRepo(ctx, r, nil)
		default:
			err = s.pruneManifests(ctx, r, nil, false)
		}
		if err != nil {
			return err
		}
	}
	for r := range parent {
		tags, err := s.c.tags(ctx, r)
		if err != nil {
			return err
		}
		if err := s.resyncRepo(ctx, r, tags); err != nil {
			return err
		}
	}
	return nil
}

// resyncRepo makes repo's tags those of the parent, tags, and prunes the
// manifests the parent no longer has.
func (s *Syncer) resyncRepo(ctx context.Context, repo string, tags []string) error {
	want := map[string]bool{}
	var confirmedMu sync.Mutex
	confirmed := map[digest.Digest]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.MaxFetches)
	for _, t := range tags {
		want[t] = true
		if s.isPending(repo, t, "") {
			continue
		}
		g.Go(func() error {
			d, err := s.c.headManifest(gctx, repo, t)
			var he *HTTPError
			if errors.As(err, &he) && he.Status == http.StatusNotFound {
				return nil // deleted since the listing
			}
			if err != nil {
				return fmt.Errorf("%s:%s: %w", repo, t, err)
			}
			confirmedMu.Lock()
			confirmed[d] = true
			confirmedMu.Unlock()
			if rec, err := s.cfg.Meta.Tag(repo, t); err == nil && !rec.Deleted && rec.Digest == d {
				return nil
			}
			return s.pull(gctx, repo, t, t, 0)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if s.reg().Mode != connected.ReadOnly {
		return s.pruneManifests(ctx, repo, confirmed, false)
	}
	last := ""
	for {
		have, more, err := s.cfg.Meta.Tags(repo, last, pageSize)
		if errors.Is(err, meta.ErrRepositoryUnknown) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, t := range have {
			if !want[t] && !s.isPending(repo, t, "") {
				if err := s.deleteTag(ctx, repo, t); err != nil {
					return err
				}
			}
		}
		if !more || len(have) == 0 {
			return s.pruneManifests(ctx, repo, confirmed, false)
		}
		last = have[len(have)-1]
	}
}

// observeTag makes the clock that stamps what the site syncs follow the
// local write of tag, if any: what the parent sends (what it holds after
// every write synced up) wins over the site's own writes it has seen.
func (s *Syncer) observeTag(repo, tag string) {
	if rec, err := s.cfg.Meta.Tag(repo, tag); err == nil {
		s.clock.Observe(rec.Clock)
	}
}

// pending returns the tags ("REPO:TAG") and manifests ("REPO@DIGEST")
// of the local writes not synced up yet, read again only when the outbox
// moved.
func (s *Syncer) pending() map[string]bool {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	at := [2]uint64{s.cfg.Meta.Cursors()[OutboxPeer], s.cfg.Meta.LastSeq()}
	if s.pendingSet != nil && s.pendingAt == at {
		return s.pendingSet
	}
	evs, err := s.cfg.Meta.OutboxAfter(at[0], maxPending)
	if err != nil {
		s.log.Warn("reading the outbox", "err", err)
	}
	set := map[string]bool{}
	for _, e := range evs {
		if e.Tag != "" {
			set[e.Repo+":"+e.Tag] = true
		}
		if e.Op == meta.OpPutManifest {
			set[e.Repo+"@"+e.Digest.String()] = true
		}
	}
	if err == nil {
		s.pendingSet, s.pendingAt = set, at
	}
	return set
}

// maxPending bounds the outbox events read to tell pending writes.
const maxPending = 100_000

// isPending reports whether a local write of tag (or, without a tag,
// of manifest dgst) in repo is not synced up yet.
func (s *Syncer) isPending(repo, tag, dgst string) bool {
	if s.Mode() != connected.ReadWrite {
		return false
	}
	p := s.pending()
	if tag != "" {
		return p[repo+":"+tag]
	}
	return dgst != "" && p[repo+"@"+dgst]
}

// maxDepth bounds the nesting of indexes fetched.
const maxDepth = 4

// pull fetches manifest ref of repo with every child manifest and blob
// the site lacks and commits it, tagged tag when set.
func (s *Syncer) pull(ctx context.Context, repo, ref, tag string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("manifest %s:%s: indexes nested over %d deep", repo, ref, maxDepth)
	}
	content, mt, dgst, err := s.c.manifest(ctx, repo, ref)
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusNotFound {
		return nil // deleted at the parent since: its delete event follows
	}
	if err != nil {
		return err
	}
	m, err := oci.ParseManifest(mt, content)
	if err != nil {
		return fmt.Errorf("manifest %s:%s: malformed answer: %w", repo, ref, err)
	}
	if tag != "" {
		s.observeTag(repo, tag)
	}
	cmd := meta.PutManifest{
		Repo: repo, Tag: tag, Time: time.Now().UTC(),
		Replicated: true, Clock: s.clock.Now(), Origin: s.origin.Load().(string),
		Manifest: meta.ManifestRecord{
			Digest: dgst, MediaType: m.MediaType, Size: int64(len(content)),
			ArtifactType: m.ArtifactType, Annotations: m.Annotations, Content: content,
		},
	}
	if m.Subject != nil {
		cmd.Manifest.Subject = m.Subject.Digest
	}
	for _, c := range m.Manifests {
		if _, err := s.cfg.Meta.Manifest(repo, c.Digest); err != nil {
			if err := s.pull(ctx, repo, c.Digest.String(), "", depth+1); err != nil {
				return fmt.Errorf("child manifest %s: %w", c.Digest, err)
			}
		}
		cmd.RequiresManifests = append(cmd.RequiresManifests, c.Digest)
	}
	// One blob failing does not cancel the others: what they download is
	// kept, so the retry of this manifest fetches only what is missing
	// (a cancelled download wastes the bytes already on the link).
	var g errgroup.Group
	for _, b := range m.Blobs() {
		g.Go(func() error { return s.ensureBlob(ctx, repo, b.Digest, b.Size) })
		cmd.Links = append(cmd.Links, meta.Link{Digest: b.Digest, Size: b.Size})
		cmd.Requires = append(cmd.Requires, b.Digest)
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := s.cfg.Meta.Apply(ctx, cmd); err != nil {
		return fmt.Errorf("storing manifest %s:%s: %w", repo, ref, err)
	}
	s.manifests.Add(1)
	return nil
}

// ensureBlob makes sure the site holds dgst, downloading it when it does
// not; concurrent calls for one digest share one download.
func (s *Syncer) ensureBlob(ctx context.Context, repo string, dgst digest.Digest, size int64) error {
	if _, err := s.cfg.Blobs.Stat(ctx, dgst); err == nil {
		s.blobsDeduped.Add(1)
		return nil
	}
	_, err, _ := s.fetches.Do(dgst.String(), func() (any, error) {
		return nil, s.fetchBlob(ctx, repo, dgst, size)
	})
	return err
}

func (s *Syncer) fetchBlob(ctx context.Context, repo string, dgst digest.Digest, size int64) error {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := s.cfg.Blobs.Stat(ctx, dgst); err == nil {
		s.blobsDeduped.Add(1)
		return nil // another download of it ended while this one waited
	}
	if size < 0 {
		return fmt.Errorf("blob %s: malformed manifest: size %d", dgst, size)
	}
	// The bytes received are kept in a partial file, so that a download
	// cut midway (the link to a site is the weak one) resumes where it
	// stopped instead of starting over.
	partial := filepath.Join(s.cfg.Dir, "partial", dgst.Algorithm().String()+"-"+dgst.Encoded())
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.setStatus(connected.Unhealthy, err)
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err == nil && have > size {
		have, err = 0, f.Truncate(0)
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	if have < size {
		if err := s.download(ctx, repo, dgst, size, f, have); err != nil {
			return err
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	_, err = s.cfg.Blobs.Put(ctx, dgst, size, f)
	if err != nil {
		if errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch) {
			os.Remove(partial)
			return fmt.Errorf("blob %s: malformed answer: %w", dgst, err)
		}
		s.setStatus(connected.Unhealthy, err)
		return fmt.Errorf("blob %s: storing: %w", dgst, err)
	}
	os.Remove(partial)
	s.blobsFetched.Add(1)
	return nil
}

// download appends the bytes of dgst from offset have to f: a range
// request, or the whole blob when the parent ignores the range. A body
// that sends nothing for BlobIdleTimeout is given up (what came is kept).
func (s *Syncer) download(ctx context.Context, repo string, dgst digest.Digest, size int64, f *os.File, have int64) error {
	ctx, cancel := context.WithTimeout(ctx, blobTimeout)
	defer cancel()
	resp, err := s.c.blob(ctx, repo, dgst, have)
	if err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)):
		s.blobsResumed.Add(1)
	case resp.StatusCode == http.StatusOK:
		if have > 0 {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if err := f.Truncate(0); err != nil {
				return err
			}
			have = 0
		}
	default:
		return fmt.Errorf("blob %s: malformed answer: %d with Content-Range %q for bytes %d-", dgst, resp.StatusCode, resp.Header.Get("Content-Range"), have)
	}
	idle := time.AfterFunc(s.cfg.BlobIdleTimeout, cancel)
	defer idle.Stop()
	body := &idleReader{r: io.LimitReader(resp.Body, size-have+1), t: idle, d: s.cfg.BlobIdleTimeout}
	n, err := io.Copy(f, body)
	s.bytesFetched.Add(n)
	if err != nil {
		if !idle.Stop() {
			err = fmt.Errorf("no byte for %v: %w", s.cfg.BlobIdleTimeout, err)
		}
		return fmt.Errorf("blob %s: %d of %d bytes here, to resume: %w", dgst, have+n, size, err)
	}
	if have+n != size {
		// Short or long: a short body ended cleanly without its bytes.
		if have+n > size {
			f.Truncate(0)
		}
		return fmt.Errorf("blob %s: malformed answer: %d of %d bytes", dgst, have+n, size)
	}
	return nil
}

// idleReader resets its timer on every read that delivers bytes.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(i.d)
	}
	return n, err
}

// backoff waits between retries: 250 ms doubling up to its max.
type backoff struct {
	max, next time.Duration
}

func newBackoff(max time.Duration) *backoff { return &backoff{max: max, next: 250 * time.Millisecond} }

func (b *backoff) reset() { b.next = 250 * time.Millisecond }

// waitOr is wait, cut short when wake delivers.
func (b *backoff) waitOr(ctx context.Context, wake <-chan struct{}) bool {
	t := time.NewTimer(min(b.next, b.max))
	defer t.Stop()
	b.next = min(b.next*2, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}

// wait sleeps and reports whether ctx is still alive.
func (b *backoff) wait(ctx context.Context) bool { return b.waitOr(ctx, nil) }
