package control

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/controlpb"
)

// AuthConfig is how a node bootstraps and enforces authentication.
type AuthConfig struct {
	// Required makes the node refuse every client until it holds the
	// registry's access state, and the home region's leader create that
	// state (settings, admin user, signing key) when it has none.
	Required bool
	// AdminHash is the bcrypt hash of the admin password the home leader
	// records at bootstrap.
	AdminHash []byte
}

// accessView is a node's copy of the access state, read on every request.
type accessView struct {
	version   uint64
	settings  access.Settings
	tokens    map[string]access.Token
	scopeMaps map[string]access.ScopeMap
	keys      []access.SigningKey
	admin     access.Token
}

func newAccessView(st meta.AccessState) *accessView {
	v := &accessView{
		version:   st.Version,
		settings:  st.Settings,
		tokens:    make(map[string]access.Token, len(st.Tokens)),
		scopeMaps: make(map[string]access.ScopeMap, len(st.ScopeMaps)+3),
		keys:      st.Keys,
	}
	if st.Admin != nil {
		v.admin = *st.Admin
	}
	for _, m := range access.BuiltIns() {
		v.scopeMaps[m.Name] = m
	}
	for _, m := range st.ScopeMaps {
		v.scopeMaps[m.Name] = m
	}
	for _, t := range st.Tokens {
		v.tokens[t.Name] = t
	}
	return v
}

func (p *Plane) view() *accessView {
	if v := p.access.Load(); v != nil {
		return v
	}
	return &accessView{}
}

// Settings implements auth.Directory. With authentication required, a node
// that holds no access state yet reports authentication on, so it refuses
// clients rather than serving them unchecked.
func (p *Plane) Settings() access.Settings {
	s := p.view().settings
	if p.cfg.Auth.Required {
		s.AuthEnabled = true
	}
	return s
}

// Token implements auth.Directory.
func (p *Plane) Token(name string) (access.Token, bool) {
	t, ok := p.view().tokens[name]
	return t, ok
}

// ScopeMap implements auth.Directory.
func (p *Plane) ScopeMap(name string) (access.ScopeMap, bool) {
	m, ok := p.view().scopeMaps[name]
	return m, ok
}

// SigningKeys implements auth.Directory.
func (p *Plane) SigningKeys() []access.SigningKey { return p.view().keys }

// Admin implements auth.Directory.
func (p *Plane) Admin() (access.Token, bool) {
	a := p.view().admin
	return a, a.Name != ""
}

// loadAccess rebuilds the view from the local replica when its version
// moved (home region nodes).
func (p *Plane) loadAccess() {
	ver, err := p.cfg.Meta.AccessVersion()
	if err != nil || (p.access.Load() != nil && ver == p.view().version) {
		return
	}
	st, err := p.cfg.Meta.AccessState()
	if err != nil {
		p.log.Warn("reading the access state", "err", err)
		return
	}
	p.access.Store(newAccessView(st))
}

// Refresh implements auth.Refresher: it catches up with the latest access
// state and reports whether this node's copy changed. A home-region node
// settles with its region's leader (a token created through another zone
// a moment ago is then applied here); another region fetches the home
// region's copy.
func (p *Plane) Refresh(ctx context.Context) bool {
	before := p.view().version
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if p.isHome() {
		if b, ok := p.cfg.Meta.(interface{ Barrier(context.Context) error }); ok {
			if b.Barrier(ctx) != nil {
				return false
			}
		}
		p.loadAccess()
	} else {
		p.refresh(ctx)
	}
	return p.view().version != before
}

// bootstrapAccess records the access state on a registry that requires
// authentication and has none yet (home leader).
func (p *Plane) bootstrapAccess(ctx context.Context) {
	if !p.cfg.Auth.Required || len(p.view().keys) > 0 {
		return
	}
	now := time.Now().UTC()
	key, err := access.NewSigningKey(now)
	if err != nil {
		p.log.Warn("bootstrapping access", "err", err)
		return
	}
	cfg := meta.PutAccessConfig{
		Settings: &access.Settings{AuthEnabled: true},
		Keys:     []access.SigningKey{key},
	}
	if len(p.cfg.Auth.AdminHash) > 0 {
		cfg.Admin = &access.Token{Name: access.AdminUser, Status: access.Enabled, Created: now,
			Passwords: []access.Password{{Name: access.Password1, Hash: p.cfg.Auth.AdminHash, Created: now}}}
	}
	if err := p.cfg.Meta.Apply(ctx, cfg); err != nil {
		p.log.Warn("bootstrapping access", "err", err)
		return
	}
	p.log.Info("authentication is on: access state bootstrapped", "admin", cfg.Admin != nil)
	p.loadAccess()
}

// requireAdmin checks the admin credential of a management call when the
// registry requires authentication.
func (p *Plane) requireAdmin(ctx context.Context) error {
	if !p.Settings().AuthEnabled {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var h string
	if v := md.Get("authorization"); len(v) > 0 {
		h = v[0]
	}
	const scheme = "Basic "
	if !strings.HasPrefix(h, scheme) {
		return status.Error(codes.Unauthenticated, "management calls need the admin credential: run `georeg login` (or use the mesh's credentials.json)")
	}
	user, pass, err := access.ParseBasic(h[len(scheme):])
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	admin, ok := p.Admin()
	if !ok || user != admin.Name {
		return status.Error(codes.Unauthenticated, "wrong admin user name or password")
	}
	if _, ok := p.admins.Check(ctx, admin, pass, time.Now()); !ok {
		return status.Error(codes.Unauthenticated, "wrong admin user name or password")
	}
	return nil
}

// manage gates a management call: home region, and the admin credential.
func (p *Plane) manage(ctx context.Context) error {
	if err := p.management(); err != nil {
		return err
	}
	p.loadAccess()
	return p.requireAdmin(ctx)
}

// logPrefix is how the replicated log prefixes a refused entry's error;
// the user needs only the refusal.
var logPrefix = regexp.MustCompile(`^meta: apply entry \d+: `)

// accessError turns a refusal of the access model into a gRPC status.
func accessError(err error) error {
	if err == nil {
		return nil
	}
	msg := logPrefix.ReplaceAllString(err.Error(), "")
	switch {
	case errors.Is(err, access.ErrInvalid), errors.Is(err, meta.ErrAccessConflict):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, access.ErrLimit):
		return status.Error(codes.ResourceExhausted, msg)
	case errors.Is(err, meta.ErrAccessUnknown):
		return status.Error(codes.NotFound, msg)
	}
	return status.Error(codes.Unavailable, msg)
}

// applyAccess applies cmd and refreshes this node's view at once, so that
// the caller's next request here sees its change.
func (p *Plane) applyAccess(ctx context.Context, cmd meta.Command) error {
	if err := p.cfg.Meta.Apply(ctx, cmd); err != nil {
		return accessError(err)
	}
	p.loadAccess()
	return nil
}

// PutScopeMap implements controlpb.ControlServer.
func (p *Plane) PutScopeMap(ctx context.Context, req *controlpb.PutScopeMapRequest) (*controlpb.ScopeMap, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	m := scopeMapFromProto(req.GetScopeMap())
	if _, ok := access.BuiltIn(m.Name); ok || strings.HasPrefix(m.Name, "_") {
		return nil, status.Errorf(codes.InvalidArgument, "scope map %q is built in: it cannot be created or changed", m.Name)
	}
	if old, ok := p.ScopeMap(m.Name); ok {
		m.Created = old.Created
	} else {
		m.Created = time.Now().UTC()
	}
	if err := m.Validate(); err != nil {
		return nil, accessError(err)
	}
	if err := p.applyAccess(ctx, meta.PutScopeMap{ScopeMap: m, Create: req.GetCreate()}); err != nil {
		return nil, err
	}
	return scopeMapToProto(m), nil
}

// DeleteScopeMap implements controlpb.ControlServer.
func (p *Plane) DeleteScopeMap(ctx context.Context, req *controlpb.NameRequest) (*controlpb.ScopeMap, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	m, ok := p.ScopeMap(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no scope map %q", req.GetName())
	}
	if m.BuiltIn {
		return nil, status.Errorf(codes.InvalidArgument, "scope map %q is built in: it cannot be deleted", m.Name)
	}
	if err := p.applyAccess(ctx, meta.DeleteScopeMap{Name: m.Name}); err != nil {
		return nil, err
	}
	return scopeMapToProto(m), nil
}

// ListScopeMaps implements controlpb.ControlServer.
func (p *Plane) ListScopeMaps(ctx context.Context, _ *controlpb.ListAccessRequest) (*controlpb.ListScopeMapsResponse, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	p.loadAccess()
	out := &controlpb.ListScopeMapsResponse{}
	for _, m := range access.BuiltIns() {
		out.ScopeMaps = append(out.ScopeMaps, scopeMapToProto(m))
	}
	st, err := p.cfg.Meta.AccessState()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	for _, m := range st.ScopeMaps {
		out.ScopeMaps = append(out.ScopeMaps, scopeMapToProto(m))
	}
	return out, nil
}

// PutToken implements controlpb.ControlServer.
func (p *Plane) PutToken(ctx context.Context, req *controlpb.PutTokenRequest) (*controlpb.TokenInfo, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	if err := access.ValidateName("token", req.GetName()); err != nil {
		return nil, accessError(err)
	}
	if req.GetName() == access.AdminUser {
		return nil, status.Errorf(codes.InvalidArgument, "token name %q is the admin user's", access.AdminUser)
	}
	now := time.Now().UTC()
	var (
		tok     access.Token
		secrets []*controlpb.Secret
	)
	if req.GetCreate() {
		tok = access.Token{Name: req.GetName(), ScopeMap: req.GetScopeMap(), Status: access.Enabled, Created: now}
		if _, ok := p.Token(tok.Name); ok {
			return nil, status.Errorf(codes.AlreadyExists, "token %q exists", tok.Name)
		}
		expiry := timeOf(req.GetExpiry())
		for _, name := range []string{access.Password1, access.Password2} {
			secret, pw, err := access.NewPassword(name, now, expiry)
			if err != nil {
				return nil, accessError(err)
			}
			tok.Passwords = append(tok.Passwords, pw)
			secrets = append(secrets, &controlpb.Secret{Name: name, Value: secret})
		}
	} else {
		var ok bool
		if tok, ok = p.Token(req.GetName()); !ok {
			return nil, status.Errorf(codes.NotFound, "no token %q", req.GetName())
		}
		if req.GetScopeMap() != "" {
			tok.ScopeMap = req.GetScopeMap()
		}
	}
	if req.GetStatus() != "" {
		st, err := access.ParseStatus(req.GetStatus())
		if err != nil {
			return nil, accessError(err)
		}
		tok.Status = st
	}
	if tok.ScopeMap == "" {
		return nil, status.Error(codes.InvalidArgument, "a token needs a scope map")
	}
	if err := p.applyAccess(ctx, meta.PutToken{Token: tok, Create: req.GetCreate()}); err != nil {
		return nil, err
	}
	tok, _ = p.Token(tok.Name)
	return &controlpb.TokenInfo{Token: tokenToProto(tok, false), Secrets: secrets}, nil
}

// DeleteToken implements controlpb.ControlServer.
func (p *Plane) DeleteToken(ctx context.Context, req *controlpb.NameRequest) (*controlpb.TokenInfo, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	tok, ok := p.Token(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no token %q", req.GetName())
	}
	if err := p.applyAccess(ctx, meta.DeleteToken{Name: tok.Name}); err != nil {
		return nil, err
	}
	return &controlpb.TokenInfo{Token: tokenToProto(tok, false)}, nil
}

// ListTokens implements controlpb.ControlServer.
func (p *Plane) ListTokens(ctx context.Context, _ *controlpb.ListAccessRequest) (*controlpb.ListTokensResponse, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	st, err := p.cfg.Meta.AccessState()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := &controlpb.ListTokensResponse{}
	for _, t := range st.Tokens {
		out.Tokens = append(out.Tokens, tokenToProto(t, false))
	}
	return out, nil
}

// GenerateCredential implements controlpb.ControlServer.
func (p *Plane) GenerateCredential(ctx context.Context, req *controlpb.GenerateCredentialRequest) (*controlpb.TokenInfo, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	tok, ok := p.Token(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no token %q", req.GetName())
	}
	secret, pw, err := access.NewPassword(req.GetPassword(), time.Now().UTC(), timeOf(req.GetExpiry()))
	if err != nil {
		return nil, accessError(err)
	}
	var kept []access.Password
	for _, old := range tok.Passwords {
		if old.Name != pw.Name {
			kept = append(kept, old)
		}
	}
	tok.Passwords = append(kept, pw)
	if err := p.applyAccess(ctx, meta.PutToken{Token: tok}); err != nil {
		return nil, err
	}
	tok, _ = p.Token(tok.Name)
	return &controlpb.TokenInfo{Token: tokenToProto(tok, false), Secrets: []*controlpb.Secret{{Name: pw.Name, Value: secret}}}, nil
}

// UpdateRegistry implements controlpb.ControlServer.
func (p *Plane) UpdateRegistry(ctx context.Context, req *controlpb.UpdateRegistryRequest) (*controlpb.RegistrySettings, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	settings := p.view().settings
	cfg := meta.PutAccessConfig{Settings: &settings}
	if req.AdminEnabled != nil {
		cfg.Settings.AdminEnabled = req.GetAdminEnabled()
	}
	if req.AnonymousPullEnabled != nil {
		cfg.Settings.AnonymousPull = req.GetAnonymousPullEnabled()
	}
	if err := p.applyAccess(ctx, cfg); err != nil {
		return nil, err
	}
	return settingsToProto(p.view().settings), nil
}

// RotateSigningKey implements controlpb.ControlServer.
func (p *Plane) RotateSigningKey(ctx context.Context, _ *controlpb.RotateSigningKeyRequest) (*controlpb.RotateSigningKeyResponse, error) {
	if err := p.manage(ctx); err != nil {
		return nil, err
	}
	v := p.view()
	keys, err := access.Rotate(v.keys, time.Now())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	cfg := meta.PutAccessConfig{Keys: keys}
	if err := p.applyAccess(ctx, cfg); err != nil {
		return nil, err
	}
	out := &controlpb.RotateSigningKeyResponse{}
	for _, k := range p.view().keys {
		out.KeyIds = append(out.KeyIds, k.ID)
	}
	return out, nil
}
