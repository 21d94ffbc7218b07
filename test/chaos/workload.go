package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// PullScope says which acknowledged images a puller may ask for.
type PullScope int

const (
	// PullAny pulls images pushed through any location.
	PullAny PullScope = iota
	// PullOwn pulls only images pushed through the puller's own location:
	// the scope for scenarios that cut regions apart, where another
	// side's image is rightly unreachable until the cut heals.
	PullOwn
)

// WorkloadConfig configures the background workload. The zero value of each
// field takes the default in its comment.
type WorkloadConfig struct {
	// Locations are the client locations the workload runs in (default:
	// every location of the mesh).
	Locations []string
	// Pushers and Pullers are the concurrent writers and readers per
	// location (default 1 and 2; -1 for none).
	Pushers, Pullers int
	// MaxPushes stops each pusher after that many writes (0: until the
	// workload is stopped).
	MaxPushes int
	// Repos is the number of repositories written (default 3), named
	// RepoPrefix and a number (default "chaos/app": chaos/app0, ...).
	Repos      int
	RepoPrefix string
	// BaseLayers is the number of layers shared by images (default 4), of
	// BaseLayerSize bytes each (default 48 KiB); each image takes one or
	// two of them.
	BaseLayers, BaseLayerSize int
	// UniqueLayerSize is the size of each image's own layer (default
	// 16 KiB).
	UniqueLayerSize int
	// OverwriteRatio, DeleteRatio and ReferrerRatio are the shares of
	// writes that push to a shared tag, delete a tag, and push a referrer
	// (defaults 0.2, 0.05, 0.1; -1 for none). The rest push new tags.
	OverwriteRatio, DeleteRatio, ReferrerRatio float64
	// ChunkedEvery uploads every n-th image's blobs in sessions (default 3;
	// -1 for never).
	ChunkedEvery int
	// GeoDurability is sent with every manifest push when above 0, so an
	// acknowledged image survives the loss of a whole region.
	GeoDurability int
	// PullScope is which images pullers ask for.
	PullScope PullScope
	// PullDelay leaves images alone for that long after their push was
	// acknowledged (default 300 ms).
	PullDelay time.Duration
	// Pace is each puller's pause between operations (default 40 ms), so
	// that two cores keep up with every node.
	Pace time.Duration
	// PushPace is each pusher's pause between writes (default 150 ms).
	// Replication offers a region's writes to each peer one at a time, a
	// WAN round trip or two each, so faster writers only build a backlog
	// that lengthens every scenario's convergence.
	PushPace time.Duration
	// Seed makes the images and choices of a run reproducible.
	Seed uint64
}

func (c WorkloadConfig) withDefaults(m *Mesh) WorkloadConfig {
	if len(c.Locations) == 0 {
		c.Locations = m.LocationNames()
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		} else if *v < 0 {
			*v = 0
		}
	}
	def(&c.Pushers, 1)
	def(&c.Pullers, 2)
	def(&c.Repos, 3)
	if c.RepoPrefix == "" {
		c.RepoPrefix = "chaos/app"
	}
	def(&c.BaseLayers, 4)
	def(&c.BaseLayerSize, 48<<10)
	def(&c.UniqueLayerSize, 16<<10)
	def(&c.ChunkedEvery, 3)
	deff := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		} else if *v < 0 {
			*v = 0
		}
	}
	deff(&c.OverwriteRatio, 0.2)
	deff(&c.DeleteRatio, 0.05)
	deff(&c.ReferrerRatio, 0.1)
	if c.PullDelay == 0 {
		c.PullDelay = 300 * time.Millisecond
	}
	if c.Pace == 0 {
		c.Pace = 40 * time.Millisecond
	}
	if c.PushPace == 0 {
		c.PushPace = 150 * time.Millisecond
	}
	return c
}

// acked is an acknowledged image a puller may fetch.
type acked struct {
	loc, repo, tag string
	digest         digest.Digest
	size           int64 // of the manifest
	at             time.Time
	referred       bool
}

// Workload is the background load of a scenario: pushers and pullers at
// every client location, every operation recorded.
type Workload struct {
	cfg  WorkloadConfig
	rc   *Recorder
	base []ociclient.Blob
	seq  atomic.Uint64

	mu     sync.Mutex
	images []*acked
	// sharedAt maps "repo:tag" of a shared (overwritten) tag to the
	// locations that have acknowledged a write to it.
	sharedAt map[string]map[string]bool
}

// NewWorkload returns a workload over rc configured by cfg.
func NewWorkload(m *Mesh, rc *Recorder, cfg WorkloadConfig) *Workload {
	cfg = cfg.withDefaults(m)
	w := &Workload{cfg: cfg, rc: rc, sharedAt: map[string]map[string]bool{}}
	for i := range cfg.BaseLayers {
		w.base = append(w.base, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(cfg.Seed<<16+uint64(i)+1, cfg.BaseLayerSize)))
	}
	return w
}

// Image returns a new image unique to the workload: one or two shared base
// layers and a layer of its own.
func (w *Workload) Image(rng *rand.Rand) ociclient.Image {
	n := w.seq.Add(1)
	var layers []ociclient.Blob
	if len(w.base) > 0 {
		first := rng.IntN(len(w.base))
		layers = append(layers, w.base[first])
		if second := rng.IntN(len(w.base)); second != first && rng.IntN(2) == 0 {
			layers = append(layers, w.base[second])
		}
	}
	layers = append(layers, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(w.cfg.Seed<<32+n<<8+0x5a, w.cfg.UniqueLayerSize)))
	return ociclient.NewImage(fmt.Sprintf("chaos-%d-%d", w.cfg.Seed, n), layers...)
}

// ReferrerOf returns an artifact (a signature) whose manifest names the
// image manifest subject of subjectSize bytes, and the blobs to upload with
// it.
func ReferrerOf(subject digest.Digest, subjectSize int64, note string) (manifest []byte, blobs []ociclient.Blob) {
	empty := ociclient.NewBlob(mediaEmpty, []byte("{}"))
	sig := ociclient.NewBlob("application/octet-stream", []byte("signature of "+subject.String()+" "+note))
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociclient.MediaManifest,
		"artifactType":  artifactType,
		"config":        descriptor{MediaType: empty.MediaType, Digest: empty.Digest, Size: 2},
		"layers":        []descriptor{{MediaType: sig.MediaType, Digest: sig.Digest, Size: int64(len(sig.Data))}},
		"subject":       descriptor{MediaType: ociclient.MediaManifest, Digest: subject, Size: subjectSize},
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // strings and numbers always marshal
	}
	return b, []ociclient.Blob{empty, sig}
}

// isBase reports whether d is one of the shared base layers.
func (w *Workload) isBase(d digest.Digest) bool {
	for _, b := range w.base {
		if b.Digest == d {
			return true
		}
	}
	return false
}

func (w *Workload) repo(rng *rand.Rand) string {
	return fmt.Sprintf("%s%d", w.cfg.RepoPrefix, rng.IntN(w.cfg.Repos))
}

// PushNew pushes a new image under a new tag through loc, remembers it for
// the pullers when acknowledged, and returns the operation.
func (w *Workload) PushNew(ctx context.Context, loc string, rng *rand.Rand) Op {
	img := w.Image(rng)
	repo := w.repo(rng)
	tag := fmt.Sprintf("%s-%d", loc, w.seq.Load())
	return w.push(ctx, OpPush, loc, repo, tag, img, rng)
}

func (w *Workload) push(ctx context.Context, kind OpKind, loc, repo, tag string, img ociclient.Image, rng *rand.Rand) Op {
	op := w.rc.Push(ctx, PushSpec{
		Kind: kind, Location: loc, Repo: repo, Tag: tag, Blobs: img.Blobs(), Manifest: img.Manifest,
		Chunked:       w.cfg.ChunkedEvery > 0 && rng.IntN(w.cfg.ChunkedEvery) == 0,
		GeoDurability: w.cfg.GeoDurability,
	})
	if op.Acked {
		w.mu.Lock()
		w.images = append(w.images, &acked{loc: loc, repo: repo, tag: tag, digest: img.Digest, size: int64(len(img.Manifest)), at: op.End})
		if kind == OpOverwrite {
			k := repo + ":" + tag
			if w.sharedAt[k] == nil {
				w.sharedAt[k] = map[string]bool{}
			}
			w.sharedAt[k][loc] = true
		}
		w.mu.Unlock()
	}
	return op
}

// Preload pushes n new images through every location of the workload, one
// after another, so that pullers have content from the start.
func (w *Workload) Preload(ctx context.Context, n int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 0xfeed))
	for i := range n {
		for _, loc := range w.cfg.Locations {
			if i%3 == 2 {
				img := w.Image(rng)
				w.push(ctx, OpOverwrite, loc, w.repo(rng), fmt.Sprintf("shared-%d", rng.IntN(3)), img, rng)
				continue
			}
			w.PushNew(ctx, loc, rng)
		}
	}
}

// Start runs the workload in the background until the returned stop
// function is called; stop lets every worker finish the operation it is in
// (operations are never cut short, so none fails because the test ended)
// and returns once all have.
func (w *Workload) Start(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for li, loc := range w.cfg.Locations {
		for i := range w.cfg.Pushers {
			rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(li*1000+i)))
			wg.Go(func() { w.pusher(ctx, loc, rng, done) })
		}
		for i := range w.cfg.Pullers {
			rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(li*1000+500+i)))
			wg.Go(func() { w.puller(ctx, loc, rng, done) })
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

func stopped(done <-chan struct{}, pace time.Duration) bool {
	t := time.NewTimer(pace)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (w *Workload) pusher(ctx context.Context, loc string, rng *rand.Rand, done <-chan struct{}) {
	var own []*acked // this pusher's new tags, which it may delete
	for n := 0; w.cfg.MaxPushes == 0 || n < w.cfg.MaxPushes; n++ {
		if stopped(done, w.cfg.PushPace) {
			return
		}
		r := rng.Float64()
		switch {
		case r < w.cfg.DeleteRatio && len(own) > 0:
			i := rng.IntN(len(own))
			a := own[i]
			own = append(own[:i], own[i+1:]...)
			w.rc.Delete(ctx, loc, a.repo, a.tag)
		case r < w.cfg.DeleteRatio+w.cfg.ReferrerRatio && len(own) > 0:
			a := own[rng.IntN(len(own))]
			if a.referred {
				continue
			}
			a.referred = true
			man, blobs := ReferrerOf(a.digest, a.size, loc)
			w.rc.Push(ctx, PushSpec{Kind: OpReferrer, Location: loc, Repo: a.repo, Blobs: blobs, Manifest: man,
				Subject: a.digest, GeoDurability: w.cfg.GeoDurability})
		case r < w.cfg.DeleteRatio+w.cfg.ReferrerRatio+w.cfg.OverwriteRatio:
			w.push(ctx, OpOverwrite, loc, w.repo(rng), fmt.Sprintf("shared-%d", rng.IntN(3)), w.Image(rng), rng)
		default:
			op := w.PushNew(ctx, loc, rng)
			if op.Acked {
				own = append(own, &acked{repo: op.Repo, tag: op.Tag, digest: op.Digest, size: op.ManifestSize})
			}
		}
	}
}

func (w *Workload) puller(ctx context.Context, loc string, rng *rand.Rand, done <-chan struct{}) {
	for {
		if stopped(done, w.cfg.Pace) {
			return
		}
		a, sharedTag := w.pick(loc, rng)
		switch {
		case a == nil:
		case sharedTag != "" && rng.IntN(8) == 0:
			w.rc.Pull(ctx, PullSpec{Kind: OpPullTag, Location: loc, Repo: a.repo, Ref: sharedTag})
		case rng.IntN(10) == 0:
			w.rc.Referrers(ctx, loc, a.repo, a.digest)
		default:
			w.rc.Pull(ctx, PullSpec{Kind: OpPull, Location: loc, Repo: a.repo, Ref: a.digest.String()})
		}
	}
}

// pick returns an acknowledged image loc may pull and, when there is one in
// the same repository, a shared tag loc's region is known to hold.
func (w *Workload) pick(loc string, rng *rand.Rand) (*acked, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cutoff := time.Now().Add(-w.cfg.PullDelay)
	for range 8 {
		if len(w.images) == 0 {
			return nil, ""
		}
		a := w.images[rng.IntN(len(w.images))]
		if a.at.After(cutoff) || (w.cfg.PullScope == PullOwn && a.loc != loc) {
			continue
		}
		tag := fmt.Sprintf("shared-%d", rng.IntN(3))
		if at := w.sharedAt[a.repo+":"+tag]; !at[loc] && (w.cfg.PullScope == PullOwn || len(at) == 0) {
			tag = ""
		}
		return a, tag
	}
	return nil, ""
}
