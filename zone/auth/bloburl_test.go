package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/zone/api"
)

const (
	appBlob   = "/v2/samples/app/blobs/sha256:1111111111111111111111111111111111111111111111111111111111111111"
	otherBlob = "/v2/samples/app/blobs/sha256:2222222222222222222222222222222222222222222222222222222222222222"
	otherRepo = "/v2/samples/lib/blobs/sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

// signBlob signs path for a request carrying authz.
func (f *fixture) signBlob(authz, path string) url.Values {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://registry.test"+path, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	q, err := f.a.SignBlobURL(r.Context(), r, path)
	if err != nil {
		f.t.Fatalf("SignBlobURL: %v", err)
	}
	return q
}

// verifyBlob checks a signed request for path with query q, with no
// credentials; it returns the OCI error code, "" when allowed.
func (f *fixture) verifyBlob(path, repo string, q url.Values) string {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://node.test"+path+"?"+q.Encode(), nil)
	err := f.a.VerifyBlobURL(r.Context(), r, repo)
	if err == nil {
		return ""
	}
	var e *api.Error
	if !errors.As(err, &e) {
		f.t.Fatalf("VerifyBlobURL returned %v, not an *api.Error", err)
	}
	return e.Code
}

// TestSignedBlobURL: a signed URL lets its caller download that blob of
// that repository until it expires, and nothing else: not another digest,
// not another repository, not after the expiry, not with a field changed,
// and not once the caller's token may no longer read the repository.
func TestSignedBlobURL(t *testing.T) {
	f := newFixture(t)
	q := f.signBlob(basic("samples", f.secrets["samples"]), appBlob)
	if q.Get(paramSubject) != "samples" {
		t.Fatalf("signed for %q, want the caller samples", q.Get(paramSubject))
	}
	if code := f.verifyBlob(appBlob, "samples/app", q); code != "" {
		t.Fatalf("the signed URL itself: %s", code)
	}
	bearer := f.signBlob(f.bearer("samples", "repository:samples/app:pull"), appBlob)
	if code := f.verifyBlob(appBlob, "samples/app", bearer); code != "" {
		t.Fatalf("a URL signed for a bearer: %s", code)
	}
	tampered := func(k, v string) url.Values {
		c := url.Values{}
		for kk, vs := range q {
			c[kk] = append([]string(nil), vs...)
		}
		c.Set(k, v)
		return c
	}
	for _, tt := range []struct {
		name, path, repo string
		q                url.Values
	}{
		{"another digest", otherBlob, "samples/app", q},
		{"another repository", otherRepo, "samples/lib", q},
		{"another subject", appBlob, "samples/app", tampered(paramSubject, "pusher")},
		{"a later expiry", appBlob, "samples/app", tampered(paramExpires, "99999999999")},
		{"another key", appBlob, "samples/app", tampered(paramKey, clusterKeyID)},
		{"no signature", appBlob, "samples/app", tampered(paramSig, "")},
	} {
		if code := f.verifyBlob(tt.path, tt.repo, tt.q); code != "DENIED" {
			t.Errorf("%s: %q, want DENIED", tt.name, code)
		}
	}

	f.now = f.now.Add(BlobURLTTL)
	if code := f.verifyBlob(appBlob, "samples/app", q); code != "DENIED" {
		t.Errorf("at its expiry: %q, want DENIED", code)
	}
	f.now = f.now.Add(-time.Second)
	f.dir.update("samples", func(tok *access.Token) { tok.Status = access.Disabled })
	if code := f.verifyBlob(appBlob, "samples/app", q); code != "DENIED" {
		t.Errorf("after its token was disabled: %q, want DENIED", code)
	}
}

// TestSignedBlobURLAnonymous: an anonymous pull's URL names no one and
// stands only while anonymous pull is on; without authentication, a URL
// is signed with the cluster's key and checked only for its signature.
func TestSignedBlobURLAnonymous(t *testing.T) {
	f := newFixture(t)
	f.dir.settings.AnonymousPull = true
	q := f.signBlob("", appBlob)
	if q.Has(paramSubject) {
		t.Fatalf("an anonymous URL names %q", q.Get(paramSubject))
	}
	if code := f.verifyBlob(appBlob, "samples/app", q); code != "" {
		t.Fatalf("anonymous pull on: %s", code)
	}
	f.dir.settings.AnonymousPull = false
	if code := f.verifyBlob(appBlob, "samples/app", q); code != "DENIED" {
		t.Errorf("anonymous pull turned off: %q, want DENIED", code)
	}

	off := newFixture(t)
	off.dir.settings = access.Settings{}
	off.dir.keys = nil
	r := httptest.NewRequest(http.MethodGet, "http://registry.test"+appBlob, nil)
	if _, err := off.a.SignBlobURL(r.Context(), r, appBlob); err == nil {
		t.Error("signed a URL with no key at all")
	}
	off.a.SetURLKey([]byte("a secret every node holds"))
	q = off.signBlob("", appBlob)
	if q.Get(paramKey) != clusterKeyID {
		t.Errorf("signed with key %q, want the cluster's", q.Get(paramKey))
	}
	if code := off.verifyBlob(appBlob, "samples/app", q); code != "" {
		t.Errorf("cluster-signed URL: %s", code)
	}
	if code := off.verifyBlob(otherBlob, "samples/app", q); code != "DENIED" || !strings.Contains(otherBlob, "2222") {
		t.Errorf("cluster-signed URL for another digest: %q, want DENIED", code)
	}
}

// TestClusterKeyOnlyWithoutAuth: with authentication on, the cluster key
// (derived from the gossip key) neither signs nor checks URLs, so whoever
// holds the gossip key cannot mint a URL for the admin or anyone else;
// SetURLKey replaces it, ending the URLs the old one signed.
func TestClusterKeyOnlyWithoutAuth(t *testing.T) {
	f := newFixture(t)
	f.a.SetURLKey([]byte("the gossip key"))
	if q := f.signBlob(basic("admin-user", f.secrets["admin-user"]), appBlob); q.Get(paramKey) == clusterKeyID {
		t.Fatalf("auth on: signed with the cluster key")
	}
	// What a holder of the gossip key could forge: a URL naming the admin.
	forged := url.Values{}
	forged.Set(paramSubject, "admin-user")
	forged.Set(paramPassword, f.dir.admin.Passwords[0].Name)
	forged.Set(paramCreated, strconv.FormatInt(f.dir.admin.Passwords[0].Created.UnixNano(), 10))
	forged.Set(paramExpires, strconv.FormatInt(f.now.Add(BlobURLTTL).Unix(), 10))
	forged.Set(paramKey, clusterKeyID)
	forged.Set(paramSig, mac(derive([]byte("the gossip key")), appBlob, forged))
	if code := f.verifyBlob(appBlob, "samples/app", forged); code != "DENIED" {
		t.Errorf("auth on, cluster-signed URL for the admin: %q, want DENIED", code)
	}
	anon := url.Values{}
	anon.Set(paramExpires, forged.Get(paramExpires))
	anon.Set(paramKey, clusterKeyID)
	anon.Set(paramSig, mac(derive([]byte("the gossip key")), appBlob, anon))
	f.dir.settings.AnonymousPull = true
	if code := f.verifyBlob(appBlob, "samples/app", anon); code != "DENIED" {
		t.Errorf("auth on, cluster-signed anonymous URL: %q, want DENIED", code)
	}

	f.dir.settings = access.Settings{}
	f.dir.keys = nil
	old := f.signBlob("", appBlob)
	if code := f.verifyBlob(appBlob, "samples/app", old); code != "" {
		t.Fatalf("auth off, cluster-signed URL: %s", code)
	}
	f.a.SetURLKey([]byte("the next gossip key"))
	if code := f.verifyBlob(appBlob, "samples/app", old); code != "DENIED" {
		t.Errorf("after SetURLKey, a URL of the old key: %q, want DENIED", code)
	}
	if code := f.verifyBlob(appBlob, "samples/app", f.signBlob("", appBlob)); code != "" {
		t.Errorf("after SetURLKey, a URL of the new key: %s", code)
	}
}

// TestSignedBlobURLBadSignature: a bad signature by a key this node knows
// makes the Directory catch up no more than a good one; a key id it does
// not know yet does (a key rotated in through another zone); and bad
// signatures count as failed logins of their client, which is refused
// once it has used them up, a good URL included.
func TestSignedBlobURLBadSignature(t *testing.T) {
	f := newFixture(t)
	l := &lagging{directory: f.dir}
	var err error
	f.a, err = New(Config{Directory: l, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	good := f.signBlob(basic("samples", f.secrets["samples"]), appBlob)
	forged := url.Values{}
	for k, v := range good {
		forged[k] = append([]string(nil), v...)
	}
	forged.Set(paramSubject, "admin-user")
	if code := f.verifyBlob(appBlob, "samples/app", forged); code != "DENIED" || l.refreshes != 0 {
		t.Fatalf("bad signature by a known key: %q after %d refreshes, want DENIED after none", code, l.refreshes)
	}
	unknown := url.Values{}
	for k, v := range forged {
		unknown[k] = append([]string(nil), v...)
	}
	unknown.Set(paramKey, "a-key-from-another-zone")
	if code := f.verifyBlob(appBlob, "samples/app", unknown); code != "DENIED" || l.refreshes != 1 {
		t.Fatalf("an unknown key id: %q after %d refreshes, want DENIED after one", code, l.refreshes)
	}
	code, tries := "", 2
	for ; tries < 100; tries++ {
		if code = f.verifyBlob(appBlob, "samples/app", forged); code != "DENIED" {
			break
		}
	}
	if code != "TOOMANYREQUESTS" {
		t.Fatalf("after %d bad signatures: %q, want TOOMANYREQUESTS", tries, code)
	}
	t.Logf("refused after %d bad signatures", tries)
	if code := f.verifyBlob(appBlob, "samples/app", good); code != "TOOMANYREQUESTS" {
		t.Errorf("a good URL from that client: %q, want TOOMANYREQUESTS", code)
	}
	f.now = f.now.Add(10 * time.Second)
	if code := f.verifyBlob(appBlob, "samples/app", good); code != "" {
		t.Errorf("a good URL once the limiter refilled: %q", code)
	}
}
