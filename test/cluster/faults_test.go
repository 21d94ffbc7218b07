package cluster

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/test/ociclient"
)

// testRepos is the prefix of the repositories the test pushes images to,
// which it pulls (the conformance suite's hold indexes, artifacts and
// manifests whose blobs it deleted: their tags are compared, not pulled).
const testRepos = "e2e/"

// convergeBound is the bound on how long a region cut off from
// the others takes to catch up once reconnected.
const convergeBound = 30 * time.Second

// cutOff cuts westus off from both other regions by network while a loop
// of pulls of images in before runs through the endpoint's westus and
// eastus locations, pushes
// an image on each side of the cut (and one with docker), heals, and
// checks that no pull failed and that every region holds the other side's
// image, and serves the same tag map, within convergeBound of the heal.
func cutOff(t *testing.T, georeg, dir string, op operator, oc *ociclient.Client, endpoint, eastus string,
	before ociclient.RepoMap, push func(tag string), status func() chaos.Status) {
	t.Helper()
	// Every image pushed by docker, crane and skopeo and a few of the
	// push loop's, each pulled by digest in turn.
	images := map[string]string{}
	loop := 0
	for repo, tags := range before {
		if !strings.HasPrefix(repo, testRepos) {
			continue
		}
		for _, d := range tags {
			if repo == "e2e/loop" {
				if loop++; loop > 8 {
					continue
				}
			}
			images[d.String()] = repo
		}
	}
	bases := []string{"https://" + endpoint, "https://" + eastus}
	pulls := startPullLoop(oc, bases, images)
	halted := false
	defer func() {
		if !halted {
			pulls.halt()
		}
	}()
	time.Sleep(time.Second)

	cut := time.Now()
	run(t, nil, "", georeg, "chaos", "partition", "westus", "eastus", "--dir", dir)
	run(t, nil, "", georeg, "chaos", "partition", "westus", "westeurope", "--dir", dir)
	cutTook := time.Since(cut)
	if st := status(); len(st.Cuts) != 2 {
		t.Errorf("cluster status shows cuts %v, want westus's two", st.Cuts)
	}
	// An image pushed on each side of the cut, through the endpoint's
	// location that each side's clients come in from.
	seed := uint64(time.Now().UnixNano())
	west := ociclient.NewImage("e2e/cut:west", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed, 64<<10)))
	east := ociclient.NewImage("e2e/cut:east", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(seed+1, 64<<10)))
	for _, p := range []struct {
		base, tag string
		img       ociclient.Image
	}{{bases[0], "west", west}, {bases[1], "east", east}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		// A 503 is retried, as docker does: once in a CI run, right
		// after the cut westus's leader lost contact with its zones for
		// a moment and answered that it had no quorum.
		tries := 0
		var err error
		if perr := ociclient.Poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, error) {
			tries++
			err = oc.PushImage(ctx, p.base, "e2e/cut", p.tag, p.img)
			return !ociclient.IsStatus(err, http.StatusServiceUnavailable), err
		}); perr != nil {
			err = perr
		}
		cancel()
		if err != nil {
			t.Fatalf("push e2e/cut:%s through %s while westus is cut off (%d tries): %v", p.tag, p.base, tries, err)
		}
		t.Logf("e2e/cut:%s pushed through %s while westus is cut off in %v (%d tries)", p.tag, p.base, time.Since(start).Round(time.Millisecond), tries)
	}
	push("v3")
	// Long enough for the connections across the cut to find it out.
	if d := 10*time.Second - time.Since(cut); d > 0 {
		time.Sleep(d)
	}
	heal := time.Now()
	run(t, nil, "", georeg, "chaos", "heal", "--dir", dir)
	healed := time.Now()

	var imagesIn time.Duration
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var missing []string
		for _, r := range op.mesh.Regions {
			tag, img := "west", west
			if r.Name == "westus" {
				tag, img = "east", east
			}
			for _, n := range r.Zones {
				if !op.holds(ctx, n, "e2e/cut", tag, img) {
					missing = append(missing, n.Name()+" e2e/cut:"+tag)
				}
			}
		}
		cancel()
		if len(missing) == 0 {
			imagesIn = time.Since(healed)
			break
		}
		if time.Since(healed) > 2*time.Minute {
			t.Fatalf("2m after the heal, still missing: %v", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rm, _, err := op.waitConverged(2 * time.Minute)
	mapsIn := time.Since(healed)
	ok, failed, slowest := pulls.halt()
	halted = true
	if err != nil {
		t.Fatalf("not converged 2m after the heal: %v", err)
	}
	t.Logf("westus cut off for %v (partition took %v, heal %v): %d pulls through the endpoint's westus and eastus locations, %d failed, slowest %v",
		healed.Sub(cut).Round(100*time.Millisecond), cutTook.Round(100*time.Millisecond), healed.Sub(heal).Round(100*time.Millisecond),
		ok+len(failed), len(failed), slowest.Round(time.Millisecond))
	// The heal reconnects one container at a time: replication across
	// the cut may resume before it returns.
	began := healed.Sub(heal)
	t.Logf("after the heal: each side's image in every zone of the other side in %v; every region the same %d tags of %d repositories in %v (%v and %v after the heal began)",
		imagesIn.Round(100*time.Millisecond), rm.Tags(), len(rm), mapsIn.Round(100*time.Millisecond),
		(imagesIn + began).Round(100*time.Millisecond), (mapsIn + began).Round(100*time.Millisecond))
	if len(failed) > 0 {
		t.Errorf("%d of %d pulls through the endpoint failed while westus was cut off:\n%s", len(failed), ok+len(failed),
			strings.Join(failed[:min(len(failed), 10)], "\n"))
	}
	if mapsIn > convergeBound {
		t.Errorf("the regions converged %v after the heal, want at most %v", mapsIn.Round(100*time.Millisecond), convergeBound)
	}
	for tag, d := range map[string]digest.Digest{"west": west.Digest, "east": east.Digest} {
		if rm["e2e/cut"][tag] != d {
			t.Errorf("e2e/cut:%s is %q in the agreed tag map, pushed %s", tag, rm["e2e/cut"][tag], d)
		}
	}
	if _, ok := rm["e2e/app"]["v3"]; !ok {
		t.Errorf("e2e/app:v3, pushed with docker while westus was cut off, is not in the agreed tag map")
	}
}

// replaced replaces a westus zone that is not the Raft leader with a new,
// empty container and volume (cluster replace), and checks that it
// repairs itself from the other zones: the same metadata and every blob
// its peer holds, in its own store, and every tag of the test's
// repositories pulled from it directly (its published port), each byte
// checked against its digest.
func replaced(t *testing.T, georeg, dir string, op operator, status func() chaos.Status) {
	t.Helper()
	zone := 2
	for _, r := range status().Regions {
		for _, z := range r.Zones {
			if r.Name == "westus" && z.RaftRole == "Follower" {
				zone = z.Zone
			}
		}
	}
	nodes := op.nodes("westus")
	node, peer := nodes[zone-1], nodes[zone%len(nodes)]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	want, tries, err := op.repoMapOf(ctx, peer)
	if err != nil {
		t.Fatalf("reading what %s serves before the replace (%d tries): %v", peer.Name(), tries, err)
	}
	if tries > 1 {
		t.Logf("%s served its tag map only at try %d", peer.Name(), tries)
	}

	start := time.Now()
	run(t, nil, "", georeg, "cluster", "replace", node.Name(), "--dir", dir, "--wait", "3m")
	up := time.Since(start)
	var held int
	for {
		missing, err := func() (int, error) {
			st, err := op.state(ctx, node)
			if err != nil {
				return 0, err
			}
			ps, err := op.state(ctx, peer)
			if err != nil {
				return 0, err
			}
			missing := 0
			for _, d := range ps.Blobs {
				if _, found := slices.BinarySearch(st.Blobs, d); !found {
					missing++
				}
			}
			if st.Meta != ps.Meta {
				return missing, fmt.Errorf("metadata %.19s at applied index %d, %s has %.19s at %d", st.Meta, st.AppliedIndex, peer.Name(), ps.Meta, ps.AppliedIndex)
			}
			held = len(st.Blobs)
			return missing, nil
		}()
		if err == nil && missing == 0 {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("%s not repaired 3m after cluster replace: %d blobs of %s missing; %v", node.Name(), missing, peer.Name(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	repaired := time.Since(start)

	got, tries, err := op.repoMapOf(ctx, node)
	if err != nil {
		t.Fatalf("reading what the replaced %s serves (%d tries): %v", node.Name(), tries, err)
	}
	if tries > 1 {
		t.Logf("the replaced %s served its tag map only at try %d", node.Name(), tries)
	}
	if got.String() != want.String() {
		t.Errorf("replaced %s serves\n%s\nbut %s served before\n%s", node.Name(), got, peer.Name(), want)
	}
	pulled := 0
	for repo, tags := range want {
		if !strings.HasPrefix(repo, testRepos) {
			continue
		}
		for tag, d := range tags {
			got, err := op.c.PullImage(ctx, node.URL(), repo, tag)
			if err != nil || got != d {
				t.Errorf("%s:%s from the replaced %s: %s %v, want %s", repo, tag, node.Name(), got, err, d)
				continue
			}
			pulled++
		}
	}
	t.Logf("cluster replace %s: new empty container healthy in %v; same metadata as %s and every blob it holds (%d) in its own store %v after the replace began; %d images pulled from it directly, every byte checked, in %v",
		node.Name(), up.Round(100*time.Millisecond), peer.Name(), held, repaired.Round(100*time.Millisecond), pulled,
		(time.Since(start) - repaired).Round(100*time.Millisecond))
}

// slowed measures how long a small image pushed to a westus zone directly
// (not through the endpoint, whose route for westus's clients may be
// another region on a busy host) takes to be listed in eastus, three times
// with nothing added to the network and three with `chaos latency westus
// eastus` at rtt, and checks that the latency shows: each replication then
// takes at least the one-way delay, rtt/2. It sets the latency back to 0
// before returning.
func slowed(t *testing.T, georeg, dir string, op operator, rtt time.Duration) {
	t.Helper()
	westus, eastus := op.nodes("westus")[0], op.nodes("eastus")[0]
	replicate := func(round string) []time.Duration {
		t.Helper()
		var took []time.Duration
		for i := range 3 {
			tag := fmt.Sprintf("%s-%d", round, i)
			img := ociclient.NewImage("e2e/slow:"+tag, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(uint64(time.Now().UnixNano()), 4<<10)))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := op.c.PushImage(ctx, westus.URL(), "e2e/slow", tag, img); err != nil {
				cancel()
				t.Fatalf("push e2e/slow:%s: %v", tag, err)
			}
			acked := time.Now()
			for {
				if ok, _ := op.c.HasTag(ctx, eastus.URL(), "e2e/slow", tag); ok {
					took = append(took, time.Since(acked))
					break
				}
				if ctx.Err() != nil {
					cancel()
					t.Fatalf("e2e/slow:%s not in %s a minute after its push", tag, eastus.Name())
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
		}
		slices.Sort(took)
		return took
	}
	before := replicate("plain")
	start := time.Now()
	run(t, nil, "", georeg, "chaos", "latency", "westus", "eastus", rtt.String(), "--dir", dir)
	set := time.Since(start)
	// The nodes read the file every 200 ms.
	time.Sleep(time.Second)
	with := replicate("slow")
	run(t, nil, "", georeg, "chaos", "latency", "westus", "eastus", "0s", "--dir", dir)
	round := func(ds []time.Duration) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = d.Round(time.Millisecond)
		}
		return out
	}
	t.Logf("chaos latency westus eastus %v (set in every zone container in %v): a push to %s listed in %s %v after its acknowledgement, %v without",
		rtt, set.Round(100*time.Millisecond), westus.Name(), eastus.Name(), round(with), round(before))
	if with[0] < rtt/2 {
		t.Errorf("with %v between westus and eastus, a push reached eastus in %v, less than the one-way delay", rtt, with[0])
	}
}
