package meta

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
)

// A connected registry's site keeps what its zones share about the site
// itself in its Raft log: the instance its leader activates as (whichever
// zone leads, it is the same instance to the parent) and the definition
// its last activation brought (what every zone enforces: the mode and the
// repositories).
var bucketSite = []byte("site")

// siteKey is the one record of bucketSite.
const siteKey = "self"

// OpPutSite is the Op of PutSite.
const OpPutSite Op = "put-site"

// Site is a connected registry's site as its zones share it.
type Site struct {
	// Instance identifies the site to its parent (connected.Hello).
	Instance string `json:"instance"`
	// Registry is the definition the last activation brought; its Name is
	// empty before the first.
	Registry connected.Registry `json:"registry"`
}

// PutSite records the site's definition. The instance is the first one
// recorded: a later PutSite with another keeps it, so two zones that lead
// in turn before either knew of the other's activate as one instance.
type PutSite struct {
	Site Site `json:"site"`
}

// Op implements Command.
func (PutSite) Op() Op { return OpPutSite }

func (c PutSite) apply(tx *bolt.Tx) error {
	if c.Site.Instance == "" || len(c.Site.Instance) > 128 {
		return fmt.Errorf("%w: a site's instance is 1 to 128 bytes", access.ErrInvalid)
	}
	if c.Site.Registry.Name != "" {
		if err := c.Site.Registry.Validate(); err != nil {
			return err
		}
	}
	b, err := tx.CreateBucketIfNotExists(bucketSite)
	if err != nil {
		return err
	}
	if old, ok, err := getSite(tx); err != nil {
		return err
	} else if ok {
		c.Site.Instance = old.Instance
	}
	return putJSON(b, siteKey, c.Site)
}

func getSite(tx *bolt.Tx) (Site, bool, error) {
	var s Site
	b := tx.Bucket(bucketSite)
	if b == nil {
		return s, false, nil
	}
	v := b.Get([]byte(siteKey))
	if v == nil {
		return s, false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return s, false, fmt.Errorf("meta: the site's record: %w", err)
	}
	return s, true, nil
}

// Site returns the site's record, and false before the first PutSite.
func (r *Reader) Site() (Site, bool, error) {
	var (
		s  Site
		ok bool
	)
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		s, ok, err = getSite(tx)
		return err
	})
	return s, ok, err
}
