package chaos

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/wan"
)

func TestChangeLink(t *testing.T) {
	dir := t.TempDir()
	m, err := Plan(dir, UpConfig{Regions: []string{"westus", "eastus", "westeurope"}, Zones: 1, Port: 5000,
		Regiond: "/bin/regiond", Trafficmgr: "/bin/trafficmgr"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	if err := writeWAN(m, ""); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c, err := NewController(Config{Dir: dir, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := func(v time.Duration) *time.Duration { return &v }
	yes, no := true, false
	rate := int64(100e6)
	loss := 0.02
	steps := []struct {
		name    string
		change  LinkChange
		wantOut string // substring of what the command printed
		wantErr error
		check   func(wan.Config) bool
	}{
		{"latency", LinkChange{A: "westus", B: "eastus", RTT: d(300 * time.Millisecond)}, "westus <-> eastus: rtt 70ms -> rtt 300ms", nil,
			func(c wan.Config) bool { return c.Link("eastus", "westus").RTT.D() == 300*time.Millisecond }},
		{"own region", LinkChange{A: "westus", B: "westus", RTT: d(400 * time.Millisecond)}, "rtt 1ms -> rtt 400ms", nil,
			func(c wan.Config) bool { return c.Link("westus", "westus").RTT.D() == 400*time.Millisecond }},
		{"bandwidth", LinkChange{A: "eastus", B: "westeurope", Bandwidth: &rate}, "bandwidth", nil,
			func(c wan.Config) bool { return c.Link("westeurope", "eastus").Bandwidth == rate }},
		{"loss", LinkChange{A: "eastus", B: "westeurope", Loss: &loss}, "loss 2%", nil,
			func(c wan.Config) bool { return c.Link("westeurope", "eastus").Loss == loss }},
		{"partition", LinkChange{A: "westus", B: "westeurope", Cut: &yes}, "CUT", nil,
			func(c wan.Config) bool { return c.Link("westus", "westeurope").Cut }},
		{"heal all", LinkChange{Cut: &no}, "healed westus <-> westeurope", nil,
			func(c wan.Config) bool { return !c.Link("westus", "westeurope").Cut }},
		{"heal with nothing cut", LinkChange{Cut: &no}, "no link was cut", nil, nil},
		{"unknown region", LinkChange{A: "westus", B: "mars", RTT: d(time.Millisecond)}, "", ErrUnknownTarget, nil},
		{"negative latency", LinkChange{A: "westus", B: "eastus", RTT: d(-time.Millisecond)}, "", ErrInvalidConfig, nil},
		{"bad loss", LinkChange{A: "westus", B: "eastus", Loss: func() *float64 { v := 1.5; return &v }()}, "", ErrInvalidConfig, nil},
		{"no locations", LinkChange{RTT: d(time.Millisecond)}, "", ErrInvalidConfig, nil},
	}
	for _, st := range steps {
		out.Reset()
		before, _ := wan.Load(m.WAN)
		err := c.ChangeLink(ctx, st.change)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if !strings.Contains(out.String(), st.wantOut) {
			t.Errorf("%s: printed %q, want %q in it", st.name, out.String(), st.wantOut)
		}
		after, err := wan.Load(m.WAN)
		if err != nil {
			t.Fatal(err)
		}
		if st.check != nil && !st.check(after) {
			t.Errorf("%s: wan.json not changed as asked: %+v", st.name, after.Links)
		}
		if st.wantErr != nil && len(after.Links) != len(before.Links) {
			t.Errorf("%s: a refused change changed wan.json", st.name)
		}
		if after.Addresses[m.Regions[1].Zones[0].HTTP] != "eastus" {
			t.Errorf("%s: wan.json lost the address book", st.name)
		}
	}
}
