package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
)

// webhookJSON is a webhook as the CLI prints it: the field names, order and
// omissions of the registry's webhook record, which scripts parse.
type webhookJSON struct {
	Name    string            `json:"name"`
	URI     string            `json:"uri"`
	Actions []string          `json:"actions"`
	Scope   string            `json:"scope,omitempty"`
	Region  string            `json:"region"`
	Headers map[string]string `json:"headers,omitempty"`
	Enabled bool              `json:"enabled"`
	Created time.Time         `json:"created"`
}

func webhookView(w *controlpb.Webhook) webhookJSON {
	return webhookJSON{
		Name: w.GetName(), URI: w.GetUri(), Actions: w.GetActions(), Scope: w.GetScope(), Region: w.GetRegion(),
		Headers: w.GetHeaders(), Enabled: w.GetEnabled(), Created: proto.Time(w.GetCreated()),
	}
}

// deliveryJSON is a webhook delivery as the CLI prints it: the field
// names, order and omissions of the registry's delivery record.
type deliveryJSON struct {
	ID       string    `json:"id"`
	Webhook  string    `json:"webhook"`
	Seq      uint64    `json:"seq"`
	Action   string    `json:"action"`
	Repo     string    `json:"repo,omitempty"`
	Tag      string    `json:"tag,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Status   int32     `json:"status"`
	Error    string    `json:"error,omitempty"`
	Attempt  int32     `json:"attempt"`
	Final    bool      `json:"final"`
	Time     time.Time `json:"time"`
	Duration float64   `json:"durationSeconds"`
}

func deliveryView(d *controlpb.Delivery) deliveryJSON {
	return deliveryJSON{
		ID: d.GetId(), Webhook: d.GetWebhook(), Seq: d.GetSeq(), Action: d.GetAction(), Repo: d.GetRepo(), Tag: d.GetTag(),
		Digest: d.GetDigest(), Status: d.GetStatus(), Error: d.GetError(), Attempt: d.GetAttempt(), Final: d.GetFinal(),
		Time: proto.Time(d.GetTime()), Duration: d.GetDurationSeconds(),
	}
}

// printIndented prints v as indented JSON with the keys of every object
// sorted, as one object is shown (webhook create, show, ping).
func printIndented(e env, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var sorted any
	if err := json.Unmarshal(b, &sorted); err != nil {
		return err
	}
	return encodeIndented(e, sorted)
}

func printWebhook(e env, w *controlpb.Webhook) error { return printIndented(e, webhookView(w)) }

func printDelivery(e env, d *controlpb.Delivery) error { return printIndented(e, deliveryView(d)) }

// printWebhooks prints webhooks as a table, or as one line of JSON (an
// empty list is [], not null).
func printWebhooks(e env, ws []*controlpb.Webhook, asJSON bool) error {
	if asJSON {
		views := make([]webhookJSON, 0, len(ws))
		for _, w := range ws {
			views = append(views, webhookView(w))
		}
		return json.NewEncoder(e.stdout).Encode(views)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREGION\tACTIONS\tSCOPE\tURI")
	for _, w := range ws {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.GetName(), w.GetRegion(), strings.Join(w.GetActions(), ","), w.GetScope(), w.GetUri())
	}
	return tw.Flush()
}

// printDeliveries prints deliveries as a table, or as one line of JSON (an
// empty list is [], not null).
func printDeliveries(e env, ds []*controlpb.Delivery, asJSON bool) error {
	if asJSON {
		views := make([]deliveryJSON, 0, len(ds))
		for _, d := range ds {
			views = append(views, deliveryView(d))
		}
		return json.NewEncoder(e.stdout).Encode(views)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tID\tACTION\tREPOSITORY\tTAG\tSTATUS\tATTEMPT\tERROR")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", proto.Time(d.GetTime()).Format(time.RFC3339), d.GetId(), d.GetAction(), d.GetRepo(), d.GetTag(), d.GetStatus(), d.GetAttempt(), d.GetError())
	}
	return tw.Flush()
}
