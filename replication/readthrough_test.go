package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/storage"
)

// TestAskPeers checks that read-through asks every peer region at once and
// that a region down, cut off or slow is left out within the bound instead
// of turning "not found" into an error.
func TestAskPeers(t *testing.T) {
	type reply struct {
		found bool
		err   error
		delay time.Duration // a delay past the bound stands for a cut link
	}
	notFound := fmt.Errorf("%w: x not in the region", storage.ErrNotFound)
	grpcNotFound := fmt.Errorf("region eastus: %w", status.Error(codes.NotFound, "blob unknown"))
	down := errors.New("region eastus: no node is up")
	refused := fmt.Errorf("region westeurope: %w", status.Error(codes.Unavailable, "connection refused"))
	const bound = 100 * time.Millisecond
	tests := []struct {
		name        string
		replies     map[string]reply
		wantHolders []string
		wantUnasked []string
	}{
		{"no peer region", nil, nil, nil},
		{"every peer says not found", map[string]reply{"eastus": {err: notFound}, "westeurope": {err: grpcNotFound}}, nil, nil},
		{"not found as a plain answer", map[string]reply{"eastus": {}, "westeurope": {}}, nil, nil},
		{"one holds it", map[string]reply{"eastus": {}, "westeurope": {found: true}}, []string{"westeurope"}, nil},
		{"both hold it, in peer order", map[string]reply{"eastus": {found: true}, "westeurope": {found: true}}, []string{"eastus", "westeurope"}, nil},
		{"one down, one says not found", map[string]reply{"eastus": {err: down}, "westeurope": {err: notFound}}, nil, []string{"eastus"}},
		{"none could be asked", map[string]reply{"eastus": {err: down}, "westeurope": {err: refused}}, nil, []string{"eastus", "westeurope"}},
		{"one cut off (no answer in time), one holds it", map[string]reply{"eastus": {delay: time.Hour}, "westeurope": {found: true}}, []string{"westeurope"}, []string{"eastus"}},
		{"slow but within the bound", map[string]reply{"eastus": {found: true, delay: bound / 4}}, []string{"eastus"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var peers []string
			for p := range tt.replies {
				peers = append(peers, p)
			}
			slices.Sort(peers)
			start := time.Now()
			holders, unasked := askPeers(t.Context(), peers, bound, func(ctx context.Context, peer string) (bool, error) {
				rp := tt.replies[peer]
				select {
				case <-time.After(rp.delay):
				case <-ctx.Done():
					return false, ctx.Err()
				}
				return rp.found, rp.err
			})
			if took := time.Since(start); took > 10*bound {
				t.Errorf("askPeers took %v with a bound of %v", took, bound)
			}
			if !slices.Equal(holders, tt.wantHolders) || !slices.Equal(unasked, tt.wantUnasked) {
				t.Errorf("askPeers = holders %v, unasked %v; want %v, %v", holders, unasked, tt.wantHolders, tt.wantUnasked)
			}
		})
	}
}

func TestFetchError(t *testing.T) {
	tests := []struct {
		name             string
		holders, unasked []string
		errs             []error
		want             error
		wantUnasked      []string
	}{
		{"nobody holds it", nil, nil, nil, storage.ErrNotFound, nil},
		{"nobody that answered holds it", nil, []string{"eastus"}, nil, storage.ErrNotFound, []string{"eastus"}},
		{"a holder failed to deliver", []string{"eastus"}, nil, []error{errors.New("cut")}, storage.ErrUnavailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fetchError("thing", tt.holders, tt.unasked, tt.errs)
			if !errors.Is(err, tt.want) {
				t.Fatalf("fetchError = %v, want %v", err, tt.want)
			}
			var nf *NotFoundError
			if errors.As(err, &nf) && !slices.Equal(nf.UnaskedRegions(), tt.wantUnasked) {
				t.Errorf("unasked = %v, want %v", nf.UnaskedRegions(), tt.wantUnasked)
			}
		})
	}
}
