package chaos

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
)

// endpointToggle disables and enables westus's region endpoint every 10 s
// under load, so westus's clients move to eastus and back while every
// region keeps replicating. Replication must not send a blob twice: the
// bytes the nodes sent to peer regions stay within 1.1 times the unique
// blob bytes clients uploaded, times the peer regions each must reach.
func endpointToggle(full bool) Scenario {
	toggles := 4
	if !full {
		toggles = 2
	}
	return Scenario{
		Name:   "endpoint-toggle",
		Fault:  fmt.Sprintf("westus's region endpoint disabled and enabled every 10 s under load (%d toggles)", toggles),
		Target: "no failed pull; replication bytes sent at most 1.1x unique bytes x peer regions (no duplicate transfers)",
		Load:   &WorkloadConfig{Seed: 9},
		Inject: func(ctx context.Context, r *Run) error {
			for i := range toggles {
				enabled := i%2 == 1
				out, err := r.Mesh.Run(ctx, "replication", "update", "--region", "westus", "--region-endpoint-enabled="+strconv.FormatBool(enabled))
				if err != nil {
					return fmt.Errorf("replication update: %w\n%s", err, out)
				}
				r.Fault("westus region endpoint enabled=%v", enabled)
				r.Sleep(ctx, 10*time.Second)
			}
			if toggles%2 == 1 {
				out, err := r.Mesh.Run(ctx, "replication", "update", "--region", "westus", "--region-endpoint-enabled=true")
				if err != nil {
					return fmt.Errorf("replication update: %w\n%s", err, out)
				}
			}
			return nil
		},
		Verify: func(ctx context.Context, r *Run) {
			checkReplicationBytes(ctx, r, 1.1)
		},
	}
}

// checkReplicationBytes compares the blob bytes every node sent to peer
// regions since the mesh started (replication and read-through) with the
// unique blob bytes clients uploaded times the peer regions: sent beyond
// limit times that is a duplicate transfer.
func checkReplicationBytes(ctx context.Context, r *Run, limit float64) {
	unique := map[digest.Digest]int64{}
	for _, o := range r.History.Ops() {
		if o.Kind.IsWrite() {
			for d, n := range o.Blobs {
				unique[d] = n
			}
		}
	}
	var total int64
	for _, n := range unique {
		total += n
	}
	sent, err := r.Mesh.MetricSum(ctx, "georeg_replication_bytes_sent_total")
	if err != nil {
		r.Missf("reading replication bytes: %v", err)
		return
	}
	deduped, _ := r.Mesh.MetricSum(ctx, "georeg_replication_bytes_deduplicated_total")
	reads, _ := r.Mesh.MetricSum(ctx, "georeg_replication_read_through_total")
	peers := float64(len(r.Mesh.Regions) - 1)
	ratio := sent / (float64(total) * peers)
	r.Notef("replication sent %.1f MB for %.1f MB of unique blobs x %.0f peer regions: %.2fx (%.1f MB deduplicated, %.0f read-throughs)",
		sent/1e6, float64(total)/1e6, peers, ratio, deduped/1e6, reads)
	if ratio > limit {
		r.Missf("replication sent %.2fx the unique blob bytes times the peer regions, want at most %.1fx", ratio, limit)
	}
}
