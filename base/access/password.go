package access

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordBytes is the entropy of a generated password: 256 bits, so a
// password cannot be guessed however fast hashes could be tried.
const passwordBytes = 32

// hashCost is bcrypt's cost: 71 ms a hash measured on this project's 2-core machine,
// so a stolen copy of the hashes is slow to attack, and the verification
// cache (Verifier) keeps that cost off the request path.
const hashCost = bcrypt.DefaultCost

// NewPassword generates a password, returning the secret (shown once, never
// stored) and the hashed Password to keep. A zero expiry never expires; an
// expiry not after now is refused.
func NewPassword(name string, now, expiry time.Time) (string, Password, error) {
	if name != Password1 && name != Password2 {
		return "", Password{}, fmt.Errorf("%w: password name %q: want %s or %s", ErrInvalid, name, Password1, Password2)
	}
	if !expiry.IsZero() && !expiry.After(now) {
		return "", Password{}, fmt.Errorf("%w: expiry %s is not in the future", ErrInvalid, expiry.UTC().Format(time.RFC3339))
	}
	b := make([]byte, passwordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", Password{}, fmt.Errorf("generate password: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), hashCost)
	if err != nil {
		return "", Password{}, fmt.Errorf("hash password: %w", err)
	}
	return secret, Password{Name: name, Hash: hash, Created: now.UTC(), Expiry: expiry.UTC()}, nil
}

// Matches reports whether secret is this password. It costs one bcrypt
// comparison (tens of milliseconds): callers cache the answer.
func (p Password) Matches(secret string) bool {
	if len(secret) == 0 || len(secret) > 72 {
		// bcrypt reads at most 72 bytes; a longer secret is never one we
		// generated, and refusing it keeps 1 MB headers off the hash.
		return false
	}
	return bcrypt.CompareHashAndPassword(p.Hash, []byte(secret)) == nil
}
