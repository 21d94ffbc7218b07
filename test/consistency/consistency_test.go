package consistency

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// The sizes of the two runs: every endpoint gets about pairs/6 writes.
const (
	endpointPairs = 1000
	followerPairs = 300
)

// region is where the clients of the mesh's endpoint are, and so the region
// whose zones the endpoint spreads their requests over.
const region = "westus"

// TestReadYourWrites writes and reads back at once, for every read
// endpoint, first through the mesh endpoint and then directly at a follower
// node with the writes going through the region's other zones (see the
// package documentation).
func TestReadYourWrites(t *testing.T) {
	start := time.Now()
	m := harness.StartMesh(t)
	t.Logf("mesh: 3 regions x 3 zones and the traffic manager up in %v", time.Since(start).Round(time.Millisecond))
	c := m.Client(30 * time.Second)
	zones := m.RegionNodes(region)
	if len(zones) != 3 {
		t.Fatalf("mesh up with no flags: want 3 zones in %s, got %v", region, m.Nodes)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "consistency-" + hex.EncodeToString(id[:])

	t.Run("endpoint", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		roles := raftRoles(ctx, t, m, zones)
		run(ctx, t, c, plan{
			prefix:   prefix + "/endpoint",
			pairs:    endpointPairs,
			writeVia: []string{m.URL()},
			readVia:  m.URL(),
			roles:    roles,
		})
	})
	t.Run("follower", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		roles := raftRoles(ctx, t, m, zones)
		var follower string
		var others []string
		for _, z := range zones {
			if follower == "" && roles[zoneName(z.Zone)] == "Follower" {
				follower = "http://" + z.HTTP
			} else {
				others = append(others, "http://"+z.HTTP)
			}
		}
		if follower == "" {
			t.Fatalf("no zone of %s is a Raft follower: %v", region, roles)
		}
		t.Logf("reads at the follower %s, writes in turn through %s", follower, strings.Join(others, " and "))
		run(ctx, t, c, plan{
			prefix:   prefix + "/follower",
			pairs:    followerPairs,
			writeVia: others,
			readVia:  follower,
			roles:    roles,
		})
	})
}

// plan is one run of write-then-read pairs.
type plan struct {
	// prefix is the run's own repository prefix.
	prefix string
	// pairs is the number of writes, each followed by two reads.
	pairs int
	// writeVia are the base URLs the writes go through, in turn (write v
	// of each endpoint through writeVia[v%len(writeVia)]).
	writeVia []string
	// readVia is the base URL the reads go to.
	readVia string
	// roles maps a zone ("westus/1") to its Raft state when the run
	// started, for the report.
	roles map[string]string
}

// tally counts what the reads of one endpoint showed.
type tally struct {
	endpoint string
	pairs    int
	reads    int
	// stale counts reads that did not show the write just acknowledged;
	// regressions those that showed less than an earlier read.
	stale, regressions, errors int
	// seen is the highest version a read has shown.
	seen int
	// retries counts writes and reads made again after a 503.
	retries int
	// bad counts stale reads and regressions by where the write was
	// acknowledged and where the read was answered ("westus/1 -> westus/2").
	bad map[string]int
	// examples are the first stale answers, regressions and errors.
	examples []string
	shown    map[string]int
}

// maxExamples is how many stale answers, regressions and errors each the
// failure report shows per endpoint.
const maxExamples = 2

// example keeps a description of a read that went wrong in a way named by
// kind, unless maxExamples of that kind are kept already.
func (tl *tally) example(kind, format string, args ...any) {
	if tl.shown[kind] < maxExamples {
		tl.shown[kind]++
		tl.examples = append(tl.examples, kind+": "+fmt.Sprintf(format, args...))
	}
}

// tries is how many times a request answered 503 is made: a region refuses
// writes for a moment while it elects a Raft leader, which a loaded machine
// can make it do, and a node may refuse a read it cannot answer up to date.
// Neither is an answer to judge: a refused write is not acknowledged.
const tries = 20

// retry calls f, again after 503 answers (every write is idempotent), and
// returns its last result and how many times it was made again.
func retry[T any](ctx context.Context, f func() (T, error)) (T, int, error) {
	for try := 1; ; try++ {
		v, err := f()
		if !ociclient.IsStatus(err, http.StatusServiceUnavailable) || try == tries {
			return v, try - 1, err
		}
		// A pause after a refusal, never between an acknowledged write
		// and its reads.
		select {
		case <-ctx.Done():
			return v, try - 1, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// run makes p.pairs writes, visiting the endpoints in turn, reads each
// endpoint twice right after its write, and fails t with a summary when a
// read was stale, went back, or failed.
func run(ctx context.Context, t *testing.T, c *ociclient.Client, p plan) {
	t.Helper()
	streams := make([]stream, len(endpoints))
	tallies := make([]*tally, len(endpoints))
	for i, e := range endpoints {
		streams[i] = e.new(c, p.prefix)
		tallies[i] = &tally{endpoint: e.name, bad: map[string]int{}, shown: map[string]int{}}
		_, _, err := retry(ctx, func() (struct{}, error) { return struct{}{}, streams[i].setup(ctx, p.writeVia[0]) })
		if err != nil {
			t.Fatalf("%s: setup through %s: %v", e.name, p.writeVia[0], err)
		}
	}
	readsBy := map[string]int{}
	start := time.Now()
	for i := range p.pairs {
		k, v := i%len(endpoints), i/len(endpoints)+1
		s, tl := streams[k], tallies[k]
		via := p.writeVia[v%len(p.writeVia)]
		resp, retries, err := retry(ctx, func() (*http.Response, error) { return s.write(ctx, via, v) })
		tl.retries += retries
		if err != nil {
			t.Fatalf("pair %d: %s: write %d through %s: %v", i+1, tl.endpoint, v, via, err)
		}
		wrote := joinZone("", resp)
		tl.pairs++
		for read := 1; read <= 2; read++ {
			a, retries, err := retry(ctx, func() (answer, error) { return s.read(ctx, p.readVia) })
			tl.reads++
			tl.retries += retries
			if a.by == "" {
				a.by = "no answer"
			}
			readsBy[a.by]++
			if err != nil {
				tl.errors++
				tl.example("error", "pair %d: read %d after write %d (acknowledged by %s) answered by %s: %v", i+1, read, v, wrote, a.by, err)
				continue
			}
			if a.version < v {
				tl.stale++
				tl.example("stale", "pair %d: read %d after write %d (acknowledged by %s) answered by %s shows %s", i+1, read, v, wrote, a.by, a.what)
			}
			if a.version < tl.seen {
				tl.regressions++
				tl.example("regression", "pair %d: read %d after write %d (acknowledged by %s) answered by %s shows version %d after an earlier read showed %d: %s", i+1, read, v, wrote, a.by, a.version, tl.seen, a.what)
			}
			if a.version < v || a.version < tl.seen {
				tl.bad[wrote+" -> "+a.by]++
			}
			tl.seen = max(tl.seen, a.version)
		}
	}
	took := time.Since(start)

	var total tally
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "endpoint\tpairs\treads\t503 retries\tstale\tregressions\terrors\tstale or regressed, by write -> read zone")
	for _, tl := range tallies {
		var by []string
		for _, route := range slices.Sorted(maps.Keys(tl.bad)) {
			by = append(by, fmt.Sprintf("%s: %d", route, tl.bad[route]))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", tl.endpoint, tl.pairs, tl.reads, tl.retries, tl.stale, tl.regressions, tl.errors, strings.Join(by, ", "))
		total.pairs += tl.pairs
		total.retries += tl.retries
		total.reads += tl.reads
		total.stale += tl.stale
		total.regressions += tl.regressions
		total.errors += tl.errors
	}
	fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%d\t%d\t\n", total.pairs, total.reads, total.retries, total.stale, total.regressions, total.errors)
	tw.Flush()
	t.Logf("read-your-writes (%s): %d pairs, %d reads in %v (%.0f pairs/s): %d stale answers, %d regressions, %d errors; Raft roles at the start: %s; reads answered by: %s\n%s",
		p.prefix, total.pairs, total.reads, took.Round(time.Millisecond), float64(total.pairs)/took.Seconds(),
		total.stale, total.regressions, total.errors, counts(p.roles), counts(readsBy), table.String())
	if total.stale+total.regressions+total.errors == 0 {
		return
	}
	var ex strings.Builder
	for _, tl := range tallies {
		for _, e := range tl.examples {
			fmt.Fprintf(&ex, "\n  %s: %s", tl.endpoint, e)
		}
	}
	t.Errorf("a client did not read its own writes: %d stale answers (read-your-writes) and %d regressions (monotonic reads) in %d reads after %d writes, %d failed reads (table above); first examples:%s",
		total.stale, total.regressions, total.reads, total.pairs, total.errors, ex.String())
}

// counts formats a map as "k1 v1, k2 v2" in key order.
func counts[V any](m map[string]V) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s %v", k, m[k]))
	}
	return strings.Join(out, ", ")
}

// zoneName names a zone of region as the Georeg-Region and Georeg-Zone
// headers do.
func zoneName(zone int) string { return region + "/" + strconv.Itoa(zone) }

// raftRoles waits until one zone reports itself the Raft leader and returns
// every zone's Raft state.
func raftRoles(ctx context.Context, t *testing.T, m *harness.Mesh, zones []harness.Node) map[string]string {
	t.Helper()
	var roles map[string]string
	err := ociclient.Poll(ctx, 20*time.Second, 100*time.Millisecond, func() (bool, error) {
		roles = map[string]string{}
		leaders := 0
		for _, z := range zones {
			st, err := m.NodeStatus(ctx, z)
			if err != nil {
				return false, fmt.Errorf("%s/_georeg/status: %w", z.HTTP, err)
			}
			roles[zoneName(z.Zone)] = st.Raft.State
			if st.Raft.State == "Leader" {
				leaders++
			}
		}
		return leaders == 1, fmt.Errorf("Raft states %v", roles)
	})
	harness.Must(t, err)
	return roles
}
