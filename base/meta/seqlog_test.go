package meta

import (
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

type testRecord struct {
	Seq  uint64 `json:"seq"`
	Name string `json:"name"`
}

func TestSeqLog(t *testing.T) {
	tests := []struct {
		name    string
		keep    uint64
		appends int
		// drop, when not zero, is passed to dropThrough after the appends.
		drop     uint64
		after    uint64
		n        int
		wantSeqs []uint64
		wantLast uint64
	}{
		{name: "empty", n: 10, wantSeqs: nil, wantLast: 0},
		{name: "all", appends: 3, n: 10, wantSeqs: []uint64{1, 2, 3}, wantLast: 3},
		{name: "after a sequence", appends: 3, after: 1, n: 10, wantSeqs: []uint64{2, 3}, wantLast: 3},
		{name: "at most n", appends: 5, n: 2, wantSeqs: []uint64{1, 2}, wantLast: 5},
		{name: "keep drops the oldest", keep: 2, appends: 5, n: 10, wantSeqs: []uint64{4, 5}, wantLast: 5},
		{name: "dropped through a sequence", appends: 4, drop: 2, n: 10, wantSeqs: []uint64{3, 4}, wantLast: 4},
		{name: "dropped everything keeps the sequence", appends: 2, drop: 9, n: 10, wantSeqs: nil, wantLast: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			l := seqLog[testRecord]{
				bucket: []byte("test-log"),
				setSeq: func(r *testRecord, seq uint64) { r.Seq = seq },
				keep:   tt.keep,
			}
			err := s.db.Update(func(tx *bolt.Tx) error {
				for range tt.appends {
					if err := l.append(tx, testRecord{Name: "r"}); err != nil {
						return err
					}
				}
				if tt.drop > 0 {
					return l.dropThrough(tx, tt.drop)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []testRecord
			var last uint64
			err = s.db.View(func(tx *bolt.Tx) error {
				last = l.last(tx)
				got, err = l.after(tx, tt.after, tt.n)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, r := range got {
				if r.Name != "r" {
					t.Errorf("record %d lost its content: %+v", r.Seq, r)
				}
				seqs = append(seqs, r.Seq)
			}
			if !reflect.DeepEqual(seqs, tt.wantSeqs) {
				t.Errorf("sequences %v, want %v", seqs, tt.wantSeqs)
			}
			if last != tt.wantLast {
				t.Errorf("last %d, want %d", last, tt.wantLast)
			}
		})
	}
}
