package replication

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/replicationpb"
)

// The conversions between the replication protocol's messages and the
// metadata types they carry. Times convert through proto.Timestamp and
// proto.Time, so the zero time is an unset timestamp. Digests are carried
// as strings and not parsed: they are checked where they are used.

// offer is an outbox event as a region offers it to a peer: a manifest push
// carries the manifest's media type and bytes with it.
type offer struct {
	event     meta.Event
	mediaType string
	manifest  []byte
	// inline are small blobs the manifest references, carried with it
	// (see inline.go).
	inline []inlineBlob
}

// inlineBlob is a blob's bytes carried in an event.
type inlineBlob struct {
	digest digest.Digest
	data   []byte
}

// offerToProto converts an offer. Only the ops that are appended to the
// outbox (push, tag delete, manifest delete) can be offered.
func offerToProto(o offer) (*replicationpb.Event, error) {
	e := o.event
	pb := &replicationpb.Event{Seq: e.Seq, Repo: e.Repo, Clock: e.Clock, Origin: e.Origin, Time: proto.Timestamp(e.Time)}
	switch e.Op {
	case meta.OpPutManifest:
		pm := &replicationpb.PutManifest{Tag: e.Tag, Digest: e.Digest.String(), MediaType: o.mediaType, Content: o.manifest}
		for _, b := range o.inline {
			pm.Blobs = append(pm.Blobs, &replicationpb.InlineBlob{Digest: b.digest.String(), Data: b.data})
		}
		pb.Change = &replicationpb.Event_PutManifest{PutManifest: pm}
	case meta.OpDeleteTag:
		pb.Change = &replicationpb.Event_DeleteTag{DeleteTag: &replicationpb.DeleteTag{Tag: e.Tag}}
	case meta.OpDeleteManifest:
		pb.Change = &replicationpb.Event_DeleteManifest{DeleteManifest: &replicationpb.DeleteManifest{Digest: e.Digest.String()}}
	default:
		return nil, fmt.Errorf("event %d: op %q is not a replication event", e.Seq, e.Op)
	}
	return pb, nil
}

// offerFromProto converts an offered event; one without a change (or with
// a change this node does not know) is refused.
func offerFromProto(pb *replicationpb.Event) (offer, error) {
	e := meta.Event{Seq: pb.GetSeq(), Repo: pb.GetRepo(), Clock: pb.GetClock(), Origin: pb.GetOrigin(), Time: proto.Time(pb.GetTime())}
	var o offer
	switch c := pb.GetChange().(type) {
	case *replicationpb.Event_PutManifest:
		e.Op, e.Tag, e.Digest = meta.OpPutManifest, c.PutManifest.GetTag(), digest.Digest(c.PutManifest.GetDigest())
		o.mediaType, o.manifest = c.PutManifest.GetMediaType(), c.PutManifest.GetContent()
		for _, b := range c.PutManifest.GetBlobs() {
			o.inline = append(o.inline, inlineBlob{digest: digest.Digest(b.GetDigest()), data: b.GetData()})
		}
	case *replicationpb.Event_DeleteTag:
		e.Op, e.Tag = meta.OpDeleteTag, c.DeleteTag.GetTag()
	case *replicationpb.Event_DeleteManifest:
		e.Op, e.Digest = meta.OpDeleteManifest, digest.Digest(c.DeleteManifest.GetDigest())
	default:
		return offer{}, fmt.Errorf("event %d of %s: no known change", pb.GetSeq(), pb.GetRepo())
	}
	o.event = e
	return o, nil
}

func repoStateToProto(st meta.RepoState) *replicationpb.RepoStateResponse {
	pb := &replicationpb.RepoStateResponse{
		Tags:       make([]*replicationpb.TagState, 0, len(st.Tags)),
		Manifests:  manifestStatesToProto(st.Manifests),
		Tombstones: manifestStatesToProto(st.Tombstones),
	}
	for _, t := range st.Tags {
		pb.Tags = append(pb.Tags, &replicationpb.TagState{
			Tag: t.Tag, Digest: t.Digest.String(), Updated: proto.Timestamp(t.Updated),
			Clock: t.Clock, Origin: t.Origin, Deleted: t.Deleted,
		})
	}
	return pb
}

// repoStateFromProto converts a peer's repository state; its lists are
// empty, never nil, as meta.Reader.RepoState returns them.
func repoStateFromProto(pb *replicationpb.RepoStateResponse) meta.RepoState {
	st := meta.RepoState{
		Tags:       make([]meta.TagState, 0, len(pb.GetTags())),
		Manifests:  manifestStatesFromProto(pb.GetManifests()),
		Tombstones: manifestStatesFromProto(pb.GetTombstones()),
	}
	for _, t := range pb.GetTags() {
		st.Tags = append(st.Tags, meta.TagState{Tag: t.GetTag(), TagRecord: meta.TagRecord{
			Digest: digest.Digest(t.GetDigest()), Updated: proto.Time(t.GetUpdated()),
			Clock: t.GetClock(), Origin: t.GetOrigin(), Deleted: t.GetDeleted(),
		}})
	}
	return st
}

func manifestStatesToProto(ms []meta.ManifestState) []*replicationpb.ManifestState {
	out := make([]*replicationpb.ManifestState, 0, len(ms))
	for _, m := range ms {
		out = append(out, &replicationpb.ManifestState{Digest: m.Digest.String(), Clock: m.Clock, Origin: m.Origin})
	}
	return out
}

func manifestStatesFromProto(ms []*replicationpb.ManifestState) []meta.ManifestState {
	out := make([]meta.ManifestState, 0, len(ms))
	for _, m := range ms {
		out = append(out, meta.ManifestState{Digest: digest.Digest(m.GetDigest()), Clock: m.GetClock(), Origin: m.GetOrigin()})
	}
	return out
}
