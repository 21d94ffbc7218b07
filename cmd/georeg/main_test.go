package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		out  string // expected in stdout+stderr
	}{
		{nil, exitUsage, "usage: georeg"},
		{[]string{"--help"}, exitOK, "kill-zone REGION/ZONE"},
		{[]string{"help"}, exitOK, "mesh"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"mesh"}, exitUsage, "verbs:"},
		{[]string{"mesh", "--help"}, exitOK, "status"},
		{[]string{"mesh", "explode"}, exitUsage, `unknown verb "explode"`},
		{[]string{"chaos", "--help"}, exitOK, "kill-region REGION"},
		{[]string{"mesh", "up", "--help"}, exitOK, "-node-arg"},
		{[]string{"mesh", "up", "--no-such-flag"}, exitUsage, "flag provided but not defined"},
		{[]string{"mesh", "up", "--zones", "0", "--dir", dir}, exitUsage, "zones must be between"},
		{[]string{"mesh", "up", "--regions", "West", "--dir", dir}, exitUsage, "region name"},
		{[]string{"mesh", "up", "stray", "--dir", dir}, exitUsage, `unexpected argument "stray"`},
		{[]string{"mesh", "up", "--dir", dir, "--regiond", filepath.Join(dir, "nope")}, exitError, "regiond not found"},
		{[]string{"mesh", "status", "--dir", dir}, exitError, "no mesh in"},
		{[]string{"mesh", "status", "--json", "--dir", dir}, exitError, "no mesh in"},
		{[]string{"mesh", "down", "--dir", dir}, exitOK, "nothing to stop"},
		{[]string{"chaos", "kill-zone", "--dir", dir}, exitUsage, "exactly one target"},
		{[]string{"chaos", "kill-zone", "westus", "--dir", dir}, exitUsage, "names no zone"},
		{[]string{"chaos", "kill-region", "westus/1", "--dir", dir}, exitUsage, "names a zone"},
		{[]string{"chaos", "kill-zone", "westus/1", "--dir", dir}, exitError, "no mesh in"},
		{[]string{"chaos", "restart", "West/1", "--dir", dir}, exitUsage, "want REGION or REGION/ZONE"},
		{[]string{"chaos", "restart", "westus", "--dir", dir}, exitError, "no mesh in"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tt.code || !strings.Contains(out, tt.out) {
			t.Errorf("georeg %s: exit %d, want %d with %q; output:\n%s", strings.Join(tt.args, " "), code, tt.code, tt.out, out)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	e := env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	for _, args := range [][]string{
		{"westus/1", "--dir", "d"},
		{"--dir", "d", "westus/1"},
		{"--dir=d", "westus/1"},
	} {
		fs := newFlagSet(e, "chaos kill-zone", "REGION/ZONE", "")
		dir := dirFlag(fs)
		pos, err := parse(e, fs, args)
		if err != nil || *dir != "d" || len(pos) != 1 || pos[0] != "westus/1" {
			t.Errorf("parse(%q) = %q, dir %q, %v", args, pos, *dir, err)
		}
	}
}
