package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// listing returns the tags node n lists per repository to client c (catalog
// and tags lists never read through to other regions). Repositories without
// tags are left out (an upload alone makes a repository in one region
// only).
func (m *Mesh) listing(ctx context.Context, c *ociclient.Client, n harness.Node) (map[string][]string, error) {
	repos, err := c.List(ctx, n.URL(), "/v2/_catalog", "repositories")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, repo := range repos {
		tags, err := c.Tags(ctx, n.URL(), repo)
		if err != nil {
			return nil, err
		}
		if len(tags) > 0 {
			sort.Strings(tags)
			out[repo] = tags
		}
	}
	return out, nil
}

// repoMap resolves every tag node n lists to its digest, asking with client
// c.
func (m *Mesh) repoMap(ctx context.Context, c *ociclient.Client, n harness.Node, listed map[string][]string) (ociclient.RepoMap, error) {
	type item struct{ repo, tag string }
	var items []item
	for repo, tags := range listed {
		for _, tag := range tags {
			items = append(items, item{repo, tag})
		}
	}
	out := ociclient.RepoMap{}
	var mu sync.Mutex
	err := parallel(ctx, 8, items, func(ctx context.Context, it item) error {
		resp, _, err := c.Do(ctx, http.MethodHead, n.URL(), "/v2/"+it.repo+"/manifests/"+it.tag,
			http.Header{"Accept": {ociclient.MediaManifest + ", " + mediaIndex}}, nil, http.StatusOK)
		if err != nil {
			return fmt.Errorf("%s lists %s:%s: %w", n.String(), it.repo, it.tag, err)
		}
		d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
		if err != nil {
			return fmt.Errorf("%s: HEAD %s:%s: Docker-Content-Digest: %w", n.String(), it.repo, it.tag, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if out[it.repo] == nil {
			out[it.repo] = map[string]digest.Digest{}
		}
		out[it.repo][it.tag] = d
		return nil
	})
	return out, err
}

// referrers returns the digests node n lists as referrers of subject.
func (m *Mesh) referrers(ctx context.Context, n harness.Node, repo string, subject digest.Digest) ([]string, error) {
	_, body, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/v2/"+repo+"/referrers/"+subject.String(), nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, err
	}
	var out []string
	for _, d := range idx.Manifests {
		out = append(out, d.Digest.String())
	}
	sort.Strings(out)
	return out, nil
}

// Subject is an image with referrers, whose referrer lists must converge.
type Subject struct {
	Repo   string
	Digest digest.Digest
}

// WaitConverged waits until the mesh has converged: every node up, one
// leader in every region, every node of a region with the same metadata
// digest, and every region serving the same tags with the same digests and
// the same referrers of subjects, and every site serving the regions' tags
// and digests for the repositories it syncs. It returns the agreed map.
// Replication may still be delivering events every region already
// reflects (through anti-entropy); WaitDrained waits for that.
func (m *Mesh) WaitConverged(ctx context.Context, subjects []Subject, timeout time.Duration) (ociclient.RepoMap, error) {
	var agreed ociclient.RepoMap
	err := ociclient.Poll(ctx, timeout, 500*time.Millisecond, func() (bool, error) {
		for _, r := range m.Regions {
			leaders := 0
			for _, n := range m.RegionNodes(r) {
				st, err := m.NodeStatus(ctx, n)
				if err != nil {
					return false, fmt.Errorf("%s: %w", n.String(), err)
				}
				if st.Raft.State == "Leader" {
					leaders++
				}
			}
			if leaders != 1 {
				return false, fmt.Errorf("region %s has %d leaders", r, leaders)
			}
			var first digest.Digest
			for _, n := range m.RegionNodes(r) {
				var st struct {
					Meta digest.Digest `json:"meta"`
				}
				_, body, err := m.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/state", nil, nil, http.StatusOK)
				if err == nil {
					err = json.Unmarshal(body, &st)
				}
				if err != nil {
					return false, fmt.Errorf("%s: state: %w", n.String(), err)
				}
				if first == "" {
					first = st.Meta
				} else if st.Meta != first {
					return false, fmt.Errorf("the nodes of %s have different metadata", r)
				}
			}
		}
		var ref map[string][]string
		var refNode harness.Node
		for i, r := range m.Regions {
			n := m.RegionNodes(r)[0]
			l, err := m.listing(ctx, m.c, n)
			if err != nil {
				return false, fmt.Errorf("%s: %w", n.String(), err)
			}
			if i == 0 {
				ref, refNode = l, n
			} else if fmt.Sprint(l) != fmt.Sprint(ref) {
				return false, fmt.Errorf("%s and %s list different tags (%d and %d repositories)", refNode.String(), n.String(), len(ref), len(l))
			}
		}
		maps := make([]ociclient.RepoMap, len(m.Regions))
		for i, r := range m.Regions {
			n := m.RegionNodes(r)[0]
			rm, err := m.repoMap(ctx, m.c, n, ref)
			if err != nil {
				return false, err
			}
			if maps[i] = rm; i > 0 && rm.String() != maps[0].String() {
				return false, fmt.Errorf("%s serves\n%s\nbut %s serves\n%s", refNode.String(), maps[0], n.String(), rm)
			}
		}
		for _, s := range subjects {
			var first []string
			for i, r := range m.Regions {
				n := m.RegionNodes(r)[0]
				got, err := m.referrers(ctx, n, s.Repo, s.Digest)
				if err != nil {
					return false, fmt.Errorf("%s: referrers of %.19s: %w", n.String(), s.Digest, err)
				}
				if i == 0 {
					first = got
				} else if fmt.Sprint(got) != fmt.Sprint(first) {
					return false, fmt.Errorf("referrers of %s@%.19s: %s lists %v, %s lists %v", s.Repo, s.Digest, refNode.String(), first, n.String(), got)
				}
			}
		}
		if err := m.siteConverged(ctx, maps[0]); err != nil {
			return false, err
		}
		agreed = maps[0]
		return true, nil
	})
	return agreed, err
}

// WaitDrained waits until no region's leader has replication events left
// for a peer and no node has blobs left to repair, and returns how long
// that took.
func (m *Mesh) WaitDrained(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := ociclient.Poll(ctx, timeout, 500*time.Millisecond, func() (bool, error) {
		for _, n := range m.Nodes {
			st, err := m.NodeStatus(ctx, n)
			if err != nil {
				return false, fmt.Errorf("%s: %w", n.String(), err)
			}
			if st.RepairBacklog > 0 {
				return false, fmt.Errorf("%s has a repair backlog of %d", n.String(), st.RepairBacklog)
			}
			if st.Raft.State != "Leader" {
				continue
			}
			for _, p := range st.Peers {
				if p.Backlog > 0 {
					return false, fmt.Errorf("leader %s has %d events for %s", n.String(), p.Backlog, p.Region)
				}
			}
		}
		return true, nil
	})
	return time.Since(start), err
}

// Evidence is what the invariants are held against: the history, the mesh
// after it converged (or failed to), and what the samplers saw.
type Evidence struct {
	Mesh *Mesh
	Ops  []Op
	// Converged reports whether WaitConverged succeeded; Agreed is then
	// the map every region serves, and ConvergeErr otherwise says why not.
	Converged   bool
	Agreed      ociclient.RepoMap
	ConvergeErr error
	// Before and After are resource counts per process (I6); Restarted
	// names the processes started again during the scenario, which are
	// not compared.
	Before, After map[string]Resources
	Restarted     map[string]bool
	// Leaders is the leader sampler, stopped.
	Leaders *LeaderSampler
	// FaultStart and FaultEnd bound the fault window (zero without
	// faults).
	FaultStart, FaultEnd time.Time

	// lost counts acknowledged writes I1 found missing, and badBytes the
	// wrong answers I1 and I3 met; both end on the scoreboard.
	mu       sync.Mutex
	lost     int
	badBytes int
	// blobOK remembers the blobs already verified at a node, by
	// "node repo@digest", so that shared layers are fetched once.
	blobOK sync.Map
}

// Invariant is one property a scenario's run must have. Check returns one
// line per violation, none when the invariant held.
type Invariant struct {
	ID    string
	Name  string
	Check func(ctx context.Context, ev *Evidence) []string
}

// Invariants returns I1 to I7.
func Invariants() []Invariant {
	return []Invariant{
		{"I1", "every acknowledged push is pullable by digest from every region once converged", checkAckedPullable},
		{"I2", "no answer carries bytes that do not match the requested digest and size", checkNoBadBytes},
		{"I3", "no region serves a manifest whose blobs it can neither serve nor fetch", checkBlobsServable},
		{"I4", "after healing every region resolves every tag to the same client-written digest", checkTags},
		{"I5", "pulls through the endpoint do not fail during failover", checkPulls},
		{"I6", "no goroutine, file-descriptor or upload-session leak", checkLeaks},
		{"I7", "at most one Raft leader per term in every region", checkLeaders},
	}
}

// ackedImages returns each acknowledged push, overwrite and referrer once
// per repository and digest.
func ackedImages(ops []Op) []Op {
	seen := map[string]bool{}
	var out []Op
	for _, o := range ops {
		if !o.Acked || (o.Kind != OpPush && o.Kind != OpOverwrite && o.Kind != OpReferrer) {
			continue
		}
		k := o.Repo + "@" + o.Digest.String()
		if !seen[k] {
			seen[k] = true
			out = append(out, o)
		}
	}
	return out
}

// fetchAll fetches repo@d and every blob it names from node n with client
// c, checking every byte; a blob already verified there is not fetched
// again.
func (ev *Evidence) fetchAll(ctx context.Context, c *ociclient.Client, n harness.Node, repo string, d digest.Digest) error {
	resp, body, err := c.Do(ctx, http.MethodGet, n.URL(), "/v2/"+repo+"/manifests/"+d.String(),
		http.Header{"Accept": {ociclient.MediaManifest + ", " + mediaIndex}}, nil, http.StatusOK)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if got := digest.FromBytes(body); got != d || resp.Header.Get("Docker-Content-Digest") != d.String() {
		ev.addBad()
		return fmt.Errorf("%w: manifest %s@%s is %s", ociclient.ErrWrongBytes, repo, d, got)
	}
	blobs, err := manifestBlobs(body)
	if err != nil {
		return err
	}
	for _, b := range blobs {
		key := n.String() + " " + repo + "@" + b.Digest.String()
		if _, ok := ev.blobOK.Load(key); ok {
			continue
		}
		_, data, err := c.Do(ctx, http.MethodGet, n.URL(), "/v2/"+repo+"/blobs/"+b.Digest.String(), nil, nil, http.StatusOK)
		if err != nil {
			return fmt.Errorf("blob %.19s: %w", b.Digest, err)
		}
		if int64(len(data)) != b.Size || digest.FromBytes(data) != b.Digest {
			ev.addBad()
			return fmt.Errorf("%w: blob %s of %s is %d bytes %s", ociclient.ErrWrongBytes, b.Digest, repo, len(data), digest.FromBytes(data))
		}
		ev.blobOK.Store(key, true)
	}
	return nil
}

func (ev *Evidence) addBad() {
	ev.mu.Lock()
	ev.badBytes++
	ev.mu.Unlock()
}

func checkAckedPullable(ctx context.Context, ev *Evidence) []string {
	imgs := ackedImages(ev.Ops)
	var mu sync.Mutex
	var out []string
	lost := map[int]bool{}
	for ri, r := range ev.Mesh.Regions {
		nodes := ev.Mesh.RegionNodes(r)
		parallel(ctx, 8, imgs, func(ctx context.Context, o Op) error {
			n := nodes[(o.ID+ri)%len(nodes)]
			if err := ev.fetchAll(ctx, ev.Mesh.c, n, o.Repo, o.Digest); err != nil {
				mu.Lock()
				lost[o.ID] = true
				out = append(out, fmt.Sprintf("acknowledged %s %s:%s@%.19s (op %d via %s) not pullable from %s: %v", o.Kind, o.Repo, o.Tag, o.Digest, o.ID, o.Location, n.String(), err))
				mu.Unlock()
			}
			return nil
		})
	}
	// What a site acknowledged stays pullable there too (a write that lost
	// its tag to the cloud's included: the loser stays by digest).
	for _, s := range ev.Mesh.sites {
		n := ev.Mesh.Sites[s.spec.Name]
		var own []Op
		for _, o := range imgs {
			if o.Location == s.spec.Name {
				own = append(own, o)
			}
		}
		parallel(ctx, 8, own, func(ctx context.Context, o Op) error {
			if err := ev.fetchAll(ctx, s.c, n, o.Repo, o.Digest); err != nil {
				mu.Lock()
				lost[o.ID] = true
				out = append(out, fmt.Sprintf("acknowledged %s %s:%s@%.19s (op %d at site %s) not pullable there any more: %v", o.Kind, o.Repo, o.Tag, o.Digest, o.ID, o.Location, err))
				mu.Unlock()
			}
			return nil
		})
	}
	ev.mu.Lock()
	ev.lost = len(lost)
	ev.mu.Unlock()
	sort.Strings(out)
	return out
}

func checkNoBadBytes(ctx context.Context, ev *Evidence) []string {
	var out []string
	for _, o := range ev.Ops {
		if o.BadBytes {
			out = append(out, fmt.Sprintf("op %d %s %s via %s: %s", o.ID, o.Kind, o.Repo, o.Location, o.Err))
		}
	}
	return out
}

func checkBlobsServable(ctx context.Context, ev *Evidence) []string {
	var out []string
	for _, o := range ev.Ops {
		if o.MissingBlob {
			out = append(out, fmt.Sprintf("op %d %s %s via %s, manifest from %s: %s", o.ID, o.Kind, o.Repo, o.Location, o.Region, o.Err))
		}
	}
	// Every manifest a tag names, at every node: each blob held or
	// fetchable.
	type ref struct {
		repo string
		d    digest.Digest
	}
	var refs []ref
	seen := map[ref]bool{}
	for repo, tags := range ev.Agreed {
		for _, d := range tags {
			if r := (ref{repo, d}); !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	var mu sync.Mutex
	for _, n := range ev.Mesh.Nodes {
		parallel(ctx, 8, refs, func(ctx context.Context, r ref) error {
			if err := ev.fetchAll(ctx, ev.Mesh.c, n, r.repo, r.d); err != nil {
				mu.Lock()
				out = append(out, fmt.Sprintf("%s serves a tag of %s naming %.19s but: %v", n.String(), r.repo, r.d, err))
				mu.Unlock()
			}
			return nil
		})
	}
	for _, s := range ev.Mesh.sites {
		n := ev.Mesh.Sites[s.spec.Name]
		var own []ref
		for _, r := range refs {
			if s.syncs(r.repo) {
				own = append(own, r)
			}
		}
		parallel(ctx, 8, own, func(ctx context.Context, r ref) error {
			if err := ev.fetchAll(ctx, s.c, n, r.repo, r.d); err != nil {
				mu.Lock()
				out = append(out, fmt.Sprintf("site %s serves a tag of %s naming %.19s but: %v", s.spec.Name, r.repo, r.d, err))
				mu.Unlock()
			}
			return nil
		})
	}
	return out
}

func checkTags(ctx context.Context, ev *Evidence) []string {
	if !ev.Converged {
		return []string{fmt.Sprintf("regions did not converge: %v", ev.ConvergeErr)}
	}
	written := map[string]map[digest.Digest]bool{}
	ackedTag := map[string]bool{}
	deleted := map[string]bool{}
	for _, o := range ev.Ops {
		k := o.Repo + ":" + o.Tag
		switch {
		case o.Kind == OpDelete:
			deleted[k] = true
		case o.Tag != "" && (o.Kind == OpPush || o.Kind == OpOverwrite):
			if written[k] == nil {
				written[k] = map[digest.Digest]bool{}
			}
			written[k][o.Digest] = true
			if o.Acked {
				ackedTag[k] = true
			}
		}
	}
	var out []string
	for repo, tags := range ev.Agreed {
		for tag, d := range tags {
			if k := repo + ":" + tag; !written[k][d] {
				out = append(out, fmt.Sprintf("every region resolves %s to %s, which no client pushed to that tag", k, d))
			}
		}
	}
	for k := range ackedTag {
		repo, tag, _ := strings.Cut(k, ":")
		if _, ok := ev.Agreed[repo][tag]; !ok && !deleted[k] {
			out = append(out, fmt.Sprintf("%s was acknowledged and never deleted, but no region lists it", k))
		}
	}
	sort.Strings(out)
	return out
}

// readsThroughEndpoint returns the reads that went through a location's
// listener.
func readsThroughEndpoint(ops []Op) []Op {
	var out []Op
	for _, o := range ops {
		if o.Kind.IsRead() && !strings.HasPrefix(o.Location, "direct:") {
			out = append(out, o)
		}
	}
	return out
}

func checkPulls(ctx context.Context, ev *Evidence) []string {
	var out []string
	for _, o := range readsThroughEndpoint(ev.Ops) {
		if o.Failed() {
			where := "outside the fault window"
			if !ev.FaultStart.IsZero() && o.End.After(ev.FaultStart) && o.Start.Before(ev.FaultEnd) {
				where = "in the fault window"
			}
			out = append(out, fmt.Sprintf("op %d %s %s %s@%.19s via %s at %s (%s): %s", o.ID, o.Kind, o.Repo, o.Tag, o.Digest, o.Location,
				o.Start.Format("15:04:05.000"), where, o.Err))
		}
	}
	return out
}

func checkLeaks(ctx context.Context, ev *Evidence) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(ev.Before)) {
		b := ev.Before[name]
		a, ok := ev.After[name]
		switch {
		case ev.Restarted[name]:
			continue
		case !ok:
			out = append(out, fmt.Sprintf("%s did not answer /metrics after the scenario", name))
			continue
		}
		slack := SocketSlack
		if name == TrafficmgrName && ev.Mesh != nil {
			slack += SiteSocketSlack * len(ev.Mesh.sites)
		}
		out = append(out, leaks(name, b, a, slack)...)
	}
	return out
}

// leaks compares one process's counts before and after a scenario with
// the slack documented at GoroutineSlack, sockSlack more sockets allowed.
func leaks(name string, b, a Resources, sockSlack int) []string {
	var out []string
	sock := 0
	if a.Sockets >= 0 && b.Sockets >= 0 {
		sock = max(0, a.Sockets-b.Sockets)
		if sock > sockSlack {
			out = append(out, fmt.Sprintf("%s: sockets %d -> %d (slack %d)", name, b.Sockets, a.Sockets, sockSlack))
		}
		if files, was := a.FDs-float64(a.Sockets), b.FDs-float64(b.Sockets); files > was+FileSlack {
			out = append(out, fmt.Sprintf("%s: open files (fds that are not sockets) %v -> %v (slack %d)", name, was, files, FileSlack))
		}
	} else if a.FDs > b.FDs+float64(FileSlack+sockSlack) {
		out = append(out, fmt.Sprintf("%s: open fds %v -> %v (slack %d)", name, b.FDs, a.FDs, FileSlack+sockSlack))
	}
	if allowed := b.Goroutines + GoroutineSlack + float64(GoroutinesPerSocket*sock); a.Goroutines > allowed {
		out = append(out, fmt.Sprintf("%s: goroutines %v -> %v (slack %d + %d for each of %d more sockets)", name, b.Goroutines, a.Goroutines,
			GoroutineSlack, GoroutinesPerSocket, sock))
	}
	if a.Uploads > b.Uploads {
		out = append(out, fmt.Sprintf("%s: open upload sessions %d -> %d", name, b.Uploads, a.Uploads))
	}
	return out
}

func checkLeaders(ctx context.Context, ev *Evidence) []string {
	if ev.Leaders == nil {
		return nil
	}
	v, _, _, _ := ev.Leaders.Result()
	return v
}

// LongestGap returns, over every location, the longest time during [from,
// to] in which no operation through that location succeeded: the longest
// failover a client saw. Only operations through a location's listener
// count.
func LongestGap(ops []Op, from, to time.Time) (time.Duration, string) {
	if from.IsZero() || !to.After(from) {
		return 0, ""
	}
	ends := map[string][]time.Time{}
	for _, o := range ops {
		if o.Failed() || strings.HasPrefix(o.Location, "direct:") || o.Location == "random" {
			continue
		}
		ends[o.Location] = append(ends[o.Location], o.End)
	}
	var longest time.Duration
	var where string
	for loc, ts := range ends {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		prev := from
		for _, t := range append(ts, to) {
			if t.Before(from) {
				continue
			}
			if t.After(to) {
				t = to
			}
			if gap := t.Sub(prev); gap > longest {
				longest, where = gap, loc
			}
			prev = t
			if !t.Before(to) {
				break
			}
		}
	}
	return longest, where
}

// parallel calls fn for every item with at most n calls at once and
// returns the first error.
func parallel[T any](ctx context.Context, n int, items []T, fn func(context.Context, T) error) error {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// seq returns 0, 1, ... n-1.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
