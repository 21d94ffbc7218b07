package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/testclock"
	"github.com/georeg/georeg/replication/site"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
	"github.com/georeg/georeg/zone"
)

// SiteSpec is a connected registry a scenario runs at a site of its mesh
// (docs/connected.md): created in the cloud with a client token of its own,
// then started by `georeg mesh add-site`, reaching the cloud through the
// traffic manager's listener for its location, so the chaos verbs act on
// its links (`partition NAME REGION`, `bandwidth`, `latency`) and on its
// node (`kill-zone NAME/1`, `restart NAME`).
//
// A site's local clients are a location of the history named after the
// site: the Recorder sends them to the site's node with its client token,
// and the workload runs there like anywhere else. The invariants hold the
// site too: what was acknowledged at the site is pullable there and in
// every region (I1), every manifest it serves has its blobs (I3), and the
// mesh has converged only once the site's tags for its repositories are the
// regions' (I4).
type SiteSpec struct {
	// Name is the connected registry's name: 5 to 40 lower-case letters
	// and digits. It names the site's location and region too.
	Name string
	// ReadWrite makes it a ReadWrite connected registry (its clients
	// push; their writes sync up); else it is ReadOnly.
	ReadWrite bool
	// Repositories are the repositories it syncs: names and trailing
	// wildcards ("samples/*").
	Repositories []string
	// Args are more arguments of `connected-registry create` (a sync
	// schedule and window, say).
	Args []string
	// ClockAt, when set, runs the site's node on a test clock
	// (GEOREG_TEST_CLOCK) that reads ClockAt as the site starts and runs
	// ClockSpeed times faster than real time (0 is 1): its sync windows
	// follow it (Mesh.SiteClock). The suite sets the clock in its own
	// environment for the rest of the scenario, so the site's node keeps
	// it when `chaos restart` starts it again; so would a cloud node
	// restarted meanwhile (its message TTL would run as fast), which the
	// site scenarios with a clock do not do. A site with sync windows must
	// start inside one: StartSites waits for it to sync.
	ClockAt    time.Time
	ClockSpeed float64
}

// siteHandle is a site of a running scenario's mesh.
type siteHandle struct {
	spec SiteSpec
	// clock is the site's test clock, nil when it runs on the real time.
	clock *testclock.Clock
	cred  ociclient.Credential
	// c sends the site's client token; the site knows no other
	// credential (it has no admin user).
	c *ociclient.Client
}

// syncs reports whether the site syncs repo.
func (s *siteHandle) syncs(repo string) bool {
	return slices.ContainsFunc(s.spec.Repositories, func(p string) bool {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			return strings.HasPrefix(repo, prefix)
		}
		return p == repo
	})
}

// StartSites creates each connected registry of specs in the cloud with a
// client token of its own (push and pull for a ReadWrite one, pull
// otherwise), starts its site, and waits until every site has activated
// and synced (its status Online): a ReadWrite site takes pushes from then
// on.
func (m *Mesh) StartSites(t testing.TB, ctx context.Context, specs []SiteSpec) {
	t.Helper()
	if len(specs) == 0 {
		return
	}
	if m.TLS != nil {
		t.Fatalf("sites need a mesh without --tls (mesh add-site refuses one): TestChaos skips site scenarios under GEOREG_CHAOS_TLS")
	}
	for _, s := range specs {
		start := time.Now()
		mode, scope := "ReadOnly", "_repositories_pull"
		if s.ReadWrite {
			mode, scope = "ReadWrite", "_repositories_push"
		}
		cred := m.CreateToken(t, s.Name+"-client", "--scope-map", scope)
		args := append([]string{"connected-registry", "create", "--name", s.Name, "--mode", mode, "--client-tokens", cred.User, "--repository"}, s.Repositories...)
		m.MustRun(t, ctx, append(args, s.Args...)...)
		h := &siteHandle{spec: s, cred: cred, c: ociclient.NewWithCredential(10*time.Second, cred)}
		if !s.ClockAt.IsZero() {
			h.clock = &testclock.Clock{From: time.Now(), At: s.ClockAt, Speed: max(s.ClockSpeed, 1)}
			t.Setenv("GEOREG_TESTING", "1")
			t.Setenv("GEOREG_TEST_CLOCK", h.clock.String())
		}
		m.MustRun(t, ctx, "mesh", "add-site", "--name", s.Name)
		m.Reload()
		m.sites = append(m.sites, h)
		if rep, err := m.WaitSiteOnline(ctx, s.Name, time.Minute); err != nil {
			t.Fatalf("site %s not Online a minute after it started (%+v): %v\n%s", s.Name, rep.Status, err, m.Sites[s.Name].LogTail(4000))
		}
		clock := ""
		if h.clock != nil {
			clock = fmt.Sprintf(", on a test clock reading %s (x%g)", h.clock.Now().Format("15:04:05"), h.clock.Speed)
		}
		t.Logf("site %s (%s, %s%s) up and Online in %v", s.Name, mode, strings.Join(s.Repositories, " "), clock, time.Since(start).Round(time.Millisecond))
	}
}

// SiteClock returns site name's test clock, nil when it runs on the real
// time.
func (m *Mesh) SiteClock(name string) *testclock.Clock {
	if s := m.site(name); s != nil {
		return s.clock
	}
	return nil
}

// WaitSiteOnline waits until site name's node reports Online (activated,
// in sync with its parent) and returns its report.
func (m *Mesh) WaitSiteOnline(ctx context.Context, name string, timeout time.Duration) (site.Report, error) {
	var rep site.Report
	err := ociclient.Poll(ctx, timeout, 100*time.Millisecond, func() (bool, error) {
		var err error
		rep, err = m.SiteReport(ctx, name)
		if err == nil && rep.Status.State != "Online" {
			err = fmt.Errorf("%s is %s (%s)", name, rep.Status.State, rep.Status.LastError)
		}
		return err == nil, err
	})
	return rep, err
}

// site returns the site named name, nil when the mesh has none.
func (m *Mesh) site(name string) *siteHandle {
	for _, s := range m.sites {
		if s.spec.Name == name {
			return s
		}
	}
	return nil
}

// SiteNames returns the names of the mesh's sites, in the order they
// started.
func (m *Mesh) SiteNames() []string {
	var out []string
	for _, s := range m.sites {
		out = append(out, s.spec.Name)
	}
	return out
}

// SiteNode returns the node of site name.
func (m *Mesh) SiteNode(name string) (harness.Node, bool) {
	n, ok := m.Sites[name]
	return n, ok
}

// SiteReport returns what site name's node shows of its sync: its status
// (pending writes, conflicts, last error) and counters.
func (m *Mesh) SiteReport(ctx context.Context, name string) (site.Report, error) {
	s := m.site(name)
	if s == nil {
		return site.Report{}, fmt.Errorf("chaos: no site %q", name)
	}
	st, err := m.siteStatus(ctx, s)
	if err != nil {
		return site.Report{}, err
	}
	if st.Site == nil {
		return site.Report{}, fmt.Errorf("%s: its status has no site (not syncing yet)", name)
	}
	return *st.Site, nil
}

// siteStatus returns the status of site s's node.
func (m *Mesh) siteStatus(ctx context.Context, s *siteHandle) (zone.Status, error) {
	var st zone.Status
	_, body, err := s.c.Do(ctx, http.MethodGet, m.Sites[s.spec.Name].URL(), "/_georeg/status", nil, nil, http.StatusOK)
	if err != nil {
		return st, fmt.Errorf("%s: %w", s.spec.Name, err)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s: status: %w", s.spec.Name, err)
	}
	return st, nil
}

// siteConverged reports whether every site serves, for the repositories it
// syncs, exactly the tags and digests of agreed (the regions' map).
func (m *Mesh) siteConverged(ctx context.Context, agreed ociclient.RepoMap) error {
	for _, s := range m.sites {
		n := m.Sites[s.spec.Name]
		got, err := m.listing(ctx, s.c, n)
		if err != nil {
			return fmt.Errorf("site %s: %w", s.spec.Name, err)
		}
		want := map[string][]string{}
		for repo, tags := range agreed {
			if !s.syncs(repo) {
				continue
			}
			for tag := range tags {
				want[repo] = append(want[repo], tag)
			}
			slices.Sort(want[repo])
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("site %s lists %d repositories and %d tags of its repositories, the regions %d and %d",
				s.spec.Name, len(got), countTags(got), len(want), countTags(want))
		}
		rm, err := m.repoMap(ctx, s.c, n, got)
		if err != nil {
			return fmt.Errorf("site %s: %w", s.spec.Name, err)
		}
		for repo, tags := range rm {
			for tag, d := range tags {
				if agreed[repo][tag] != d {
					return fmt.Errorf("site %s resolves %s:%s to %.19s, the regions to %.19s", s.spec.Name, repo, tag, d, agreed[repo][tag])
				}
			}
		}
	}
	return nil
}

func countTags(l map[string][]string) int {
	n := 0
	for _, tags := range l {
		n += len(tags)
	}
	return n
}

// resolve returns what repo:ref resolves to at node n with client c, ""
// when nothing.
func resolve(ctx context.Context, c *ociclient.Client, n harness.Node, repo, ref string) digest.Digest {
	resp, _, err := c.Do(ctx, http.MethodHead, n.URL(), "/v2/"+repo+"/manifests/"+ref,
		http.Header{"Accept": {ociclient.MediaManifest + ", " + mediaIndex}}, nil, http.StatusOK)
	if err != nil {
		return ""
	}
	d, _ := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	return d
}

// WaitSettled waits until every region (its first node) and every site
// that syncs the repository resolve each "repo:tag" of refs to the same
// digest, and that digest is the one want names when it names one. It
// returns the digest each ref settled on, or the refs not settled when
// timeout ends.
func (m *Mesh) WaitSettled(ctx context.Context, refs []string, want map[string]digest.Digest, timeout time.Duration) (map[string]digest.Digest, error) {
	type place struct {
		name string
		c    *ociclient.Client
		n    harness.Node
		site *siteHandle
	}
	var places []place
	for _, r := range m.Regions {
		places = append(places, place{r, m.c, m.RegionNodes(r)[0], nil})
	}
	for _, s := range m.sites {
		places = append(places, place{s.spec.Name, s.c, m.Sites[s.spec.Name], s})
	}
	var settled map[string]digest.Digest
	var open []string
	err := ociclient.Poll(ctx, timeout, 250*time.Millisecond, func() (bool, error) {
		// Every ref is read again each round: one that agreed may still
		// move (a write on its way), and only all at once count.
		open, settled = open[:0], map[string]digest.Digest{}
		for _, ref := range refs {
			repo, tag, _ := strings.Cut(ref, ":")
			seen := map[digest.Digest][]string{}
			for _, p := range places {
				if p.site == nil || p.site.syncs(repo) {
					d := resolve(ctx, p.c, p.n, repo, tag)
					seen[d] = append(seen[d], p.name)
				}
			}
			d := slices.Collect(maps.Keys(seen))[0]
			if len(seen) != 1 || d == "" || (want[ref] != "" && d != want[ref]) {
				open = append(open, fmt.Sprintf("%s: %v", ref, seen))
				continue
			}
			settled[ref] = d
		}
		if len(open) > 0 {
			return false, fmt.Errorf("%d of %d not settled, e.g. %s", len(open), len(refs), strings.Join(open[:min(3, len(open))], "; "))
		}
		return true, nil
	})
	return settled, err
}
