package proto

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// Timestamp converts t for the wire. The zero time is no timestamp (nil),
// so that "never" stays distinguishable from the Unix epoch and costs no
// bytes.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Time converts a timestamp from the wire; no timestamp (nil) is the zero
// time. The result is in UTC.
func Time(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
