package access

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// SigningKey signs the registry's bearer tokens (JWTs, EdDSA). Every region
// holds every key, so any region issues and checks tokens on its own.
type SigningKey struct {
	// ID is the JWT "kid" of tokens signed with the key.
	ID string `json:"id"`
	// Seed is the Ed25519 private key seed.
	Seed    []byte    `json:"seed"`
	Created time.Time `json:"created"`
}

// NewSigningKey generates a key.
func NewSigningKey(now time.Time) (SigningKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key id: %w", err)
	}
	return SigningKey{ID: hex.EncodeToString(id), Seed: seed, Created: now.UTC()}, nil
}

// Private returns the key for signing.
func (k SigningKey) Private() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(k.Seed) }

// Public returns the key for verifying.
func (k SigningKey) Public() ed25519.PublicKey {
	return k.Private().Public().(ed25519.PublicKey)
}

// MaxSigningKeys is how many keys a registry keeps: the current one and the
// ones before it, so a rotation does not fail tokens issued just before.
const MaxSigningKeys = 3

// Rotate returns keys with a new current key first, keeping at most
// MaxSigningKeys.
func Rotate(keys []SigningKey, now time.Time) ([]SigningKey, error) {
	k, err := NewSigningKey(now)
	if err != nil {
		return nil, err
	}
	out := append([]SigningKey{k}, keys...)
	if len(out) > MaxSigningKeys {
		out = out[:MaxSigningKeys]
	}
	return out, nil
}
