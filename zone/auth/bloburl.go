package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/zone/api"
)

// The query parameters of a signed blob URL (see SignBlobURL).
const (
	paramExpires  = "georeg-exp"
	paramSubject  = "georeg-sub"
	paramPassword = "georeg-pwd"
	paramCreated  = "georeg-pwdc"
	paramKey      = "georeg-kid"
	paramSig      = api.SignatureParam
)

// BlobURLTTL is how long a signed blob URL may be used: long enough for a
// client to follow the redirect that carries it, short enough that a URL
// seen in a log is soon worthless. Only the start of a download is
// checked; a download in progress runs to its end.
const BlobURLTTL = 60 * time.Second

// clusterKeyID names the key of Config.URLKey in signed URLs.
const clusterKeyID = "cluster"

// urlKeyLabel separates the HMAC keys of signed URLs from every other use
// of the secrets they are derived from.
const urlKeyLabel = "georeg signed blob URL v1"

// urlKey is one HMAC key of signed URLs.
type urlKey struct {
	id  string
	key []byte
}

// urlKeys returns the keys that sign and check blob URLs, the signing one
// first: one derived from each of the registry's token signing keys (kept
// by the control plane and replicated to every region, so that every node
// of the registry checks what any node signed), then, only while
// authentication is off, one derived from the cluster's URL key (a secret
// every node of the cluster holds, for a registry without authentication,
// which has no token keys). With authentication on, the cluster key would
// let whoever holds the gossip key mint a URL for any caller, the admin
// included, so it neither signs nor checks anything then.
func (a *Authenticator) urlKeys() []urlKey {
	var keys []urlKey
	for _, k := range a.cfg.Directory.SigningKeys() {
		keys = append(keys, urlKey{id: k.ID, key: derive(k.Seed)})
	}
	if a.cfg.Directory.Settings().AuthEnabled {
		return keys
	}
	a.mu.Lock()
	ck := a.urlKey
	a.mu.Unlock()
	if len(ck) > 0 {
		keys = append(keys, urlKey{id: clusterKeyID, key: derive(ck)})
	}
	return keys
}

// checkURL reports whether sig is the signature of a URL for path and q by
// the key kid, and whether kid is one of the current keys at all.
func (a *Authenticator) checkURL(kid, sig, path string, q url.Values) (ok, known bool) {
	for _, k := range a.urlKeys() {
		if k.id == kid {
			return hmac.Equal([]byte(mac(k.key, path, q)), []byte(sig)), true
		}
	}
	return false, false
}

// SetURLKey replaces the cluster's URL key (Config.URLKey) while the node
// runs, as the gossip key it is derived from is rotated: URLs signed with
// the old one stop checking at once, which costs a download that has not
// started yet a fresh redirect.
func (a *Authenticator) SetURLKey(key []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.urlKey = append([]byte(nil), key...)
}

func derive(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(urlKeyLabel))
	return m.Sum(nil)
}

// mac is the signature of a blob URL: the path names the repository and
// the digest, the rest is the query less the signature.
func mac(key []byte, path string, q url.Values) string {
	m := hmac.New(sha256.New, key)
	for _, f := range []string{path, q.Get(paramExpires), q.Get(paramSubject), q.Get(paramPassword), q.Get(paramCreated), q.Get(paramKey)} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// SignBlobURL returns the query that lets the caller of r, who was
// authorized to read it, download the blob at path (/v2/<name>/blobs/<digest>)
// from any node of the registry until BlobURLTTL has passed: it names the
// caller (the token and the password it proved, or no one for an anonymous
// pull) and is signed with the registry's current key. It implements
// api.BlobSigner.
func (a *Authenticator) SignBlobURL(ctx context.Context, r *http.Request, path string) (url.Values, error) {
	keys := a.urlKeys()
	if len(keys) == 0 {
		return nil, errors.New("no key to sign blob URLs with")
	}
	q := url.Values{}
	if a.cfg.Directory.Settings().AuthEnabled {
		id, _, err := a.identify(ctx, r)
		if err != nil {
			return nil, err
		}
		if !id.anonymous() {
			q.Set(paramSubject, id.name)
			q.Set(paramPassword, id.password)
			q.Set(paramCreated, strconv.FormatInt(id.created.UnixNano(), 10))
		}
	}
	q.Set(paramExpires, strconv.FormatInt(a.cfg.Now().Add(BlobURLTTL).Unix(), 10))
	q.Set(paramKey, keys[0].id)
	q.Set(paramSig, mac(keys[0].key, path, q))
	return q, nil
}

// VerifyBlobURL checks a request for a signed blob URL in place of its
// credentials: the signature must be a registry key's over this path, the
// URL unexpired, and the caller it names still allowed to read the
// repository now (a token disabled, a password regenerated or a scope map
// narrowed since ends the URL too). It implements api.BlobSigner; a
// failure is DENIED.
func (a *Authenticator) VerifyBlobURL(ctx context.Context, r *http.Request, repo string) error {
	q := r.URL.Query()
	deny := func(why string) error {
		return api.ErrDenied.WithDetail(map[string]string{"reason": "signed blob URL: " + why + "; ask the registry endpoint for the blob again"})
	}
	exp, err := strconv.ParseInt(q.Get(paramExpires), 10, 64)
	if err != nil {
		return deny("no valid expiry")
	}
	if !a.cfg.Now().Before(time.Unix(exp, 0)) {
		return deny("expired")
	}
	sig, kid := q.Get(paramSig), q.Get(paramKey)
	if kid == clusterKeyID && a.cfg.Directory.Settings().AuthEnabled {
		return deny("the cluster key signs no URL while authentication is on")
	}
	// Forged signatures cost their client as failed logins do: anyone can
	// send one, and each may make the Directory catch up.
	client := a.cfg.ClientAddr(r)
	if !a.mayTry(client) {
		e := api.ErrTooManyRequests.WithDetail("too many bad signed URLs or failed logins from this client; wait and retry")
		e.Header = http.Header{"Retry-After": {"10"}}
		return e
	}
	ok, known := a.checkURL(kid, sig, r.URL.Path, q)
	if !ok && !known && kid != clusterKeyID && a.refresh(ctx) {
		// A key id this node does not know yet: one rotated in a moment
		// ago through another zone. A known key's bad signature is no
		// reason to catch up.
		ok, _ = a.checkURL(kid, sig, r.URL.Path, q)
	}
	if !ok {
		a.failed(client)
		return deny("bad signature (signed for another repository, digest or key)")
	}
	set := a.cfg.Directory.Settings()
	if !set.AuthEnabled {
		return nil
	}
	sub := q.Get(paramSubject)
	if sub == "" {
		if !set.AnonymousPull {
			return deny("anonymous pull is off")
		}
		return nil
	}
	nanos, err := strconv.ParseInt(q.Get(paramCreated), 10, 64)
	if err != nil {
		return deny("no valid password time")
	}
	created := time.Unix(0, nanos)
	id, err := a.current(sub, q.Get(paramPassword), created)
	if err != nil && a.refresh(ctx) {
		id, err = a.current(sub, q.Get(paramPassword), created)
	}
	if err != nil {
		return deny(err.Error())
	}
	if !id.allows(repo, access.ContentRead) {
		return deny(fmt.Sprintf("token %q may no longer read %s", strings.ReplaceAll(sub, "\n", ""), repo))
	}
	return nil
}
