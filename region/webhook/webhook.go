package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/georeg/georeg/base/meta"
)

// Metadata is what the dispatcher needs of the region's metadata.
// *region.Group implements it.
type Metadata interface {
	Apply(ctx context.Context, cmd meta.Command) error
	NoticesAfter(seq uint64, n int) ([]meta.Notice, error)
	WebhookCursor(name string) (uint64, bool)
	IsLeader() bool
}

// Config configures a Dispatcher.
type Config struct {
	Region string
	Meta   Metadata
	// Webhooks returns the current definitions (the control plane's copy).
	Webhooks func() []meta.Webhook
	// Client sends the events; nil means NewClient with AllowPrivate.
	Client *http.Client
	// AllowPrivate lets the default client reach loopback, private,
	// link-local and the other addresses Refused names.
	AllowPrivate bool
	// MaxBackoff caps the wait between attempts (default 30 s).
	MaxBackoff time.Duration
	// Deliveries counts attempts by outcome; nil skips counting.
	Deliveries *prometheus.CounterVec
	Logger     *slog.Logger
}

// Dispatcher delivers one region's webhook events. Every node runs one;
// only the region's Raft leader sends.
type Dispatcher struct {
	cfg Config
	log *slog.Logger
}

// New returns a Dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.Client == nil {
		cfg.Client = NewClient(ClientConfig{AllowPrivate: cfg.AllowPrivate})
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{cfg: cfg, log: lg}
}

// Run delivers until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	running := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range running {
			cancel()
		}
	}()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		want := map[string]meta.Webhook{}
		if d.cfg.Meta.IsLeader() {
			for _, w := range d.cfg.Webhooks() {
				if w.Region == d.cfg.Region {
					want[w.Name] = w
				}
			}
		}
		for name, cancel := range running {
			if _, ok := want[name]; !ok {
				cancel()
				delete(running, name)
			}
		}
		for name, w := range want {
			if _, ok := running[name]; !ok {
				wctx, cancel := context.WithCancel(ctx)
				running[name] = cancel
				go d.loop(wctx, w)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loop delivers the notices of one webhook in order.
func (d *Dispatcher) loop(ctx context.Context, w meta.Webhook) {
	cursor, started := d.cfg.Meta.WebhookCursor(w.Name)
	if !started {
		cursor = d.startCursor(w)
		d.record(ctx, meta.Delivery{Webhook: w.Name}, cursor)
	}
	for ctx.Err() == nil {
		notices, err := d.cfg.Meta.NoticesAfter(cursor, 32)
		if err != nil || len(notices) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		skipped := cursor
		for _, n := range notices {
			if !Matches(w, n) {
				skipped = n.Seq
				continue
			}
			if skipped > cursor {
				d.record(ctx, meta.Delivery{Webhook: w.Name}, skipped)
			}
			if !d.deliver(ctx, w, n) {
				return
			}
			skipped = n.Seq
		}
		if skipped > cursor {
			d.record(ctx, meta.Delivery{Webhook: w.Name}, skipped)
		}
		cursor = skipped
	}
}

// startCursor skips the notices older than the webhook.
func (d *Dispatcher) startCursor(w meta.Webhook) uint64 {
	var cursor uint64
	for {
		ns, err := d.cfg.Meta.NoticesAfter(cursor, 256)
		if err != nil || len(ns) == 0 {
			return cursor
		}
		for _, n := range ns {
			if !n.Time.Before(w.Created) {
				return cursor
			}
			cursor = n.Seq
		}
	}
}

// deliver sends one notice until the receiver accepts it. It returns false
// when ctx ended first.
func (d *Dispatcher) deliver(ctx context.Context, w meta.Webhook, n meta.Notice) bool {
	body, _ := json.Marshal(Event(d.cfg.Region, n))
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		status, err := Post(ctx, d.cfg.Client, w, body)
		del := meta.Delivery{
			ID: eventID(d.cfg.Region, n), Webhook: w.Name, Seq: n.Seq, Action: n.Action, Repo: n.Repo, Tag: n.Tag,
			Digest: n.Digest.String(), Status: status, Attempt: attempt, Time: start.UTC(), Duration: time.Since(start).Seconds(),
		}
		ok := err == nil && status/100 == 2
		del.Final = ok
		if err != nil {
			del.Error = err.Error()
		}
		if d.cfg.Deliveries != nil {
			d.cfg.Deliveries.WithLabelValues(map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
		}
		if ctx.Err() != nil {
			return false
		}
		d.record(ctx, del, 0)
		if ok {
			return true
		}
		d.log.Warn("webhook delivery failed, will retry", "webhook", w.Name, "status", status, "err", err, "attempt", attempt)
		sleep := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		backoff = min(backoff*2, d.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(sleep):
		}
	}
}

func (d *Dispatcher) record(ctx context.Context, del meta.Delivery, cursor uint64) {
	err := d.cfg.Meta.Apply(ctx, meta.WebhookDelivered{Delivery: del, Start: cursor})
	if err != nil && ctx.Err() == nil {
		d.log.Warn("recording a webhook delivery", "webhook", del.Webhook, "err", err)
	}
}

func eventID(region string, n meta.Notice) string { return fmt.Sprintf("%s-%d", region, n.Seq) }

// Payload is the JSON body of a webhook event, shaped like Azure Container
// Registry's, plus the region.
type Payload struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    Target    `json:"target"`
	Request   Request   `json:"request"`
	Region    string    `json:"region"`
	// ConnectedRegistry names the connected registry at whose site the
	// event happened (its --notifications); the region is then the one
	// that announces it, the home region.
	ConnectedRegistry string `json:"connectedRegistry,omitempty"`
}

// Target is the image of an event.
type Target struct {
	MediaType  string `json:"mediaType,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Length     int64  `json:"length,omitempty"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
}

// Request is the client request behind an event.
type Request struct {
	ID        string `json:"id"`
	Host      string `json:"host"`
	Method    string `json:"method"`
	UserAgent string `json:"useragent"`
}

// Event returns the payload announcing n in region.
func Event(region string, n meta.Notice) Payload {
	p := Payload{
		ID: eventID(region, n), Timestamp: n.Time, Action: n.Action, Region: region,
		Target:  Target{MediaType: n.MediaType, Size: n.Size, Length: n.Size, Digest: n.Digest.String(), Repository: n.Repo, Tag: n.Tag},
		Request: Request{ID: eventID(region, n), Host: region, Method: http.MethodPut, UserAgent: "georeg-replication"},
	}
	if n.Action == "delete" {
		p.Request.Method = http.MethodDelete
	}
	if r := n.Request; r != nil {
		p.Request = Request{ID: r.ID, Host: r.Host, Method: r.Method, UserAgent: r.UserAgent}
	}
	if n.Connected != "" {
		p.ConnectedRegistry = n.Connected
		p.Request.Host, p.Request.UserAgent = n.Connected, "georeg-connected-registry"
	}
	return p
}

// Post sends body to the webhook's URI with its headers and returns the
// status code. c should come from NewClient: it follows no redirect, so a
// 3xx answer returns its status and an error saying it was not followed.
func Post(ctx context.Context, c *http.Client, w meta.Webhook, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URI, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "georeg-webhook")
	for k, v := range w.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		return resp.StatusCode, fmt.Errorf("redirect to %q not followed: webhooks follow no redirects", resp.Header.Get("Location"))
	}
	return resp.StatusCode, nil
}

// Matches reports whether webhook w announces notice n: it is enabled, has
// the action, and its scope ("repo:tag" with * wildcards; empty or "*" is
// everything) covers the image.
func Matches(w meta.Webhook, n meta.Notice) bool {
	if !w.Enabled || !(slices.Contains(w.Actions, n.Action) || slices.Contains(w.Actions, "*")) {
		return false
	}
	scope := w.Scope
	if scope == "" || scope == "*" {
		return true
	}
	repoPat, tagPat, ok := strings.Cut(scope, ":")
	if !ok {
		tagPat = "*"
	}
	if !glob(repoPat, n.Repo) {
		return false
	}
	if n.Tag == "" {
		return tagPat == "*"
	}
	return glob(tagPat, n.Tag)
}

// glob matches with '*' matching any run of characters, slashes included.
func glob(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	ok, err := path.Match(strings.ReplaceAll(pattern, "/", "\x00"), strings.ReplaceAll(s, "/", "\x00"))
	return err == nil && ok
}
