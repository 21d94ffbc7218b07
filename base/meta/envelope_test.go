package meta

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/connected"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// everyCommand holds one command of every op, with every field set, and
// the envelope it must encode to: the envelope is what Raft logs hold, so
// a change here is a change of the log format.
func everyCommand() []struct {
	cmd  Command
	want string
} {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := digest.Digest("sha256:0000000000000000000000000000000000000000000000000000000000000001")
	req := &RequestInfo{ID: "req", Host: "h", Method: "PUT", UserAgent: "ua"}
	seg := Segment{Offset: 4, Size: 4, Digest: d}
	return []struct {
		cmd  Command
		want string
	}{
		{LinkBlob{Repo: "r", Digest: d, Size: 3},
			`{"op":"link-blob","repo":"r","digest":"` + d.String() + `","size":3}`},
		{UnlinkBlob{Repo: "r", Digest: d},
			`{"op":"unlink-blob","repo":"r","digest":"` + d.String() + `"}`},
		{PutManifest{Repo: "r", Tag: "v1",
			Manifest: ManifestRecord{Digest: d, MediaType: "m", Size: 2, Subject: d, Annotations: map[string]string{"a": "b"}, Created: at, Content: []byte("{}")},
			Links:    []Link{{d, 1}}, Requires: []digest.Digest{d}, RequiresManifests: []digest.Digest{d},
			Time: at, Clock: 7, Origin: "westus", Replicated: true, Request: req},
			`{"op":"put-manifest","repo":"r","tag":"v1","manifest":{"digest":"` + d.String() + `","mediaType":"m","size":2,` +
				`"subject":"` + d.String() + `","annotations":{"a":"b"},"created":"2026-01-02T03:04:05Z","content":"e30="},` +
				`"links":[{"digest":"` + d.String() + `","size":1}],"requires":["` + d.String() + `"],"requiresManifests":["` + d.String() + `"],` +
				`"time":"2026-01-02T03:04:05Z","clock":7,"origin":"westus","replicated":true,` +
				`"request":{"id":"req","host":"h","method":"PUT","useragent":"ua"}}`},
		{DeleteManifest{Repo: "r", Digest: d, Time: at, Clock: 7, Origin: "westus", Replicated: true, Request: req},
			`{"op":"delete-manifest","repo":"r","digest":"` + d.String() + `","time":"2026-01-02T03:04:05Z","clock":7,"origin":"westus","replicated":true,` +
				`"request":{"id":"req","host":"h","method":"PUT","useragent":"ua"}}`},
		{DeleteTag{Repo: "r", Tag: "v1", Time: at, Clock: 7, Origin: "westus"},
			`{"op":"delete-tag","repo":"r","tag":"v1","time":"2026-01-02T03:04:05Z","clock":7,"origin":"westus"}`},
		{MergeTag{Repo: "r", Tag: "v1", Digest: d, Deleted: true, Clock: 7, Origin: "westus", Time: at},
			`{"op":"merge-tag","repo":"r","tag":"v1","digest":"` + d.String() + `","deleted":true,"clock":7,"origin":"westus","time":"2026-01-02T03:04:05Z"}`},
		{ReplicatedBatch{
			Manifests: []PutManifest{{Repo: "r", Tag: "v1", Manifest: ManifestRecord{Digest: d, MediaType: "m", Size: 2, Content: []byte("{}")},
				Links: []Link{{d, 1}}, Requires: []digest.Digest{d}, Time: at, Clock: 7, Origin: "westus", Replicated: true}},
			Tags: []MergeTag{{Repo: "r", Tag: "v2", Digest: d, Clock: 8, Origin: "westus", Time: at}}},
			`{"op":"replicated-batch","manifests":[{"repo":"r","tag":"v1","manifest":{"digest":"` + d.String() + `","mediaType":"m","size":2,` +
				`"created":"0001-01-01T00:00:00Z","content":"e30="},"links":[{"digest":"` + d.String() + `","size":1}],"requires":["` + d.String() + `"],` +
				`"time":"2026-01-02T03:04:05Z","clock":7,"origin":"westus","replicated":true}],` +
				`"tags":[{"repo":"r","tag":"v2","digest":"` + d.String() + `","clock":8,"origin":"westus","time":"2026-01-02T03:04:05Z"}]}`},
		{MarkBlobs{Mark: []digest.Digest{d}, Unmark: []digest.Digest{d}, Time: at},
			`{"op":"mark-blobs","mark":["` + d.String() + `"],"unmark":["` + d.String() + `"],"time":"2026-01-02T03:04:05Z"}`},
		{CollectBlobs{Digests: []digest.Digest{d}, Before: at, Repositories: []string{"r"}},
			`{"op":"collect-blobs","digests":["` + d.String() + `"],"before":"2026-01-02T03:04:05Z","repositories":["r"]}`},
		{AckOutbox{Peer: "eastus", Seq: 9},
			`{"op":"ack-outbox","peer":"eastus","seq":9}`},
		{AckOutbox{Peer: "eastus", Seq: 9, Dropped: 3, Time: at},
			`{"op":"ack-outbox","peer":"eastus","seq":9,"dropped":3,"time":"2026-01-02T03:04:05Z"}`},
		{TransferBegin{Digest: d, Size: 10, ID: "x", From: "eastus", SegmentSize: 4, Time: at},
			`{"op":"transfer-begin","digest":"` + d.String() + `","size":10,"id":"x","from":"eastus","segmentSize":4,"time":"2026-01-02T03:04:05Z"}`},
		{TransferSegment{Digest: d, ID: "x", Segment: seg, Time: at},
			`{"op":"transfer-segment","digest":"` + d.String() + `","id":"x","segment":{"offset":4,"size":4,"digest":"` + d.String() + `"},"time":"2026-01-02T03:04:05Z"}`},
		{TransferEnd{Digest: d, ID: "x", Unrecorded: []Segment{seg}, Time: at},
			`{"op":"transfer-end","digest":"` + d.String() + `","id":"x","unrecorded":[{"offset":4,"size":4,"digest":"` + d.String() + `"}],"time":"2026-01-02T03:04:05Z"}`},
		{ForgetDeadSegments{Before: at},
			`{"op":"forget-dead-segments","before":"2026-01-02T03:04:05Z"}`},
		{PutWebhook{Webhook: Webhook{Name: "w", URI: "http://x", Actions: []string{"push"}, Region: "eastus", Enabled: true, Created: at}},
			`{"op":"put-webhook","webhook":{"name":"w","uri":"http://x","actions":["push"],"region":"eastus","enabled":true,"created":"2026-01-02T03:04:05Z"}}`},
		{DeleteWebhook{Name: "w"},
			`{"op":"delete-webhook","name":"w"}`},
		{WebhookDelivered{Delivery: Delivery{ID: "1", Webhook: "w", Seq: 3, Action: "push", Status: 200, Attempt: 1, Final: true, Time: at, Duration: 0.5}, Start: 2},
			`{"op":"webhook-delivered","delivery":{"id":"1","webhook":"w","seq":3,"action":"push","status":200,"attempt":1,"final":true,` +
				`"time":"2026-01-02T03:04:05Z","durationSeconds":0.5},"start":2}`},
		{PutReplication{Replication: Replication{Region: "westus", RegionEndpointEnabled: true, Created: at}},
			`{"op":"put-replication","replication":{"region":"westus","regionEndpointEnabled":true,"created":"2026-01-02T03:04:05Z"}}`},
		{DeleteReplication{Region: "westus"},
			`{"op":"delete-replication","region":"westus"}`},
		{PutScopeMap{ScopeMap: access.ScopeMap{Name: "pull-samples", Permissions: []access.Permission{{Pattern: "samples/*", Actions: []access.Action{access.ContentRead}}}, Created: at}, Create: true},
			`{"op":"put-scope-map","scopeMap":{"name":"pull-samples","repositories":[{"repository":"samples/*","actions":["content/read"]}],"created":"2026-01-02T03:04:05Z"},"create":true}`},
		{DeleteScopeMap{Name: "pull-samples"},
			`{"op":"delete-scope-map","name":"pull-samples"}`},
		{PutToken{Token: access.Token{Name: "ci-bot", ScopeMap: "pull-samples", Status: access.Enabled,
			Passwords: []access.Password{{Name: "password1", Hash: []byte("h"), Created: at, Expiry: at}}, Created: at, Version: 2}, Create: true},
			`{"op":"put-token","token":{"name":"ci-bot","scopeMap":"pull-samples","status":"enabled","passwords":[{"name":"password1","hash":"aA==",` +
				`"created":"2026-01-02T03:04:05Z","expiry":"2026-01-02T03:04:05Z"}],"created":"2026-01-02T03:04:05Z","version":2},"create":true}`},
		{DeleteToken{Name: "ci-bot"},
			`{"op":"delete-token","name":"ci-bot"}`},
		{PutAccessConfig{Settings: &access.Settings{AuthEnabled: true, AnonymousPull: true},
			Admin: &access.Token{Name: "admin", Status: access.Enabled, Created: at},
			Keys:  []access.SigningKey{{ID: "k1", Seed: []byte("s"), Created: at}}},
			`{"op":"put-access-config","settings":{"authEnabled":true,"adminEnabled":false,"anonymousPullEnabled":true},` +
				`"admin":{"name":"admin","scopeMap":"","status":"enabled","created":"2026-01-02T03:04:05Z","version":0},` +
				`"keys":[{"id":"k1","seed":"cw==","created":"2026-01-02T03:04:05Z"}]}`},
		{PutConnectedRegistry{Registry: connected.Registry{Name: "factory1", Mode: connected.ReadOnly, Repositories: []string{"samples/*"}, LogLevel: "Information", Created: at},
			Create: true, SyncToken: &access.Token{Name: "factory1-sync-token", Status: access.Enabled, Created: at}},
			`{"op":"put-connected-registry","registry":{"name":"factory1","mode":"ReadOnly","repositories":["samples/*"],"syncToken":"","logLevel":"Information",` +
				`"activation":"","created":"2026-01-02T03:04:05Z"},"create":true,` +
				`"syncToken":{"name":"factory1-sync-token","scopeMap":"","status":"enabled","created":"2026-01-02T03:04:05Z","version":0}}`},
		{DeleteConnectedRegistry{Name: "factory1", Force: true},
			`{"op":"delete-connected-registry","name":"factory1","force":true}`},
		{SetConnectedActivation{Name: "factory1", Activation: connected.Active, Instance: "i-1", At: at},
			`{"op":"set-connected-activation","name":"factory1","activation":"Active","instance":"i-1","at":"2026-01-02T03:04:05Z"}`},
		{SetConnectedStatus{Name: "factory1", Status: connected.Status{Instance: "i-1", State: connected.Online, LastSync: at}, Seen: at},
			`{"op":"set-connected-status","name":"factory1","status":{"instance":"i-1","state":"Online","lastSync":"2026-01-02T03:04:05Z"},"seen":"2026-01-02T03:04:05Z"}`},
		{PutSite{Site: Site{Instance: "i-1", Registry: connected.Registry{Name: "factory1", Mode: connected.ReadWrite, Repositories: []string{"samples/*"}}}},
			`{"op":"put-site","site":{"instance":"i-1","registry":{"name":"factory1","mode":"ReadWrite","repositories":["samples/*"],"syncToken":"","logLevel":"","activation":"","created":"0001-01-01T00:00:00Z"}}}`},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	seen := map[Op]bool{}
	for _, tt := range everyCommand() {
		t.Run(string(tt.cmd.Op()), func(t *testing.T) {
			seen[tt.cmd.Op()] = true
			b, err := Encode(tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("envelope\n got %s\nwant %s", b, tt.want)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.cmd) {
				t.Errorf("decoded\n got %#v\nwant %#v", got, tt.cmd)
			}
		})
	}
	// A command missing from everyCommand would have no pinned envelope.
	for op := range seen {
		if decoderOf(op) == nil {
			t.Errorf("op %q has no decoder", op)
		}
	}
	if len(seen) != 29 {
		t.Errorf("everyCommand covers %d ops, want all 29: add the new command to it", len(seen))
	}
}

func TestEncodeEmptyCommand(t *testing.T) {
	b, err := Encode(DeleteWebhook{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"op":"delete-webhook","name":""}`; string(b) != want {
		t.Fatalf("envelope %s, want %s", b, want)
	}
	b, err = Encode(AckOutbox{})
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("envelope %s is not JSON", b)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"unknown op", `{"op":"bogus","repo":"r"}`, ErrUnknownCommand},
		{"empty op", `{"op":""}`, ErrUnknownCommand},
		{"not JSON", `{not json`, ErrMalformedCommand},
		{"empty", ``, ErrMalformedCommand},
		{"no op", `{"repo":"r"}`, ErrMalformedCommand},
		{"null op", `{"op":null}`, ErrMalformedCommand},
		{"op not a string", `{"op":5}`, ErrMalformedCommand},
		{"not an object", `["link-blob"]`, ErrMalformedCommand},
		{"null", `null`, ErrMalformedCommand},
		{"field of the wrong type", `{"op":"link-blob","size":"big"}`, ErrMalformedCommand},
		{"trailing garbage", `{"op":"link-blob"} x`, ErrMalformedCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := Decode([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%s) = %v, %v; want %v", tt.in, cmd, err, tt.want)
			}
			if cmd != nil {
				t.Fatalf("Decode(%s) returned a command with its error: %#v", tt.in, cmd)
			}
		})
	}
}

// TestDecodeIgnoresUnknownFields: a newer node may add a field to a
// command; an older one applies what it knows.
func TestDecodeIgnoresUnknownFields(t *testing.T) {
	cmd, err := Decode([]byte(`{"op":"delete-webhook","name":"w","future":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (DeleteWebhook{Name: "w"}); cmd != want {
		t.Fatalf("decoded %#v, want %#v", cmd, want)
	}
}

// FuzzDecode checks that Decode never panics, and that what it decodes
// encodes to an envelope that decodes and encodes again to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, tt := range everyCommand() {
		f.Add([]byte(tt.want))
	}
	f.Add([]byte(`{"op":"bogus"}`))
	f.Add([]byte(`{"op":"put-manifest","manifest":{"annotations":{}}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		cmd, err := Decode(in)
		if err != nil {
			if !errors.Is(err, ErrUnknownCommand) && !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("Decode(%q): error %v wraps neither ErrUnknownCommand nor ErrMalformedCommand", in, err)
			}
			return
		}
		once, err := Encode(cmd)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", cmd, err)
		}
		again, err := Decode(once)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)) = %s: %v", cmd, once, err)
		}
		if again.Op() != cmd.Op() {
			t.Fatalf("op %q came back as %q", cmd.Op(), again.Op())
		}
		twice, err := Encode(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("envelope not stable:\n%s\n%s", once, twice)
		}
	})
}
