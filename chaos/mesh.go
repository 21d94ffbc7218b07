package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Names of the files and folders a mesh keeps in its directory.
const (
	MeshFile = "mesh.json"
	// WANFile holds the simulated WAN's links (base/wan), which every
	// process of the mesh watches.
	WANFile = "wan.json"
	// TrafficmgrFile is the traffic manager's configuration.
	TrafficmgrFile = "trafficmgr.json"
	LockFile       = "mesh.lock"
	LogsDir        = "logs"
	DataDir        = "data"
)

// meshVersion is the format version of mesh.json; bump it when a change would
// make an older georeg misread the file.
const meshVersion = 1

// ErrNoMesh means the directory holds no mesh.json.
var ErrNoMesh = errors.New("chaos: no mesh")

// Mesh is the description of a local mesh kept in DIR/mesh.json. It is
// written when the mesh starts and rewritten whenever a node is stopped or
// started, so every georeg command reads the current state from it.
type Mesh struct {
	// Version is the format version of the file.
	Version int `json:"version"`
	// Dir is the absolute directory of the mesh.
	Dir string `json:"dir"`
	// Endpoint is host:port of the registry endpoint clients use.
	Endpoint string `json:"endpoint"`
	// Port is the endpoint port the mesh was planned from.
	Port int `json:"port"`
	// Home is the name of the home region.
	Home string `json:"home"`
	// Regiond is the absolute path of the regiond binary the nodes run.
	Regiond string `json:"regiond"`
	// Regions lists the regions in the order they were given.
	Regions []Region `json:"regions"`
	// Locations are the traffic manager's listeners, one per simulated
	// client location; the first is Endpoint. Empty without a traffic
	// manager.
	Locations []Location `json:"locations,omitempty"`
	// TrafficManager is the traffic manager process, or nil when the
	// mesh has none (the home region's first node is then the endpoint).
	TrafficManager *Node `json:"trafficManager,omitempty"`
	// WAN is the simulated WAN's file, or empty.
	WAN string `json:"wan,omitempty"`
	// Sites are the connected registries the mesh runs at simulated
	// sites (AddSite).
	Sites []Site `json:"sites,omitempty"`
	// HTTPS is set when the endpoint and the nodes' HTTP serve HTTPS with
	// certificates of the mesh's CA (DIR/tls/ca.crt).
	HTTPS bool `json:"https,omitempty"`
	// Docker is set when the mesh's nodes are containers of the local
	// Docker engine (georeg cluster up, [Cluster]); nil for a mesh of
	// processes.
	Docker *DockerMesh `json:"docker,omitempty"`
	// Created is when the mesh was planned.
	Created time.Time `json:"created"`
}

// Region is one region of a Mesh.
type Region struct {
	// Name is the region name, for example "westus".
	Name string `json:"name"`
	// Home reports whether this is the home region.
	Home bool `json:"home"`
	// Zones lists the region's zone nodes, zone 1 first.
	Zones []Node `json:"zones"`
}

// Location is a simulated client location: clients that connect to Addr
// are routed as if they were in that location.
type Location struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// RoleTrafficmgr is the Role of the traffic manager's Node.
const RoleTrafficmgr = "trafficmgr"

// Node is one process of a Mesh: a zone node, or the traffic manager.
type Node struct {
	// Role is empty for a zone node and RoleTrafficmgr for the traffic
	// manager.
	Role string `json:"role,omitempty"`
	// Region is the name of the node's region.
	Region string `json:"region"`
	// Zone is the zone number, from 1.
	Zone int `json:"zone"`
	// HTTP is the host:port the node serves the OCI Distribution API on.
	HTTP string `json:"http"`
	// Scheme is "https" when it serves it over TLS; empty means "http".
	Scheme string `json:"scheme,omitempty"`
	// Ports holds the node's other listening ports by purpose ("grpc",
	// "raft", "gossip", ...) as later parts of georeg add them.
	Ports map[string]int `json:"ports,omitempty"`
	// PID is the process id of the running node, or 0 when the launcher
	// knows it is stopped.
	PID int `json:"pid"`
	// PIDStart identifies the process behind PID (its start time in clock
	// ticks after boot, on Linux), so a recycled pid is not taken for the
	// node. 0 when unknown.
	PIDStart uint64 `json:"pidStart,omitempty"`
	// Started is when the running process was started.
	Started time.Time `json:"started,omitzero"`
	// Data is the node's data directory.
	Data string `json:"data"`
	// Log is the file the node's stdout and stderr go to.
	Log string `json:"log"`
	// Argv is the exact command line that starts the node; restart runs it
	// again. In a container cluster it is the container's command, after
	// the image's entry point.
	Argv []string `json:"argv"`
	// Env is added to the launcher's environment when the process starts
	// (a local mesh's nodes only).
	Env []string `json:"env,omitempty"`
	// Container is the node's container in a container cluster.
	Container string `json:"container,omitempty"`
	// IP is the node's own address in a container cluster: on its
	// region's network, where every listener of a zone node is bound.
	IP string `json:"ip,omitempty"`
}

// URL returns the base URL of the node's HTTP: "http://127.0.0.1:5003".
func (n *Node) URL() string {
	if n.Scheme == "" {
		return "http://" + n.HTTP
	}
	return n.Scheme + "://" + n.HTTP
}

// Name returns the node's name as the chaos commands spell it: "westus/1".
func (n *Node) Name() string {
	if n.Role != "" {
		return n.Role
	}
	return n.Region + "/" + strconv.Itoa(n.Zone)
}

// Nodes returns pointers to every node of the mesh, region by region and
// zone by zone, so callers can update them in place.
func (m *Mesh) Nodes() []*Node {
	var nodes []*Node
	for i := range m.Regions {
		for j := range m.Regions[i].Zones {
			nodes = append(nodes, &m.Regions[i].Zones[j])
		}
	}
	return nodes
}

// Processes returns every process of the mesh: the zone nodes, then the
// traffic manager if there is one.
func (m *Mesh) Processes() []*Node {
	ps := m.Nodes()
	if m.TrafficManager != nil {
		ps = append(ps, m.TrafficManager)
	}
	return ps
}

// LoadMesh reads dir/mesh.json. It returns an error wrapping ErrNoMesh when
// the file does not exist.
func LoadMesh(dir string) (*Mesh, error) {
	p := filepath.Join(dir, MeshFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (start one with `georeg mesh up --dir %s`)", ErrNoMesh, dir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: read mesh: %w", err)
	}
	var m Mesh
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("chaos: %s is not a mesh description: %w", p, err)
	}
	if m.Version != meshVersion {
		return nil, fmt.Errorf("chaos: %s has format version %d, this georeg reads %d", p, m.Version, meshVersion)
	}
	return &m, nil
}

// Save writes the mesh to m.Dir/mesh.json atomically: readers see the old or
// the new file, never a partial one.
func (m *Mesh) Save() error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("chaos: encode mesh: %w", err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(m.Dir, MeshFile+".tmp*")
	if err != nil {
		return fmt.Errorf("chaos: save mesh: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(m.Dir, MeshFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("chaos: save mesh: %w", err)
	}
	return nil
}
