package main

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr bool
	}{
		{name: "regiond", stat: "8468 (regiond) S 1 8468 8468 0 -1 4194560 6012 0 0 0 1234 567 0 0 20 0 9 0 1043 1790078976 9311 18446744073709551615", want: 1801},
		{name: "a command with spaces and parentheses", stat: "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 1 1 1", want: 15},
		{name: "no command", stat: "42 R 1 2 3", wantErr: true},
		{name: "too short", stat: "42 (x) R 1 2 3", wantErr: true},
		{name: "not a number", stat: "42 (x) R 1 42 42 0 -1 0 0 0 0 0 a 8 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatTicks = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAuxvClockTicks(t *testing.T) {
	auxv := func(pairs ...uint64) []byte {
		var b []byte
		for _, v := range pairs {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		return b
	}
	tests := []struct {
		name string
		auxv []byte
		want float64
	}{
		{"AT_CLKTCK after others", auxv(6, 4096, 17, 250, 0, 0), 250},
		{"absent", auxv(6, 4096, 0, 0), 100},
		{"after the end", auxv(6, 4096, 0, 0, 17, 250), 100},
		{"empty", nil, 100},
		{"truncated", auxv(6, 4096, 17)[:20], 100},
	}
	for _, tt := range tests {
		if got := auxvClockTicks(tt.auxv); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := clockTicks(); got <= 0 {
		t.Errorf("this machine's clock ticks: %v", got)
	}
}

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
