package replication_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/replication"
	"github.com/georeg/georeg/replication/replicationtest"
)

// TestReadThroughDeleted reads through a tag and a manifest digest that
// the asking region deleted while a peer, which the delete has not
// reached, still holds them. The older copy is not taken, and the answer is
// "not found" naming no peer as not asked: a client told "not found" must
// not be sent on to a region that would show it the deleted manifest
// again. A write the peer makes after the delete is read through.
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
	// fetch reads ref through; with the link healed, once westus answers
	// (gRPC reconnects with a backoff after a cut).
	fetch := func(ref, link string) error {
		for deadline := time.Now().Add(replicationtest.WaitTimeout); ; time.Sleep(50 * time.Millisecond) {
			err := east.Replicator.FetchManifest(t.Context(), "app", ref)
			if link == "cut" || err == nil || !strings.Contains(err.Error(), "not asked") || time.Now().After(deadline) {
				return err
			}
		}
	}
	for _, ref := range []string{"v1", untagged.Manifest.String()} {
		for _, link := range []string{"cut", "healed"} {
			if link == "healed" {
				m.Heal("westus", "eastus")
			}
			err := fetch(ref, link)
			var nf *replication.NotFoundError
			switch {
			case !errors.As(err, &nf):
				t.Errorf("%s, link %s: %v, want not found", ref, link, err)
			case len(nf.Unasked) > 0:
				t.Errorf("%s, link %s: not found, but naming %v as not asked: a client would be sent there", ref, link, nf.Unasked)
			case link == "healed" && strings.Contains(err.Error(), "not asked"):
				t.Errorf("%s: westus not asked %v after the link healed: %v", ref, replicationtest.WaitTimeout, err)
			}
			if _, _, deleted := east.Meta.DeleteStamp("app", ref); !deleted {
				t.Errorf("%s, link %s: read-through brought back what eastus deleted", ref, link)
			}
			if link == "cut" {
				m.Cut("westus", "eastus")
			}
		}
	}

	// westus tags v1 again after the delete (its clock has seen eastus's
	// writes before the cut, and moves on): a newer write, read through
	// while the link is healed, before replication could deliver it.
	m.Heal("westus", "eastus")
	again := west.Push(t, "app", "v1", replicationtest.RandomLayer(t, 1024))
	if err := fetch("v1", "healed"); err != nil {
		t.Fatalf("a push of app:v1 in westus after eastus deleted it: read-through %v", err)
	}
	if rec, err := east.Meta.Tag("app", "v1"); err != nil || rec.Digest != again.Manifest {
		t.Errorf("eastus's app:v1 after reading through westus's newer push: %v, %v; want %s", rec.Digest, err, again.Manifest)
	}
}
