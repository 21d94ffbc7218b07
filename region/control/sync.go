package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/controlpb"
)

// The sync calls of connected registries: a zone node that a connected
// registry reached (in any region) forwards its activation and status
// reports to the home region, which keeps the definitions, with the sync
// token's credential; the home region checks that credential itself, so a
// call is worth no more than the token it carries.

// reportEvery bounds how often the home region records an unchanged status
// report in Raft: Seen moves at most this often per connected registry,
// well inside connected.OfflineAfter.
const reportEvery = 5 * time.Second

// maxLastError bounds the error text a report may carry.
const maxLastError = 1024

// reported is a connected registry's last recorded report.
type reported struct {
	at    time.Time
	state string
	err   string
}

// ErrHomeUnavailable means no node of the home region answered a sync call.
var ErrHomeUnavailable = errors.New("the home region is unavailable")

// Activate activates connected registry name for instance through the
// home region and returns its configuration. basic is the sync token's
// "Basic ..." credential as the connected registry sent it.
func (p *Plane) Activate(ctx context.Context, name, instance, version, basic string) (connected.Config, error) {
	var cfg connected.Config
	err := p.homeCall(ctx, basic, func(ctx context.Context, c controlpb.ControlClient) error {
		resp, err := c.ConnectedActivate(ctx, &controlpb.ConnectedActivateRequest{Name: name, Instance: instance, Version: version})
		if err != nil {
			return err
		}
		return json.Unmarshal(resp.GetConfig(), &cfg)
	})
	return cfg, err
}

// Report records the status the active instance of connected registry
// name reports, through the home region.
func (p *Plane) Report(ctx context.Context, name string, st connected.Status, basic string) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return p.homeCall(ctx, basic, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.ConnectedReport(ctx, &controlpb.ConnectedReportRequest{Name: name, Status: b})
		return err
	})
}

// homeCall runs fn against the home region's nodes in turn until one
// answers, with basic as the call's authorization. A refusal (any status
// but Unavailable) is the answer; no answer at all is ErrHomeUnavailable.
func (p *Plane) homeCall(ctx context.Context, basic string, fn func(context.Context, controlpb.ControlClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", basic)
	last := fmt.Errorf("%w (%s): no node of it is known", ErrHomeUnavailable, p.cfg.Home)
	for _, n := range p.cfg.Members.Region(p.cfg.Home) {
		conn, err := p.pool.Get(n.GRPC)
		if err != nil {
			continue
		}
		err = fn(ctx, controlpb.NewControlClient(conn))
		if code := status.Code(err); err == nil || code != codes.Unavailable && code != codes.DeadlineExceeded {
			return err
		}
		last = fmt.Errorf("%w (%s): %v", ErrHomeUnavailable, p.cfg.Home, err)
	}
	return last
}

// syncCaller checks a sync call: it is the home region, and the call's
// metadata carries the current credential of connected registry name's
// sync token.
func (p *Plane) syncCaller(ctx context.Context, name string) (connected.Registry, error) {
	if err := p.management(); err != nil {
		return connected.Registry{}, err
	}
	p.loadAccess()
	r, err := p.connectedRegistry(name)
	if err != nil {
		return r, err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var h string
	if v := md.Get("authorization"); len(v) > 0 {
		h = v[0]
	}
	cred, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		return r, status.Error(codes.Unauthenticated, "a sync call needs the connected registry's sync token")
	}
	user, pass, err := access.ParseBasic(cred)
	if err != nil {
		return r, status.Error(codes.Unauthenticated, err.Error())
	}
	if user == r.SyncToken && r.Parent != "" {
		// Each level of a nesting authenticates to its parent only: an
		// instance of a nested registry reaches the cloud through the
		// registries above it, which relay its calls.
		return r, status.Errorf(codes.PermissionDenied, "connected registry %s syncs from its parent %s, not from the cloud: point its connection string at %s's endpoint (get-settings --parent-endpoint)", name, r.Parent, r.Parent)
	}
	if user != r.SyncToken {
		// A nested connected registry relays its children's calls with
		// its own sync token: any ancestor's token may make them.
		all, err := p.cfg.Meta.ConnectedRegistries()
		if err != nil {
			return r, status.Error(codes.Unavailable, err.Error())
		}
		parents, via := map[string]string{}, ""
		for _, c := range all {
			parents[c.Name] = c.Parent
			if c.SyncToken == user {
				via = c.Name
			}
		}
		parent := func(n string) (string, bool) { p, ok := parents[n]; return p, ok }
		if via == "" || !connected.Relays(parent, via, name) {
			return r, status.Errorf(codes.PermissionDenied, "token %q is not the sync token of connected registry %s or of one above it", user, name)
		}
	}
	tok, ok := p.Token(user)
	if !ok {
		return r, status.Error(codes.Unauthenticated, "wrong sync token name or password")
	}
	if err := tok.Usable(); err != nil {
		return r, status.Error(codes.Unauthenticated, err.Error())
	}
	if _, ok := p.syncs.Check(ctx, tok, pass, time.Now()); !ok {
		return r, status.Error(codes.Unauthenticated, "wrong sync token name or password (or it expired)")
	}
	return r, nil
}

// ConnectedActivate implements controlpb.ControlServer.
func (p *Plane) ConnectedActivate(ctx context.Context, req *controlpb.ConnectedActivateRequest) (*controlpb.ConnectedConfig, error) {
	r, err := p.syncCaller(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetInstance() == "" || len(req.GetInstance()) > 128 {
		return nil, status.Error(codes.InvalidArgument, "an instance ID of 1 to 128 bytes is required")
	}
	if r.Activation != connected.Active || r.Instance != req.GetInstance() {
		cmd := meta.SetConnectedActivation{Name: r.Name, Activation: connected.Active, Instance: req.GetInstance(), At: time.Now().UTC()}
		if err := p.cfg.Meta.Apply(ctx, cmd); err != nil {
			return nil, connectedError(err)
		}
		p.log.Info("connected registry activated", "name", r.Name, "instance", req.GetInstance(), "version", req.GetVersion())
		if r, err = p.connectedRegistry(r.Name); err != nil {
			return nil, err
		}
	}
	cfg, err := p.connectedConfig(r)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &controlpb.ConnectedConfig{Config: b}, nil
}

// connectedConfig is what r's instances need: its definition, its client
// tokens and their custom scope maps, and the registries below it with
// its children's sync tokens and scope maps.
func (p *Plane) connectedConfig(r connected.Registry) (connected.Config, error) {
	cfg := connected.Config{Registry: r, ClientTokens: []access.Token{}, ScopeMaps: []access.ScopeMap{}}
	// What the cloud records about the instance is not the instance's
	// business.
	cfg.Registry.Reported, cfg.Registry.Seen = connected.Status{}, time.Time{}
	maps := map[string]bool{}
	for _, name := range r.ClientTokens {
		tok, ok := p.Token(name)
		if !ok {
			continue
		}
		cfg.ClientTokens = append(cfg.ClientTokens, tok)
		if _, builtIn := access.BuiltIn(tok.ScopeMap); builtIn || maps[tok.ScopeMap] {
			continue
		}
		maps[tok.ScopeMap] = true
		if m, ok := p.ScopeMap(tok.ScopeMap); ok {
			cfg.ScopeMaps = append(cfg.ScopeMaps, m)
		}
	}
	// The registries below r, for a nested site's gateway.
	all, err := p.cfg.Meta.ConnectedRegistries()
	if err != nil {
		return cfg, status.Error(codes.Unavailable, err.Error())
	}
	parents := map[string]string{}
	for _, c := range all {
		parents[c.Name] = c.Parent
	}
	parent := func(n string) (string, bool) { p, ok := parents[n]; return p, ok }
	for _, c := range all {
		if c.Name == r.Name || !connected.Relays(parent, r.Name, c.Name) {
			continue
		}
		c.Reported, c.Seen = connected.Status{}, time.Time{}
		cfg.Children = append(cfg.Children, c)
		if c.Parent != r.Name {
			continue
		}
		if tok, ok := p.Token(c.SyncToken); ok {
			cfg.SyncTokens = append(cfg.SyncTokens, tok)
		}
		if m, ok := p.ScopeMap(connected.SyncScopeMapName(c.Name)); ok {
			cfg.ScopeMaps = append(cfg.ScopeMaps, m)
		}
	}
	return cfg, nil
}

// ConnectedReport implements controlpb.ControlServer.
func (p *Plane) ConnectedReport(ctx context.Context, req *controlpb.ConnectedReportRequest) (*controlpb.ConnectedReportResponse, error) {
	r, err := p.syncCaller(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	var st connected.Status
	if err := json.Unmarshal(req.GetStatus(), &st); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "status: %v", err)
	}
	switch st.State {
	case connected.Online, connected.Syncing, connected.Unhealthy:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "status: state %q: want Online, Syncing or Unhealthy", st.State)
	}
	if len(st.LastError) > maxLastError {
		st.LastError = st.LastError[:maxLastError]
	}
	if r.Activation != connected.Active || r.Instance != st.Instance {
		return nil, status.Errorf(codes.FailedPrecondition, "instance %q is not the active instance of connected registry %s: activate first", st.Instance, r.Name)
	}
	if len(st.Notifications) > connected.MaxReportNotifications {
		return nil, status.Errorf(codes.InvalidArgument, "status: %d notifications, at most %d per report", len(st.Notifications), connected.MaxReportNotifications)
	}
	// Only what the connected registry's patterns cover reaches the
	// webhooks, whatever the instance sends.
	notes := st.Notifications[:0:0]
	var prev uint64
	for _, n := range st.Notifications {
		if err := n.Validate(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "status: %v", err)
		}
		if n.Seq <= prev {
			return nil, status.Errorf(codes.InvalidArgument, "status: notification %d after %d: want them in order", n.Seq, prev)
		}
		prev = n.Seq
		if r.Notifies(n.Action, n.Repo, n.Tag, n.Digest) {
			notes = append(notes, n)
		}
	}
	st.Notifications = notes
	now := time.Now().UTC()
	p.reportsMu.Lock()
	last, ok := p.reports[r.Name]
	p.reportsMu.Unlock()
	if len(st.Notifications) == 0 && ok && now.Sub(last.at) < reportEvery && last.state == st.State && last.err == st.LastError && !r.Seen.IsZero() {
		return &controlpb.ConnectedReportResponse{}, nil
	}
	if err := p.cfg.Meta.Apply(ctx, meta.SetConnectedStatus{Name: r.Name, Status: st, Seen: now}); err != nil {
		return nil, connectedError(err)
	}
	p.reportsMu.Lock()
	if p.reports == nil {
		p.reports = map[string]reported{}
	}
	p.reports[r.Name] = reported{at: now, state: st.State, err: st.LastError}
	p.reportsMu.Unlock()
	return &controlpb.ConnectedReportResponse{}, nil
}
