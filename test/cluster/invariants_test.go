package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/test/ociclient"
)

// operator is what the test reads the cluster with, node by node: the
// mesh the cluster wrote and a client with the admin token, whose scope
// map lets it ask a node for its state (GET /_georeg/state).
type operator struct {
	mesh *chaos.Mesh
	c    *ociclient.Client
}

// nodes returns a region's zone nodes.
func (o operator) nodes(region string) []chaos.Node {
	for _, r := range o.mesh.Regions {
		if r.Name == region {
			return r.Zones
		}
	}
	return nil
}

// nodeState is the part of a node's GET /_georeg/state the test reads.
type nodeState struct {
	Meta         digest.Digest   `json:"meta"`
	AppliedIndex uint64          `json:"appliedIndex"`
	Blobs        []digest.Digest `json:"blobs"`
}

func (o operator) state(ctx context.Context, n chaos.Node) (nodeState, error) {
	var st nodeState
	_, body, err := o.c.Do(ctx, http.MethodGet, n.URL(), "/_georeg/state", nil, nil, http.StatusOK)
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	if err != nil {
		return st, fmt.Errorf("%s: state: %w", n.Name(), err)
	}
	return st, nil
}

// repoMap returns what node n serves: repository, tag, manifest digest
// (checked against the bytes), the conformance suite's repositories
// included. A repository without tags is left out, as make chaos's
// checker does: its catalog entry is not a tag (a region that received a
// repository's blobs or untagged manifests by replication lists it, the
// region that took the push may not).
func (o operator) repoMap(ctx context.Context, n chaos.Node) (ociclient.RepoMap, error) {
	repos, err := o.c.List(ctx, n.URL(), "/v2/_catalog", "repositories")
	if err != nil {
		return nil, fmt.Errorf("%s: catalog: %w", n.Name(), err)
	}
	out := ociclient.RepoMap{}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
		// A few requests at a time: a poll of three regions' maps
		// stays short without crowding the nodes.
		slots = make(chan struct{}, 8)
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	for _, repo := range repos {
		tags, err := o.c.Tags(ctx, n.URL(), repo)
		if err != nil {
			return nil, fmt.Errorf("%s: tags of %s: %w", n.Name(), repo, err)
		}
		if len(tags) == 0 {
			continue
		}
		held := map[string]digest.Digest{}
		mu.Lock()
		out[repo] = held
		mu.Unlock()
		for _, tag := range tags {
			wg.Add(1)
			slots <- struct{}{}
			go func() {
				defer func() { <-slots; wg.Done() }()
				d, _, err := o.c.GetManifest(ctx, n.URL(), repo, tag)
				if err != nil {
					fail(fmt.Errorf("%s lists %s:%s: %w", n.Name(), repo, tag, err))
					return
				}
				mu.Lock()
				held[tag] = d
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out, first
}

// repoMapOf is repoMap read again, for up to a minute, while it fails
// with a 503 or a broken connection: a node may answer 503 for a moment
// while its region settles after a fault (a zone's reads wait on the
// leader's commit index). Any other error (a listed tag whose manifest is
// missing, say) is returned at once. It returns how many tries it took.
func (o operator) repoMapOf(ctx context.Context, n chaos.Node) (ociclient.RepoMap, int, error) {
	deadline := time.Now().Add(time.Minute)
	for tries := 1; ; tries++ {
		rm, err := o.repoMap(ctx, n)
		var ne net.Error
		transient := ociclient.IsStatus(err, http.StatusServiceUnavailable) || errors.As(err, &ne)
		if err == nil || !transient || time.Now().After(deadline) {
			return rm, tries, err
		}
		select {
		case <-ctx.Done():
			return rm, tries, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// converged checks once that every node of a region holds the same
// metadata (its digest) and every region serves the same tag map, and
// returns that map.
func (o operator) converged(ctx context.Context) (ociclient.RepoMap, error) {
	maps := make([]ociclient.RepoMap, len(o.mesh.Regions))
	errs := make([]error, len(o.mesh.Regions))
	var wg sync.WaitGroup
	for i, r := range o.mesh.Regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var first digest.Digest
			for _, n := range r.Zones {
				st, err := o.state(ctx, n)
				if err != nil {
					errs[i] = err
					return
				}
				if first == "" {
					first = st.Meta
				} else if st.Meta != first {
					errs[i] = fmt.Errorf("the zones of %s hold different metadata (%s: %.19s, zone 1: %.19s)", r.Name, n.Name(), st.Meta, first)
					return
				}
			}
			maps[i], errs[i] = o.repoMap(ctx, r.Zones[0])
		}()
	}
	wg.Wait()
	for i := range maps {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if i > 0 && maps[i].String() != maps[0].String() {
			return nil, fmt.Errorf("%s serves\n%s\nbut %s serves\n%s", o.mesh.Regions[0].Name, maps[0], o.mesh.Regions[i].Name, maps[i])
		}
	}
	return maps[0], nil
}

// waitConverged polls converged until it holds or timeout passes, and
// returns the agreed map and how long it took.
func (o operator) waitConverged(timeout time.Duration) (ociclient.RepoMap, time.Duration, error) {
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rm, err := o.converged(ctx)
		cancel()
		if err == nil {
			return rm, time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return nil, time.Since(start), err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// holds reports whether node n lists repo:tag, answers digest d for it and
// holds every blob of the image in its own store (HEAD never reads
// through to other regions).
func (o operator) holds(ctx context.Context, n chaos.Node, repo, tag string, img ociclient.Image) bool {
	has, err := o.c.HasTag(ctx, n.URL(), repo, tag)
	if err != nil || !has {
		return false
	}
	d, _, err := o.c.GetManifest(ctx, n.URL(), repo, tag)
	if err != nil || d != img.Digest {
		return false
	}
	for _, b := range append([]ociclient.Blob{img.Config}, img.Layers...) {
		if ok, err := o.c.HasBlob(ctx, n.URL(), repo, b.Digest); err != nil || !ok {
			return false
		}
	}
	return true
}

// pullLoop pulls images by digest through the endpoint's locations, one
// after another, until stopped, checking every byte, and counts the pulls
// that succeeded and failed.
type pullLoop struct {
	c      *ociclient.Client
	bases  []string          // https://HOST of each location
	images map[string]string // digest: repository

	mu      sync.Mutex
	ok      int
	failed  []string
	slowest time.Duration
	stop    chan struct{}
	done    chan struct{}
}

func startPullLoop(c *ociclient.Client, bases []string, images map[string]string) *pullLoop {
	l := &pullLoop{c: c, bases: bases, images: images, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *pullLoop) run() {
	defer close(l.done)
	refs := slices.Sorted(func(yield func(string) bool) {
		for d := range l.images {
			if !yield(d) {
				return
			}
		}
	})
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		base, d := l.bases[i%len(l.bases)], refs[(i/len(l.bases))%len(refs)]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		got, err := l.c.PullImage(ctx, base, l.images[d], d)
		took := time.Since(start)
		cancel()
		if err == nil && got.String() != d {
			err = fmt.Errorf("pulled %s, want %s", got, d)
		}
		l.mu.Lock()
		l.slowest = max(l.slowest, took)
		if err != nil {
			l.failed = append(l.failed, fmt.Sprintf("%s %s@%.19s after %v: %v", base, l.images[d], d, took.Round(time.Millisecond), err))
		} else {
			l.ok++
		}
		l.mu.Unlock()
	}
}

// halt stops the loop, waits for its pull in flight and returns its
// figures.
func (l *pullLoop) halt() (ok int, failed []string, slowest time.Duration) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failed, l.slowest
}
