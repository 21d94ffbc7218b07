package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/zone/api"
)

// Token kinds: an access token is sent with requests; a refresh token only
// to the token endpoint, for new access tokens.
const (
	kindAccess  = "access"
	kindRefresh = "refresh"
)

// issuer is the "iss" of every token the registry signs.
const issuer = "georeg"

// claims is a georeg JWT.
type claims struct {
	jwt.RegisteredClaims
	Kind   string  `json:"kind"`
	Access []Scope `json:"access,omitempty"`
	// Password and PasswordCreated name the password the subject proved;
	// regenerating it ends every token issued from it.
	Password        string    `json:"pwd,omitempty"`
	PasswordCreated time.Time `json:"pwdCreated,omitzero"`
	// keyID is the key that signed the token (its header's kid).
	keyID string
}

// sign signs c with the registry's current key.
func (a *Authenticator) sign(c claims) (string, error) {
	keys := a.cfg.Directory.SigningKeys()
	if len(keys) == 0 {
		return "", errors.New("the registry has no signing key yet")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = keys[0].ID
	return t.SignedString(keys[0].Private())
}

// verify parses and checks a token of kind: signature by one of the
// registry's keys (EdDSA only: "none" and every other algorithm are
// refused), issuer, audience, expiry.
func (a *Authenticator) verify(ctx context.Context, s string, kind string) (*claims, error) {
	if len(s) > maxTokenLength {
		return nil, errors.New("token too long")
	}
	key := sha256.Sum256([]byte(s))
	if c, ok := a.jwts.get(key, a.cfg.Now(), a.cfg.Directory.SigningKeys()); ok && c.Kind == kind {
		return c, nil
	}
	c, err := a.parse(s, kind)
	if errors.Is(err, errUnknownKey) && a.refresh(ctx) {
		// Signed with a key this node's copy does not hold yet: the
		// registry's first key, or one rotated in a moment ago.
		c, err = a.parse(s, kind)
	}
	if err != nil {
		return nil, err
	}
	a.jwts.put(key, c)
	return c, nil
}

// parse checks a token fully: signature, issuer, audience, expiry, kind.
func (a *Authenticator) parse(s string, kind string) (*claims, error) {
	var c claims
	_, err := jwt.ParseWithClaims(s, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		c.keyID = kid
		for _, k := range a.cfg.Directory.SigningKeys() {
			if k.ID == kid {
				return k.Public(), nil
			}
		}
		return nil, fmt.Errorf("%w %q", errUnknownKey, kid)
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(a.cfg.Service),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.cfg.Now),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		return nil, err
	}
	if c.Kind != kind {
		return nil, fmt.Errorf("token kind %q, want %q", c.Kind, kind)
	}
	return &c, nil
}

// jwtCache remembers tokens that passed parse, so a client sending the
// same bearer token with every request pays the signature check once.
// An entry stands until the token expires or its key is retired.
type jwtCache struct {
	mu      sync.Mutex
	entries map[[32]byte]*claims
}

// maxCachedJWTs bounds the cache; a full cache starts over.
const maxCachedJWTs = 10000

func (c *jwtCache) get(key [32]byte, now time.Time, keys []access.SigningKey) (*claims, bool) {
	c.mu.Lock()
	cl, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || cl.ExpiresAt == nil || !now.Before(cl.ExpiresAt.Time) {
		return nil, false
	}
	for _, k := range keys {
		if k.ID == cl.keyID {
			return cl, true
		}
	}
	return nil, false
}

func (c *jwtCache) put(key [32]byte, cl *claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxCachedJWTs {
		c.entries = make(map[[32]byte]*claims)
	}
	c.entries[key] = cl
}

// errUnknownKey: a token names a signing key the registry does not hold.
var errUnknownKey = errors.New("unknown signing key")

// maxTokenLength bounds a bearer token: 64 scopes of 255-character names
// fit well within it.
const maxTokenLength = 64 << 10

// tokenResponse is the Docker token endpoint's answer (and OAuth2's).
type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// maxTokenForm bounds a token request's form body.
const maxTokenForm = 64 << 10

// ServeHTTP serves the token endpoint: GET with Basic credentials (or none,
// for anonymous pull), and POST with grant_type password or refresh_token
// (the OAuth2 form docker uses with a saved refresh token). It returns a
// signed access token for the part of the requested scopes the caller may
// have; a refresh token too when asked (offline_token=true, or POST).
func (a *Authenticator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := a.serveToken(w, r); err != nil {
		api.ServeError(w, r, err)
	}
}

func (a *Authenticator) serveToken(w http.ResponseWriter, r *http.Request) error {
	if !a.cfg.Directory.Settings().AuthEnabled {
		return api.ErrUnsupported.WithDetail("authentication is off for this registry: no token is needed")
	}
	var (
		id       identity
		err      error
		refresh  bool
		scopeArg []string
	)
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if s := q.Get("service"); s != "" && s != a.cfg.Service {
			return api.ErrDenied.WithDetailf("service %q: this registry is %q", s, a.cfg.Service)
		}
		scopeArg = q["scope"]
		refresh = q.Get("offline_token") == "true"
		if r.Header.Get("Authorization") != "" {
			user, pass, perr := access.ParseBasic(trimScheme(r.Header.Get("Authorization"), "Basic"))
			if perr != nil {
				return a.challenge(r, nil, perr.Error())
			}
			if id, err = a.login(r.Context(), r, user, pass); err != nil {
				return err
			}
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
		if err := r.ParseForm(); err != nil {
			return api.ErrUnsupported.WithDetail("malformed token request form: " + err.Error())
		}
		f := r.PostForm
		if s := f.Get("service"); s != "" && s != a.cfg.Service {
			return api.ErrDenied.WithDetailf("service %q: this registry is %q", s, a.cfg.Service)
		}
		scopeArg = f["scope"]
		refresh = true
		switch f.Get("grant_type") {
		case "password":
			if id, err = a.login(r.Context(), r, f.Get("username"), f.Get("password")); err != nil {
				return err
			}
		case "refresh_token":
			c, verr := a.verify(r.Context(), f.Get("refresh_token"), kindRefresh)
			if verr != nil {
				return a.challenge(r, nil, "invalid refresh token: "+verr.Error())
			}
			if id, err = a.currentFresh(r.Context(), c); err != nil {
				return a.challenge(r, nil, err.Error())
			}
		default:
			return api.ErrUnsupported.WithDetailf("grant_type %q: want password or refresh_token", f.Get("grant_type"))
		}
	default:
		return api.ErrUnsupported.WithDetail(r.Method)
	}
	scopes, err := parseScopes(scopeArg)
	if err != nil {
		return api.ErrDenied.WithDetail("malformed scope: " + err.Error())
	}
	if id.anonymous() && !a.cfg.Directory.Settings().AnonymousPull {
		return a.challenge(r, nil, "authentication required: anonymous pull is disabled")
	}
	granted := a.grantAll(id, scopes)
	now := a.cfg.Now()
	resp := tokenResponse{ExpiresIn: int(a.cfg.TokenTTL / time.Second), IssuedAt: now.UTC().Format(time.RFC3339)}
	if resp.Token, err = a.sign(a.claims(id, kindAccess, granted, now, a.cfg.TokenTTL)); err != nil {
		return err
	}
	resp.AccessToken = resp.Token
	if refresh && !id.anonymous() {
		if resp.RefreshToken, err = a.sign(a.claims(id, kindRefresh, nil, now, a.cfg.RefreshTTL)); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(resp)
}

func trimScheme(h, scheme string) string {
	if len(h) > len(scheme) && http.CanonicalHeaderKey(h[:len(scheme)]) == http.CanonicalHeaderKey(scheme) {
		return h[len(scheme):]
	}
	return ""
}

// grantAll returns the part of scopes that id may have: the admin has
// everything, an anonymous client (anonymous pull) what the built-in pull
// scope map allows, short of the catalog.
func (a *Authenticator) grantAll(id identity, scopes []Scope) []Scope {
	m := id.scope
	switch {
	case id.admin:
		m, _ = access.BuiltIn(access.AdminScopeMap)
	case id.anonymous():
		m, _ = access.BuiltIn(access.PullScopeMap)
	}
	var out []Scope
	for _, s := range scopes {
		if id.anonymous() && s.Type == "registry" {
			continue
		}
		if g, ok := grant(s, m); ok {
			out = append(out, g)
		}
	}
	return out
}

func (a *Authenticator) claims(id identity, kind string, scopes []Scope, now time.Time, ttl time.Duration) claims {
	jti := make([]byte, 12)
	rand.Read(jti)
	return claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   id.name,
			Audience:  jwt.ClaimStrings{a.cfg.Service},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        hex.EncodeToString(jti),
		},
		Kind:            kind,
		Access:          scopes,
		Password:        id.password,
		PasswordCreated: id.created,
	}
}
