package access

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxCredential bounds a Basic credential: user names are at most 50
// characters and passwords 43, so anything much longer is not one.
const maxCredential = 512

// ParseBasic decodes the credential of a Basic Authorization header (the
// part after "Basic ").
func ParseBasic(cred string) (user, pass string, err error) {
	cred = strings.TrimSpace(cred)
	if len(cred) > maxCredential {
		return "", "", errors.New("malformed Basic credentials: too long")
	}
	b, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", errors.New("malformed Basic credentials: not base64")
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok || user == "" {
		return "", "", errors.New("malformed Basic credentials: want user:password")
	}
	return user, pass, nil
}

// Verifier checks secrets against a token's passwords. It runs one bcrypt
// comparison at a time, so a flood of wrong passwords costs at most one
// core, and remembers which password a (token, version, secret) proved, so
// that a client sending its credentials with every request pays bcrypt
// once. A token's version changes with every change to it, so a disabled
// token or a regenerated password is never served from the cache. The zero
// value is ready.
type Verifier struct {
	once    sync.Once
	hashing chan struct{}

	mu      sync.Mutex
	entries map[[32]byte]verified
}

type verified struct {
	name    string
	created time.Time
}

// maxVerified bounds the cache; a full cache starts over.
const maxVerified = 10000

// Check returns the password of tok that secret is and has not expired at
// now. It waits for its turn to hash no longer than ctx allows.
func (v *Verifier) Check(ctx context.Context, tok Token, secret string, now time.Time) (Password, bool) {
	v.once.Do(func() { v.hashing = make(chan struct{}, 1) })
	key := sha256.Sum256([]byte(tok.Name + "\x00" + strconv.FormatUint(tok.Version, 10) + "\x00" + secret))
	v.mu.Lock()
	hit, ok := v.entries[key]
	v.mu.Unlock()
	if ok {
		for _, p := range tok.Passwords {
			if p.Name == hit.name && p.Created.Equal(hit.created) && !p.Expired(now) {
				return p, true
			}
		}
	}
	select {
	case v.hashing <- struct{}{}:
	case <-ctx.Done():
		return Password{}, false
	}
	defer func() { <-v.hashing }()
	for _, p := range tok.Passwords {
		if !p.Expired(now) && p.Matches(secret) {
			v.mu.Lock()
			if v.entries == nil || len(v.entries) >= maxVerified {
				v.entries = make(map[[32]byte]verified)
			}
			v.entries[key] = verified{p.Name, p.Created}
			v.mu.Unlock()
			return p, true
		}
	}
	return Password{}, false
}
