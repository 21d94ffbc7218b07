package members

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNoKey means a gossip key file holds no key.
var ErrNoKey = errors.New("members: no gossip key")

// ReadKeyFile reads the gossip keys of path for Config.Keys: one
// base64-encoded key of 16, 24 or 32 bytes a line, the first the one that
// encrypts; blank lines and lines starting with # are skipped.
//
// To rotate, give every node the file with the new key added on a second
// line and have each read it again (List.SetKeys; regiond does on SIGHUP,
// or restart it): they encrypt with the old key and accept both. Then move
// the new key to the first line and have every node read it again; then
// drop the old key and do so a last time.
func ReadKeyFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("members: gossip key file: %w", err)
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("members: %s line %d: %w", path, n, err)
		}
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return nil, fmt.Errorf("members: %s line %d: a key of %d bytes (want 16, 24 or 32)", path, n, l)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNoKey, path)
	}
	return keys, nil
}

// NewKey returns a random 32-byte gossip key, base64-encoded as a line of a
// key file.
func NewKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("members: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}
