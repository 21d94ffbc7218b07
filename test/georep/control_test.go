package georep

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestControlPlane starts a mesh of westus (home) and eastus, one node
// each, fills it, and then, on the same mesh:
//
//   - CreateRegion adds westeurope with `georeg replication create`: once it
//     reports Ready, westeurope must hold every repository, tag, manifest
//     and blob (read without read-through); it also checks list, update and
//     the refusal to delete the home region;
//   - HomeRegionDown kills westus: management calls fail fast naming it,
//     while eastus and westeurope keep serving pushes and pulls and
//     replicate between themselves; when westus returns all three converge.
func TestControlPlane(t *testing.T) {
	m := startMeshOf(t, 1, "westus", "eastus")
	want := fillControlMesh(t, m)
	t.Run("CreateRegion", func(t *testing.T) { testCreateRegion(t, m, want) })
	if len(m.RegionNodes("westeurope")) == 0 {
		t.Fatal("HomeRegionDown needs the region CreateRegion adds")
	}
	t.Run("HomeRegionDown", func(t *testing.T) { testHomeRegionDown(t, m, want) })
}

// controlImages are the images of TestControlPlane, by name.
var controlImages = func() map[string]image {
	imgs := map[string]image{}
	for i, name := range []string{"a1", "a2", "b1", "c1", "c2", "d1", "e1", "e2"} {
		size := 256 << 10
		if name == "b1" {
			size = 8 * MiB // enough to keep a new region busy for a moment
		}
		imgs[name] = ociclient.NewImage("control-"+name, ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(3000+i), size)), ociclient.NewBlob(mediaLayer, ociclient.RandomBytes(uint64(3100+i), 4<<10)))
	}
	return imgs
}()

// fillControlMesh pushes, retags and deletes in westus and eastus, waits
// until both hold the result, and returns it.
func fillControlMesh(t *testing.T, m *geoMesh) ociclient.RepoMap {
	ctx := context.Background()
	west, east := m.first("westus"), m.first("eastus")
	img := controlImages
	for _, p := range []struct {
		n               harness.Node
		repo, tag, name string
	}{
		{west, "ctl/a", "v1", "a1"},
		{west, "ctl/a", "v2", "a2"},
		{west, "ctl/a", "latest", "a2"},
		{west, "ctl/b", "v1", "b1"},
		{east, "ctl/c", "v1", "c1"},
		{east, "ctl/c", "v2", "c2"},
	} {
		if err := m.c.PushImage(ctx, p.n.URL(), p.repo, p.tag, img[p.name]); err != nil {
			t.Fatalf("push %s:%s to %s: %v", p.repo, p.tag, p.n, err)
		}
	}
	// A tag delete (a1 stays, untagged) and a manifest delete.
	if err := m.c.DeleteRef(ctx, west.URL(), "ctl/a", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := m.c.DeleteRef(ctx, east.URL(), "ctl/c", img["c2"].Digest.String()); err != nil {
		t.Fatal(err)
	}
	want := ociclient.RepoMap{
		"ctl/a": {"v2": img["a2"].Digest, "latest": img["a2"].Digest},
		"ctl/b": {"v1": img["b1"].Digest},
		"ctl/c": {"v1": img["c1"].Digest},
	}
	got, err := m.heldConverged(t, ctx, []string{"westus", "eastus"}, 60*time.Second)
	if err != nil {
		t.Fatalf("westus and eastus: %v", err)
	}
	if !equalRepoMaps(got, want) {
		t.Fatalf("westus and eastus hold\n%s\nwant\n%s", got, want)
	}
	return want
}

// testCreateRegion adds westeurope after content exists.
func testCreateRegion(t *testing.T, m *geoMesh, want ociclient.RepoMap) {
	ctx := context.Background()
	start := time.Now()
	out, errOut, err := m.cli(t, ctx, "replication", "create", "--region", "westeurope", "--wait", "30s")
	took := time.Since(start)
	m.Reload()
	m.settle(t)
	if len(m.RegionNodes("westeurope")) == 0 {
		t.Fatalf("replication create --region westeurope: %v; mesh status shows no westeurope node\n%s%s", err, out, errOut)
	}
	when := "right after Ready"
	if err != nil {
		when = "after create gave up waiting for Ready"
		// The checks below still run: they say whether westeurope holds the
		// content although it never reported Ready.
		t.Errorf("replication create --region westeurope: %v\n%s%s\nreplication list:\n%s\nnodes:%s", err, out, errOut, replicationTable(m.replications(t, ctx)), m.rawStatus(ctx))
	} else {
		t.Logf("create: `replication create --region westeurope` returned Ready in %d ms; it printed:\n%s", took.Milliseconds(), indent(out))
		if !strings.Contains(out, "westeurope: Ready") {
			t.Errorf("replication create printed no Ready status:\n%s", out)
		}
	}
	europe := m.first("westeurope")

	// Ready means holding everything: read westeurope's state at once,
	// without read-through (tags lists, HEAD of blobs, and each region's own
	// answer through `replication status`).
	rtBefore, rbBefore, err := m.readThroughs(ctx, []harness.Node{europe})
	if err != nil {
		t.Fatal(err)
	}
	held, err := m.heldMaps(t, ctx, []string{"westus", "westeurope"})
	if err != nil {
		t.Errorf("westeurope %s: %v", when, err)
	} else if !equalRepoMaps(held["westeurope"], want) || !equalRepoMaps(held["westus"], want) {
		t.Errorf("%s, westeurope holds\n%s\nwestus holds\n%s\nwant\n%s", when, held["westeurope"], held["westus"], want)
	}
	img := controlImages
	for _, c := range []struct {
		repo, name string
		present    bool
	}{
		{"ctl/a", "a1", true}, // untagged by the tag delete
		{"ctl/a", "a2", true},
		{"ctl/b", "b1", true},
		{"ctl/c", "c1", true},
		{"ctl/c", "c2", false}, // deleted manifest
	} {
		pr, err := m.imageStatus(t, ctx, c.repo+"@"+img[c.name].Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		if p := pr["westeurope"]; p.Present != c.present || p.Error != "" {
			t.Errorf("replication status %s@%.19s %s: westeurope %+v, want present=%v", c.repo, img[c.name].Digest, when, p, c.present)
		}
		if !c.present {
			continue
		}
		for _, b := range img[c.name].Blobs() {
			if ok, err := m.c.HasBlob(ctx, europe.URL(), c.repo, b.Digest); !ok || err != nil {
				t.Errorf("%s, %s lacks blob %.19s of %s (%s): %v", when, europe, b.Digest, c.repo, c.name, err)
			}
		}
	}
	rtAfter, rbAfter, err := m.readThroughs(ctx, []harness.Node{europe})
	if err != nil {
		t.Fatal(err)
	}
	if rtAfter != rtBefore || rbAfter != rbBefore {
		t.Errorf("westeurope read through %v manifests and %v blobs while the test only listed and HEADed", rtAfter-rtBefore, rbAfter-rbBefore)
	}
	t.Logf("create: checked westeurope %s: %d repositories, %d tags, 4 manifests with their blobs, 1 deleted manifest (read-through fetches in westeurope so far: %v manifests, %v blobs)",
		when, len(want), countTags(want), rtAfter, rbAfter)
	if t.Failed() {
		// Ready came too early (or never); say whether and when westeurope
		// caught up.
		if got, err := m.heldConverged(t, ctx, []string{"westus", "eastus", "westeurope"}, 60*time.Second); err != nil {
			t.Errorf("westeurope never caught up: %v", err)
		} else {
			t.Logf("create: westeurope held everything %v after create returned:\n%s", time.Since(start.Add(took)).Round(time.Millisecond), got)
		}
	}

	// Every region Ready in the list.
	var reps []replicationRow
	readyStart := time.Now()
	err = ociclient.Poll(ctx, 20*time.Second, 200*time.Millisecond, func() (bool, error) {
		reps = m.replications(t, ctx)
		var states []string
		ready := 0
		for _, r := range reps {
			states = append(states, r.Region+"="+r.Status)
			if r.Status == "Ready" {
				ready++
			}
		}
		return ready == 3 && len(reps) == 3, fmt.Errorf("replication list: %s", strings.Join(states, " "))
	})
	if err != nil {
		t.Errorf("replication list --json: %v\nnodes:%s", err, m.rawStatus(ctx))
	} else {
		t.Logf("create: replication list shows all 3 regions Ready %d ms after create returned:\n%s", time.Since(readyStart).Milliseconds(), replicationTable(reps))
	}
	for _, r := range reps {
		if r.Home != (r.Region == "westus") || !r.RegionEndpointEnabled || r.NodesUp != 1 || r.Created == "" {
			t.Errorf("replication list: %+v", r)
		}
	}

	// The home region cannot be deleted.
	out, errOut, err = m.cli(t, ctx, "replication", "delete", "--region", "westus")
	msg := out + errOut
	if err == nil || !strings.Contains(msg, "westus is the home region") || !strings.Contains(msg, "cannot be deleted") {
		t.Errorf("replication delete --region westus: %v, printed %q; want a failure saying westus is the home region and cannot be deleted", err, msg)
	}
	t.Logf("create: `replication delete --region westus` fails (%v): %s", err, strings.TrimSpace(msg))
	if n := len(m.replications(t, ctx)); n != 3 {
		t.Errorf("after the refused delete, replication list shows %d regions, want 3", n)
	}

	// The endpoint flag, off and on again.
	for _, on := range []bool{false, true} {
		out, errOut, err := m.cli(t, ctx, "replication", "update", "--region", "eastus", "--region-endpoint-enabled="+strconv.FormatBool(on))
		if err != nil {
			t.Fatalf("replication update --region eastus --region-endpoint-enabled=%v: %v\n%s%s", on, err, out, errOut)
		}
		for _, r := range m.replications(t, ctx) {
			if wantOn := on || r.Region != "eastus"; r.RegionEndpointEnabled != wantOn {
				t.Errorf("after update --region eastus --region-endpoint-enabled=%v, replication list shows %s regionEndpointEnabled=%v", on, r.Region, r.RegionEndpointEnabled)
			}
		}
		var shown []replicationRow
		m.cliJSON(t, ctx, &shown, "replication", "show", "--region", "eastus", "--json")
		if len(shown) != 1 || shown[0].Region != "eastus" || shown[0].RegionEndpointEnabled != on {
			t.Errorf("replication show --region eastus --json after update to %v: %+v", on, shown)
		}
		t.Logf("create: `replication update --region eastus --region-endpoint-enabled=%v` printed %q; list and show agree", on, strings.TrimSpace(out))
	}
}

// testHomeRegionDown kills westus, checks that management fails naming it
// while the data plane works in eastus and westeurope, and that all
// regions converge once westus is back.
func testHomeRegionDown(t *testing.T, m *geoMesh, want ociclient.RepoMap) {
	ctx := context.Background()
	east, europe := m.first("eastus"), m.first("westeurope")
	m.Chaos(t, ctx, "kill-region", "westus")
	down := time.Now()

	for _, args := range [][]string{
		{"replication", "list"},
		{"replication", "show", "--region", "eastus"},
		{"replication", "status", "ctl/b:v1"},
		{"webhook", "list"},
	} {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		start := time.Now()
		out, errOut, err := m.cli(t, cctx, args[0], args[1], args[2:]...)
		took := time.Since(start)
		cancel()
		msg := strings.TrimSpace(out + errOut)
		t.Logf("home down: `georeg %s` failed after %d ms: %s", strings.Join(args, " "), took.Milliseconds(), msg)
		if err == nil || !strings.Contains(msg, "home region westus") {
			t.Errorf("georeg %s with westus down: %v, printed %q; want a failure naming the home region westus", strings.Join(args, " "), err, msg)
		}
		// Not a speed goal: a management call that takes this long is hanging
		// on the dead region instead of saying it is down.
		if took >= 10*time.Second {
			t.Errorf("georeg %s took %v to fail with westus down; want a fast failure (under 10 s)", strings.Join(args, " "), took.Round(time.Millisecond))
		}
	}

	// The data plane in the other regions: pushes in both, a tag delete, and
	// pulls of old and new content.
	img := controlImages
	pushes := []struct {
		n               harness.Node
		other           harness.Node
		repo, tag, name string
	}{
		{east, europe, "ctl/d", "v1", "d1"},
		{europe, east, "ctl/e", "v1", "e1"},
		{east, europe, "ctl/e", "v2", "e2"},
	}
	for _, p := range pushes {
		if err := m.c.PushImage(ctx, p.n.URL(), p.repo, p.tag, img[p.name]); err != nil {
			t.Fatalf("push %s:%s to %s with westus down: %v", p.repo, p.tag, p.n, err)
		}
		acked := time.Now()
		ready, err := m.imageEverywhere(ctx, []harness.Node{p.other}, p.repo, p.tag, img[p.name], acked, 60*time.Second)
		if err != nil {
			t.Errorf("%s:%s pushed to %s with westus down did not reach %s: %v", p.repo, p.tag, p.n, p.other, err)
			continue
		}
		t.Logf("home down: %s:%s pushed to %s is listed with all blobs in %s after %s", p.repo, p.tag, p.n, p.other, durations(ready))
	}
	if err := m.c.DeleteRef(ctx, east.URL(), "ctl/a", "latest"); err != nil {
		t.Fatalf("delete ctl/a:latest in eastus with westus down: %v", err)
	}
	err := ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		has, err := m.c.HasTag(ctx, europe.URL(), "ctl/a", "latest")
		return !has && err == nil, fmt.Errorf("westeurope still lists ctl/a:latest (%v)", err)
	})
	if err != nil {
		t.Errorf("tag delete in eastus with westus down: %v", err)
	}
	for _, n := range []harness.Node{east, europe} {
		for _, ref := range []struct{ repo, tag, name string }{{"ctl/b", "v1", "b1"}, {"ctl/d", "v1", "d1"}, {"ctl/e", "v1", "e1"}, {"ctl/e", "v2", "e2"}} {
			d, err := m.c.PullImage(ctx, n.URL(), ref.repo, ref.tag)
			if err != nil {
				t.Errorf("pull %s:%s from %s with westus down: %v", ref.repo, ref.tag, n, err)
			} else if d != img[ref.name].Digest {
				t.Errorf("%s serves %s:%s as %s, want %s", n, ref.repo, ref.tag, d, img[ref.name].Digest)
			}
		}
	}
	want = maps.Clone(want)
	want["ctl/a"] = map[string]digest.Digest{"v2": img["a2"].Digest}
	want["ctl/d"] = map[string]digest.Digest{"v1": img["d1"].Digest}
	want["ctl/e"] = map[string]digest.Digest{"v1": img["e1"].Digest, "v2": img["e2"].Digest}
	listedWant := map[string][]string{}
	for repo, tags := range want {
		listedWant[repo] = slices.Sorted(maps.Keys(tags))
	}
	for _, n := range []harness.Node{east, europe} {
		got, err := m.listed(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(listedWant) {
			t.Errorf("with westus down, %s lists %v, want %v", n, got, listedWant)
		}
	}
	t.Logf("home down: eastus and westeurope served 3 pushes, a tag delete and 8 pulls, and replicated them, within %v of westus going down", time.Since(down).Round(time.Millisecond))

	// Keep westus away long enough for the other regions' senders to back
	// off from it.
	if d := 5*time.Second - time.Since(down); d > 0 {
		time.Sleep(d)
	}
	m.Restart(t, ctx, "westus")
	back := time.Now()
	got, err := m.heldConverged(t, ctx, regions, 90*time.Second)
	if err != nil {
		t.Fatalf("after westus returned: %v", err)
	}
	t.Logf("home down: westus back -> all 3 regions hold identical repository/tag/digest maps in %d ms (westus down for %v):\n%s",
		time.Since(back).Milliseconds(), back.Sub(down).Round(time.Millisecond), got)
	if !equalRepoMaps(got, want) {
		t.Errorf("all regions converged on\n%s\nwant\n%s", got, want)
	}
	for _, name := range []string{"d1", "e1", "e2"} {
		repo := "ctl/d"
		if name != "d1" {
			repo = "ctl/e"
		}
		for _, b := range img[name].Blobs() {
			if ok, err := m.c.HasBlob(ctx, m.first("westus").URL(), repo, b.Digest); !ok || err != nil {
				t.Errorf("westus lacks blob %.19s of %s (%s) after converging: %v", b.Digest, repo, name, err)
			}
		}
	}
	var reps []replicationRow
	err = ociclient.Poll(ctx, 20*time.Second, 200*time.Millisecond, func() (bool, error) {
		reps = m.replications(t, ctx)
		for _, r := range reps {
			if r.Status != "Ready" {
				return false, fmt.Errorf("%s is %s", r.Region, r.Status)
			}
		}
		return len(reps) == 3, fmt.Errorf("%d replications", len(reps))
	})
	if err != nil {
		t.Errorf("replication list after westus returned: %v\n%s", err, replicationTable(reps))
	} else {
		t.Logf("home down: replication list works again %d ms after westus returned:\n%s", time.Since(back).Milliseconds(), replicationTable(reps))
	}
}

// rawStatus returns every node's GET /_georeg/status, for failure reports.
func (m *geoMesh) rawStatus(ctx context.Context) string {
	var b strings.Builder
	for _, n := range m.Nodes {
		_, body, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/status", nil, nil, http.StatusOK)
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: %v", n, err)
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %s", n, bytes.TrimSpace(body))
	}
	return b.String()
}

// cli runs `bin/georeg VERB SUB --dir DIR ARGS...` and returns its stdout and
// stderr apart.
func (m *geoMesh) cli(t testing.TB, ctx context.Context, verb, sub string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Bin(t, "georeg"), append([]string{verb, sub, "--dir", m.Dir}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// cliJSON runs a georeg command that prints JSON and decodes it into v; any
// failure fails the test.
func (m *geoMesh) cliJSON(t testing.TB, ctx context.Context, v any, verb, sub string, args ...string) {
	t.Helper()
	out, errOut, err := m.cli(t, ctx, verb, sub, args...)
	if err != nil {
		t.Fatalf("georeg %s %s %s: %v\n%s%s", verb, sub, strings.Join(args, " "), err, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("georeg %s %s %s: %v\n%s", verb, sub, strings.Join(args, " "), err, out)
	}
}

// replicationRow is one row of `georeg replication list --json`.
type replicationRow struct {
	Region                string  `json:"region"`
	Home                  bool    `json:"home"`
	Status                string  `json:"status"`
	RegionEndpointEnabled bool    `json:"regionEndpointEnabled"`
	LagEvents             uint64  `json:"lagEvents"`
	LagSeconds            float64 `json:"lagSeconds"`
	LastSync              string  `json:"lastSync"`
	Created               string  `json:"created"`
	NodesUp               int     `json:"nodesUp"`
}

func (m *geoMesh) replications(t testing.TB, ctx context.Context) []replicationRow {
	t.Helper()
	var reps []replicationRow
	m.cliJSON(t, ctx, &reps, "replication", "list", "--json")
	return reps
}

func replicationTable(reps []replicationRow) string {
	var b strings.Builder
	for _, r := range reps {
		fmt.Fprintf(&b, "  %-10s home=%-5v %-12s endpoint=%-5v lag=%d events/%.1fs lastSync=%s nodesUp=%d\n",
			r.Region, r.Home, r.Status, r.RegionEndpointEnabled, r.LagEvents, r.LagSeconds, r.LastSync, r.NodesUp)
	}
	return b.String()
}

// presence is one region of `georeg replication status IMAGE --json`.
type presence struct {
	Region  string `json:"region"`
	Present bool   `json:"present"`
	Digest  string `json:"digest"`
	Error   string `json:"error"`
}

// imageStatus runs `replication status IMAGE --json` and returns it by
// region. Each region answers for what it holds itself: no read-through.
func (m *geoMesh) imageStatus(t testing.TB, ctx context.Context, image string) (map[string]presence, error) {
	t.Helper()
	out, errOut, err := m.cli(t, ctx, "replication", "status", "--json", image)
	if err != nil {
		return nil, fmt.Errorf("replication status %s: %v\n%s%s", image, err, out, errOut)
	}
	var ps []presence
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("replication status %s: %v\n%s", image, err, out)
	}
	byRegion := map[string]presence{}
	for _, p := range ps {
		byRegion[p.Region] = p
	}
	return byRegion, nil
}

// listed reads what node n lists, which never reads through: every
// repository of the catalog with its sorted tags.
func (m *geoMesh) listed(ctx context.Context, n harness.Node) (map[string][]string, error) {
	repos, err := m.c.List(ctx, n.URL(), "/v2/_catalog", "repositories")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n, err)
	}
	out := map[string][]string{}
	for _, repo := range repos {
		tags, err := m.c.Tags(ctx, n.URL(), repo)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		slices.Sort(tags)
		out[repo] = append([]string{}, tags...)
	}
	return out, nil
}

// heldMaps returns, per region of regs, the repository -> tag -> digest map
// its first node holds, read without read-through: the catalog and tags
// lists, and each tag's digest as `replication status` reports it for that
// region (every region answers from its own state). A tag a region lists
// but does not resolve is an error.
func (m *geoMesh) heldMaps(t testing.TB, ctx context.Context, regs []string) (map[string]ociclient.RepoMap, error) {
	lists := map[string]map[string][]string{}
	type ref struct{ repo, tag string }
	var refs []ref
	seen := map[ref]bool{}
	for _, r := range regs {
		l, err := m.listed(ctx, m.first(r))
		if err != nil {
			return nil, err
		}
		lists[r] = l
		for repo, tags := range l {
			for _, tag := range tags {
				if !seen[ref{repo, tag}] {
					seen[ref{repo, tag}] = true
					refs = append(refs, ref{repo, tag})
				}
			}
		}
	}
	out := map[string]ociclient.RepoMap{}
	for _, r := range regs {
		out[r] = ociclient.RepoMap{}
		for repo := range lists[r] {
			out[r][repo] = map[string]digest.Digest{}
		}
	}
	for _, rf := range refs {
		ps, err := m.imageStatus(t, ctx, rf.repo+":"+rf.tag)
		if err != nil {
			return nil, err
		}
		for _, r := range regs {
			p := ps[r]
			lists := slices.Contains(lists[r][rf.repo], rf.tag)
			switch {
			case p.Error != "":
				return nil, fmt.Errorf("replication status %s:%s: %s: %s", rf.repo, rf.tag, r, p.Error)
			case lists && !p.Present:
				return nil, fmt.Errorf("%s lists %s:%s but replication status says it does not hold it", r, rf.repo, rf.tag)
			case lists:
				out[r][rf.repo][rf.tag] = digest.Digest(p.Digest)
			}
		}
	}
	return out, nil
}

// heldConverged waits until every region of regs holds the same
// repository -> tag -> digest map (heldMaps, compared in full) and returns
// it.
func (m *geoMesh) heldConverged(t testing.TB, ctx context.Context, regs []string, timeout time.Duration) (ociclient.RepoMap, error) {
	var ref ociclient.RepoMap
	err := ociclient.Poll(ctx, timeout, 200*time.Millisecond, func() (bool, error) {
		// Tags lists first: they are cheap, and most of the wait.
		var first map[string][]string
		for i, r := range regs {
			l, err := m.listed(ctx, m.first(r))
			if err != nil {
				return false, err
			}
			if i == 0 {
				first = l
			} else if fmt.Sprint(l) != fmt.Sprint(first) {
				return false, fmt.Errorf("%s lists %v but %s lists %v", regs[0], first, r, l)
			}
		}
		held, err := m.heldMaps(t, ctx, regs)
		if err != nil {
			return false, err
		}
		for _, r := range regs[1:] {
			if !equalRepoMaps(held[r], held[regs[0]]) {
				return false, fmt.Errorf("%s holds\n%s\nbut %s holds\n%s", regs[0], held[regs[0]], r, held[r])
			}
		}
		ref = held[regs[0]]
		return true, nil
	})
	return ref, err
}

// equalRepoMaps compares two maps in full, digests included.
func equalRepoMaps(a, b ociclient.RepoMap) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]digest.Digest) bool { return maps.Equal(x, y) })
}

func countTags(r ociclient.RepoMap) int {
	n := 0
	for _, tags := range r {
		n += len(tags)
	}
	return n
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// putManifestWith pushes img's manifest as repo:ref with extra request
// headers and returns the answer, whatever its status.
func (c *client) putManifestWith(ctx context.Context, base, repo, ref string, img image, hdr http.Header) (*http.Response, []byte, error) {
	h := http.Header{"Content-Type": {mediaManifest}}
	for k, v := range hdr {
		h[k] = v
	}
	resp, body, err := c.Do(ctx, http.MethodPut, base, "/v2/"+repo+"/manifests/"+ref, h, img.Manifest, http.StatusCreated)
	if err != nil {
		return resp, body, err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != img.Digest.String() {
		return resp, body, fmt.Errorf("PUT %s:%s answered digest %q, want %s", repo, ref, got, img.Digest)
	}
	return resp, body, nil
}
