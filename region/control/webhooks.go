package control

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/region/webhook"
)

// WebhookStore is what the control plane needs for webhooks.
// *region.Group implements it.
type WebhookStore interface {
	Webhooks() ([]meta.Webhook, error)
	Deliveries(name string) ([]meta.Delivery, error)
}

var webhookName = regexp.MustCompile(`^[a-zA-Z0-9]{5,50}$`)

// Webhooks returns the webhook definitions this node knows: from the home
// region's Raft state in the home region, from the last copy elsewhere.
func (p *Plane) Webhooks() []meta.Webhook {
	if p.isHome() {
		if ws, err := p.cfg.Webhooks.Webhooks(); err == nil {
			return ws
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]meta.Webhook(nil), p.copy.Webhooks...)
}

// CreateWebhook adds a webhook (az acr webhook create). Its target must be
// an http or https URL that webhook.CheckURL allows; the answer shows the
// definition as stored, header values masked.
func (p *Plane) CreateWebhook(ctx context.Context, req *controlpb.CreateWebhookRequest) (*controlpb.Webhook, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	w := webhookFromProto(req.GetWebhook())
	if !webhookName.MatchString(w.Name) {
		return nil, status.Errorf(codes.InvalidArgument, "webhook name %q: 5 to 50 letters and digits", w.Name)
	}
	if err := webhook.CheckURL(ctx, w.URI, p.cfg.WebhookAllowPrivate, p.cfg.Resolver); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(w.Actions) == 0 {
		return nil, status.Error(codes.InvalidArgument, "webhook needs --actions (push, delete or both)")
	}
	for _, a := range w.Actions {
		if !slices.Contains([]string{"push", "delete", "*"}, a) {
			return nil, status.Errorf(codes.InvalidArgument, "webhook action %q: want push or delete", a)
		}
	}
	if w.Region == "" {
		w.Region = p.cfg.Home
	}
	found := false
	for _, r := range p.Replications() {
		found = found || (r.Region == w.Region && !r.Deleted)
	}
	if !found {
		return nil, status.Errorf(codes.InvalidArgument, "the registry has no replication in %s", w.Region)
	}
	for _, old := range p.Webhooks() {
		if old.Name == w.Name {
			return nil, status.Errorf(codes.AlreadyExists, "webhook %s exists", w.Name)
		}
	}
	w.Enabled, w.Created = true, time.Now().UTC()
	if err := p.apply(ctx, meta.PutWebhook{Webhook: w}); err != nil {
		return nil, err
	}
	return maskedWebhook(w), nil
}

// maskedWebhook converts w for an answer to a management call: header
// values are write-only (they often hold the receiver's credential, and
// whoever may list webhooks need not be able to read it), and so is the
// password of the URI's user information. The state other regions copy
// (State) keeps them: those regions deliver.
func maskedWebhook(w meta.Webhook) *controlpb.Webhook {
	w.Headers = webhook.Masked(w.Headers)
	w.URI = webhook.RedactedURI(w.URI)
	return webhookToProto(w)
}

// ListWebhooks lists the webhooks, header values masked.
func (p *Plane) ListWebhooks(ctx context.Context, _ *controlpb.ListWebhooksRequest) (*controlpb.ListWebhooksResponse, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	ws := p.Webhooks()
	resp := &controlpb.ListWebhooksResponse{Webhooks: make([]*controlpb.Webhook, 0, len(ws))}
	for _, w := range ws {
		resp.Webhooks = append(resp.Webhooks, maskedWebhook(w))
	}
	return resp, nil
}

// DeleteWebhook removes a webhook.
func (p *Plane) DeleteWebhook(ctx context.Context, req *controlpb.NameRequest) (*controlpb.DeleteWebhookResponse, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	if err := p.apply(ctx, meta.DeleteWebhook{Name: req.Name}); err != nil {
		if status.Code(err) == codes.Unavailable {
			return nil, err
		}
		return nil, status.Errorf(codes.NotFound, "no webhook %s", req.Name)
	}
	return &controlpb.DeleteWebhookResponse{}, nil
}

// PingWebhook sends a ping event to the webhook now.
func (p *Plane) PingWebhook(ctx context.Context, req *controlpb.NameRequest) (*controlpb.Delivery, error) {
	if err := p.management(); err != nil {
		return nil, err
	}
	for _, w := range p.Webhooks() {
		if w.Name != req.Name {
			continue
		}
		now := time.Now().UTC()
		body, _ := json.Marshal(webhook.Payload{
			ID: "ping-" + now.Format("20060102T150405.000000000"), Timestamp: now, Action: "ping", Region: w.Region,
			Request: webhook.Request{Host: w.Region, Method: http.MethodPost, UserAgent: "georeg-ping"},
		})
		start := time.Now()
		code, err := webhook.Post(ctx, p.webhookClient, w, body)
		d := meta.Delivery{ID: "ping", Webhook: w.Name, Action: "ping", Status: code, Attempt: 1, Final: true, Time: now, Duration: time.Since(start).Seconds()}
		if err != nil {
			d.Error = err.Error()
		}
		return deliveryToProto(d), nil
	}
	return nil, status.Errorf(codes.NotFound, "no webhook %s", req.Name)
}

// WebhookEvents lists this region's recorded deliveries of a webhook.
func (p *Plane) WebhookEvents(ctx context.Context, req *controlpb.NameRequest) (*controlpb.WebhookEventsResponse, error) {
	ds, err := p.cfg.Webhooks.Deliveries(req.Name)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &controlpb.WebhookEventsResponse{Deliveries: make([]*controlpb.Delivery, 0, len(ds))}
	for _, d := range ds {
		resp.Deliveries = append(resp.Deliveries, deliveryToProto(d))
	}
	return resp, nil
}
