package replication_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/replication"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestReadThroughDeleted reads through a tag and a manifest digest that
// the asking region deleted while a peer, which the delete has not
// reached, still holds them. The answer is "not found" for the region,
// naming no peer as not asked: the delete is the newest write the region
// knows of, and a client told "not found" must not be sent on to a region
// that would show it the deleted manifest again.
func TestReadThroughDeleted(t *testing.T) {
	m := replicationtest.New(t, replicationtest.Config{})
	west, east := m.Region("westus"), m.Region("eastus")
	tagged := west.Push(t, "app", "v1", replicationtest.RandomLayer(t, 1024))
	untagged := west.Push(t, "app", "", replicationtest.RandomLayer(t, 1024))
	replicationtest.WaitFor(t, "eastus to hold both images", func() bool { return east.Has(tagged) && east.Has(untagged) })

	// The deletes stay in eastus: westus still holds both.
	m.Cut("westus", "eastus")
	east.DeleteTag(t, "app", "v1")
	if err := east.Meta.Apply(context.Background(), meta.DeleteManifest{Repo: "app", Digest: untagged.Manifest, Time: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"v1", untagged.Manifest.String()} {
		for _, link := range []string{"cut", "healed"} {
			if link == "healed" {
				m.Heal("westus", "eastus")
			}
			err := east.Replicator.FetchManifest(t.Context(), "app", ref)
			var nf *replication.NotFoundError
			switch {
			case err == nil:
				t.Errorf("%s, link %s: read-through brought back what eastus deleted", ref, link)
			case !errors.As(err, &nf):
				t.Errorf("%s, link %s: %v, want not found", ref, link, err)
			case len(nf.Unasked) > 0:
				t.Errorf("%s, link %s: not found, but naming %v as not asked: a client would be sent there", ref, link, nf.Unasked)
			}
			if link == "cut" {
				m.Cut("westus", "eastus")
			}
		}
	}
	if _, err := east.Meta.Tag("app", "v1"); !errors.Is(err, meta.ErrManifestUnknown) {
		t.Errorf("eastus's tag app:v1 after the reads: %v, want deleted", err)
	}
	if east.Meta.ManifestDeleted("app", tagged.Manifest.String()) {
		t.Error("a manifest that was never deleted is reported deleted")
	}
}
