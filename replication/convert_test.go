package replication

import (
	"reflect"
	"testing"
	"time"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/proto/prototest"
	"github.com/georeg/georeg/proto/replicationpb"
)

const (
	dgstA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dgstB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var written = time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)

func TestOfferRoundTrip(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	tests := []struct {
		name string
		in   offer
	}{
		{"tagged push", offer{
			event:     meta.Event{Seq: 7, Op: meta.OpPutManifest, Repo: "app", Tag: "v1", Digest: dgstA, Clock: 1 << 40, Origin: "westus", Time: written},
			mediaType: "application/vnd.oci.image.manifest.v1+json", manifest: manifest,
		}},
		{"push with inline blobs", offer{
			event:     meta.Event{Seq: 11, Op: meta.OpPutManifest, Repo: "app", Tag: "v2", Digest: dgstA, Clock: 1 << 40, Origin: "westus", Time: written},
			mediaType: "application/vnd.oci.image.manifest.v1+json", manifest: manifest,
			inline: []inlineBlob{{digest: dgstB, data: []byte("config")}, {digest: dgstA, data: []byte("layer")}},
		}},
		{"push by digest", offer{
			event:     meta.Event{Seq: 8, Op: meta.OpPutManifest, Repo: "team/app", Digest: dgstB, Clock: 3, Origin: "eastus", Time: written},
			mediaType: "application/vnd.oci.image.index.v1+json", manifest: []byte("{}"),
		}},
		{"push with zero values", offer{event: meta.Event{Op: meta.OpPutManifest}}},
		{"tag delete", offer{event: meta.Event{Seq: 9, Op: meta.OpDeleteTag, Repo: "app", Tag: "v1", Clock: 5, Origin: "westus", Time: written}}},
		{"tag delete with zero values", offer{event: meta.Event{Op: meta.OpDeleteTag}}},
		{"manifest delete", offer{event: meta.Event{Seq: 10, Op: meta.OpDeleteManifest, Repo: "app", Digest: dgstA, Clock: 6, Origin: "eastus", Time: written}}},
		{"manifest delete with zero values", offer{event: meta.Event{Op: meta.OpDeleteManifest}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb, err := offerToProto(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := offerFromProto(prototest.Wire(t, pb))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip = %+v; want %+v", got, tt.in)
			}
		})
	}
}

func TestOfferRefused(t *testing.T) {
	if _, err := offerToProto(offer{event: meta.Event{Seq: 3, Op: meta.OpLinkBlob, Repo: "app", Digest: dgstA}}); err == nil {
		t.Error("offerToProto accepted a blob link, which is not a replication event")
	}
	for name, pb := range map[string]*replicationpb.Event{
		"no event":  nil,
		"no change": {Seq: 1, Repo: "app", Clock: 2, Origin: "westus"},
	} {
		if o, err := offerFromProto(pb); err == nil {
			t.Errorf("%s: offerFromProto = %+v; want an error", name, o)
		}
	}
}

func TestRepoStateRoundTrip(t *testing.T) {
	empty := meta.RepoState{Tags: []meta.TagState{}, Manifests: []meta.ManifestState{}, Tombstones: []meta.ManifestState{}}
	full := meta.RepoState{
		Tags: []meta.TagState{
			{Tag: "latest", TagRecord: meta.TagRecord{Digest: dgstA, Updated: written, Clock: 4, Origin: "westus"}},
			{Tag: "old", TagRecord: meta.TagRecord{Updated: written.Add(time.Second), Clock: 5, Origin: "eastus", Deleted: true}},
			{Tag: "zero"},
		},
		Manifests:  []meta.ManifestState{{Digest: dgstA, Clock: 4, Origin: "westus"}, {}},
		Tombstones: []meta.ManifestState{{Digest: dgstB, Clock: 6, Origin: "eastus"}},
	}
	tests := []struct {
		name string
		in   meta.RepoState
		want meta.RepoState
	}{
		{"empty, as the store returns it", empty, empty},
		{"zero comes back empty", meta.RepoState{}, empty},
		{"full", full, full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := repoStateFromProto(prototest.Wire(t, repoStateToProto(tt.in)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("round trip = %+v; want %+v", got, tt.want)
			}
		})
	}
}
