package chaos

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// byteFlip flips one byte in zone 2's copy of some blobs (a base layer
// every image shares and a few images' own layers) under load, then pulls
// those images from zone 2 directly as well: zone 2 must never serve the
// damaged bytes, must fetch a good copy from another zone, and every
// damaged file must be repaired (read repair or the repairer's pass).
func byteFlip(full bool) Scenario {
	victims := 4
	if !full {
		victims = 3
	}
	return Scenario{
		Name:    "byte-flip",
		Fault:   fmt.Sprintf("one byte flipped in zone 2's copy of %d blobs of westus (one base layer shared by many images)", victims),
		Target:  "no bad byte served, through the endpoint or by zone 2 directly; every damaged copy repaired",
		Regions: []string{"westus"},
		Zones:   3,
		Short:   true,
		Load:    &WorkloadConfig{Seed: 11},
		Preload: 4,
		Inject: func(ctx context.Context, r *Run) error {
			n, _ := r.Mesh.Node("westus/2")
			var imgs []Op
			for _, o := range ackedImages(r.History.Ops()) {
				if o.Kind == OpPush {
					imgs = append(imgs, o)
				}
			}
			if len(imgs) < victims {
				return fmt.Errorf("only %d images acknowledged before the fault", len(imgs))
			}
			// The first victim is a shared base layer; the others are
			// images' own layers (the largest blob of each but the base).
			type victim struct {
				d    digest.Digest
				repo string
			}
			var vs []victim
			seen := map[digest.Digest]bool{}
			base := r.Workload.base[0].Digest
			vs = append(vs, victim{base, ""})
			seen[base] = true
			for _, o := range imgs {
				if len(vs) == victims {
					break
				}
				var own digest.Digest
				for d, size := range o.Blobs {
					if !seen[d] && !r.Workload.isBase(d) && size > 1024 {
						own = d
					}
				}
				if own != "" {
					seen[own] = true
					vs = append(vs, victim{own, o.Repo})
				}
			}
			for _, v := range vs {
				path := n.BlobFile(v.d.Encoded())
				err := ociclient.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
					_, err := os.Stat(path)
					return err == nil, err
				})
				if err != nil {
					return fmt.Errorf("%s never held %s: %w", n.String(), v.d, err)
				}
				off, err := flipByte(path)
				if err != nil {
					return err
				}
				r.Fault("flipped byte %d of %s's copy of %.19s", off, n.String(), v.d)
			}
			flipped := time.Now()
			// Pull through zone 2 itself every image that has a damaged
			// blob, twice.
			for range 2 {
				for _, o := range imgs {
					for _, v := range vs {
						if _, ok := o.Blobs[v.d]; ok {
							r.Client.Pull(ctx, PullSpec{Kind: OpPull, Location: "direct:" + n.String(), Repo: o.Repo, Ref: o.Digest.String()})
							break
						}
					}
				}
			}
			for _, v := range vs {
				path := n.BlobFile(v.d.Encoded())
				err := ociclient.Poll(ctx, time.Minute, 100*time.Millisecond, func() (bool, error) {
					b, err := os.ReadFile(path)
					return err == nil && digest.FromBytes(b) == v.d, fmt.Errorf("%s is not repaired (%v)", path, err)
				})
				if err != nil {
					r.Missf("%s's copy of %.19s: %v", n.String(), v.d, err)
				}
			}
			r.Notef("every damaged copy on %s repaired %v after the flips", n.String(), time.Since(flipped).Round(time.Millisecond))
			return nil
		},
		Verify: func(ctx context.Context, r *Run) {
			direct, failed := 0, 0
			for _, o := range r.History.Ops() {
				if o.Location == "direct:westus/2" {
					direct++
					if o.Failed() {
						failed++
						r.Missf("pull from zone 2 directly failed: %s", o.Err)
					}
				}
			}
			r.Notef("%d pulls straight from zone 2 after the flips, %d failed", direct, failed)
		},
	}
}

// flipByte inverts the lowest bit of the middle byte of the file at path,
// in place (same size, new modification time), and returns its offset.
func flipByte(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	off := st.Size() / 2
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return 0, err
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, off); err != nil {
		return 0, err
	}
	return off, f.Close()
}
