package georep

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestPartitionedRegionConverges cuts westeurope off (all its nodes
// killed), pushes, retags and deletes tags and manifests in westus and
// eastus, then brings westeurope back: every node of every region must serve
// the same repository -> tag -> digest map, compared in full, and it must be
// the map the writes describe.
func TestPartitionedRegionConverges(t *testing.T) {
	m := startMesh(t, 3)
	ctx := context.Background()
	west, east, europe := m.first("westus"), m.RegionNodes("eastus")[1], m.first("westeurope")
	imgs := map[string]image{}
	img := func(name string) image {
		if i, ok := imgs[name]; ok {
			return i
		}
		i := ociclient.NewImage("partition-"+name, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(1000+len(imgs)), 128<<10)))
		imgs[name] = i
		return i
	}
	push := func(n harness.Node, repo, tag, name string) {
		t.Helper()
		if err := m.c.PushImage(ctx, n.URL(), repo, tag, img(name)); err != nil {
			t.Fatalf("push %s:%s to %s: %v", repo, tag, n, err)
		}
	}
	del := func(n harness.Node, repo, ref string) {
		t.Helper()
		if err := m.c.DeleteRef(ctx, n.URL(), repo, ref); err != nil {
			t.Fatalf("delete %s:%s in %s: %v", repo, ref, n, err)
		}
	}

	// Before the cut: content from every region, westeurope included.
	push(west, "part/a", "v1", "a1")
	push(west, "part/a", "v2", "a2")
	push(west, "part/a", "latest", "a2")
	push(west, "part/b", "v1", "b1")
	push(east, "part/c", "v1", "c1")
	push(east, "part/c", "v2", "c2")
	push(europe, "part/d", "v1", "d1")
	push(europe, "part/d", "v2", "d2")
	before, err := m.converged(ctx, m.Nodes, 60*time.Second)
	if err != nil {
		t.Fatalf("before the cut: %v", err)
	}
	t.Logf("partition: before the cut every node serves\n%s", before)

	m.Chaos(t, ctx, "kill-region", "westeurope")
	cut := time.Now()
	// While westeurope is away: new images, retags, tag deletes and
	// manifest deletes, in both remaining regions, some of content
	// westeurope holds.
	push(west, "part/a", "v3", "a3")
	push(west, "part/a", "latest", "a3") // retag
	del(west, "part/a", "v1")            // tag delete: a1 stays by digest
	del(west, "part/b", img("b1").Digest.String())
	push(west, "part/e", "v1", "e1") // a repository westeurope never saw
	push(east, "part/c", "v3", "c3")
	del(east, "part/c", "v2")
	del(east, "part/d", img("d1").Digest.String()) // westeurope's own image
	push(east, "part/d", "v3", "d3")
	push(east, "part/f", "v1", "f1")
	push(east, "part/f", "v2", "f1")
	del(east, "part/f", "v1")
	want := ociclient.RepoMap{
		"part/a": {"v2": img("a2").Digest, "v3": img("a3").Digest, "latest": img("a3").Digest},
		"part/b": {},
		"part/c": {"v1": img("c1").Digest, "v3": img("c3").Digest},
		"part/d": {"v2": img("d2").Digest, "v3": img("d3").Digest},
		"part/e": {"v1": img("e1").Digest},
		"part/f": {"v2": img("f1").Digest},
	}
	var up []harness.Node
	for _, n := range m.Nodes {
		if n.Region != "westeurope" {
			up = append(up, n)
		}
	}
	during, err := m.converged(ctx, up, 60*time.Second)
	if err != nil {
		t.Fatalf("westus and eastus while westeurope is down: %v", err)
	}
	if during.String() != want.String() {
		t.Errorf("while westeurope is down, westus and eastus serve\n%s\nwant\n%s", during, want)
	}
	t.Logf("partition: westus and eastus converged %v after westeurope was cut off", time.Since(cut).Round(time.Millisecond))
	// The events westeurope has not acknowledged are a visible backlog.
	// Keeping it away for a while also lets the senders' backoff grow.
	for _, r := range []string{"westus", "eastus"} {
		l, err := m.Leader(ctx, r, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		err = ociclient.Poll(ctx, 20*time.Second, 200*time.Millisecond, func() (bool, error) {
			st, err := m.NodeStatus(ctx, l)
			if err != nil {
				return false, err
			}
			for _, p := range st.Peers {
				if p.Region == "westeurope" && p.Backlog > 0 {
					t.Logf("partition: %s shows a backlog of %d events to westeurope, lag %.1f s, last error %q", l, p.Backlog, p.LagSeconds, p.LastError)
					return true, nil
				}
			}
			return false, fmt.Errorf("peers %+v", st.Peers)
		})
		if err != nil {
			t.Errorf("%s shows no backlog to westeurope while it is down: %v", l, err)
		}
	}
	if d := 10*time.Second - time.Since(cut); d > 0 {
		time.Sleep(d)
	}

	m.Restart(t, ctx, "westeurope")
	back := time.Now()
	got, err := m.converged(ctx, m.Nodes, 2*time.Minute)
	if err != nil {
		t.Fatalf("after westeurope returned: %v", err)
	}
	took := time.Since(back)
	repairs, err := m.sumMetric(ctx, m.Nodes, "georeg_replication_anti_entropy_repairs_total")
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("all regions converged on\n%s\nwant\n%s", got, want)
	}
	t.Logf("partition: westeurope back -> all %d nodes serve identical repository/tag/digest maps in %d ms (cut off for %v; anti-entropy repairs over the mesh: %v)\n%s",
		len(m.Nodes), took.Milliseconds(), back.Sub(cut).Round(time.Millisecond), repairs, got)

	// Deleted manifests stay deleted everywhere; untagged ones stay
	// pullable by digest.
	gone := map[string]digest.Digest{"part/b": img("b1").Digest, "part/d": img("d1").Digest}
	kept := map[string]digest.Digest{"part/a": img("a1").Digest, "part/c": img("c2").Digest}
	for _, n := range m.Nodes {
		for repo, d := range gone {
			// A node that cannot ask every peer region yet (westeurope has
			// just come back and a connection to it may still be in its
			// reconnect backoff) answers 503 so that the client retries
			// rather than take a 404 for an answer; a client retries.
			var err error
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				_, _, err = m.c.GetManifest(ctx, n.URL(), repo, d.String())
				if !ociclient.IsStatus(err, http.StatusServiceUnavailable) || time.Now().After(deadline) {
					break
				}
			}
			if !ociclient.IsStatus(err, http.StatusNotFound) {
				t.Errorf("%s: GET %s@%s after its delete: %v, want 404", n, repo, d, errOrOK(err))
			}
		}
		for repo, d := range kept {
			if _, err := m.c.PullImage(ctx, n.URL(), repo, d.String()); err != nil {
				t.Errorf("%s: pull untagged %s@%s: %v", n, repo, d, err)
			}
		}
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "200 OK"
	}
	return fmt.Sprint(err)
}
