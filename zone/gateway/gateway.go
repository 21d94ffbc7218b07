// Package gateway serves connected registries' sync calls at a zone node:
// the part of the sync protocol (base/connected, wire.go) that the
// Distribution API does not carry. A connected registry's instance reaches
// the registry's endpoint like any client, authenticated with its sync
// token; the node that answers serves events from its own region's
// notices, and forwards activation and status reports to the home region,
// which keeps the connected registries' definitions.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/hlc"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/base/oci"
	"github.com/georeg/georeg/zone/api"
)

// maxBody bounds the body of an activate or status call.
const maxBody = 64 << 10

// pollEvery is how often a long poll looks for new notices.
const pollEvery = 50 * time.Millisecond

// Authenticator names the token the client of a request authenticated as.
// *auth.Authenticator implements it.
type Authenticator interface {
	Caller(ctx context.Context, r *http.Request) (string, error)
}

// Access is this region's copy of the access state. *control.Plane
// implements it.
type Access interface {
	ScopeMap(name string) (access.ScopeMap, bool)
}

// Notices is this region's notice log (what its webhooks announce).
// *region.Group implements it.
type Notices interface {
	NoticesAfter(seq uint64, n int) ([]meta.Notice, error)
	LastNotice() uint64
}

// Home forwards the calls the home region answers. *control.Plane
// implements it.
type Home interface {
	Activate(ctx context.Context, name, instance, version, basic string) (connected.Config, error)
	Report(ctx context.Context, name string, st connected.Status, basic string) error
}

// Lineage knows the connected registries below this registry. A nested
// connected registry's *site.Syncer implements it.
type Lineage interface {
	// ConnectedParent returns the parent of connected registry name, and
	// false when name is not below this registry.
	ConnectedParent(name string) (string, bool)
}

// Writer merges the writes ReadWrite connected registries sync up, into
// this region's metadata. *region.Group implements it.
type Writer interface {
	Apply(ctx context.Context, cmd meta.Command) error
	TagState(repo, tag string) (meta.TagRecord, bool, error)
}

// Config configures a Gateway.
type Config struct {
	// Region is this node's region, which names the cursors it hands out.
	Region  string
	Auth    Authenticator
	Access  Access
	Notices Notices
	Home    Home
	// Lineage is set on a connected registry (a site with children of
	// its own): a child may make the activation and status calls of
	// itself and of the registries below it, which the site relays with
	// its own sync token. On the cloud (nil) the home region checks who
	// may make them, when Home forwards the caller's credential.
	Lineage Lineage
	// Refresh, when set, is called when a sync call's credential is
	// refused: on a nested registry, a child's sync token may have a new
	// password that the registry learns at its next activation.
	Refresh func()
	// Writer takes ReadWrite children's writes; nil refuses them.
	Writer Writer
	// Conflict, when set, is called for every conflicting write a child
	// syncs up (connected.WriteResult.Conflict), with the child's name.
	Conflict func(name string)
	Logger   *slog.Logger
	// Since is how old a notice stamped at t is, by the clock message
	// TTLs are measured on (nil: time.Since). Notices carry the real time:
	// a test's faster clock (base/testclock) ages them faster.
	Since func(t time.Time) time.Duration
}

// Gateway serves connected.APIPrefix.
type Gateway struct {
	cfg Config
	log *slog.Logger
}

// New returns a gateway.
func New(cfg Config) *Gateway {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	if cfg.Since == nil {
		cfg.Since = time.Since
	}
	return &Gateway{cfg: cfg, log: lg}
}

// The gateway's own answers, with the spec's codes.
var (
	// errConflict answers an activation while another instance is Active.
	errConflict = api.ErrorCode{Code: "DENIED", Message: "another instance of this connected registry is active", Status: http.StatusConflict}
	// errMalformed answers a sync call whose parameters or body are not
	// what the call takes.
	errMalformed = api.ErrorCode{Code: "UNSUPPORTED", Message: "malformed sync call", Status: http.StatusBadRequest}
)

// ServeHTTP serves POST NAME/activate, GET NAME/events and POST NAME/status
// under connected.APIPrefix.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, connected.APIPrefix+"/")
	name, call, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		api.ServeError(w, r, api.ErrUnsupported.WithDetail("unknown sync call "+r.URL.Path))
		return
	}
	if err := connected.ValidateName(name); err != nil {
		api.ServeError(w, r, api.ErrNameInvalid.WithDetail(err.Error()))
		return
	}
	m, err := g.caller(r, name, relayed(r.Method, call))
	if err != nil {
		api.ServeError(w, r, err)
		return
	}
	switch {
	case call == "activate" && r.Method == http.MethodPost:
		err = g.activate(w, r, name)
	case call == "events" && r.Method == http.MethodGet:
		err = g.events(w, r, m)
	case call == "status" && r.Method == http.MethodPost:
		err = g.status(w, r, name)
	case call == "write" && r.Method == http.MethodPost:
		err = g.write(w, r, name, m)
	default:
		err = api.ErrUnsupported.WithDetailf("%s %s: the sync calls are POST activate, GET events, POST status and POST write", r.Method, call)
	}
	if err != nil {
		var e *api.Error
		if !errors.As(err, &e) {
			g.log.Warn("connected registry sync call", "name", name, "call", call, "err", err)
		}
		api.ServeError(w, r, err)
	}
}

// RelayCall reports whether r is a sync call a connected registry relays
// to its own parent for a child (POST NAME/activate, POST NAME/status):
// calls only the zone that leads a site of several zones can serve.
func RelayCall(r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, connected.APIPrefix+"/")
	_, call, ok2 := strings.Cut(rest, "/")
	return ok && ok2 && relayed(r.Method, call)
}

func relayed(method, call string) bool {
	return (call == "activate" || call == "status") && method == http.MethodPost
}

// caller checks that the client of r is connected registry name's sync
// token and returns that token's scope map (the registry's repositories).
// With relay (activate, status), the sync token of a registry above name
// may call too (a nested registry relaying its child's call); the scope
// map is then not needed and not returned.
func (g *Gateway) caller(r *http.Request, name string, relay bool) (access.ScopeMap, error) {
	who, err := g.cfg.Auth.Caller(r.Context(), r)
	if err != nil {
		if g.cfg.Refresh != nil && r.Header.Get("Authorization") != "" {
			g.cfg.Refresh()
		}
		return access.ScopeMap{}, err
	}
	if who != connected.SyncTokenName(name) {
		via, isSync := strings.CutSuffix(who, connected.SyncTokenName(""))
		switch {
		case !relay || !isSync:
		case g.cfg.Lineage == nil:
			// The home region checks the credential Home forwards.
			return access.ScopeMap{}, nil
		case connected.Relays(g.cfg.Lineage.ConnectedParent, via, name):
			return access.ScopeMap{}, nil
		}
		return access.ScopeMap{}, api.ErrDenied.WithDetailf("token %q is not the sync token of connected registry %s", who, name)
	}
	m, ok := g.cfg.Access.ScopeMap(connected.SyncScopeMapName(name))
	if !ok {
		return access.ScopeMap{}, api.ErrNameUnknown.WithDetailf("no connected registry %s", name)
	}
	return m, nil
}

func (g *Gateway) activate(w http.ResponseWriter, r *http.Request, name string) error {
	var hello connected.Hello
	if err := readJSON(r, &hello); err != nil {
		return err
	}
	cfg, err := g.cfg.Home.Activate(r.Context(), name, hello.Instance, hello.Version, r.Header.Get("Authorization"))
	if err != nil {
		return homeError(err)
	}
	return writeJSON(w, cfg)
}

func (g *Gateway) status(w http.ResponseWriter, r *http.Request, name string) error {
	var st connected.Status
	if err := readJSON(r, &st); err != nil {
		return err
	}
	if err := g.cfg.Home.Report(r.Context(), name, st, r.Header.Get("Authorization")); err != nil {
		return homeError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// events answers the notices of this region after the caller's cursor for
// the repositories its scope map reads, waiting up to the asked time for
// one to come.
func (g *Gateway) events(w http.ResponseWriter, r *http.Request, m access.ScopeMap) error {
	q := r.URL.Query()
	since, err := connected.ParseCursor(q.Get("since"))
	if err != nil {
		return errMalformed.WithDetail(err.Error())
	}
	wait := time.Duration(0)
	if s := q.Get("wait"); s != "" {
		secs, err := strconv.Atoi(s)
		if err != nil || secs < 0 {
			return errMalformed.WithDetailf("wait=%q: want whole seconds", s)
		}
		wait = min(time.Duration(secs)*time.Second, connected.MaxWait)
	}
	// The events kept for a child are those of its message TTL: older
	// ones are not handed out, and a child whose cursor is older
	// compares its repositories whole (a resync) instead.
	ttl := connected.DefaultMessageTTL
	if s := q.Get("ttl"); s != "" {
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil || secs <= 0 || time.Duration(secs)*time.Second > connected.MaxMessageTTL {
			return errMalformed.WithDetailf("ttl=%q: want whole seconds, at most %d", s, int64(connected.MaxMessageTTL/time.Second))
		}
		ttl = max(time.Duration(secs)*time.Second, connected.MinMessageTTL)
	}
	last := g.cfg.Notices.LastNotice()
	out := connected.Events{Region: g.cfg.Region, Last: last, Events: []connected.Event{}}
	if since.Region != g.cfg.Region || since.Seq > last {
		// Another region's cursor, none, or one from the future (this
		// region lost notices, or the cursor is forged): the child
		// compares its repositories whole and goes on from here.
		out.Resync = true
		return writeJSON(w, out)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for last == since.Seq {
		select {
		case <-ctx.Done():
			return writeJSON(w, out)
		case <-t.C:
		}
		last = g.cfg.Notices.LastNotice()
	}
	notices, err := g.cfg.Notices.NoticesAfter(since.Seq, connected.MaxEvents)
	if err != nil {
		return api.ErrUnavailable.WithDetail(err.Error())
	}
	if len(notices) == 0 || notices[0].Seq != since.Seq+1 || g.cfg.Since(notices[0].Time) > ttl {
		// The notices after the cursor were trimmed, or are older than
		// the child's message TTL: none is kept for it.
		out.Resync, out.Last = true, last
		return writeJSON(w, out)
	}
	out.Last = notices[len(notices)-1].Seq
	for _, n := range notices {
		if n.Connected != "" || !m.Reads(n.Repo) {
			// A connected registry's notification says what happened at
			// its site, not what this region holds.
			continue
		}
		out.Events = append(out.Events, connected.Event{Seq: n.Seq, Action: n.Action, Repo: n.Repo, Tag: n.Tag, Digest: n.Digest.String(), MediaType: n.MediaType})
	}
	return writeJSON(w, out)
}

// write merges a write a ReadWrite child syncs up: a tag it set or
// deleted, or a manifest it deleted, stamped with the child's clock. The
// content it names is already here (the child pushed it through the
// Distribution API first). It answers what the tag is here afterwards.
func (g *Gateway) write(w http.ResponseWriter, r *http.Request, name string, m access.ScopeMap) error {
	if g.cfg.Writer == nil {
		return api.ErrUnsupported.WithDetail("this registry takes no writes from connected registries")
	}
	var wr connected.Write
	if err := readJSON(r, &wr); err != nil {
		return err
	}
	if err := validWrite(wr, time.Now()); err != nil {
		return errMalformed.WithDetail(err.Error())
	}
	// The sync token of a ReadOnly registry has no write permission.
	if !m.Allows(wr.Repo, access.MetadataWrite) || !m.Allows(wr.Repo, access.ContentWrite) {
		return api.ErrDenied.WithDetail(map[string]string{"repository": wr.Repo,
			"reason": "the sync token of connected registry " + name + " may not write this repository (a ReadOnly registry, or a repository outside its own)"})
	}
	now := time.Now().UTC()
	if wr.Op == connected.WriteDeleteManifest {
		err := g.cfg.Writer.Apply(r.Context(), meta.DeleteManifest{Repo: wr.Repo, Digest: digest.Digest(wr.Digest), Time: now,
			Replicated: true, Forward: true, Clock: wr.Clock, Origin: wr.Origin})
		if err != nil {
			return api.ErrUnavailable.WithDetail(err.Error())
		}
		return writeJSON(w, connected.WriteResult{Won: true})
	}
	old, had, err := g.cfg.Writer.TagState(wr.Repo, wr.Tag)
	if err != nil {
		return api.ErrUnavailable.WithDetail(err.Error())
	}
	cmd := meta.MergeTag{Repo: wr.Repo, Tag: wr.Tag, Digest: digest.Digest(wr.Digest), Deleted: wr.Deleted,
		Clock: wr.Clock, Origin: wr.Origin, Time: now, Forward: true}
	if wr.Deleted {
		cmd.Digest = ""
	}
	err = g.cfg.Writer.Apply(r.Context(), cmd)
	var missing *meta.MissingContentError
	switch {
	case errors.As(err, &missing):
		return api.ErrManifestUnknown.WithDetail(map[string]string{"repository": wr.Repo, "digest": wr.Digest,
			"reason": "push the manifest before its tag"})
	case err != nil:
		return api.ErrUnavailable.WithDetail(err.Error())
	}
	cur, _, err := g.cfg.Writer.TagState(wr.Repo, wr.Tag)
	if err != nil {
		return api.ErrUnavailable.WithDetail(err.Error())
	}
	res := connected.WriteResult{Digest: cur.Digest.String(), Deleted: cur.Deleted,
		Won: cur.Clock == wr.Clock && cur.Origin == wr.Origin}
	if cur.Deleted {
		res.Digest = ""
	}
	// A conflict: the tag here had been moved, by a write made elsewhere,
	// to a digest other than the one the child's write replaced.
	here := ""
	if had && !old.Deleted {
		here = old.Digest.String()
	}
	if had && old.Origin != wr.Origin && here != wr.Prev && here != cmd.Digest.String() {
		res.Conflict = true
		g.log.Info("connected registry: conflicting tag write", "name", name, "repo", wr.Repo, "tag", wr.Tag,
			"site", wr.Digest, "here", here, "won", res.Won)
		if g.cfg.Conflict != nil {
			g.cfg.Conflict(name)
		}
	}
	return writeJSON(w, res)
}

// validWrite checks a Write before anything of it is applied.
func validWrite(wr connected.Write, now time.Time) error {
	if err := oci.ValidateName(wr.Repo); err != nil {
		return err
	}
	if wr.Clock == 0 || hlc.Time(wr.Clock).After(now.Add(connected.MaxClockSkew)) {
		return fmt.Errorf("clock %d: zero, or over %v ahead of this registry's", wr.Clock, connected.MaxClockSkew)
	}
	if err := connected.ValidateName(wr.Origin); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	switch wr.Op {
	case connected.WriteTag:
		if err := oci.ValidateTag(wr.Tag); err != nil {
			return err
		}
		if wr.Deleted {
			return nil
		}
	case connected.WriteDeleteManifest:
	default:
		return fmt.Errorf("op %q: want %s or %s", wr.Op, connected.WriteTag, connected.WriteDeleteManifest)
	}
	if _, err := oci.ParseDigest(wr.Digest); err != nil {
		return err
	}
	if wr.Prev != "" {
		if _, err := oci.ParseDigest(wr.Prev); err != nil {
			return fmt.Errorf("prev: %w", err)
		}
	}
	return nil
}

// homeError turns a failed home call into the error a child sees. A Home
// that answers with the API's errors (a nested site's relay) is taken at
// its word.
func homeError(err error) error {
	if e := (*api.Error)(nil); errors.As(err, &e) {
		return e
	}
	msg := status.Convert(err).Message()
	switch status.Code(err) {
	case codes.Unauthenticated:
		return api.ErrUnauthorized.WithDetail(msg)
	case codes.PermissionDenied:
		return api.ErrDenied.WithDetail(msg)
	case codes.NotFound:
		return api.ErrNameUnknown.WithDetail(msg)
	case codes.FailedPrecondition:
		if strings.Contains(msg, "already Active") {
			return errConflict.WithDetail(msg)
		}
		return api.ErrDenied.WithDetail(msg)
	case codes.InvalidArgument:
		return errMalformed.WithDetail(msg)
	}
	return api.ErrUnavailable.WithDetail(msg)
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return api.ErrUnavailable.WithDetail("reading the body: " + err.Error())
	}
	if len(b) > maxBody {
		return api.ErrSizeInvalid.WithDetailf("the body is over %d bytes", maxBody)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errMalformed.WithDetail("the body is not the JSON this call takes: " + err.Error())
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
