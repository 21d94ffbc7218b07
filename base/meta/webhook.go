package meta

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Webhook state. Definitions are control-plane state (home region);
// notices, cursors and deliveries belong to the region that delivers.
var (
	bucketWebhooks       = []byte("control-webhooks")
	bucketNotices        = []byte("notices")
	bucketWebhookCursors = []byte("webhook-cursors")
	bucketDeliveries     = []byte("webhook-deliveries")
)

// The webhook commands.
const (
	// OpPutWebhook is the Op of PutWebhook.
	OpPutWebhook Op = "put-webhook"
	// OpDeleteWebhook is the Op of DeleteWebhook.
	OpDeleteWebhook Op = "delete-webhook"
	// OpWebhookDelivered is the Op of WebhookDelivered.
	OpWebhookDelivered Op = "webhook-delivered"
)

// PutWebhook creates or replaces Webhook (control plane).
type PutWebhook struct {
	Webhook Webhook `json:"webhook"`
}

// DeleteWebhook deletes the webhook called Name (control plane); it fails
// with ErrWebhookUnknown if there is none.
type DeleteWebhook struct {
	Name string `json:"name"`
}

// WebhookDelivered records Delivery (unless its ID is empty) and, when it
// is final, moves its webhook's cursor past its notice. Start, when larger
// than the cursor, moves the cursor there: a new webhook starts after the
// notices that came before it.
type WebhookDelivered struct {
	Delivery Delivery `json:"delivery"`
	Start    uint64   `json:"start,omitempty"`
}

// Op implements Command.
func (PutWebhook) Op() Op { return OpPutWebhook }

// Op implements Command.
func (DeleteWebhook) Op() Op { return OpDeleteWebhook }

// Op implements Command.
func (WebhookDelivered) Op() Op { return OpWebhookDelivered }

// MaxNotices bounds the notices a region keeps for its webhooks.
const MaxNotices = 10000

// maxDeliveries bounds the delivery records kept per webhook.
const maxDeliveries = 1000

// ErrWebhookUnknown means no webhook has that name.
var ErrWebhookUnknown = errors.New("webhook unknown")

// Webhook is a webhook definition (as in `az acr webhook`).
type Webhook struct {
	Name    string            `json:"name"`
	URI     string            `json:"uri"`
	Actions []string          `json:"actions"`
	Scope   string            `json:"scope,omitempty"`
	Region  string            `json:"region"`
	Headers map[string]string `json:"headers,omitempty"`
	Enabled bool              `json:"enabled"`
	Created time.Time         `json:"created"`
}

// RequestInfo describes the client request behind a notice.
type RequestInfo struct {
	ID        string `json:"id"`
	Host      string `json:"host"`
	Method    string `json:"method"`
	UserAgent string `json:"useragent"`
}

// Notice is something a region's webhooks may announce: an image became
// available in the region (push) or was deleted there (delete). Notices are
// appended in the same transaction as the change, for local and replicated
// writes alike.
type Notice struct {
	Seq       uint64        `json:"seq"`
	Action    string        `json:"action"`
	Repo      string        `json:"repo"`
	Tag       string        `json:"tag,omitempty"`
	Digest    digest.Digest `json:"digest,omitempty"`
	MediaType string        `json:"mediaType,omitempty"`
	Size      int64         `json:"size,omitempty"`
	Time      time.Time     `json:"time"`
	Request   *RequestInfo  `json:"request,omitempty"`
	// Connected, when set, names the connected registry at whose site
	// the event happened (its notifications, SetConnectedStatus): the
	// region's webhooks announce it, but it says nothing of the
	// region's own content.
	Connected string `json:"connectedRegistry,omitempty"`
}

// Delivery is one attempt, or the final outcome, of sending a notice to a
// webhook.
type Delivery struct {
	ID       string    `json:"id"`
	Webhook  string    `json:"webhook"`
	Seq      uint64    `json:"seq"`
	Action   string    `json:"action"`
	Repo     string    `json:"repo,omitempty"`
	Tag      string    `json:"tag,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Status   int       `json:"status"`
	Error    string    `json:"error,omitempty"`
	Attempt  int       `json:"attempt"`
	Final    bool      `json:"final"`
	Time     time.Time `json:"time"`
	Duration float64   `json:"durationSeconds"`
}

// NoticesAfter returns up to n notices with a sequence above seq.
func (r *Reader) NoticesAfter(seq uint64, n int) ([]Notice, error) {
	var out []Notice
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = notices.after(tx, seq, n)
		return err
	})
	return out, err
}

// LastNotice returns the sequence of the newest notice.
func (r *Reader) LastNotice() uint64 {
	var seq uint64
	r.db.View(func(tx *bolt.Tx) error {
		seq = notices.last(tx)
		return nil
	})
	return seq
}

// Webhooks returns the webhook definitions, sorted by name.
func (r *Reader) Webhooks() ([]Webhook, error) {
	var out []Webhook
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var w Webhook
			if err := json.Unmarshal(v, &w); err != nil {
				return err
			}
			out = append(out, w)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// WebhookCursor returns the last notice webhook name has finished with, and
// whether it has started at all.
func (r *Reader) WebhookCursor(name string) (uint64, bool) {
	var seq uint64
	var ok bool
	r.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketWebhookCursors); b != nil {
			if v := b.Get([]byte(name)); len(v) == 8 {
				seq, ok = binary.BigEndian.Uint64(v), true
			}
		}
		return nil
	})
	return seq, ok
}

// Deliveries returns the recorded deliveries of webhook name, newest first.
func (r *Reader) Deliveries(name string) ([]Delivery, error) {
	var out []Delivery
	err := r.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		if b == nil {
			return nil
		}
		prefix := []byte(name + "\x00")
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

func (c PutWebhook) apply(tx *bolt.Tx) error {
	w := c.Webhook
	if w.Name == "" {
		return errors.New("meta: put-webhook without a name")
	}
	b, err := tx.CreateBucketIfNotExists(bucketWebhooks)
	if err != nil {
		return err
	}
	v, err := json.Marshal(w)
	if err != nil {
		return err
	}
	return b.Put([]byte(w.Name), v)
}

func (c DeleteWebhook) apply(tx *bolt.Tx) error {
	b := tx.Bucket(bucketWebhooks)
	if b == nil || b.Get([]byte(c.Name)) == nil {
		return ErrWebhookUnknown
	}
	return b.Delete([]byte(c.Name))
}

func (c WebhookDelivered) apply(tx *bolt.Tx) error {
	d := &c.Delivery
	if d.Webhook == "" {
		return errors.New("meta: webhook-delivered without a webhook")
	}
	if d.ID != "" {
		if err := recordDelivery(tx, d); err != nil {
			return err
		}
	}
	cb, err := tx.CreateBucketIfNotExists(bucketWebhookCursors)
	if err != nil {
		return err
	}
	cur := c.Start
	if v := cb.Get([]byte(d.Webhook)); len(v) == 8 {
		cur = max(cur, binary.BigEndian.Uint64(v))
	}
	if d.Final {
		cur = max(cur, d.Seq)
	}
	return cb.Put([]byte(d.Webhook), seqKey(cur))
}

func recordDelivery(tx *bolt.Tx, d *Delivery) error {
	db, err := tx.CreateBucketIfNotExists(bucketDeliveries)
	if err != nil {
		return err
	}
	seqb, err := db.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	key := append([]byte(d.Webhook+"\x00"), seqKey(seqb)...)
	if err := db.Put(key, v); err != nil {
		return err
	}
	// Keep the newest maxDeliveries of this webhook.
	prefix := []byte(d.Webhook + "\x00")
	var keys [][]byte
	c := db.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for len(keys) > maxDeliveries {
		if err := db.Delete(keys[0]); err != nil {
			return err
		}
		keys = keys[1:]
	}
	return nil
}
