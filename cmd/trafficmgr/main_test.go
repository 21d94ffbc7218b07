package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRefusesBadInvocations(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"home": "westus"}`), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--config is required"},
		{[]string{"--config", filepath.Join(dir, "none.json")}, "no such file"},
		{[]string{"--config", bad}, "regions: at least one region is required"},
		{[]string{"--config", bad, "--log-level", "loud"}, "--log-level"},
		{[]string{"--config", bad, "extra"}, "unexpected arguments"},
		{[]string{"--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(tt.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error()+errOut.String(), tt.want) {
			t.Errorf("run(%q) = %v (stderr %q), want an error with %q", tt.args, err, errOut.String(), tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"--version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "trafficmgr ") {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
}
