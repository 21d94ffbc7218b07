package meta

import (
	"context"
	"testing"
	"time"
)

// TestOutboxDrop acks peers with and without dropped events: a drop moves
// the peer's cursor as an ack does, so the outbox is trimmed to what the
// other peers lack, and it is recorded once per sequence, however many
// times the command applies.
func TestOutboxDrop(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		acks       []AckOutbox
		wantDrops  map[string]OutboxDrop
		wantOutbox int // events left of 10 (a peer is known once acked)
	}{
		{"plain acks record nothing",
			[]AckOutbox{{Peer: "westeurope", Seq: 4}, {Peer: "eastus", Seq: 10}},
			map[string]OutboxDrop{}, 6},
		{"a drop trims as an ack does",
			[]AckOutbox{{Peer: "eastus", Seq: 10}, {Peer: "westeurope", Seq: 10, Dropped: 10, Time: at}},
			map[string]OutboxDrop{"westeurope": {Events: 10, Through: 10, Last: at}}, 0},
		{"drops add up, a repeated one counts once",
			[]AckOutbox{{Peer: "eastus", Seq: 1}, {Peer: "westeurope", Seq: 4, Dropped: 4, Time: at}, {Peer: "westeurope", Seq: 4, Dropped: 4, Time: at},
				{Peer: "westeurope", Seq: 9, Dropped: 5, Time: at.Add(time.Hour)}},
			map[string]OutboxDrop{"westeurope": {Events: 9, Through: 9, Last: at.Add(time.Hour)}}, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			ctx := context.Background()
			for i := range 10 {
				m := manifest("m"+string(rune('a'+i)), "")
				if err := s.Apply(ctx, PutManifest{Repo: "r", Tag: "t", Time: at, Manifest: *m}); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.LastSeq(); got != 10 {
				t.Fatalf("the outbox reached %d, want 10", got)
			}
			for _, a := range tt.acks {
				if err := s.Apply(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			got := s.OutboxDrops()
			if len(got) != len(tt.wantDrops) {
				t.Errorf("drops %+v, want %+v", got, tt.wantDrops)
			}
			for p, want := range tt.wantDrops {
				if g := got[p]; g.Events != want.Events || g.Through != want.Through || !g.Last.Equal(want.Last) {
					t.Errorf("drops of %s: %+v, want %+v", p, g, want)
				}
			}
			events, err := s.OutboxAfter(0, 100)
			if err != nil || len(events) != tt.wantOutbox {
				t.Errorf("the outbox holds %d events (%v), want %d", len(events), err, tt.wantOutbox)
			}
		})
	}
}

func TestChangedWakesOnWrite(t *testing.T) {
	s := openTest(t)
	ch := s.ReadOnly().Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any write")
	default:
	}
	before := s.LastSeq()
	if err := s.Apply(t.Context(), PutManifest{Repo: "r", Tag: "t", Time: time.Now(), Manifest: *manifest("ma", "")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed after a write")
	}
	if s.LastSeq() == before {
		t.Fatal("the write appended no event")
	}
	if next := s.ReadOnly().Changed(); next == ch {
		t.Fatal("Changed returned the closed channel again")
	}
}
