package region_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/zonepb"
	"github.com/georeg/georeg/region"
	"github.com/georeg/georeg/region/regiontest"
	"github.com/georeg/georeg/storage"
)

// TestGroupWritesOnlyThroughRaft: a holder of a Group reads the local
// replica and writes through Apply, never around the Raft log.
func TestGroupWritesOnlyThroughRaft(t *testing.T) {
	group := reflect.TypeFor[*region.Group]()
	for _, name := range []string{"ApplyAt", "Restore", "Snapshot"} {
		if _, ok := group.MethodByName(name); ok {
			t.Errorf("*Group has %s: it writes the metadata around Raft", name)
		}
	}
	for _, name := range []string{"Apply", "Tag", "Manifest", "WalkBlobs", "Digest", "AppliedIndex"} {
		if _, ok := group.MethodByName(name); !ok {
			t.Errorf("*Group lacks %s", name)
		}
	}
}

func TestGroup(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})

	t.Run("one leader", func(t *testing.T) {
		leader := c.Leader()
		leaders := 0
		for _, n := range c.Nodes() {
			st := n.Group.Status()
			if st.Voters != 3 || st.Term == 0 || st.Leader != leader.ID {
				t.Errorf("%s: status %+v, want 3 voters, a term, leader %s", n.ID, st, leader.ID)
			}
			switch st.State {
			case "Leader":
				leaders++
			case "Follower":
			default:
				t.Errorf("%s: raft state %q", n.ID, st.State)
			}
			if n.Group.IsLeader() != (n == leader) {
				t.Errorf("%s: IsLeader() = %v", n.ID, n.Group.IsLeader())
			}
		}
		if leaders != 1 {
			t.Errorf("%d nodes in state Leader", leaders)
		}
	})

	t.Run("read your writes through every zone", func(t *testing.T) {
		leader := c.Leader()
		for _, n := range c.Nodes() {
			role := "follower"
			if n == leader {
				role = "leader"
			}
			repo := "ryw/" + n.ID
			blob := digest.FromString("layer of " + n.ID)
			if err := n.Group.Apply(t.Context(), linkBlob(repo, blob, 42)); err != nil {
				t.Fatalf("%s (%s): link blob: %v", n.ID, role, err)
			}
			// No wait: the write must be visible on the node that took it.
			if size, err := n.Group.BlobLink(repo, blob); err != nil || size != 42 {
				t.Fatalf("%s (%s): own blob link not visible: %d, %v", n.ID, role, size, err)
			}
			m := &meta.ManifestRecord{Digest: digest.FromString("manifest of " + n.ID), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 7}
			put := meta.PutManifest{Repo: repo, Tag: "latest", Manifest: *m, Requires: []digest.Digest{blob}, Time: time.Now().UTC()}
			if err := n.Group.Apply(t.Context(), put); err != nil {
				t.Fatalf("%s (%s): put manifest: %v", n.ID, role, err)
			}
			if tag, err := n.Group.Tag(repo, "latest"); err != nil || tag.Digest != m.Digest {
				t.Fatalf("%s (%s): own tag not visible: %+v, %v", n.ID, role, tag, err)
			}
		}
		c.WaitConverged()
		for _, n := range c.Nodes() {
			for _, o := range c.Nodes() {
				if _, err := n.Group.Tag("ryw/"+o.ID, "latest"); err != nil {
					t.Errorf("%s does not see the tag written through %s: %v", n.ID, o.ID, err)
				}
			}
		}
	})

	t.Run("a barrier makes every acknowledged write visible on every zone", func(t *testing.T) {
		for i := range 20 {
			writer := c.Nodes()[i%3]
			reader := c.Nodes()[(i+1)%3]
			repo, blob := fmt.Sprintf("barrier/%d", i), digest.FromString(fmt.Sprintf("barrier %d", i))
			if err := writer.Group.Apply(t.Context(), linkBlob(repo, blob, 9)); err != nil {
				t.Fatal(err)
			}
			// No waiting beyond the barrier: another zone must see it now.
			if err := reader.Group.Barrier(t.Context()); err != nil {
				t.Fatalf("%s: barrier: %v", reader.ID, err)
			}
			if _, err := reader.Group.BlobLink(repo, blob); err != nil {
				t.Fatalf("%s does not see, after a barrier, the write %s acknowledged: %v", reader.ID, writer.ID, err)
			}
		}
	})

	t.Run("concurrent reads sharing a round trip still see their own writes", func(t *testing.T) {
		// Writers through one zone, readers on another: each reader's
		// barrier may share a round trip to the leader with others, but
		// never one that started before its own write was acknowledged.
		writer, reader := c.Followers()[0], c.Followers()[1]
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for w := range 8 {
			wg.Go(func() {
				for i := range 25 {
					repo, blob := fmt.Sprintf("shared/%d", w), digest.FromString(fmt.Sprintf("shared %d %d", w, i))
					if err := writer.Group.Apply(t.Context(), linkBlob(repo, blob, 9)); err != nil {
						errs <- err
						return
					}
					if err := reader.Group.Barrier(t.Context()); err != nil {
						errs <- fmt.Errorf("barrier: %w", err)
						return
					}
					if _, err := reader.Group.BlobLink(repo, blob); err != nil {
						errs <- fmt.Errorf("%s does not see, after a barrier, write %d of writer %d: %w", reader.ID, i, w, err)
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
		if err := c.Node(1).Group.Apply(t.Context(), linkBlob(repo, present, 1)); err != nil {
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
				cmd:   meta.PutManifest{Repo: repo, Manifest: *m, Requires: []digest.Digest{present, absent}},
				check: missingContent(absent),
			},
			{
				name:  "put-manifest missing a child manifest",
				cmd:   meta.PutManifest{Repo: repo, Manifest: *m, Requires: []digest.Digest{present}, RequiresManifests: []digest.Digest{absentManifest}},
				check: missingContent(absentManifest),
			},
			{
				name:  "unlink-blob of a blob not linked",
				cmd:   meta.UnlinkBlob{Repo: repo, Digest: absent},
				check: is(meta.ErrBlobUnknown),
			},
			{
				name:  "delete-tag of an unknown tag",
				cmd:   meta.DeleteTag{Repo: repo, Tag: "nope"},
				check: is(meta.ErrManifestUnknown),
			},
			{
				name:  "delete-manifest of an unknown manifest",
				cmd:   meta.DeleteManifest{Repo: "no-such-repo", Digest: absentManifest},
				check: is(meta.ErrManifestUnknown),
			},
		}
		before := c.WaitConverged()
		leader := c.Leader()
		for _, tt := range tests {
			for _, n := range c.Nodes() {
				role := "follower"
				if n == leader {
					role = "leader"
				}
				t.Run(tt.name+" through "+role+" "+n.ID, func(t *testing.T) {
					err := n.Group.Apply(t.Context(), tt.cmd)
					if cerr := tt.check(err); cerr != nil {
						t.Fatal(cerr)
					}
				})
			}
		}
		if after := c.WaitConverged(); after != before {
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

// isSaying checks that err is target and carries msg.
func isSaying(target error, msg string) func(error) error {
	return func(err error) error {
		if !errors.Is(err, target) || !strings.Contains(err.Error(), msg) {
			return fmt.Errorf("got %v (%T), want %v saying %q", err, err, target, msg)
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
		{"manifest unknown", meta.ErrManifestUnknown, region.KindManifestUnknown, is(meta.ErrManifestUnknown)},
		{"wrapped blob unknown", fmt.Errorf("unlink: %w", meta.ErrBlobUnknown), region.KindBlobUnknown, is(meta.ErrBlobUnknown)},
		{"repository unknown", meta.ErrRepositoryUnknown, region.KindRepoUnknown, is(meta.ErrRepositoryUnknown)},
		{"webhook unknown", meta.ErrWebhookUnknown, region.KindWebhookUnknown, is(meta.ErrWebhookUnknown)},
		{"missing content", &meta.MissingContentError{Digests: []digest.Digest{d1, d2}}, region.KindMissingContent, missingContent(d1, d2)},
		{"wrapped missing content", fmt.Errorf("x: %w", &meta.MissingContentError{Digests: []digest.Digest{d2}}), region.KindMissingContent, missingContent(d2)},
		{"access conflict", fmt.Errorf("%w: token %q exists", meta.ErrAccessConflict, "ci-bot"), "access_conflict", isSaying(meta.ErrAccessConflict, `token "ci-bot" exists`)},
		{"access limit", fmt.Errorf("%w: 20000 tokens", access.ErrLimit), "access_limit", isSaying(access.ErrLimit, "20000 tokens")},
		{"connected parent", fmt.Errorf("%w: outside", connected.ErrParent), "connected_parent", isSaying(connected.ErrParent, "outside")},
		{"connected conflict", fmt.Errorf("%w: Active", meta.ErrConnectedConflict), "connected_conflict", isSaying(meta.ErrConnectedConflict, "Active")},
		{"anything else", errors.New("disk on fire"), region.KindInternal, func(err error) error {
			if err == nil || !strings.Contains(err.Error(), "disk on fire") {
				return fmt.Errorf("got %v, want the leader's message", err)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &zonepb.ApplyResponse{}
			// A follower's caller sees a control-plane refusal as the
			// leader's caller does: the sentinel and the whole message.
			region.EncodeResult(resp, tt.result)
			if resp.ErrorKind != tt.kind {
				t.Fatalf("kind %q, want %q", resp.ErrorKind, tt.kind)
			}
			if err := tt.check(region.DecodeResult(resp)); err != nil {
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
	c := regiontest.New(t, regiontest.Config{Zones: 3, ApplyTimeout: applyTimeout})

	unavailable := func(t *testing.T, n *regiontest.Node, what string) {
		t.Helper()
		start := time.Now()
		err := n.Group.Apply(t.Context(), linkBlob("quorum", digest.FromString(what), 1))
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
	available := func(t *testing.T, n *regiontest.Node, what string) {
		t.Helper()
		// The first write after a majority returns may land in an election.
		var err error
		regiontest.WaitFor(t, what, func() bool {
			err = n.Group.Apply(t.Context(), linkBlob("quorum", digest.FromString(what), 1))
			return err == nil
		})
		if _, err := n.Group.BlobLink("quorum", digest.FromString(what)); err != nil {
			t.Fatalf("%s: own write not visible: %v", what, err)
		}
	}

	// The leader survives: it cannot commit and steps down.
	leader := c.Leader()
	followers := c.Followers()
	for _, f := range followers {
		f.Stop()
	}
	unavailable(t, leader, "survivor was the leader")
	followers[0].Start()
	available(t, leader, "one follower back")
	c.WaitConverged()

	// A follower survives: there is no leader to forward to.
	leader = c.Leader()
	var survivor *regiontest.Node
	for _, n := range c.Running() {
		if n != leader {
			survivor = n
		}
	}
	leader.Stop()
	for _, n := range c.Running() {
		if n != survivor {
			n.Stop()
		}
	}
	unavailable(t, survivor, "survivor was a follower")
	for _, n := range c.Nodes() {
		if !n.Running() {
			n.Start()
		}
	}
	c.WaitGossip()
	available(t, survivor, "every zone back")
	c.WaitConverged()
}

// TestGroupRestartCatchesUp stops a follower and then the leader while
// writes go on through the others; each catches up after its restart.
func TestGroupRestartCatchesUp(t *testing.T) {
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	writes := 0
	write := func(t *testing.T, n *regiontest.Node, count int) {
		t.Helper()
		for range count {
			writes++
			if err := n.Group.Apply(t.Context(), linkBlob("catchup", digest.FromString(fmt.Sprint(writes)), int64(writes))); err != nil {
				t.Fatalf("write %d through %s: %v", writes, n.ID, err)
			}
		}
	}
	write(t, c.Leader(), 5)
	c.WaitConverged()

	tests := []struct {
		name   string
		victim func() *regiontest.Node
	}{
		{"follower", func() *regiontest.Node { return c.Followers()[0] }},
		{"leader", func() *regiontest.Node { return c.Leader() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim := tt.victim()
			victim.Stop()
			var other *regiontest.Node
			for _, n := range c.Running() {
				other = n
			}
			// A lost leader is replaced within ApplyTimeout: the write
			// waits out the election.
			start := time.Now()
			write(t, other, 1)
			t.Logf("first write after losing the %s took %v", tt.name, time.Since(start).Round(time.Millisecond))
			write(t, other, 20)
			victim.Start()
			state := c.WaitConverged()
			for i := 1; i <= writes; i++ {
				if _, err := victim.Group.BlobLink("catchup", digest.FromString(fmt.Sprint(i))); err != nil {
					t.Fatalf("restarted %s lacks write %d: %v", victim.ID, i, err)
				}
			}
			t.Logf("converged on %s at applied index %d", state, victim.Group.AppliedIndex())
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
	c := regiontest.New(t, regiontest.Config{Zones: 3})
	leader := c.Leader()
	n := c.Followers()[0]
	for i := range 30 {
		via := leader
		if i%2 == 1 {
			via = n
		}
		if err := via.Group.Apply(t.Context(), linkBlob("snap", digest.FromString(fmt.Sprint(i)), int64(i))); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			if err := region.Snapshot(n.Group); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
		}
	}
	c.WaitConverged()
	t.Logf("snapshot of %s at index %s, applied %d", n.ID, region.LastSnapshotIndex(n.Group), n.Group.AppliedIndex())

	n.Stop()
	for i := 30; i < 40; i++ {
		if err := leader.Group.Apply(t.Context(), linkBlob("snap", digest.FromString(fmt.Sprint(i)), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	before := c.CountLogs(n.ID, "restored metadata from a snapshot")
	n.Start()
	if c.CountLogs(n.ID, "restored metadata from a snapshot") != before+1 {
		t.Fatalf("%s did not restore its snapshot at start", n.ID)
	}
	c.WaitConverged()
	for i := range 40 {
		if size, err := n.Group.BlobLink("snap", digest.FromString(fmt.Sprint(i))); err != nil || size != int64(i) {
			t.Fatalf("after restore, write %d: size %d, %v", i, size, err)
		}
	}
	if err := n.Group.Apply(t.Context(), linkBlob("snap", digest.FromString("after"), 1)); err != nil {
		t.Fatal(err)
	}
}
