package meta

import (
	"encoding/json"
	"errors"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Control-plane state lives in the home region's Raft group, in these
// buckets. Other regions keep a copy they refresh from the home region.
var (
	bucketReplications = []byte("control-replications")
)

// The control-plane commands.
const (
	// OpPutReplication is the Op of PutReplication.
	OpPutReplication Op = "put-replication"
	// OpDeleteReplication is the Op of DeleteReplication.
	OpDeleteReplication Op = "delete-replication"
)

// PutReplication creates or updates Replication.
type PutReplication struct {
	Replication Replication `json:"replication"`
}

// DeleteReplication marks the replication in Region deleted; it fails with
// ErrReplicationUnknown if there is none.
type DeleteReplication struct {
	Region string `json:"region"`
}

// Op implements Command.
func (PutReplication) Op() Op { return OpPutReplication }

// Op implements Command.
func (DeleteReplication) Op() Op { return OpDeleteReplication }

func (c PutReplication) apply(tx *bolt.Tx) error { return putReplication(tx, c.Replication) }

func (c DeleteReplication) apply(tx *bolt.Tx) error { return deleteReplication(tx, c.Region) }

// ErrReplicationUnknown means the registry has no replication in that
// region.
var ErrReplicationUnknown = errors.New("replication unknown")

// Replication is the registry's presence in one region (as in
// `az acr replication`).
type Replication struct {
	Region string `json:"region"`
	// RegionEndpointEnabled routes client traffic to the region when true;
	// a disabled region keeps replicating.
	RegionEndpointEnabled bool      `json:"regionEndpointEnabled"`
	Created               time.Time `json:"created"`
	// Seen is set once a node of the region has been up.
	Seen    bool `json:"seen,omitempty"`
	Deleted bool `json:"deleted,omitempty"`
}

// Replications returns every replication, deleted ones included, sorted by
// region.
func (r *Reader) Replications() ([]Replication, error) {
	var out []Replication
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReplications)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var repl Replication
			if err := json.Unmarshal(v, &repl); err != nil {
				return err
			}
			out = append(out, repl)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Region < out[j].Region })
	return out, err
}

func putReplication(tx *bolt.Tx, r Replication) error {
	if r.Region == "" {
		return errors.New("meta: put-replication without a region")
	}
	b, err := tx.CreateBucketIfNotExists(bucketReplications)
	if err != nil {
		return err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.Region), v)
}

func deleteReplication(tx *bolt.Tx, region string) error {
	b := tx.Bucket(bucketReplications)
	if b == nil {
		return ErrReplicationUnknown
	}
	v := b.Get([]byte(region))
	if v == nil {
		return ErrReplicationUnknown
	}
	var r Replication
	if err := json.Unmarshal(v, &r); err != nil {
		return err
	}
	r.Deleted = true
	return putReplication(tx, r)
}
