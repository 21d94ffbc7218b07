package meta

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestTransferCommands runs sequences of transfer commands and checks the
// record and the dead segments they leave.
func TestTransferCommands(t *testing.T) {
	blob := digest.FromString("blob")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	seg := func(k int, size int64) Segment {
		return Segment{Offset: int64(k) * 4, Size: size, Digest: digest.FromString(fmt.Sprintf("seg %d/%d", k, size))}
	}
	begin := func(id string, size int64, s int) Command {
		return TransferBegin{Time: at(s), Digest: blob, Size: size, ID: id, From: "westus", SegmentSize: 4}
	}
	add := func(id string, sg Segment, s int) Command {
		return TransferSegment{Time: at(s), Digest: blob, ID: id, Segment: sg}
	}
	end := func(id string, s int, extra ...Segment) Command {
		return TransferEnd{Time: at(s), Digest: blob, ID: id, Unrecorded: extra}
	}
	dead := func(s int, segs ...Segment) []DeadSegment {
		var out []DeadSegment
		for _, sg := range segs {
			out = append(out, DeadSegment{Digest: sg.Digest, Died: at(s)})
		}
		// Listed by time, then digest.
		slices.SortFunc(out, func(a, b DeadSegment) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		return out
	}
	tests := []struct {
		name     string
		cmds     []Command
		want     *Transfer // nil: no record
		wantDead []DeadSegment
	}{
		{
			name: "begin opens an empty record",
			cmds: []Command{begin("a", 10, 1)},
			want: &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(1)},
		},
		{
			name: "segments append in order, the last may be short",
			cmds: []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), add("a", seg(1, 4), 3), add("a", seg(2, 2), 4)},
			want: &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(4),
				Segments: []Segment{seg(0, 4), seg(1, 4), seg(2, 2)}},
		},
		{
			name: "a second begin keeps the first ID and its segments",
			cmds: []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), begin("b", 10, 3)},
			want: &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(3),
				Segments: []Segment{seg(0, 4)}},
		},
		{
			name:     "a begin of another size replaces the record, its segments die",
			cmds:     []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), begin("b", 12, 3)},
			want:     &Transfer{Digest: blob, Size: 12, ID: "b", From: "westus", SegmentSize: 4, Started: at(3), Updated: at(3)},
			wantDead: dead(3, seg(0, 4)),
		},
		{
			name: "a segment recorded twice is kept once",
			cmds: []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), add("a", seg(0, 4), 3)},
			want: &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(2),
				Segments: []Segment{seg(0, 4)}},
		},
		{
			name:     "a segment out of order dies",
			cmds:     []Command{begin("a", 10, 1), add("a", seg(1, 4), 2)},
			want:     &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(1)},
			wantDead: dead(2, seg(1, 4)),
		},
		{
			name:     "a short segment that does not end the blob dies",
			cmds:     []Command{begin("a", 10, 1), add("a", seg(0, 3), 2)},
			want:     &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(1)},
			wantDead: dead(2, seg(0, 3)),
		},
		{
			name:     "a segment past the blob's end dies",
			cmds:     []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), add("a", seg(1, 4), 3), add("a", seg(2, 4), 4)},
			want:     &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(3), Segments: []Segment{seg(0, 4), seg(1, 4)}},
			wantDead: dead(4, seg(2, 4)),
		},
		{
			name:     "a segment of another transfer dies",
			cmds:     []Command{begin("a", 10, 1), add("b", seg(0, 4), 2)},
			want:     &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(1)},
			wantDead: dead(2, seg(0, 4)),
		},
		{
			name:     "a segment of an ended transfer dies",
			cmds:     []Command{add("a", seg(0, 4), 2)},
			wantDead: dead(2, seg(0, 4)),
		},
		{
			name:     "end removes the record, its segments and the extra ones die",
			cmds:     []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), end("a", 5, seg(1, 4))},
			wantDead: dead(5, seg(0, 4), seg(1, 4)),
		},
		{
			name:     "end without an ID removes any record",
			cmds:     []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), end("", 5)},
			wantDead: dead(5, seg(0, 4)),
		},
		{
			name: "end of another transfer keeps the record",
			cmds: []Command{begin("a", 10, 1), add("a", seg(0, 4), 2), end("b", 5)},
			want: &Transfer{Digest: blob, Size: 10, ID: "a", From: "westus", SegmentSize: 4, Started: at(1), Updated: at(2),
				Segments: []Segment{seg(0, 4)}},
		},
		{
			name: "forget drops the dead segments listed before its time",
			cmds: []Command{
				begin("a", 10, 1), add("a", seg(0, 4), 2), end("a", 5),
				begin("b", 10, 6), add("b", seg(1, 4), 7),
				ForgetDeadSegments{Before: at(7)},
			},
			want:     &Transfer{Digest: blob, Size: 10, ID: "b", From: "westus", SegmentSize: 4, Started: at(6), Updated: at(6)},
			wantDead: dead(7, seg(1, 4)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			for i, c := range tt.cmds {
				if err := s.ApplyAt(uint64(i+1), c); err != nil {
					t.Fatalf("command %d (%s): %v", i, c.Op(), err)
				}
			}
			got, err := s.Transfer(blob)
			switch {
			case tt.want == nil && !errors.Is(err, ErrTransferUnknown):
				t.Errorf("Transfer = %+v, %v; want ErrTransferUnknown", got, err)
			case tt.want != nil && (err != nil || !reflect.DeepEqual(got, *tt.want)):
				t.Errorf("Transfer =\n  %+v, %v\nwant\n  %+v", got, err, *tt.want)
			}
			d, err := s.DeadSegments()
			if err != nil || !reflect.DeepEqual(d, tt.wantDead) {
				t.Errorf("DeadSegments = %v, %v; want %v", d, err, tt.wantDead)
			}
		})
	}
}

// TestTransferBounds checks the limits: records, segments per record, dead
// segments, and refused malformed commands.
func TestTransferBounds(t *testing.T) {
	now := time.Now().UTC()
	var index uint64
	fast := func() *Store {
		s := openTest(t)
		s.db.NoSync = true // thousands of commands; durability is not what is tested
		return s
	}
	// apply applies through ApplyAt, which does not wait for a batch.
	apply := func(s *Store, c Command) error {
		index++
		return s.ApplyAt(index, c)
	}
	s := fast()
	for i := range MaxTransfers + 1 {
		d := digest.FromString(fmt.Sprint("blob ", i))
		if err := apply(s, TransferBegin{Time: now, Digest: d, Size: 8, ID: "x", SegmentSize: 4}); err != nil {
			t.Fatal(err)
		}
	}
	if recs, err := s.Transfers(); err != nil || len(recs) != MaxTransfers {
		t.Errorf("%d records after %d begins, want %d (%v)", len(recs), MaxTransfers+1, MaxTransfers, err)
	}

	for _, bad := range []TransferBegin{
		{Digest: "", Size: 8, ID: "x", SegmentSize: 4},
		{Digest: digest.FromString("b"), Size: 0, ID: "x", SegmentSize: 4},
		{Digest: digest.FromString("b"), Size: 8, ID: "", SegmentSize: 4},
		{Digest: digest.FromString("b"), Size: MaxTransferSegments*4 + 1, ID: "x", SegmentSize: 4},
	} {
		bad.Time = now
		if err := apply(s, bad); err == nil {
			t.Errorf("begin of %+v succeeded", bad)
		}
	}

	s = fast()
	blob := digest.FromString("big")
	size := int64(MaxTransferSegments * 4)
	if err := apply(s, TransferBegin{Time: now, Digest: blob, Size: size, ID: "x", SegmentSize: 4}); err != nil {
		t.Fatal(err)
	}
	for k := range MaxTransferSegments {
		sg := Segment{Offset: int64(k) * 4, Size: 4, Digest: digest.FromString(fmt.Sprint(k))}
		if err := apply(s, TransferSegment{Time: now, Digest: blob, ID: "x", Segment: sg}); err != nil {
			t.Fatal(err)
		}
	}
	if rec, err := s.Transfer(blob); err != nil || rec.Durable() != size || len(rec.Segments) != MaxTransferSegments {
		t.Fatalf("record holds %d segments, %d bytes (%v); want %d, %d", len(rec.Segments), rec.Durable(), err, MaxTransferSegments, size)
	}

	// Dead segments beyond the bound: the oldest are forgotten.
	s = fast()
	const batch = 1 << 12
	for i := range MaxDeadSegments/batch + 1 {
		segs := make([]Segment, batch)
		for j := range segs {
			segs[j].Digest = digest.FromString(fmt.Sprint(i, "/", j))
		}
		err := apply(s, TransferEnd{Time: now.Add(time.Duration(i) * time.Second), Digest: blob, Unrecorded: segs})
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.DeadSegments()
	if err != nil || len(d) != MaxDeadSegments {
		t.Fatalf("%d dead segments listed (%v), want %d", len(d), err, MaxDeadSegments)
	}
	if !d[0].Died.Equal(now.Add(time.Second)) {
		t.Errorf("oldest dead segment listed died at %v, want %v (the first batch forgotten)", d[0].Died, now.Add(time.Second))
	}
	if err := apply(s, ForgetDeadSegments{Before: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.DeadSegments(); len(d) != 0 {
		t.Errorf("%d dead segments after forgetting them all", len(d))
	}
	// The count survives forgetting: the bound still holds afterwards.
	if err := apply(s, TransferEnd{Time: now, Digest: blob, Unrecorded: []Segment{{Digest: blob}}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.DeadSegments(); len(d) != 1 {
		t.Errorf("%d dead segments, want 1", len(d))
	}
}

// TestTransferSurvivesSnapshot checks that a restored replica resumes the
// same transfer, and that transfers stay out of the state digest that
// replicas compare.
func TestTransferSurvivesSnapshot(t *testing.T) {
	a, b := openTest(t), openTest(t)
	blob := digest.FromString("blob")
	before, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	cmds := []Command{
		TransferBegin{Time: now, Digest: blob, Size: 8, ID: "x", SegmentSize: 4},
		TransferSegment{Time: now, Digest: blob, ID: "x", Segment: Segment{Offset: 0, Size: 4, Digest: digest.FromString("s")}},
	}
	for i, c := range cmds {
		if err := a.ApplyAt(uint64(i+1), c); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := a.Digest(); after != before {
		t.Errorf("a transfer changed the state digest")
	}
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	got, err := b.Transfer(blob)
	if err != nil || got.Durable() != 4 || got.ID != "x" {
		t.Errorf("restored transfer %+v, %v", got, err)
	}
}
