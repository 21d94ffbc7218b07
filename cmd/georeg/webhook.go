package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/proto/controlpb"
)

func webhookCreate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "webhook create", "", "Create a regional webhook: it fires once an image is available in (or\ndeleted from) its region.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "webhook `name` (5-50 letters and digits)")
	uri := fs.String("uri", "", "http or https `URL` the events are POSTed to; redirects are not followed, and loopback, private and link-local hosts are refused unless the nodes run with --webhook-allow-private")
	actions := fs.String("actions", "", "comma-separated `actions`: push, delete")
	scope := fs.String("scope", "", "`repo:tag` with * wildcards (default: everything)")
	region := fs.String("region", "", "`region` whose events it announces (default: the home region)")
	var headers listFlag
	fs.Var(&headers, "headers", "extra request header `k=v` (repeatable); values are write-only: show and list print ****")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" || *uri == "" || *actions == "" {
		return usagef("--name, --uri and --actions are required")
	}
	w := &controlpb.Webhook{Name: *name, Uri: *uri, Actions: splitList(*actions), Scope: *scope, Region: *region, Headers: map[string]string{}}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok {
			return usagef("--headers %q: want k=v", h)
		}
		w.Headers[k] = v
	}
	var created *controlpb.Webhook
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		created, err = c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: w})
		return err
	})
	if err != nil {
		return err
	}
	return printWebhook(e, created)
}

func listWebhooks(ctx context.Context, dir string) ([]*controlpb.Webhook, error) {
	var resp *controlpb.ListWebhooksResponse
	err := homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ListWebhooks(ctx, &controlpb.ListWebhooksRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Webhooks, nil
}

func webhookList(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "webhook list", "", "List the webhooks.")
	dir := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	ws, err := listWebhooks(ctx, *dir)
	if err != nil {
		return err
	}
	return printWebhooks(e, ws, *asJSON)
}

func nameFlag(e env, verb, summary string, args []string) (dir, name string, err error) {
	fs := newFlagSet(e, "webhook "+verb, "", summary)
	d := dirFlag(fs)
	n := fs.String("name", "", "webhook `name`")
	if _, err := parse(e, fs, args); err != nil {
		return "", "", err
	}
	if *n == "" {
		return "", "", usagef("--name is required")
	}
	return *d, *n, nil
}

func webhookShow(ctx context.Context, e env, args []string) error {
	dir, name, err := nameFlag(e, "show", "Show one webhook.", args)
	if err != nil {
		return err
	}
	ws, err := listWebhooks(ctx, dir)
	if err != nil {
		return err
	}
	for _, w := range ws {
		if w.Name == name {
			return printWebhook(e, w)
		}
	}
	return fmt.Errorf("no webhook %s", name)
}

func webhookDelete(ctx context.Context, e env, args []string) error {
	dir, name, err := nameFlag(e, "delete", "Delete a webhook.", args)
	if err != nil {
		return err
	}
	err = homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.DeleteWebhook(ctx, &controlpb.NameRequest{Name: name})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "webhook %s deleted\n", name)
	return nil
}

func webhookPing(ctx context.Context, e env, args []string) error {
	dir, name, err := nameFlag(e, "ping", "Send a ping event to a webhook now.", args)
	if err != nil {
		return err
	}
	var d *controlpb.Delivery
	err = homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		d, err = c.PingWebhook(ctx, &controlpb.NameRequest{Name: name})
		return err
	})
	if err != nil {
		return err
	}
	return printDelivery(e, d)
}

func webhookListEvents(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "webhook list-events", "", "List a webhook's deliveries (every attempt), newest first, as recorded in\nits region.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "webhook `name`")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	m, err := chaos.LoadMesh(*dir)
	if err != nil {
		return err
	}
	// The deliveries are in the webhook's region; without the home region
	// to say which that is, ask every region.
	region := ""
	if ws, err := listWebhooks(ctx, *dir); err == nil {
		for _, w := range ws {
			if w.Name == *name {
				region = w.Region
			}
		}
		if region == "" {
			return fmt.Errorf("no webhook %s", *name)
		}
	}
	var all []*controlpb.Delivery
	for _, r := range m.Regions {
		if region != "" && r.Name != region {
			continue
		}
		for _, n := range r.Zones {
			p, ok := n.Ports["grpc"]
			if !ok {
				continue
			}
			ds, err := webhookEventsAt(ctx, *dir, "127.0.0.1:"+strconv.Itoa(p), *name)
			if err == nil {
				all = append(all, ds...)
				break
			}
		}
	}
	return printDeliveries(e, all, *asJSON)
}

func webhookEventsAt(ctx context.Context, dir, addr, name string) ([]*controlpb.Delivery, error) {
	conn, err := dialNode(dir, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := controlpb.NewControlClient(conn).WebhookEvents(cctx, &controlpb.NameRequest{Name: name})
	if err != nil {
		return nil, err
	}
	return resp.Deliveries, nil
}
