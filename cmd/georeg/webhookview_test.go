package main

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/proto/controlpb"
)

// The expected outputs below were printed by the CLI when it decoded the
// registry's JSON records (before the control protocol carried messages):
// webhook show, create and ping print one object with sorted keys; list
// and list-events print one line of JSON or a table. They must not change.

func TestPrintWebhooks(t *testing.T) {
	created := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)
	tests := []struct {
		name string
		ws   []*controlpb.Webhook
		want string // each webhook shown, then the list as JSON, then as a table
	}{
		{"full", []*controlpb.Webhook{{
			Name: "hookone", Uri: "http://127.0.0.1:9/x", Actions: []string{"push", "delete"}, Scope: "app:*", Region: "westus",
			Headers: map[string]string{"X-B": "2", "Authorization": "Bearer t"}, Enabled: true, Created: timestamppb.New(created),
		}}, `{
  "actions": [
    "push",
    "delete"
  ],
  "created": "2026-03-04T05:06:07.890123456Z",
  "enabled": true,
  "headers": {
    "Authorization": "Bearer t",
    "X-B": "2"
  },
  "name": "hookone",
  "region": "westus",
  "scope": "app:*",
  "uri": "http://127.0.0.1:9/x"
}
[{"name":"hookone","uri":"http://127.0.0.1:9/x","actions":["push","delete"],"scope":"app:*","region":"westus","headers":{"Authorization":"Bearer t","X-B":"2"},"enabled":true,"created":"2026-03-04T05:06:07.890123456Z"}]
NAME     REGION  ACTIONS      SCOPE  URI
hookone  westus  push,delete  app:*  http://127.0.0.1:9/x
`},
		{"plain and zero", []*controlpb.Webhook{
			{Name: "hooktwo", Uri: "https://h.example/", Actions: []string{"push"}, Region: "eastus", Created: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
			{Name: "zero00"},
		}, `{
  "actions": [
    "push"
  ],
  "created": "2026-01-01T00:00:00Z",
  "enabled": false,
  "name": "hooktwo",
  "region": "eastus",
  "uri": "https://h.example/"
}
{
  "actions": null,
  "created": "0001-01-01T00:00:00Z",
  "enabled": false,
  "name": "zero00",
  "region": "",
  "uri": ""
}
[{"name":"hooktwo","uri":"https://h.example/","actions":["push"],"region":"eastus","enabled":false,"created":"2026-01-01T00:00:00Z"},{"name":"zero00","uri":"","actions":null,"region":"","enabled":false,"created":"0001-01-01T00:00:00Z"}]
NAME     REGION  ACTIONS  SCOPE  URI
hooktwo  eastus  push            https://h.example/
zero00                           
`},
		{"none", nil, `[]
NAME  REGION  ACTIONS  SCOPE  URI
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			e := env{stdout: &out, stderr: &out}
			for _, w := range tt.ws {
				if err := printWebhook(e, w); err != nil {
					t.Fatal(err)
				}
			}
			if err := printWebhooks(e, tt.ws, true); err != nil {
				t.Fatal(err)
			}
			if err := printWebhooks(e, tt.ws, false); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPrintDeliveries(t *testing.T) {
	tests := []struct {
		name string
		ds   []*controlpb.Delivery
		want string // each delivery shown, then the list as JSON, then as a table
	}{
		{"full", []*controlpb.Delivery{
			{Id: "ev-1", Webhook: "hookone", Seq: 7, Action: "push", Repo: "app", Tag: "v1", Digest: "sha256:abc", Status: 200, Attempt: 1, Final: true,
				Time: timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)), DurationSeconds: 0.0123},
			{Id: "ev-2", Webhook: "hookone", Seq: 8, Action: "delete", Repo: "app", Error: "dial tcp: refused", Attempt: 3,
				Time: timestamppb.New(time.Date(2026, 3, 4, 5, 6, 8, 0, time.UTC)), DurationSeconds: 1.5},
		}, `{
  "action": "push",
  "attempt": 1,
  "digest": "sha256:abc",
  "durationSeconds": 0.0123,
  "final": true,
  "id": "ev-1",
  "repo": "app",
  "seq": 7,
  "status": 200,
  "tag": "v1",
  "time": "2026-03-04T05:06:07.890123456Z",
  "webhook": "hookone"
}
{
  "action": "delete",
  "attempt": 3,
  "durationSeconds": 1.5,
  "error": "dial tcp: refused",
  "final": false,
  "id": "ev-2",
  "repo": "app",
  "seq": 8,
  "status": 0,
  "time": "2026-03-04T05:06:08Z",
  "webhook": "hookone"
}
[{"id":"ev-1","webhook":"hookone","seq":7,"action":"push","repo":"app","tag":"v1","digest":"sha256:abc","status":200,"attempt":1,"final":true,"time":"2026-03-04T05:06:07.890123456Z","durationSeconds":0.0123},{"id":"ev-2","webhook":"hookone","seq":8,"action":"delete","repo":"app","status":0,"error":"dial tcp: refused","attempt":3,"final":false,"time":"2026-03-04T05:06:08Z","durationSeconds":1.5}]
TIME                  ID    ACTION  REPOSITORY  TAG  STATUS  ATTEMPT  ERROR
2026-03-04T05:06:07Z  ev-1  push    app         v1   200     1        
2026-03-04T05:06:08Z  ev-2  delete  app              0       3        dial tcp: refused
`},
		{"zero", []*controlpb.Delivery{{}}, `{
  "action": "",
  "attempt": 0,
  "durationSeconds": 0,
  "final": false,
  "id": "",
  "seq": 0,
  "status": 0,
  "time": "0001-01-01T00:00:00Z",
  "webhook": ""
}
[{"id":"","webhook":"","seq":0,"action":"","status":0,"attempt":0,"final":false,"time":"0001-01-01T00:00:00Z","durationSeconds":0}]
TIME                  ID  ACTION  REPOSITORY  TAG  STATUS  ATTEMPT  ERROR
0001-01-01T00:00:00Z                               0       0        
`},
		{"none", nil, `[]
TIME  ID  ACTION  REPOSITORY  TAG  STATUS  ATTEMPT  ERROR
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			e := env{stdout: &out, stderr: &out}
			for _, d := range tt.ds {
				if err := printDelivery(e, d); err != nil {
					t.Fatal(err)
				}
			}
			if err := printDeliveries(e, tt.ds, true); err != nil {
				t.Fatal(err)
			}
			if err := printDeliveries(e, tt.ds, false); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
