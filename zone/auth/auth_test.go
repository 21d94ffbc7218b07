package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/zone/api"
)

// directory is an in-memory Directory.
type directory struct {
	mu        sync.Mutex
	settings  access.Settings
	tokens    map[string]access.Token
	scopeMaps map[string]access.ScopeMap
	keys      []access.SigningKey
	admin     access.Token
}

func (d *directory) Settings() access.Settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings
}

func (d *directory) Token(name string) (access.Token, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tokens[name]
	return t, ok
}

func (d *directory) ScopeMap(name string) (access.ScopeMap, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := access.BuiltIn(name); ok {
		return m, true
	}
	m, ok := d.scopeMaps[name]
	return m, ok
}

func (d *directory) SigningKeys() []access.SigningKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keys
}

func (d *directory) Admin() (access.Token, bool) { return d.admin, d.admin.Name != "" }

func (d *directory) update(name string, f func(*access.Token)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tokens[name]
	f(&t)
	t.Version++
	d.tokens[name] = t
}

// fixture is a registry with tokens:
//   - puller (built-in pull scope map), password1 = secrets["puller"]
//   - pusher (built-in push), samples (samples/* read and write)
//   - admin user "admin-user"
type fixture struct {
	t       testing.TB
	dir     *directory
	a       *Authenticator
	now     time.Time
	secrets map[string]string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), secrets: map[string]string{}}
	key, err := access.NewSigningKey(f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.dir = &directory{
		settings: access.Settings{AuthEnabled: true, AdminEnabled: true},
		tokens:   map[string]access.Token{},
		scopeMaps: map[string]access.ScopeMap{"samples-rw": {Name: "samples-rw", Permissions: []access.Permission{
			{Pattern: "samples/*", Actions: []access.Action{access.ContentRead, access.ContentWrite, access.MetadataRead}},
		}}},
		keys: []access.SigningKey{key},
	}
	for name, sm := range map[string]string{"puller": access.PullScopeMap, "pusher": access.PushScopeMap, "samples": "samples-rw"} {
		secret, p, err := access.NewPassword(access.Password1, f.now, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		f.secrets[name] = secret
		f.dir.tokens[name] = access.Token{Name: name, ScopeMap: sm, Status: access.Enabled, Passwords: []access.Password{p}, Created: f.now}
	}
	secret, p, err := access.NewPassword(access.Password1, f.now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.secrets["admin-user"] = secret
	f.dir.admin = access.Token{Name: "admin-user", Status: access.Enabled, Passwords: []access.Password{p}}
	f.a, err = New(Config{Directory: f.dir, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// authorize runs Authorize for one request and returns the OCI error code
// ("" when allowed) and the response's headers.
func (f *fixture) authorize(authz string, needs ...api.Access) (string, http.Header) {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/", nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	err := f.a.Authorize(r.Context(), r, needs)
	if err == nil {
		return "", nil
	}
	var e *api.Error
	if !errors.As(err, &e) {
		f.t.Fatalf("Authorize returned %v, not an *api.Error", err)
	}
	return e.Code, e.Header
}

// token asks the token endpoint; it returns the status and the response.
func (f *fixture) token(method, authz string, form url.Values) (int, tokenResponse) {
	f.t.Helper()
	var r *http.Request
	if method == http.MethodGet {
		r = httptest.NewRequest(method, "http://registry.test"+TokenPath+"?"+form.Encode(), nil)
	} else {
		r = httptest.NewRequest(method, "http://registry.test"+TokenPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	f.a.ServeHTTP(w, r)
	var resp tokenResponse
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			f.t.Fatal(err)
		}
	}
	return w.Code, resp
}

func (f *fixture) bearer(user, scope string) string {
	f.t.Helper()
	code, resp := f.token(http.MethodGet, basic(user, f.secrets[user]), url.Values{"service": {"georeg"}, "scope": {scope}})
	if code != http.StatusOK || resp.Token == "" {
		f.t.Fatalf("token for %s %s: %d", user, scope, code)
	}
	return "Bearer " + resp.Token
}

var (
	readApp  = api.Access{Repository: "samples/app", Action: api.ActionContentRead}
	writeApp = api.Access{Repository: "samples/app", Action: api.ActionContentWrite}
	delApp   = api.Access{Repository: "samples/app", Action: api.ActionContentDelete}
	readX    = api.Access{Repository: "other/x", Action: api.ActionContentRead}
	tagsX    = api.Access{Repository: "other/x", Action: api.ActionMetadataRead}
	catalog  = api.Access{Action: api.ActionCatalogRead}
)

func TestAuthorize(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		authz string
		needs []api.Access
		want  string
	}{
		{"anonymous base", "", nil, "UNAUTHORIZED"},
		{"anonymous pull, off", "", []api.Access{readApp}, "UNAUTHORIZED"},
		{"puller base", basic("puller", f.secrets["puller"]), nil, ""},
		{"puller pull", basic("puller", f.secrets["puller"]), []api.Access{readApp}, ""},
		{"puller push", basic("puller", f.secrets["puller"]), []api.Access{writeApp}, "DENIED"},
		{"puller tags", basic("puller", f.secrets["puller"]), []api.Access{tagsX}, ""},
		{"pusher push", basic("pusher", f.secrets["pusher"]), []api.Access{writeApp}, ""},
		{"pusher delete", basic("pusher", f.secrets["pusher"]), []api.Access{delApp}, "DENIED"},
		{"samples in scope", basic("samples", f.secrets["samples"]), []api.Access{writeApp, readApp}, ""},
		{"samples out of scope", basic("samples", f.secrets["samples"]), []api.Access{readX}, "DENIED"},
		{"samples catalog", basic("samples", f.secrets["samples"]), []api.Access{catalog}, ""},
		{"admin delete", basic("admin-user", f.secrets["admin-user"]), []api.Access{delApp}, ""},
		{"wrong password", basic("puller", "nope"), []api.Access{readApp}, "UNAUTHORIZED"},
		{"unknown user", basic("nobody", "nope"), []api.Access{readApp}, "UNAUTHORIZED"},
		{"not base64", "Basic %%%", []api.Access{readApp}, "UNAUTHORIZED"},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("puller")), []api.Access{readApp}, "UNAUTHORIZED"},
		{"huge basic", "Basic " + strings.Repeat("A", 10000), []api.Access{readApp}, "UNAUTHORIZED"},
		{"other scheme", "Digest x", []api.Access{readApp}, "UNAUTHORIZED"},
		{"bearer garbage", "Bearer abc.def.ghi", []api.Access{readApp}, "UNAUTHORIZED"},
		{"bearer pull", f.bearer("puller", "repository:samples/app:pull"), []api.Access{readApp}, ""},
		{"bearer other repo, allowed identity", f.bearer("puller", "repository:samples/app:pull"), []api.Access{readX}, "UNAUTHORIZED"},
		{"bearer push by puller", f.bearer("puller", "repository:samples/app:pull,push"), []api.Access{writeApp}, "DENIED"},
		{"bearer samples to other", f.bearer("samples", "repository:other/x:pull"), []api.Access{readX}, "DENIED"},
		{"bearer samples push", f.bearer("samples", "repository:samples/app:pull,push"), []api.Access{writeApp}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, hdr := f.authorize(tc.authz, tc.needs...)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if got == "UNAUTHORIZED" {
				c := hdr.Get("WWW-Authenticate")
				if !strings.HasPrefix(c, `Bearer realm="http://registry.test/oauth2/token",service="georeg"`) {
					t.Fatalf("challenge %q", c)
				}
			}
		})
	}
}

func TestOperator(t *testing.T) {
	f := newFixture(t)
	secret, p, err := access.NewPassword(access.Password1, f.now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.secrets["ops"] = secret
	f.dir.tokens["ops"] = access.Token{Name: "ops", ScopeMap: access.AdminScopeMap, Status: access.Enabled, Passwords: []access.Password{p}, Created: f.now}
	tests := []struct {
		name  string
		authz string
		want  string
	}{
		{"anonymous", "", "UNAUTHORIZED"},
		{"admin user", basic("admin-user", f.secrets["admin-user"]), ""},
		{"token with the admin scope map", basic("ops", f.secrets["ops"]), ""},
		{"bearer of the admin scope map token", f.bearer("ops", "repository:samples/app:pull"), ""},
		{"pusher", basic("pusher", f.secrets["pusher"]), "DENIED"},
		{"samples", basic("samples", f.secrets["samples"]), "DENIED"},
		{"wrong password", basic("admin-user", "nope"), "UNAUTHORIZED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://registry.test/_georeg/state", nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			got := ""
			if err := f.a.Operator(r.Context(), r); err != nil {
				var e *api.Error
				if !errors.As(err, &e) {
					t.Fatalf("Operator returned %v, not an *api.Error", err)
				}
				got = e.Code
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	f.dir.settings.AuthEnabled = false
	r := httptest.NewRequest(http.MethodGet, "http://registry.test/_georeg/state", nil)
	if err := f.a.Operator(r.Context(), r); err != nil {
		t.Fatalf("auth off: %v", err)
	}
}

func TestAnonymousPull(t *testing.T) {
	f := newFixture(t)
	f.dir.settings.AnonymousPull = true
	if got, _ := f.authorize("", readApp); got != "" {
		t.Errorf("anonymous pull: %q", got)
	}
	if got, _ := f.authorize("", writeApp); got != "UNAUTHORIZED" {
		t.Errorf("anonymous push: %q", got)
	}
	if got, _ := f.authorize(""); got != "UNAUTHORIZED" {
		t.Errorf("anonymous /v2/: %q (want the challenge, so clients log in when they can)", got)
	}
	if got, _ := f.authorize("", catalog); got != "UNAUTHORIZED" {
		t.Errorf("anonymous catalog: %q", got)
	}
	code, resp := f.token(http.MethodGet, "", url.Values{"scope": {"repository:samples/app:pull,push registry:catalog:*"}})
	if code != http.StatusOK {
		t.Fatalf("anonymous token: %d", code)
	}
	c, err := f.a.verify(context.Background(), resp.Token, kindAccess)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("anonymous grant %+v, want pull on samples/app only", c.Access)
	}
	if got, _ := f.authorize("Bearer "+resp.Token, writeApp); got != "UNAUTHORIZED" {
		t.Errorf("anonymous bearer push: %q", got)
	}
	f.dir.settings.AnonymousPull = false
	if code, _ := f.token(http.MethodGet, "", url.Values{"scope": {"repository:samples/app:pull"}}); code != http.StatusUnauthorized {
		t.Errorf("anonymous token with anonymous pull off: %d", code)
	}
	if got, _ := f.authorize("Bearer "+resp.Token, readApp); got != "UNAUTHORIZED" {
		t.Errorf("anonymous bearer after anonymous pull was turned off: %q", got)
	}
}

func TestAuthOff(t *testing.T) {
	f := newFixture(t)
	f.dir.settings.AuthEnabled = false
	if got, _ := f.authorize("", delApp, catalog); got != "" {
		t.Fatalf("auth off: %q", got)
	}
}

func TestTokenChanges(t *testing.T) {
	f := newFixture(t)
	pass := basic("puller", f.secrets["puller"])
	bearer := f.bearer("puller", "repository:samples/app:pull")

	f.dir.update("puller", func(t *access.Token) { t.Status = access.Disabled })
	if got, _ := f.authorize(pass, readApp); got != "UNAUTHORIZED" {
		t.Errorf("disabled token, basic: %q", got)
	}
	if got, _ := f.authorize(bearer, readApp); got != "UNAUTHORIZED" {
		t.Errorf("disabled token, bearer issued before: %q", got)
	}
	f.dir.update("puller", func(t *access.Token) { t.Status = access.Enabled })
	if got, _ := f.authorize(pass, readApp); got != "" {
		t.Errorf("re-enabled: %q", got)
	}

	// password2 added; password1 regenerated: password2 keeps working, the
	// old password1 and tokens issued from it stop.
	secret2, p2, err := access.NewPassword(access.Password2, f.now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.dir.update("puller", func(t *access.Token) { t.Passwords = append(t.Passwords, p2) })
	f.now = f.now.Add(time.Second)
	_, p1, err := access.NewPassword(access.Password1, f.now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.dir.update("puller", func(t *access.Token) { t.Passwords = []access.Password{p1, p2} })
	if got, _ := f.authorize(pass, readApp); got != "UNAUTHORIZED" {
		t.Errorf("old password1: %q", got)
	}
	if got, _ := f.authorize(bearer, readApp); got != "UNAUTHORIZED" {
		t.Errorf("bearer from old password1: %q", got)
	}
	if got, _ := f.authorize(basic("puller", secret2), readApp); got != "" {
		t.Errorf("password2: %q", got)
	}

	// An expired password stops working.
	f.dir.update("puller", func(t *access.Token) { t.Passwords[1].Expiry = f.now.Add(time.Minute) })
	f.now = f.now.Add(2 * time.Minute)
	if got, _ := f.authorize(basic("puller", secret2), readApp); got != "UNAUTHORIZED" {
		t.Errorf("expired password2: %q", got)
	}

	// A deleted scope map leaves its token unable to act.
	f.dir.mu.Lock()
	delete(f.dir.scopeMaps, "samples-rw")
	f.dir.mu.Unlock()
	if got, _ := f.authorize(basic("samples", f.secrets["samples"]), readApp); got != "UNAUTHORIZED" {
		t.Errorf("token of a deleted scope map: %q", got)
	}
}

func TestBadBearerTokens(t *testing.T) {
	f := newFixture(t)
	good := strings.TrimPrefix(f.bearer("puller", "repository:samples/app:pull"), "Bearer ")
	key := f.dir.keys[0]
	sign := func(c claims, method jwt.SigningMethod, k any) string {
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = key.ID
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base, err := f.a.verify(context.Background(), good, kindAccess)
	if err != nil {
		t.Fatal(err)
	}
	with := func(mod func(*claims)) claims {
		c := *base
		c.Audience = append(jwt.ClaimStrings(nil), base.Audience...)
		mod(&c)
		return c
	}
	other, err := access.NewSigningKey(f.now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin-user","kind":"access"}`)) + "." + parts[2]
	refresh := func() string {
		_, resp := f.token(http.MethodPost, "", url.Values{"grant_type": {"password"}, "username": {"puller"}, "password": {f.secrets["puller"]}})
		return resp.RefreshToken
	}()
	tests := []struct {
		name, token string
	}{
		{"tampered payload", tampered},
		{"alg none", sign(*base, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)},
		{"HS256 with the public key", sign(*base, jwt.SigningMethodHS256, []byte(key.Public()))},
		{"wrong audience", sign(with(func(c *claims) { c.Audience = jwt.ClaimStrings{"elsewhere"} }), jwt.SigningMethodEdDSA, key.Private())},
		{"wrong issuer", sign(with(func(c *claims) { c.Issuer = "mallory" }), jwt.SigningMethodEdDSA, key.Private())},
		{"expired", sign(with(func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(f.now.Add(-time.Minute)) }), jwt.SigningMethodEdDSA, key.Private())},
		{"no expiry", sign(with(func(c *claims) { c.ExpiresAt = nil }), jwt.SigningMethodEdDSA, key.Private())},
		{"unknown key", sign(*base, jwt.SigningMethodEdDSA, other.Private())},
		{"refresh token as access", refresh},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := f.authorize("Bearer "+tc.token, readApp); got != "UNAUTHORIZED" {
				t.Fatalf("got %q, want UNAUTHORIZED", got)
			}
		})
	}
}

func TestTokenEndpoint(t *testing.T) {
	f := newFixture(t)
	// docker login: GET with Basic and offline_token, then the refresh
	// token through POST.
	code, resp := f.token(http.MethodGet, basic("samples", f.secrets["samples"]),
		url.Values{"service": {"georeg"}, "offline_token": {"true"}, "client_id": {"docker"}, "scope": {"repository:samples/app:pull,push,delete repository:other/x:pull registry:catalog:*"}})
	if code != http.StatusOK || resp.RefreshToken == "" || resp.AccessToken != resp.Token || resp.ExpiresIn != 300 {
		t.Fatalf("GET: %d %+v", code, resp)
	}
	c, err := f.a.verify(context.Background(), resp.Token, kindAccess)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Access); got != "[repository:samples/app:pull,push registry:catalog:*]" {
		t.Fatalf("granted %s", got)
	}
	code, resp2 := f.token(http.MethodPost, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {resp.RefreshToken},
		"service": {"georeg"}, "scope": {"repository:samples/app:pull"}})
	if code != http.StatusOK {
		t.Fatalf("refresh: %d", code)
	}
	if got, _ := f.authorize("Bearer "+resp2.Token, readApp); got != "" {
		t.Fatalf("refreshed token: %q", got)
	}
	tests := []struct {
		name   string
		method string
		authz  string
		form   url.Values
		want   int
	}{
		{"wrong password", http.MethodGet, basic("samples", "x"), url.Values{}, http.StatusUnauthorized},
		{"wrong service", http.MethodGet, basic("samples", f.secrets["samples"]), url.Values{"service": {"other"}}, http.StatusForbidden},
		{"malformed scope", http.MethodGet, basic("samples", f.secrets["samples"]), url.Values{"scope": {"repository:BAD NAME:pull"}}, http.StatusForbidden},
		{"unknown grant", http.MethodPost, "", url.Values{"grant_type": {"client_credentials"}}, http.StatusMethodNotAllowed},
		{"access token as refresh", http.MethodPost, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {resp.Token}}, http.StatusUnauthorized},
		{"password grant", http.MethodPost, "", url.Values{"grant_type": {"password"}, "username": {"samples"}, "password": {f.secrets["samples"]}}, http.StatusOK},
		{"PUT", http.MethodPut, "", url.Values{}, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := f.token(tc.method, tc.authz, tc.form); code != tc.want {
				t.Fatalf("got %d, want %d", code, tc.want)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	f := newFixture(t)
	before := f.bearer("puller", "repository:samples/app:pull")
	keys, err := access.Rotate(f.dir.keys, f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.dir.keys = keys
	after := f.bearer("puller", "repository:samples/app:pull")
	for name, b := range map[string]string{"before": before, "after": after} {
		if got, _ := f.authorize(b, readApp); got != "" {
			t.Errorf("token issued %s the rotation: %q", name, got)
		}
	}
	for range access.MaxSigningKeys {
		f.dir.keys, _ = access.Rotate(f.dir.keys, f.now)
	}
	if got, _ := f.authorize(before, readApp); got != "UNAUTHORIZED" {
		t.Errorf("token of a retired key: %q", got)
	}
}

// TestBruteForce sends 10,000 wrong passwords: after the burst the node
// refuses without hashing, so the run takes far less than 10,000 bcrypt
// comparisons would (over 8 minutes) and the right password, from another
// client, still works at once.
func TestBruteForce(t *testing.T) {
	f := newFixture(t)
	counts := map[string]int{}
	for i := range 10000 {
		r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header.Set("Authorization", basic("puller", fmt.Sprintf("guess-%d", i)))
		var e *api.Error
		if err := f.a.Authorize(r.Context(), r, []api.Access{readApp}); errors.As(err, &e) {
			counts[e.Code]++
		}
	}
	if counts["UNAUTHORIZED"] > 10 || counts["TOOMANYREQUESTS"] < 9990 {
		t.Fatalf("answers %v: want at most 10 checked, the rest refused", counts)
	}
	// The user name is limited too, so the right password waits for the
	// limiter to refill; a minute later it works.
	f.now = f.now.Add(time.Minute)
	r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/", nil)
	r.RemoteAddr = "198.51.100.7:1"
	r.Header.Set("Authorization", basic("puller", f.secrets["puller"]))
	if err := f.a.Authorize(r.Context(), r, []api.Access{readApp}); err != nil {
		t.Fatalf("right password from another client a minute later: %v", err)
	}
}

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in      []string
		want    string
		wantErr bool
	}{
		{[]string{"repository:samples/app:pull,push"}, "[repository:samples/app:pull,push]", false},
		{[]string{"repository:a:pull repository:b:push"}, "[repository:a:pull repository:b:push]", false},
		{[]string{"repository(plugin):a:pull"}, "[repository:a:pull]", false},
		{[]string{"registry:catalog:*"}, "[registry:catalog:*]", false},
		{[]string{"somethingelse:x:y"}, "[]", false},
		{[]string{"repository:a:pull,pull"}, "[repository:a:pull]", false},
		{[]string{"repository:A:pull"}, "", true},
		{[]string{"repository"}, "", true},
		{[]string{"registry:users:*"}, "", true},
		{[]string{strings.Repeat("repository:a:pull ", 65)}, "", true},
	}
	for _, tc := range tests {
		got, err := parseScopes(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseScopes(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && fmt.Sprint(got) != tc.want {
			t.Errorf("parseScopes(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:samples/app:pull,push", "registry:catalog:*", "a:b:c:d", "::", "repository(x):y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scopes, err := parseScopes([]string{s})
		if err != nil {
			return
		}
		for _, sc := range scopes {
			if sc.Type != "repository" && sc.Type != "registry" {
				t.Fatalf("kept scope of type %q", sc.Type)
			}
		}
	})
}

// BenchmarkAuthorize measures what authentication adds to a request: a
// bearer token (the flow docker and every client use) and Basic
// credentials, both after the first request has filled the caches.
func BenchmarkAuthorize(b *testing.B) {
	f := newFixture(b)
	bearer := f.bearer("puller", "repository:samples/app:pull")
	for _, bc := range []struct{ name, authz string }{
		{"bearer", bearer},
		{"basic", basic("puller", f.secrets["puller"])},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/samples/app/manifests/1", nil)
			r.Header.Set("Authorization", bc.authz)
			needs := []api.Access{readApp}
			for b.Loop() {
				if err := f.a.Authorize(r.Context(), r, needs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestVisible(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, authz string
		want        map[string]bool
	}{
		{"samples token", basic("samples", f.secrets["samples"]), map[string]bool{"samples/app": true, "other/x": false}},
		{"puller (every repository)", basic("puller", f.secrets["puller"]), map[string]bool{"samples/app": true, "other/x": true}},
		{"admin", basic("admin-user", f.secrets["admin-user"]), map[string]bool{"other/x": true}},
		{"anonymous", "", map[string]bool{"samples/app": false}},
		{"wrong password", basic("samples", "nope"), map[string]bool{"samples/app": false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/_catalog", nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			visible := f.a.Visible(r.Context(), r)
			for repo, want := range tc.want {
				if got := visible(repo); got != want {
					t.Errorf("visible(%q) = %v, want %v", repo, got, want)
				}
			}
		})
	}
}

// lagging is a Directory whose copy lags: a token created elsewhere shows
// only once Refresh is called.
type lagging struct {
	*directory
	pending   access.Token
	refreshes int
}

func (l *lagging) Refresh(context.Context) bool {
	l.refreshes++
	if l.pending.Name == "" {
		return false
	}
	l.mu.Lock()
	l.tokens[l.pending.Name] = l.pending
	l.mu.Unlock()
	l.pending = access.Token{}
	return true
}

func TestLoginCatchesUp(t *testing.T) {
	f := newFixture(t)
	secret, p, err := access.NewPassword(access.Password1, f.now, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	l := &lagging{directory: f.dir, pending: access.Token{Name: "newbie", ScopeMap: access.PullScopeMap, Status: access.Enabled, Passwords: []access.Password{p}, Version: 1}}
	f.a, err = New(Config{Directory: l, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.authorize(basic("newbie", secret), readApp); got != "" {
		t.Fatalf("a token created a moment ago through another zone: %q", got)
	}
	before := l.refreshes
	time.Sleep(150 * time.Millisecond) // refreshes run at most ten times a second
	if got, _ := f.authorize(basic("nobody", "x"), readApp); got != "UNAUTHORIZED" || l.refreshes != before+1 {
		t.Fatalf("unknown user: %q after %d refreshes, want UNAUTHORIZED after one", got, l.refreshes-before)
	}
}

// TestLoginNotCheckedIsNoFailure: a login whose request ended before its
// password could be hashed (a client that gave up, or a deadline on a busy
// node) was never checked, and must not use up the client's failed-login
// allowance: on a site, every local client shares one address, and a burst
// of abandoned requests must not lock the right password out with 429s.
func TestLoginNotCheckedIsNoFailure(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		// A password not in the verifier's cache, and a context already
		// ended: Check cannot take its turn to hash.
		r := httptest.NewRequest(http.MethodGet, "http://registry.test/v2/", nil).WithContext(ctx)
		r.Header.Set("Authorization", basic("puller", fmt.Sprintf("not-checked-%d", i)))
		err := f.a.Authorize(ctx, r, nil)
		var e *api.Error
		if !errors.As(err, &e) || e.Code != "UNAVAILABLE" {
			t.Fatalf("login %d with an ended context: %v, want UNAVAILABLE", i, err)
		}
	}
	if code, _ := f.authorize(basic("puller", f.secrets["puller"])); code != "" {
		t.Fatalf("the right password after 20 unchecked logins: %s, want allowed", code)
	}
}

// TestLoginNotReady: while the Directory cannot check credentials yet (a
// connected registry before its first activation), logins answer
// UNAVAILABLE and none counts as failed: the right password works at
// once when it is ready.
func TestLoginNotReady(t *testing.T) {
	f := newFixture(t)
	ready := errors.New("not activated yet")
	f.a.cfg.Ready = func() error { return ready }
	for i := range 20 {
		code, _ := f.authorize(basic("puller", fmt.Sprintf("unknown-yet-%d", i)))
		if code != "UNAVAILABLE" {
			t.Fatalf("login %d before ready: %s, want UNAVAILABLE", i, code)
		}
	}
	ready = nil
	if code, _ := f.authorize(basic("puller", f.secrets["puller"])); code != "" {
		t.Fatalf("the right password once ready, after 20 logins before: %s, want allowed", code)
	}
}
