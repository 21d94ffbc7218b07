package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/zone"
)

// TestSiteGCGrace: --site-gc-grace is taken at a site only, and not
// negative.
func TestSiteGCGrace(t *testing.T) {
	cs := connected.ConnectionString{Name: "factory1", SyncToken: "factory1-sync-token", SyncPassword: "p",
		ParentEndpoint: "127.0.0.1:5000", Protocol: "http"}.String()
	tests := []struct {
		name    string
		conn    string
		grace   time.Duration
		wantErr string
	}{
		{"a site with a grace", cs, 2 * time.Second, ""},
		{"a site with the default", cs, 0, ""},
		{"a negative grace", cs, -time.Second, "must not be negative"},
		{"not a site", "", time.Minute, "only for a connected registry's site"},
		{"not a site, no grace", "", 0, ""},
	}
	for _, tt := range tests {
		cfg := zone.Config{Zones: 1, SiteGCGrace: tt.grace}
		err := connectedFlags(flag.NewFlagSet("regiond", flag.ContinueOnError), &cfg, tt.conn, "")
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}
