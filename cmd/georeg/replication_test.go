package main

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/proto/controlpb"
)

// TestPrintReplications pins replication list and show output: the
// expected text was printed when the control protocol carried times as
// RFC 3339 strings, and must not change.
func TestPrintReplications(t *testing.T) {
	reps := []*controlpb.ReplicationInfo{
		{Region: "westus", Home: true, Status: "Ready", RegionEndpointEnabled: true, NodesUp: 3,
			LastSync: timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)), Created: timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))},
		{Region: "eastus", Status: "Syncing", LagEvents: 12, LagSeconds: 1.25, NodesUp: 1,
			Created: timestamppb.New(time.Date(2026, 3, 2, 10, 11, 12, 0, time.UTC))},
		{Region: "westeurope", Status: "Syncing", NodesUp: 1, Inbound: []*controlpb.PeerStatus{
			{Region: "westus", SyncRepos: 500, SyncReposDone: 128, SyncTags: 5000, SyncTagsDone: 1280, SyncManifests: 1280, SyncRunning: true, SyncEtaSeconds: 9.6},
			{Region: "eastus", SyncRepos: 2, SyncReposDone: 2, SyncManifests: 3}}},
		{Region: "zero"},
	}
	tests := []struct {
		name   string
		asJSON bool
		want   string // the four replications, then none
	}{
		{"json", true, `[
  {
    "region": "westus",
    "home": true,
    "status": "Ready",
    "regionEndpointEnabled": true,
    "lagEvents": 0,
    "lagSeconds": 0,
    "lastSync": "2026-03-04T05:06:07Z",
    "created": "2026-03-01T00:00:00Z",
    "nodesUp": 3
  },
  {
    "region": "eastus",
    "home": false,
    "status": "Syncing",
    "regionEndpointEnabled": false,
    "lagEvents": 12,
    "lagSeconds": 1.25,
    "created": "2026-03-02T10:11:12Z",
    "nodesUp": 1
  },
  {
    "region": "westeurope",
    "home": false,
    "status": "Syncing",
    "regionEndpointEnabled": false,
    "lagEvents": 0,
    "lagSeconds": 0,
    "created": "0001-01-01T00:00:00Z",
    "nodesUp": 1,
    "inbound": [
      {
        "from": "westus",
        "eventsPerSecond": 0,
        "blobBytesPerSecond": 0,
        "lagEvents": 0,
        "lagSeconds": 0,
        "deliverySeconds": 0,
        "offersInFlight": 0,
        "transfersInFlight": 0,
        "syncRepos": 500,
        "syncReposDone": 128,
        "syncManifests": 1280,
        "syncRunning": true,
        "syncEtaSeconds": 9.6,
        "syncTags": 5000,
        "syncTagsDone": 1280
      },
      {
        "from": "eastus",
        "eventsPerSecond": 0,
        "blobBytesPerSecond": 0,
        "lagEvents": 0,
        "lagSeconds": 0,
        "deliverySeconds": 0,
        "offersInFlight": 0,
        "transfersInFlight": 0,
        "syncRepos": 2,
        "syncReposDone": 2,
        "syncManifests": 3
      }
    ]
  },
  {
    "region": "zero",
    "home": false,
    "status": "",
    "regionEndpointEnabled": false,
    "lagEvents": 0,
    "lagSeconds": 0,
    "created": "0001-01-01T00:00:00Z",
    "nodesUp": 0
  }
]
[]
`},
		{"table", false, `REGION      HOME  STATUS   ENDPOINT  LAG (EVENTS)  LAG (S)  LAST SYNC             NODES UP
westus      home  Ready    enabled   0             0.0      2026-03-04T05:06:07Z  3
eastus            Syncing  disabled  12            1.2                            1
westeurope        Syncing  disabled  0             0.0                            1
zero                       disabled  0             0.0                            0
westeurope catching up from westus: 128/500 repos, 1280/5000 tags, 1280 manifests, eta 10s
REGION  HOME  STATUS  ENDPOINT  LAG (EVENTS)  LAG (S)  LAST SYNC  NODES UP
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			e := env{stdout: &out, stderr: &out}
			if err := printReplications(e, reps, tt.asJSON); err != nil {
				t.Fatal(err)
			}
			if err := printReplications(e, nil, tt.asJSON); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestPrintInbound pins the per-source table replication show prints under
// the replication's row, and its absence when no other region reports.
func TestPrintInbound(t *testing.T) {
	tests := []struct {
		name string
		rep  *controlpb.ReplicationInfo
		want string
	}{
		{"none", &controlpb.ReplicationInfo{Region: "eastus"}, ""},
		{"two sources", &controlpb.ReplicationInfo{Region: "eastus", Inbound: []*controlpb.PeerStatus{
			{Region: "westeurope", LastError: "westeurope: unavailable", DroppedEvents: 2500,
				LastDrop:  timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)),
				SyncRepos: 50, SyncReposDone: 12, SyncManifests: 240, SyncRunning: true, SyncEtaSeconds: 31.2},
			{Region: "westus", Backlog: 120, LagSeconds: 0.4, DeliverySeconds: 0.26, EventsPerSecond: 130.5,
				OffersInFlight: 3, BlobBytesPerSecond: 540000, TransfersInFlight: 12,
				SyncRepos: 50, SyncReposDone: 50, SyncManifests: 1000},
		}}, `
FROM        EVENTS/S  BLOB BYTES/S  LAG (EVENTS)  LAG (S)  DELIVERY (S)  OFFERS IN FLIGHT  TRANSFERS IN FLIGHT  DROPPED (EVENTS)  LAST DROP             CATCH-UP                             LAST ERROR
westeurope  0.0       0             0             0.0      0.00          0                 0                    2500              2026-03-04T05:06:07Z  12/50 repos, 240 manifests, eta 31s  westeurope: unavailable
westus      130.5     540000        120           0.4      0.26          3                 12                   0                                       done: 50/50 repos, 1000 manifests    
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printInbound(env{stdout: &out, stderr: &out}, tt.rep); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestCatchUp pins the CATCH-UP column of replication show.
func TestCatchUp(t *testing.T) {
	tests := []struct {
		name string
		in   inbound
		want string
	}{
		{"no round found differences", inbound{}, ""},
		{"running, no pace yet", inbound{SyncRepos: 50, SyncRunning: true}, "0/50 repos, 0 manifests"},
		{"running", inbound{SyncRepos: 50, SyncReposDone: 10, SyncManifests: 200, SyncRunning: true, SyncETASeconds: 40.4}, "10/50 repos, 200 manifests, eta 40s"},
		{"done", inbound{SyncRepos: 50, SyncReposDone: 50, SyncManifests: 1000}, "done: 50/50 repos, 1000 manifests"},
		{"tags and bytes", inbound{SyncRepos: 500, SyncReposDone: 128, SyncTags: 5000, SyncTagsDone: 1280, SyncBytes: 700 << 20, SyncBytesDone: 3 << 29,
			SyncManifests: 1200, SyncRunning: true, SyncETASeconds: 9.6}, "128/500 repos, 1280/5000 tags, 1.5 GiB/700.0 MiB linked, 1200 manifests, eta 10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.catchUp(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
