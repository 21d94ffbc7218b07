package meta

import (
	"reflect"
	"testing"
)

// fakeClock returns now from Now and records what it observed.
type fakeClock struct {
	now      uint64
	observed []uint64
}

func (c *fakeClock) Now() uint64       { return c.now }
func (c *fakeClock) Observe(ts uint64) { c.observed = append(c.observed, ts) }

func TestStampFor(t *testing.T) {
	const now, region = 100, "westus"
	tests := []struct {
		name         string
		cmd          Command
		want         Command
		wantObserved []uint64
	}{
		{
			name: "local write without a stamp is stamped",
			cmd:  PutManifest{Repo: "r", Tag: "t"},
			want: PutManifest{Repo: "r", Tag: "t", Clock: now, Origin: region},
		},
		{
			name: "local tag delete is stamped",
			cmd:  DeleteTag{Repo: "r", Tag: "t"},
			want: DeleteTag{Repo: "r", Tag: "t", Clock: now, Origin: region},
		},
		{
			name: "local write with a stamp keeps it",
			cmd:  DeleteManifest{Repo: "r", Clock: 7, Origin: "eastus"},
			want: DeleteManifest{Repo: "r", Clock: 7, Origin: "eastus"},
		},
		{
			name:         "replicated write is observed, not restamped",
			cmd:          PutManifest{Repo: "r", Clock: 200, Origin: "eastus", Replicated: true},
			want:         PutManifest{Repo: "r", Clock: 200, Origin: "eastus", Replicated: true},
			wantObserved: []uint64{200},
		},
		{
			name:         "a merge is always replicated",
			cmd:          MergeTag{Repo: "r", Tag: "t", Clock: 300, Origin: "eastus"},
			want:         MergeTag{Repo: "r", Tag: "t", Clock: 300, Origin: "eastus"},
			wantObserved: []uint64{300},
		},
		{
			name: "a command not ordered across regions is left alone",
			cmd:  LinkBlob{Repo: "r", Size: 1},
			want: LinkBlob{Repo: "r", Size: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: now}
			got := StampFor(tt.cmd, clock, region)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("StampFor = %#v, want %#v", got, tt.want)
			}
			if !reflect.DeepEqual(clock.observed, tt.wantObserved) {
				t.Errorf("observed %v, want %v", clock.observed, tt.wantObserved)
			}
		})
	}
}
