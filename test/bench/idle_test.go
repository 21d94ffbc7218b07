package main

import (
	"strings"
	"testing"
	"time"
)

func TestIdleRows(t *testing.T) {
	r := &idleResult{Settle: 15 * time.Second, Window: 60 * time.Second, Cores: map[string]float64{
		"westus/1": 0.03, "westus/2": 0.01, "trafficmgr": 0.005,
	}}
	rows := idleRows(r)
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	row := rows[0]
	if row.Value != "0.045" || row.Goal != "≤ 0.050" || !strings.Contains(row.Ref, "busiest westus/1 0.030") || !strings.Contains(row.Ref, "traffic manager 0.005") {
		t.Errorf("row %+v", row)
	}
	r.Cores["westus/3"] = 0.02
	if got := idleRows(r)[0].Goal; got != "≤ 0.050 missed" {
		t.Errorf("over the goal: %q", got)
	}
	if idleRows(nil) != nil {
		t.Error("rows without a measurement")
	}
}
