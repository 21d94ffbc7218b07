package chaos

import (
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// OpKind is the kind of a client operation.
type OpKind string

// The operations the workload and the scenarios perform. Writes (push,
// overwrite, referrer, delete) are acknowledged or not; reads verify every
// byte they receive.
const (
	// OpPush uploads an image's blobs and puts its manifest under a new
	// tag.
	OpPush OpKind = "push"
	// OpOverwrite pushes an image under a tag that already names another.
	OpOverwrite OpKind = "overwrite"
	// OpReferrer pushes an artifact whose manifest names an image as its
	// subject, by digest.
	OpReferrer OpKind = "referrer"
	// OpDelete deletes a tag.
	OpDelete OpKind = "delete"
	// OpPull fetches a manifest by digest and every blob it names.
	OpPull OpKind = "pull"
	// OpPullTag fetches a manifest by tag and every blob it names.
	OpPullTag OpKind = "pull-tag"
	// OpReferrers lists a subject's referrers.
	OpReferrers OpKind = "referrers"
)

// IsWrite reports whether k changes the registry.
func (k OpKind) IsWrite() bool {
	return k == OpPush || k == OpOverwrite || k == OpReferrer || k == OpDelete
}

// IsRead reports whether k only reads.
func (k OpKind) IsRead() bool { return !k.IsWrite() }

// Op is one client operation and its outcome, as a client saw it.
type Op struct {
	ID   int    `json:"id"`
	Kind OpKind `json:"kind"`
	// Location is the client location whose listener the operation went
	// through, "random" when each request went to a random location, or
	// "direct:<region>/<zone>" for a request sent to a node itself.
	Location string `json:"location"`
	Repo     string `json:"repo"`
	Tag      string `json:"tag,omitempty"`
	// Digest is the manifest digest pushed, asked for, or (for a pull by
	// tag) received.
	Digest digest.Digest `json:"digest,omitempty"`
	// Size is the bytes of the manifest and every blob transferred.
	Size int64 `json:"size"`
	// ManifestSize is the bytes of the manifest pushed or received.
	ManifestSize int64     `json:"manifestSize,omitempty"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	// Status is the HTTP status of the last answer (0 when there was none).
	Status int `json:"status"`
	// Region is the Georeg-Region of the answer that decided the outcome
	// (the manifest PUT, the manifest GET).
	Region string `json:"region,omitempty"`
	// Zone is the Georeg-Zone of that answer.
	Zone string `json:"zone,omitempty"`
	// Err is why the operation failed, empty when it succeeded.
	Err string `json:"err,omitempty"`
	// Acked reports that the registry acknowledged a write.
	Acked bool `json:"acked,omitempty"`
	// Attempts is how many times the client tried (writes retry).
	Attempts int `json:"attempts"`
	// BadBytes reports an answer whose bytes did not match the digest or
	// size asked for (I2).
	BadBytes bool `json:"badBytes,omitempty"`
	// MissingBlob reports a manifest served while one of its blobs was
	// then answered 404 (I3).
	MissingBlob bool `json:"missingBlob,omitempty"`
	// Blobs are the blobs the operation uploaded or verified, by digest,
	// with their sizes.
	Blobs map[digest.Digest]int64 `json:"-"`
	// Subject is the image a referrer names.
	Subject digest.Digest `json:"subject,omitempty"`
}

// Failed reports whether the client saw the operation fail.
func (o Op) Failed() bool { return o.Err != "" }

// History is the record of every client operation of a scenario. It is safe
// for concurrent use.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add records op, gives it the next id and returns it.
func (h *History) Add(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops) + 1
	h.ops = append(h.ops, op)
	return op
}

// Ops returns a copy of every operation recorded so far, in the order they
// ended.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Len returns the number of operations recorded.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}
