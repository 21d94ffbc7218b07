package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/zone/api"
)

// Directory is the region's copy of the registry's access state, kept up to
// date by the control plane. Reads are local and cheap.
type Directory interface {
	Settings() access.Settings
	Token(name string) (access.Token, bool)
	ScopeMap(name string) (access.ScopeMap, bool)
	// SigningKeys returns the registry's keys, the current one first.
	SigningKeys() []access.SigningKey
	// Admin returns the admin user: a token whose name is the user name,
	// allowed everything while Settings().AdminEnabled.
	Admin() (access.Token, bool)
}

// Config configures an Authenticator.
type Config struct {
	Directory Directory
	// Service is the token audience, the "service" of the challenge
	// (default "georeg").
	Service string
	// TokenTTL is how long an access token lives (default 5 minutes).
	TokenTTL time.Duration
	// RefreshTTL is how long a refresh token lives (default 24 hours).
	RefreshTTL time.Duration
	// ClientAddr names the client of a request, for the failed-login
	// limiter (default: the connection's address).
	ClientAddr func(*http.Request) string
	// Realm is the token endpoint's URL as the client of a request reaches
	// it (default: this node's, from the request's Host). Behind the
	// traffic manager it is the endpoint's, from X-Forwarded-Host, which
	// only a trusted proxy may set.
	Realm func(*http.Request) string
	// FailuresPerMinute is how many failed logins a client address, or a
	// user name, may make per minute before further attempts are refused
	// without checking them (default 30, burst 10).
	FailuresPerMinute float64
	Logger            *slog.Logger
	// URLKey is a secret every node of the cluster holds; signed blob URLs
	// (SignBlobURL) use a key derived from it only while authentication is
	// off. With authentication on, only the token signing keys sign and
	// check them: a gossip key must not stand in for a login. Nil: a
	// registry without authentication signs none. SetURLKey replaces it.
	URLKey []byte
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Ready, when set, tells whether the Directory can check credentials
	// yet: a connected registry learns its client tokens at its first
	// activation. Until it can, a login is answered 503 with Ready's
	// error and not counted as failed, so that clients polling a site
	// that is starting do not use up their failed-login allowance.
	Ready func() error
}

// TokenPath is where the token endpoint is served.
const TokenPath = "/oauth2/token"

// Authenticator checks every request against the Directory: it implements
// api.Authorizer, and serves the token endpoint.
type Authenticator struct {
	cfg Config

	// verifier checks passwords one bcrypt at a time, and caches what
	// they proved.
	verifier access.Verifier
	jwts     jwtCache
	// refreshes bounds how often a failed check makes the Directory catch
	// up.
	refreshes *rate.Limiter

	mu       sync.Mutex
	failures map[string]*rate.Limiter
	urlKey   []byte
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Directory == nil {
		return nil, errors.New("auth: Directory is required")
	}
	if cfg.Service == "" {
		cfg.Service = "georeg"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 5 * time.Minute
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 24 * time.Hour
	}
	if cfg.FailuresPerMinute <= 0 {
		cfg.FailuresPerMinute = 30
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Realm == nil {
		cfg.Realm = func(r *http.Request) string {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			return scheme + "://" + r.Host + TokenPath
		}
	}
	if cfg.ClientAddr == nil {
		cfg.ClientAddr = func(r *http.Request) string {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				return r.RemoteAddr
			}
			return host
		}
	}
	return &Authenticator{
		cfg:       cfg,
		failures:  make(map[string]*rate.Limiter),
		urlKey:    append([]byte(nil), cfg.URLKey...),
		refreshes: rate.NewLimiter(rate.Every(100*time.Millisecond), 1),
	}, nil
}

// identity is who a request comes from.
type identity struct {
	// name is the token's name (the admin's user name); empty for an
	// anonymous client.
	name  string
	admin bool
	scope access.ScopeMap
	// password and created name the password the client proved (directly,
	// or when its bearer token was issued): regenerating it ends the
	// identity.
	password string
	created  time.Time
}

func (id identity) anonymous() bool { return id.name == "" }

func (id identity) allows(repo string, a access.Action) bool {
	return id.admin || id.scope.Allows(repo, a)
}

// Authorize implements api.Authorizer.
func (a *Authenticator) Authorize(ctx context.Context, r *http.Request, needs []api.Access) error {
	set := a.cfg.Directory.Settings()
	if !set.AuthEnabled {
		return nil
	}
	id, bearer, err := a.identify(ctx, r)
	if err != nil {
		return err
	}
	if id.anonymous() {
		if set.AnonymousPull && len(needs) > 0 && readsOnly(needs) {
			return nil
		}
		return a.challenge(r, needs, "authentication required")
	}
	for _, n := range needs {
		if n.Action == api.ActionCatalogRead || n.Action == api.ActionRegistryAccess {
			continue
		}
		act := access.Action(n.Action)
		if !id.allows(n.Repository, act) {
			return api.ErrDenied.WithDetail(map[string]string{"repository": n.Repository, "action": string(act),
				"reason": fmt.Sprintf("token %q may not %s %s", id.name, act, n.Repository)})
		}
		if bearer != nil && !scopeCovers(bearer, n.Repository, act) {
			e := a.challenge(r, []api.Access{n}, "the bearer token does not cover this request")
			e.Header.Set("WWW-Authenticate", e.Header.Get("WWW-Authenticate")+`,error="insufficient_scope"`)
			return e
		}
	}
	return nil
}

// Operator checks that r comes from an operator of the registry, for the
// node's own endpoints that show the whole registry (GET /_georeg/state
// lists every blob digest): the admin user, or a token with the built-in
// admin scope map (which may read, write and delete everything anyway).
// Without authentication it allows everything, like Authorize. Anyone else
// gets UNAUTHORIZED (with a challenge) or DENIED.
func (a *Authenticator) Operator(ctx context.Context, r *http.Request) error {
	if !a.cfg.Directory.Settings().AuthEnabled {
		return nil
	}
	id, _, err := a.identify(ctx, r)
	if err != nil {
		return err
	}
	if id.anonymous() {
		return a.challenge(r, nil, "authentication required: an operator's credential (the admin user, or a token with the "+access.AdminScopeMap+" scope map)")
	}
	if !id.admin && id.scope.Name != access.AdminScopeMap {
		return api.ErrDenied.WithDetail(map[string]string{"token": id.name,
			"reason": "only the admin user or a token with the " + access.AdminScopeMap + " scope map may read this"})
	}
	return nil
}

// Caller returns the name of the token the client of r authenticated as
// (HTTP Basic or a bearer token), for calls that belong to one token, such
// as a connected registry's sync calls. An anonymous client gets
// UNAUTHORIZED with a challenge; without authentication on the registry
// every caller is anonymous.
func (a *Authenticator) Caller(ctx context.Context, r *http.Request) (string, error) {
	if !a.cfg.Directory.Settings().AuthEnabled {
		return "", api.ErrUnauthorized.WithDetail("this registry runs without authentication; the call needs a token (start it with authentication on)")
	}
	id, _, err := a.identify(ctx, r)
	if err != nil {
		return "", err
	}
	if id.anonymous() {
		return "", a.challenge(r, nil, "authentication required")
	}
	return id.name, nil
}

// Visible implements api.Lister: the repositories the client of r may see
// exist, for _catalog. The client is identified once, not per name.
func (a *Authenticator) Visible(ctx context.Context, r *http.Request) func(repo string) bool {
	if !a.cfg.Directory.Settings().AuthEnabled {
		return func(string) bool { return true }
	}
	id, _, err := a.identify(ctx, r)
	if err != nil || id.anonymous() {
		return func(string) bool { return false }
	}
	return func(repo string) bool { return id.admin || id.scope.Reads(repo) }
}

func readsOnly(needs []api.Access) bool {
	for _, n := range needs {
		if n.Action != api.ActionContentRead && n.Action != api.ActionMetadataRead {
			return false
		}
	}
	return true
}

// challenge is the 401 that sends a client to the token endpoint.
func (a *Authenticator) challenge(r *http.Request, needs []api.Access, why string) *api.Error {
	c := fmt.Sprintf(`Bearer realm=%q,service=%q`, a.cfg.Realm(r), a.cfg.Service)
	var scopes []string
	for _, n := range needs {
		switch {
		case n.Action == api.ActionCatalogRead:
			scopes = append(scopes, "registry:catalog:*")
		case n.Repository != "":
			scopes = append(scopes, "repository:"+n.Repository+":"+challengeActions(access.Action(n.Action)))
		}
	}
	if len(scopes) > 0 {
		c += fmt.Sprintf(`,scope=%q`, strings.Join(scopes, " "))
	}
	e := api.ErrUnauthorized.WithDetail(why)
	e.Header = http.Header{"Www-Authenticate": {c}}
	return e
}

// identify returns who sent r: an anonymous client, a Basic user, or a
// bearer (with the scopes its token grants).
func (a *Authenticator) identify(ctx context.Context, r *http.Request) (identity, []Scope, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return identity{}, nil, nil
	}
	scheme, cred, _ := strings.Cut(h, " ")
	switch strings.ToLower(scheme) {
	case "basic":
		user, pass, err := access.ParseBasic(cred)
		if err != nil {
			return identity{}, nil, a.challenge(r, nil, err.Error())
		}
		id, err := a.login(ctx, r, user, pass)
		if err != nil {
			return identity{}, nil, err
		}
		return id, nil, nil
	case "bearer":
		c, err := a.verify(ctx, strings.TrimSpace(cred), kindAccess)
		if err != nil {
			return identity{}, nil, a.challenge(r, nil, "invalid bearer token: "+err.Error())
		}
		if c.Subject == "" {
			// An anonymous token (anonymous pull): its scopes are reads.
			return identity{}, nil, nil
		}
		id, err := a.currentFresh(ctx, c)
		if err != nil {
			return identity{}, nil, a.challenge(r, nil, err.Error())
		}
		return id, c.Access, nil
	}
	return identity{}, nil, a.challenge(r, nil, "unsupported authorization scheme "+strconv.Quote(scheme))
}

// login checks a user name and password: a token's, or the admin's.
func (a *Authenticator) login(ctx context.Context, r *http.Request, user, pass string) (identity, error) {
	client := a.cfg.ClientAddr(r)
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(); err != nil {
			e := api.ErrUnavailable.WithDetail(err.Error())
			e.Header = http.Header{"Retry-After": {"1"}}
			return identity{}, e
		}
	}
	if !a.mayTry(client) || !a.mayTry("user:"+user) {
		e := api.ErrTooManyRequests.WithDetail("too many failed logins from this client or for this user; wait and retry")
		e.Header = http.Header{"Retry-After": {"10"}}
		return identity{}, e
	}
	tok, admin, found := a.lookup(user)
	for fresh := false; ; fresh = true {
		if found {
			if name, created, ok := a.check(ctx, tok, pass); ok {
				id, err := a.identityOf(tok, admin, name, created)
				if err != nil {
					return identity{}, a.challenge(r, nil, err.Error())
				}
				return id, nil
			}
		}
		if fresh || !a.refresh(ctx) {
			break
		}
		// The token may have been created or changed a moment ago through
		// another zone: try once more, if the refreshed copy differs.
		t2, admin2, found2 := a.lookup(user)
		if found2 == found && (!found || t2.Version == tok.Version) {
			break
		}
		tok, admin, found = t2, admin2, found2
	}
	if err := ctx.Err(); err != nil {
		// The client went away (or its deadline passed) while its
		// password waited for its turn to be hashed: nothing was
		// checked, so nothing counts against the client.
		return identity{}, api.ErrUnavailable.WithDetail("the login was not checked before the request ended: " + err.Error())
	}
	a.failed(client)
	a.failed("user:" + user)
	a.cfg.Logger.Info("failed login", "user", user, "client", client)
	return identity{}, a.challenge(r, nil, "wrong user name or password")
}

// Refresher is the optional ability of a Directory to catch up with the
// latest access state (the region's Raft log, or the home region's copy);
// it reports whether its copy changed.
type Refresher interface {
	Refresh(ctx context.Context) bool
}

// refresh asks the Directory to catch up, when it can: a credential that
// does not check out may be one created a moment ago through another zone.
// Only failures pay for it, and the failed-login limiter bounds them.
func (a *Authenticator) refresh(ctx context.Context) bool {
	f, ok := a.cfg.Directory.(Refresher)
	// Unauthenticated requests can ask for it (a bearer token naming an
	// unknown key), so it runs at most ten times a second.
	return ok && a.refreshes.Allow() && f.Refresh(ctx)
}

// currentFresh is current for a bearer token's claims, catching up once
// with the access state when they do not check out.
func (a *Authenticator) currentFresh(ctx context.Context, c *claims) (identity, error) {
	id, err := a.current(c.Subject, c.Password, c.PasswordCreated)
	if err != nil && a.refresh(ctx) {
		id, err = a.current(c.Subject, c.Password, c.PasswordCreated)
	}
	return id, err
}

func (a *Authenticator) lookup(user string) (tok access.Token, admin, ok bool) {
	if adm, ok := a.cfg.Directory.Admin(); ok && adm.Name == user {
		return adm, true, a.cfg.Directory.Settings().AdminEnabled
	}
	tok, ok = a.cfg.Directory.Token(user)
	return tok, false, ok
}

// current returns the identity of a token that proved password (created at
// created) earlier, if it still may act.
func (a *Authenticator) current(name, password string, created time.Time) (identity, error) {
	tok, admin, ok := a.lookup(name)
	if !ok {
		return identity{}, fmt.Errorf("token %q no longer exists", name)
	}
	for _, p := range tok.Passwords {
		if p.Name == password && p.Created.Equal(created) && !p.Expired(a.cfg.Now()) {
			return a.identityOf(tok, admin, password, created)
		}
	}
	return identity{}, fmt.Errorf("the password token %q logged in with was regenerated, removed or has expired", name)
}

func (a *Authenticator) identityOf(tok access.Token, admin bool, password string, created time.Time) (identity, error) {
	id := identity{name: tok.Name, admin: admin, password: password, created: created}
	if admin {
		return id, nil
	}
	if err := tok.Usable(); err != nil {
		return identity{}, err
	}
	m, ok := a.cfg.Directory.ScopeMap(tok.ScopeMap)
	if !ok {
		return identity{}, fmt.Errorf("token %q: scope map %q does not exist", tok.Name, tok.ScopeMap)
	}
	id.scope = m
	return id, nil
}

// check compares pass with the token's passwords that have not expired.
func (a *Authenticator) check(ctx context.Context, tok access.Token, pass string) (string, time.Time, bool) {
	p, ok := a.verifier.Check(ctx, tok, pass, a.cfg.Now())
	return p.Name, p.Created, ok
}

// mayTry reports whether key has failed logins left.
func (a *Authenticator) mayTry(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.failures[key]
	return !ok || l.TokensAt(a.cfg.Now()) >= 1
}

func (a *Authenticator) failed(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.failures[key]
	if !ok {
		if len(a.failures) >= maxFailureKeys {
			// Forget the oldest knowledge rather than grow without bound;
			// an attacker cycling addresses still pays the hashing gate.
			clear(a.failures)
		}
		l = rate.NewLimiter(rate.Limit(a.cfg.FailuresPerMinute/60), 10)
		a.failures[key] = l
	}
	l.AllowN(a.cfg.Now(), 1)
}

// maxFailureKeys bounds the failed-login limiter's memory.
const maxFailureKeys = 100000
