package replication

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/storage"
)

func TestReadThroughError(t *testing.T) {
	notFound := fmt.Errorf("%w: x not in eastus", storage.ErrNotFound)
	grpcNotFound := fmt.Errorf("region eastus: %w", status.Error(codes.NotFound, "blob unknown"))
	down := errors.New("region eastus: no node is up")
	refused := fmt.Errorf("region westeurope: %w", status.Error(codes.Unavailable, "connection refused"))
	tests := []struct {
		name  string
		peers []string
		errs  []error
		want  error
	}{
		{"no peer region: not found", nil, nil, storage.ErrNotFound},
		{"every peer says not found", []string{"eastus", "westeurope"}, []error{notFound, grpcNotFound}, storage.ErrNotFound},
		{"one peer down, another says not found: the one down may hold it", []string{"eastus", "westeurope"}, []error{down, notFound}, storage.ErrUnavailable},
		{"no peer could be asked: unavailable", []string{"eastus", "westeurope"}, []error{down, refused}, storage.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := readThroughError("thing", tt.peers, tt.errs); !errors.Is(err, tt.want) {
				t.Errorf("readThroughError = %v, want %v", err, tt.want)
			}
		})
	}
}
