package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// MeshFile is the part of a mesh's DIR/mesh.json that tests and the
// benchmark read: where its locations listen and where its nodes are.
type MeshFile struct {
	Home      string         `json:"home"`
	WAN       string         `json:"wan"`
	Locations []MeshLocation `json:"locations"`
	Regions   []MeshRegion   `json:"regions"`
}

// MeshLocation is one traffic manager listener: clients connecting to Addr
// are in location Name.
type MeshLocation struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// MeshRegion is one region of a MeshFile, zone 1 first.
type MeshRegion struct {
	Name  string     `json:"name"`
	Zones []MeshNode `json:"zones"`
}

// MeshNode is one zone node of a MeshFile.
type MeshNode struct {
	Zone int    `json:"zone"`
	HTTP string `json:"http"`
	Data string `json:"data"`
	Log  string `json:"log"`
	PID  int    `json:"pid"`
}

// ReadMeshFile reads dir/mesh.json.
func ReadMeshFile(dir string) (MeshFile, error) {
	var mf MeshFile
	b, err := os.ReadFile(filepath.Join(dir, "mesh.json"))
	if err != nil {
		return mf, err
	}
	if err := json.Unmarshal(b, &mf); err != nil {
		return mf, fmt.Errorf("%s/mesh.json: %w", dir, err)
	}
	return mf, nil
}
