package chaos

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/georeg/georeg/test/ociclient"
)

// slowLink caps the westus-eastus link while 256 MiB images are pushed
// through westus: replication to eastus crawls at the cap but finishes
// without restarting transfers, and nothing else fails.
func slowLink(full bool) Scenario {
	images, layers, layerSize, rate := 2, 4, 64<<20, "30MB/s"
	if !full {
		images, layers, layerSize = 1, 2, 8<<20
	}
	size := layers * layerSize
	return Scenario{
		Name:   "slow-link",
		Fault:  fmt.Sprintf("westus-eastus capped at %s while %d images of %d MiB are pushed through westus", rate, images, size>>20),
		Target: "every push acknowledged; eastus receives every byte once; no failed pull",
		Load:   &WorkloadConfig{Seed: 10, Pushers: 1, Pullers: 1},
		Inject: func(ctx context.Context, r *Run) error {
			if err := r.Chaos(ctx, "bandwidth", "westus", "eastus", rate); err != nil {
				return err
			}
			var big []ociclient.Image
			pushed := time.Now()
			for i := range images {
				var ls []ociclient.Blob
				for j := range layers {
					ls = append(ls, ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(uint64(10_000+i*100+j), layerSize)))
				}
				img := ociclient.NewImage(fmt.Sprintf("big-%d", i), ls...)
				op := r.Client.Push(ctx, PushSpec{Kind: OpPush, Location: "westus", Repo: "big/app", Tag: fmt.Sprintf("v%d", i), Blobs: img.Blobs(), Manifest: img.Manifest})
				if !op.Acked {
					r.Missf("push of %d MiB image %d: %s", size>>20, i, op.Err)
				}
				big = append(big, img)
			}
			r.Notef("%d x %d MiB pushed through westus in %v", images, size>>20, time.Since(pushed).Round(time.Millisecond))
			// eastus must get them across the capped link before the cap
			// is lifted.
			east := r.Mesh.RegionNodes("eastus")[0]
			err := ociclient.Poll(ctx, 5*time.Minute, 500*time.Millisecond, func() (bool, error) {
				for _, img := range big {
					for _, b := range img.Blobs() {
						resp, _, err := r.Mesh.c.Do(ctx, http.MethodHead, east.URL(), "/v2/big/app/blobs/"+b.Digest.String(), nil, nil, http.StatusOK)
						if err != nil || resp.StatusCode != http.StatusOK {
							return false, fmt.Errorf("eastus lacks %.19s: %v", b.Digest, err)
						}
					}
				}
				return true, nil
			})
			if err != nil {
				r.Missf("the big images did not reach eastus over the capped link: %v", err)
			} else {
				took := time.Since(pushed)
				r.Notef("eastus held every big blob %v after the pushes began (%.1f MB/s over the capped link)", took.Round(time.Millisecond),
					float64(images*size)/1e6/took.Seconds())
			}
			return r.Chaos(ctx, "bandwidth", "westus", "eastus", "off")
		},
		Verify: func(ctx context.Context, r *Run) {
			checkReplicationBytes(ctx, r, 1.1)
		},
	}
}
