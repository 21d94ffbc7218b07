// Package prototest helps the tests of code that converts to and from the
// wire messages of proto/.
package prototest

import (
	"testing"

	protobuf "google.golang.org/protobuf/proto"
)

// Wire sends m through its wire encoding and returns what a peer decodes,
// so a conversion test sees exactly what crosses the network.
func Wire[M protobuf.Message](t testing.TB, m M) M {
	t.Helper()
	b, err := protobuf.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := protobuf.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}
