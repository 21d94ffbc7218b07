package region_test

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/region/regiontest"
)

// BenchmarkGroupLatency measures what a follower's client waits for in a
// 3-zone region: a write it forwards to the leader (until applied here),
// and a write at the leader then a read-your-writes barrier at a follower.
// Both depend on how soon followers learn of commits.
func BenchmarkGroupLatency(b *testing.B) {
	c := regiontest.New(b, regiontest.Config{Zones: 3})
	leader := c.Leader()
	var follower *regiontest.Node
	for _, n := range c.Nodes() {
		if n != leader {
			follower = n
			break
		}
	}
	b.Run("forwarded write", func(b *testing.B) {
		for i := range b.N {
			if err := follower.Group.Apply(b.Context(), meta.LinkBlob{Repo: "bench/fwd", Digest: digest.FromString(fmt.Sprint("f", i)), Size: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("leader write, follower read", func(b *testing.B) {
		for i := range b.N {
			if err := leader.Group.Apply(b.Context(), meta.LinkBlob{Repo: "bench/ryw", Digest: digest.FromString(fmt.Sprint("r", i)), Size: 1}); err != nil {
				b.Fatal(err)
			}
			if err := follower.Group.Barrier(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
