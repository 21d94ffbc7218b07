package control

import (
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/replication"
)

// The conversions between the control protocol's messages and the
// metadata and replication types they carry. A nil message converts to the
// zero value; times convert through proto.Timestamp and proto.Time, so the
// zero time is an unset timestamp.

func webhookToProto(w meta.Webhook) *controlpb.Webhook {
	return &controlpb.Webhook{
		Name: w.Name, Uri: w.URI, Actions: slices.Clone(w.Actions), Scope: w.Scope, Region: w.Region,
		Headers: maps.Clone(w.Headers), Enabled: w.Enabled, Created: proto.Timestamp(w.Created),
	}
}

func webhookFromProto(w *controlpb.Webhook) meta.Webhook {
	return meta.Webhook{
		Name: w.GetName(), URI: w.GetUri(), Actions: slices.Clone(w.GetActions()), Scope: w.GetScope(), Region: w.GetRegion(),
		Headers: maps.Clone(w.GetHeaders()), Enabled: w.GetEnabled(), Created: proto.Time(w.GetCreated()),
	}
}

func webhooksToProto(ws []meta.Webhook) []*controlpb.Webhook {
	out := make([]*controlpb.Webhook, 0, len(ws))
	for _, w := range ws {
		out = append(out, webhookToProto(w))
	}
	return out
}

func deliveryToProto(d meta.Delivery) *controlpb.Delivery {
	return &controlpb.Delivery{
		Id: d.ID, Webhook: d.Webhook, Seq: d.Seq, Action: d.Action, Repo: d.Repo, Tag: d.Tag, Digest: d.Digest,
		Status: int32(d.Status), Error: d.Error, Attempt: int32(d.Attempt), Final: d.Final,
		Time: proto.Timestamp(d.Time), DurationSeconds: d.Duration,
	}
}

func replicationToProto(r meta.Replication) *controlpb.Replication {
	return &controlpb.Replication{
		Region: r.Region, RegionEndpointEnabled: r.RegionEndpointEnabled, Created: proto.Timestamp(r.Created),
		Seen: r.Seen, Deleted: r.Deleted,
	}
}

func replicationFromProto(r *controlpb.Replication) meta.Replication {
	return meta.Replication{
		Region: r.GetRegion(), RegionEndpointEnabled: r.GetRegionEndpointEnabled(), Created: proto.Time(r.GetCreated()),
		Seen: r.GetSeen(), Deleted: r.GetDeleted(),
	}
}

// stateToProto converts the control state; Fetched is this node's own
// bookkeeping and does not travel.
func stateToProto(st State) *controlpb.ControlState {
	out := &controlpb.ControlState{Home: st.Home, Webhooks: webhooksToProto(st.Webhooks)}
	for _, r := range st.Replications {
		out.Replications = append(out.Replications, replicationToProto(r))
	}
	return out
}

func stateFromProto(st *controlpb.ControlState) State {
	out := State{Home: st.GetHome()}
	for _, r := range st.GetReplications() {
		out.Replications = append(out.Replications, replicationFromProto(r))
	}
	for _, w := range st.GetWebhooks() {
		out.Webhooks = append(out.Webhooks, webhookFromProto(w))
	}
	return out
}

func peersToProto(ps []replication.PeerStatus) []*controlpb.PeerStatus {
	out := make([]*controlpb.PeerStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, &controlpb.PeerStatus{
			Region: p.Region, Backlog: p.Backlog, LagSeconds: p.LagSeconds,
			LastSync: proto.Timestamp(p.LastSync), LastError: p.LastError,
			DeliverySeconds: p.DeliverySeconds, EventsPerSecond: p.EventsPerSecond, OffersInFlight: int32(p.OffersInFlight),
			BlobBytesPerSecond: p.BlobBytesPerSecond, TransfersInFlight: int32(p.TransfersInFlight),
			DroppedEvents: p.DroppedEvents, LastDrop: proto.Timestamp(p.LastDrop),
			SyncRepos: int32(p.SyncRepos), SyncReposDone: int32(p.SyncReposDone), SyncManifests: int32(p.SyncManifests),
			SyncRunning: p.SyncRunning, SyncEtaSeconds: p.SyncETASeconds,
			SyncTags: p.SyncTags, SyncTagsDone: p.SyncTagsDone, SyncBytes: p.SyncBytes, SyncBytesDone: p.SyncBytesDone,
		})
	}
	return out
}

func peersFromProto(ps []*controlpb.PeerStatus) []replication.PeerStatus {
	var out []replication.PeerStatus
	for _, p := range ps {
		out = append(out, replication.PeerStatus{
			Region: p.GetRegion(), Backlog: p.GetBacklog(), LagSeconds: p.GetLagSeconds(),
			LastSync: proto.Time(p.GetLastSync()), LastError: p.GetLastError(),
			DeliverySeconds: p.GetDeliverySeconds(), EventsPerSecond: p.GetEventsPerSecond(), OffersInFlight: int(p.GetOffersInFlight()),
			BlobBytesPerSecond: p.GetBlobBytesPerSecond(), TransfersInFlight: int(p.GetTransfersInFlight()),
			DroppedEvents: p.GetDroppedEvents(), LastDrop: proto.Time(p.GetLastDrop()),
			SyncRepos: int(p.GetSyncRepos()), SyncReposDone: int(p.GetSyncReposDone()), SyncManifests: int(p.GetSyncManifests()),
			SyncRunning: p.GetSyncRunning(), SyncETASeconds: p.GetSyncEtaSeconds(),
			SyncTags: p.GetSyncTags(), SyncTagsDone: p.GetSyncTagsDone(), SyncBytes: p.GetSyncBytes(), SyncBytesDone: p.GetSyncBytesDone(),
		})
	}
	return out
}

// syncedToProto converts the per-region sync times. A map value cannot be
// unset (it would arrive as the Unix epoch), so every time is sent as a
// timestamp, the zero time included.
func syncedToProto(synced map[string]time.Time) map[string]*timestamppb.Timestamp {
	out := make(map[string]*timestamppb.Timestamp, len(synced))
	for region, t := range synced {
		out[region] = timestamppb.New(t)
	}
	return out
}

func syncedFromProto(synced map[string]*timestamppb.Timestamp) map[string]time.Time {
	out := make(map[string]time.Time, len(synced))
	for region, ts := range synced {
		out[region] = proto.Time(ts)
	}
	return out
}
