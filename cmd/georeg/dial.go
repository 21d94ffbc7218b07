package main

import (
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/georeg/georeg/chaos"
)

// dialNode returns a gRPC client of the node at addr in the mesh in dir,
// authenticated with the mesh's CLI certificate (plaintext for a mesh
// without one).
func dialNode(dir, addr string) (*grpc.ClientConn, error) {
	cfg, err := chaos.ClientTLS(dir)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = grpccreds.NewTLS(cfg)
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}
