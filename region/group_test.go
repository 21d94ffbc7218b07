package region

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/storage"
)

func TestGroup(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})

	t.Run("one leader", func(t *testing.T) {
		leader := c.leader()
		leaders := 0
		for _, n := range c.nodes {
			st := n.group.Status()
			if st.Voters != 3 || st.Term == 0 || st.Leader != leader.id {
				t.Errorf("%s: status %+v, want 3 voters, a term, leader %s", n.id, st, leader.id)
			}
			switch st.State {
			case "Leader":
				leaders++
			case "Follower":
			default:
				t.Errorf("%s: raft state %q", n.id, st.State)
			}
			if n.group.IsLeader() != (n == leader) {
				t.Errorf("%s: IsLeader() = %v", n.id, n.group.IsLeader())
			}
		}
		if leaders != 1 {
			t.Errorf("%d nodes in state Leader", leaders)
		}
	})

	t.Run("read your writes through every zone", func(t *testing.T) {
		leader := c.leader()
		for _, n := range c.nodes {
			role := "follower"
			if n == leader {
				role = "leader"
			}
			repo := "ryw/" + n.id
			blob := digest.FromString("layer of " + n.id)
			if err := n.group.Apply(t.Context(), linkBlob(repo, blob, 42)); err != nil {
				t.Fatalf("%s (%s): link blob: %v", n.id, role, err)
			}
			// No wait: the write must be visible on the node that took it.
			if size, err := n.group.BlobLink(repo, blob); err != nil || size != 42 {
				t.Fatalf("%s (%s): own blob link not visible: %d, %v", n.id, role, size, err)
			}
			m := &meta.ManifestRecord{Digest: digest.FromString("manifest of " + n.id), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 7}
			put := meta.Command{Op: meta.OpPutManifest, Repo: repo, Tag: "latest", Manifest: m, Requires: []digest.Digest{blob}, Time: time.Now().UTC()}
			if err := n.group.Apply(t.Context(), put); err != nil {
				t.Fatalf("%s (%s): put manifest: %v", n.id, role, err)
			}
			if tag, err := n.group.Tag(repo, "latest"); err != nil || tag.Digest != m.Digest {
				t.Fatalf("%s (%s): own tag not visible: %+v, %v", n.id, role, tag, err)
			}
		}
		c.waitConverged()
		for _, n := range c.nodes {
			for _, o := range c.nodes {
				if _, err := n.group.Tag("ryw/"+o.id, "latest"); err != nil {
					t.Errorf("%s does not see the tag written through %s: %v", n.id, o.id, err)
				}
			}
		}
	})

	t.Run("a barrier makes every acknowledged write visible on every zone", func(t *testing.T) {
		for i := range 20 {
			writer := c.nodes[i%3]
			reader := c.nodes[(i+1)%3]
			repo, blob := fmt.Sprintf("barrier/%d", i), digest.FromString(fmt.Sprintf("barrier %d", i))
			if err := writer.group.Apply(t.Context(), linkBlob(repo, blob, 9)); err != nil {
				t.Fatal(err)
			}
			// No waiting beyond the barrier: another zone must see it now.
			if err := reader.group.Barrier(t.Context()); err != nil {
				t.Fatalf("%s: barrier: %v", reader.id, err)
			}
			if _, err := reader.group.BlobLink(repo, blob); err != nil {
				t.Fatalf("%s does not see, after a barrier, the write %s acknowledged: %v", reader.id, writer.id, err)
			}
		}
	})

	t.Run("concurrent reads sharing a round trip still see their own writes", func(t *testing.T) {
		// Writers through one zone, readers on another: each reader's
		// barrier may share a round trip to the leader with others, but
		// never one that started before its own write was acknowledged.
		writer, reader := c.followers()[0], c.followers()[1]
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for w := range 8 {
			wg.Go(func() {
				for i := range 25 {
					repo, blob := fmt.Sprintf("shared/%d", w), digest.FromString(fmt.Sprintf("shared %d %d", w, i))
					if err := writer.group.Apply(t.Context(), linkBlob(repo, blob, 9)); err != nil {
						errs <- err
						return
					}
					if err := reader.group.Barrier(t.Context()); err != nil {
						errs <- fmt.Errorf("barrier: %w", err)
						return
					}
					if _, err := reader.group.BlobLink(repo, blob); err != nil {
						errs <- fmt.Errorf("%s does not see, after a barrier, write %d of writer %d: %w", reader.id, i, w, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("refusals keep their kind through forwarding", func(t *testing.T) {
		const repo = "refusals"
		present := digest.FromString("present")
		if err := c.node(1).group.Apply(t.Context(), linkBlob(repo, present, 1)); err != nil {
			t.Fatal(err)
		}
		absent := digest.FromString("absent")
		absentManifest := digest.FromString("absent manifest")
		m := &meta.ManifestRecord{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.index.v1+json", Size: 3}
		tests := []struct {
			name  string
			cmd   meta.Command
			check func(error) error
		}{
			{
				name:  "put-manifest missing a blob",
				cmd:   meta.Command{Op: meta.OpPutManifest, Repo: repo, Manifest: m, Requires: []digest.Digest{present, absent}},
				check: missingContent(absent),
			},
			{
				name:  "put-manifest missing a child manifest",
				cmd:   meta.Command{Op: meta.OpPutManifest, Repo: repo, Manifest: m, Requires: []digest.Digest{present}, RequiresManifests: []digest.Digest{absentManifest}},
				check: missingContent(absentManifest),
			},
			{
				name:  "unlink-blob of a blob not linked",
				cmd:   meta.Command{Op: meta.OpUnlinkBlob, Repo: repo, Digest: absent},
				check: is(meta.ErrBlobUnknown),
			},
			{
				name:  "delete-tag of an unknown tag",
				cmd:   meta.Command{Op: meta.OpDeleteTag, Repo: repo, Tag: "nope"},
				check: is(meta.ErrManifestUnknown),
			},
			{
				name:  "delete-manifest of an unknown manifest",
				cmd:   meta.Command{Op: meta.OpDeleteManifest, Repo: "no-such-repo", Digest: absentManifest},
				check: is(meta.ErrManifestUnknown),
			},
		}
		before := c.waitConverged()
		leader := c.leader()
		for _, tt := range tests {
			for _, n := range c.nodes {
				role := "follower"
				if n == leader {
					role = "leader"
				}
				t.Run(tt.name+" through "+role+" "+n.id, func(t *testing.T) {
					tt.cmd.Time = time.Now().UTC()
					err := n.group.Apply(t.Context(), tt.cmd)
					if cerr := tt.check(err); cerr != nil {
						t.Fatal(cerr)
					}
				})
			}
		}
		if after := c.waitConverged(); after != before {
			t.Errorf("refused commands changed the metadata: %s, was %s", after, before)
		}
	})
}

func missingContent(want ...digest.Digest) func(error) error {
	return func(err error) error {
		var missing *meta.MissingContentError
		if !errors.As(err, &missing) {
			return fmt.Errorf("got %v (%T), want *meta.MissingContentError", err, err)
		}
		if !slices.Equal(missing.Digests, want) {
			return fmt.Errorf("missing %v, want %v", missing.Digests, want)
		}
		return nil
	}
}

func is(target error) func(error) error {
	return func(err error) error {
		if !errors.Is(err, target) {
			return fmt.Errorf("got %v (%T), want %v", err, err, target)
		}
		return nil
	}
}

// TestResultEncoding checks the translation of command results into the
// forwarding protocol and back, including the kind no command of this
// version produces (repository unknown).
func TestResultEncoding(t *testing.T) {
	d1, d2 := digest.FromString("1"), digest.FromString("2")
	tests := []struct {
		name   string
		result error
		kind   string
		check  func(error) error
	}{
		{"success", nil, "", func(err error) error {
			if err != nil {
				return fmt.Errorf("got %v, want nil", err)
			}
			return nil
		}},
		{"manifest unknown", meta.ErrManifestUnknown, kindManifestUnknown, is(meta.ErrManifestUnknown)},
		{"wrapped blob unknown", fmt.Errorf("unlink: %w", meta.ErrBlobUnknown), kindBlobUnknown, is(meta.ErrBlobUnknown)},
		{"repository unknown", meta.ErrRepositoryUnknown, kindRepoUnknown, is(meta.ErrRepositoryUnknown)},
		{"webhook unknown", meta.ErrWebhookUnknown, kindWebhookUnknown, is(meta.ErrWebhookUnknown)},
		{"missing content", &meta.MissingContentError{Digests: []digest.Digest{d1, d2}}, kindMissingContent, missingContent(d1, d2)},
		{"wrapped missing content", fmt.Errorf("x: %w", &meta.MissingContentError{Digests: []digest.Digest{d2}}), kindMissingContent, missingContent(d2)},
		{"anything else", errors.New("disk on fire"), kindInternal, func(err error) error {
			if err == nil || !strings.Contains(err.Error(), "disk on fire") {
				return fmt.Errorf("got %v, want the leader's message", err)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &zonepb.ApplyResponse{}
			encodeResult(resp, tt.result)
			if resp.ErrorKind != tt.kind {
				t.Fatalf("kind %q, want %q", resp.ErrorKind, tt.kind)
			}
			if err := tt.check(decodeResult(resp)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGroupWithoutQuorum stops two of three zones: a write then fails with
// storage.ErrUnavailable once ApplyTimeout has passed, whether the survivor
// was the leader or a follower, and succeeds again once a majority is back.
func TestGroupWithoutQuorum(t *testing.T) {
	const applyTimeout = time.Second
	c := newTestCluster(t, clusterConfig{zones: 3, applyTimeout: applyTimeout})

	unavailable := func(t *testing.T, n *testNode, what string) {
		t.Helper()
		start := time.Now()
		err := n.group.Apply(t.Context(), linkBlob("quorum", digest.FromString(what), 1))
		elapsed := time.Since(start)
		t.Logf("%s: write without a quorum failed after %v: %v", what, elapsed.Round(time.Millisecond), err)
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("%s: got %v, want an error wrapping storage.ErrUnavailable", what, err)
		}
		// Not a speed check: a write that outlives its timeout several
		// times over means the timeout is not honoured.
		if elapsed > applyTimeout+5*time.Second {
			t.Errorf("%s: write took %v with ApplyTimeout %v", what, elapsed, applyTimeout)
		}
	}
	available := func(t *testing.T, n *testNode, what string) {
		t.Helper()
		// The first write after a majority returns may land in an election.
		var err error
		waitFor(t, what, func() bool {
			err = n.group.Apply(t.Context(), linkBlob("quorum", digest.FromString(what), 1))
			return err == nil
		})
		if _, err := n.group.BlobLink("quorum", digest.FromString(what)); err != nil {
			t.Fatalf("%s: own write not visible: %v", what, err)
		}
	}

	// The leader survives: it cannot commit and steps down.
	leader := c.leader()
	followers := c.followers()
	for _, f := range followers {
		f.stop()
	}
	unavailable(t, leader, "survivor was the leader")
	followers[0].start()
	available(t, leader, "one follower back")
	c.waitConverged()

	// A follower survives: there is no leader to forward to.
	leader = c.leader()
	var survivor *testNode
	for _, n := range c.running() {
		if n != leader {
			survivor = n
		}
	}
	leader.stop()
	for _, n := range c.running() {
		if n != survivor {
			n.stop()
		}
	}
	unavailable(t, survivor, "survivor was a follower")
	for _, n := range c.nodes {
		if !n.running {
			n.start()
		}
	}
	c.waitGossip()
	available(t, survivor, "every zone back")
	c.waitConverged()
}

// TestGroupRestartCatchesUp stops a follower and then the leader while
// writes go on through the others; each catches up after its restart.
func TestGroupRestartCatchesUp(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	writes := 0
	write := func(t *testing.T, n *testNode, count int) {
		t.Helper()
		for range count {
			writes++
			if err := n.group.Apply(t.Context(), linkBlob("catchup", digest.FromString(fmt.Sprint(writes)), int64(writes))); err != nil {
				t.Fatalf("write %d through %s: %v", writes, n.id, err)
			}
		}
	}
	write(t, c.leader(), 5)
	c.waitConverged()

	tests := []struct {
		name   string
		victim func() *testNode
	}{
		{"follower", func() *testNode { return c.followers()[0] }},
		{"leader", func() *testNode { return c.leader() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim := tt.victim()
			victim.stop()
			var other *testNode
			for _, n := range c.running() {
				other = n
			}
			// A lost leader is replaced within ApplyTimeout: the write
			// waits out the election.
			start := time.Now()
			write(t, other, 1)
			t.Logf("first write after losing the %s took %v", tt.name, time.Since(start).Round(time.Millisecond))
			write(t, other, 20)
			victim.start()
			state := c.waitConverged()
			for i := 1; i <= writes; i++ {
				if _, err := victim.group.BlobLink("catchup", digest.FromString(fmt.Sprint(i))); err != nil {
					t.Fatalf("restarted %s lacks write %d: %v", victim.id, i, err)
				}
			}
			t.Logf("converged on %s at applied index %d", state, victim.store.AppliedIndex())
			// The restarted node takes writes again.
			write(t, victim, 1)
		})
	}
}

// TestGroupSnapshotRestore takes a Raft snapshot on a follower, lets it
// apply more, stops it, writes on, and restarts it: Raft restores the
// snapshot into the metadata store at start, replays the node's own log
// past it and fetches the rest from the leader.
func TestGroupSnapshotRestore(t *testing.T) {
	c := newTestCluster(t, clusterConfig{zones: 3})
	leader := c.leader()
	n := c.followers()[0]
	for i := range 30 {
		via := leader
		if i%2 == 1 {
			via = n
		}
		if err := via.group.Apply(t.Context(), linkBlob("snap", digest.FromString(fmt.Sprint(i)), int64(i))); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			if err := n.group.raft.Snapshot().Error(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
		}
	}
	c.waitConverged()
	t.Logf("snapshot of %s at index %s, applied %d", n.id, n.group.raft.Stats()["last_snapshot_index"], n.store.AppliedIndex())

	n.stop()
	for i := 30; i < 40; i++ {
		if err := leader.group.Apply(t.Context(), linkBlob("snap", digest.FromString(fmt.Sprint(i)), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	before := c.logs.count(n.id, "restored metadata from a snapshot")
	n.start()
	if c.logs.count(n.id, "restored metadata from a snapshot") != before+1 {
		t.Fatalf("%s did not restore its snapshot at start", n.id)
	}
	c.waitConverged()
	for i := range 40 {
		if size, err := n.group.BlobLink("snap", digest.FromString(fmt.Sprint(i))); err != nil || size != int64(i) {
			t.Fatalf("after restore, write %d: size %d, %v", i, size, err)
		}
	}
	if err := n.group.Apply(t.Context(), linkBlob("snap", digest.FromString("after"), 1)); err != nil {
		t.Fatal(err)
	}
}
