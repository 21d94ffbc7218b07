package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// workload is the content and the settings of one comparison. Its content is
// deterministic: every target gets the same bytes for the same run.
type workload struct {
	layerSize  int // bytes per layer of the big image
	layers     int // layers of the big image
	small      int // number of small images
	smallSize  int // bytes of each small image's layer
	parallel   int // concurrent uploads and downloads
	smallRepos int // small images are spread over this many repositories
	seed       uint64
	big        []byte // layers*layerSize random bytes shared by every run
}

// newWorkload generates the big image's bytes once. They come from a seeded
// ChaCha8 stream, so they are incompressible and the same in every run of
// the program.
func newWorkload(layerSize, layers, small, parallel int) *workload {
	w := &workload{
		layerSize:  layerSize,
		layers:     layers,
		small:      small,
		smallSize:  1 << 10,
		parallel:   parallel,
		smallRepos: 10,
		seed:       0x6765_6f72_6567, // "georeg"
	}
	w.big = make([]byte, layers*layerSize)
	rand.NewChaCha8(w.key(0, 0)).Read(w.big)
	return w
}

// key derives a ChaCha8 key from the workload seed and two numbers.
func (w *workload) key(a, b uint64) [32]byte {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[0:], w.seed)
	binary.LittleEndian.PutUint64(k[8:], a)
	binary.LittleEndian.PutUint64(k[16:], b)
	return k
}

// bigImage returns the big image of run r. Each layer is a slice of the
// shared random bytes with its first 16 bytes replaced by (run, layer), so
// every run pushes layers that no registry holds yet and that are identical
// for every target.
func (w *workload) bigImage(r int) (image, error) {
	layers := make([]blob, w.layers)
	err := forEach(context.Background(), w.layers, w.parallel, func(_ context.Context, i int) error {
		stamp := make([]byte, 16)
		binary.BigEndian.PutUint64(stamp[0:], uint64(r))
		binary.BigEndian.PutUint64(stamp[8:], uint64(i))
		layer := w.big[i*w.layerSize : (i+1)*w.layerSize]
		layers[i] = newBlob(stamp, layer[len(stamp):])
		return nil
	})
	if err != nil {
		return image{}, err
	}
	return newImage("bench/big", fmt.Sprintf("run%d", r), layers)
}

// smallImages returns the n small images of run r, each with a unique random
// layer.
func (w *workload) smallImages(r, n int) ([]image, error) {
	imgs := make([]image, n)
	for i := range imgs {
		layer := make([]byte, w.smallSize)
		rand.NewChaCha8(w.key(uint64(r)+1, uint64(i)+1)).Read(layer)
		repo := fmt.Sprintf("bench/small/run%d-%d", r, i%w.smallRepos)
		img, err := newImage(repo, fmt.Sprintf("img%d", i), []blob{newBlob(nil, layer)})
		if err != nil {
			return nil, err
		}
		imgs[i] = img
	}
	return imgs, nil
}

// measurement is what one run of the workload measured on one target.
type measurement struct {
	BigBytes int64         `json:"big_bytes"`
	BigPush  time.Duration `json:"big_push_ns"`
	BigPull  time.Duration `json:"big_pull_ns"`
	// BigPushAll is the time from the start of the big image's push until
	// every node held all its blobs, not only the majority that
	// acknowledged it; zero when not measured.
	BigPushAll time.Duration `json:"big_push_all_ns,omitempty"`
	// BigPullSpread is the big image pulled again with its blobs spread
	// round-robin over every node of the target; zero when not measured.
	BigPullSpread time.Duration   `json:"big_pull_spread_ns,omitempty"`
	SmallPush     time.Duration   `json:"small_push_ns"`
	SmallPull     time.Duration   `json:"small_pull_ns"`
	ManifestGET   []time.Duration `json:"manifest_get_ns"`
}

// phase is one timed step of a run. It records what it measured in m and
// relies on the phases before it having run on the same target (a pull
// needs its push).
type phase struct {
	name string
	run  func(ctx context.Context, c *client, w *workload, big image, small []image, m *measurement) error
}

// phases returns the steps of a run, in order: push and pull the big image,
// push and pull the small images, then GET each small image's manifest by
// tag, one at a time, timing each request until its body is read. With
// spread, which a comparison sets when a target has several nodes, the big
// image's push is also timed until every node holds it, and the image is
// pulled a second time with its blobs spread over every node.
func phases(spread bool) []phase {
	ps := []phase{
		{"push big image", func(ctx context.Context, c *client, w *workload, big image, _ []image, m *measurement) error {
			start := time.Now()
			err := c.pushImage(ctx, big, w.parallel)
			m.BigBytes, m.BigPush = big.size(), time.Since(start)
			if err != nil || !spread {
				return err
			}
			if len(c.nodes) > 1 {
				if err := c.waitHeld(ctx, big.blobDigests()); err != nil {
					return err
				}
			}
			m.BigPushAll = time.Since(start)
			return nil
		}},
		{"pull big image", func(ctx context.Context, c *client, w *workload, big image, _ []image, m *measurement) error {
			start := time.Now()
			err := c.pullImage(ctx, big.repo, big.tag, big.manifest.digest, w.parallel)
			m.BigPull = time.Since(start)
			return err
		}},
		{"push small images", func(ctx context.Context, c *client, w *workload, _ image, small []image, m *measurement) error {
			start := time.Now()
			err := forEach(ctx, len(small), w.parallel, func(ctx context.Context, i int) error {
				return c.pushImage(ctx, small[i], 1)
			})
			m.SmallPush = time.Since(start)
			return err
		}},
		{"pull small images", func(ctx context.Context, c *client, w *workload, _ image, small []image, m *measurement) error {
			start := time.Now()
			err := forEach(ctx, len(small), w.parallel, func(ctx context.Context, i int) error {
				return c.pullImage(ctx, small[i].repo, small[i].tag, small[i].manifest.digest, 1)
			})
			m.SmallPull = time.Since(start)
			return err
		}},
		{"GET manifests by tag", func(ctx context.Context, c *client, _ *workload, _ image, small []image, m *measurement) error {
			m.ManifestGET = make([]time.Duration, len(small))
			for i, img := range small {
				start := time.Now()
				b, err := c.getManifest(ctx, img.repo, img.tag)
				m.ManifestGET[i] = time.Since(start)
				if err != nil {
					return err
				}
				if got := newBlob(nil, b).digest; got != img.manifest.digest {
					return fmt.Errorf("manifest %s:%s is %s, want %s: %w", img.repo, img.tag, got, img.manifest.digest, errDigestMismatch)
				}
			}
			return nil
		}},
	}
	if spread {
		ps = slices.Insert(ps, 2, phase{"pull big image from every node", func(ctx context.Context, c *client, w *workload, big image, _ []image, m *measurement) error {
			start := time.Now()
			err := c.pullImageFrom(ctx, c.nodes, big.repo, big.tag, big.manifest.digest, w.parallel)
			m.BigPullSpread = time.Since(start)
			return err
		}})
	}
	return ps
}

// warmUp brings a fresh target to steady state before anything is timed:
// connections open, caches and lazily built structures filled, a blob of a
// big layer's size written and read.
func warmUp(ctx context.Context, c *client, w *workload, spread bool) error {
	big, err := w.bigImage(0)
	if err != nil {
		return err
	}
	big.repo, big.layers = "bench/warmup", big.layers[:1]
	if big, err = newImage(big.repo, big.tag, big.layers); err != nil {
		return err
	}
	small, err := w.smallImages(0, min(w.small, 50))
	if err != nil {
		return err
	}
	for i := range small {
		small[i].repo = "bench/warmup"
	}
	var m measurement
	for _, p := range phases(spread) {
		if err := p.run(ctx, c, w, big, small, &m); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}
