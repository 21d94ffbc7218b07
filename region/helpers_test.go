package region

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
)

// waitTimeout bounds every wait of a test for a state (regiontest's
// WaitTimeout, which this package's internal tests cannot import).
const waitTimeout = 30 * time.Second

// linkBlob returns the command that links a blob into repo.
func linkBlob(repo string, dgst digest.Digest, size int64) meta.Command {
	return meta.LinkBlob{Repo: repo, Digest: dgst, Size: size}
}

// randomBlob returns size random bytes and their digest.
func randomBlob(t *testing.T, size int) ([]byte, digest.Digest) {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, digest.FromBytes(b)
}
