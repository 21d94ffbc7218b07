package control

import (
	"reflect"
	"testing"
	"time"

	protobuf "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/proto/prototest"
	"github.com/georeg/georeg/replication"
)

var (
	created = time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)
	later   = time.Date(2026, 3, 4, 5, 7, 0, 0, time.UTC)
)

func TestWebhookRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   meta.Webhook
	}{
		{"zero", meta.Webhook{}},
		{"full", meta.Webhook{
			Name: "hookone", URI: "https://h.example/x", Actions: []string{"push", "delete"}, Scope: "app:*", Region: "westus",
			Headers: map[string]string{"Authorization": "Bearer t", "X-Empty": ""}, Enabled: true, Created: created,
		}},
		{"no headers, disabled", meta.Webhook{Name: "hooktwo", URI: "http://h/", Actions: []string{"*"}, Region: "eastus", Created: later}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := webhookFromProto(prototest.Wire(t, webhookToProto(tt.in)))
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip = %+v; want %+v", got, tt.in)
			}
		})
	}
}

func TestWebhookFromNil(t *testing.T) {
	if got := webhookFromProto(nil); !reflect.DeepEqual(got, meta.Webhook{}) {
		t.Errorf("webhookFromProto(nil) = %+v; want the zero webhook", got)
	}
}

func TestDeliveryToProto(t *testing.T) {
	tests := []struct {
		name string
		in   meta.Delivery
		want *controlpb.Delivery
	}{
		{"zero", meta.Delivery{}, &controlpb.Delivery{}},
		{"attempt that failed", meta.Delivery{
			ID: "ev-2", Webhook: "hookone", Seq: 8, Action: "delete", Repo: "app", Tag: "v1", Digest: "sha256:abc",
			Status: 503, Error: "503 Service Unavailable", Attempt: 3, Time: later, Duration: 1.5,
		}, &controlpb.Delivery{
			Id: "ev-2", Webhook: "hookone", Seq: 8, Action: "delete", Repo: "app", Tag: "v1", Digest: "sha256:abc",
			Status: 503, Error: "503 Service Unavailable", Attempt: 3, Time: timestamppb.New(later), DurationSeconds: 1.5,
		}},
		{"final ping", meta.Delivery{ID: "ping", Webhook: "hookone", Action: "ping", Status: 200, Attempt: 1, Final: true, Time: created},
			&controlpb.Delivery{Id: "ping", Webhook: "hookone", Action: "ping", Status: 200, Attempt: 1, Final: true, Time: timestamppb.New(created)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prototest.Wire(t, deliveryToProto(tt.in)); !protobuf.Equal(got, tt.want) {
				t.Errorf("deliveryToProto = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   State
	}{
		{"zero", State{}},
		{"home only", State{Home: "westus", Replications: []meta.Replication{{Region: "westus", RegionEndpointEnabled: true, Created: created, Seen: true}}}},
		{"full", State{
			Home: "westus",
			Replications: []meta.Replication{
				{Region: "eastus", Created: later, Deleted: true},
				{Region: "provisioning"},
				{Region: "westus", RegionEndpointEnabled: true, Created: created, Seen: true},
			},
			Webhooks: []meta.Webhook{{Name: "hookone", URI: "http://h/", Actions: []string{"push"}, Region: "eastus", Enabled: true, Created: created}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stateFromProto(prototest.Wire(t, stateToProto(tt.in)))
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip = %+v; want %+v", got, tt.in)
			}
		})
	}
}

// TestStateFetchedStaysHome checks that the time a node fetched its copy is
// its own: it is not sent.
func TestStateFetchedStaysHome(t *testing.T) {
	got := stateFromProto(prototest.Wire(t, stateToProto(State{Home: "westus", Fetched: later})))
	if want := (State{Home: "westus"}); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip = %+v; want %+v", got, want)
	}
}

func TestRegionStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		peers  []replication.PeerStatus
		synced map[string]time.Time
	}{
		{"nothing yet", nil, map[string]time.Time{}},
		{"zero values", []replication.PeerStatus{{}}, map[string]time.Time{"eastus": {}}},
		{"peers", []replication.PeerStatus{
			{Region: "eastus", Backlog: 12, LagSeconds: 0.25, LastSync: created, LastError: "eastus: unavailable"},
			{Region: "northeu"},
		}, map[string]time.Time{"eastus": created, "northeu": later}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := prototest.Wire(t, &controlpb.RegionStatusResponse{Peers: peersToProto(tt.peers), Synced: syncedToProto(tt.synced)})
			if got := peersFromProto(resp.Peers); !reflect.DeepEqual(got, tt.peers) {
				t.Errorf("peers round trip = %+v; want %+v", got, tt.peers)
			}
			if got := syncedFromProto(resp.Synced); !reflect.DeepEqual(got, tt.synced) {
				t.Errorf("synced round trip = %+v; want %+v", got, tt.synced)
			}
		})
	}
}
