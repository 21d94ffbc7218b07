package connected

import (
	"errors"
	"testing"
)

func TestCursor(t *testing.T) {
	good := map[string]Cursor{"": {}, "westus:0": {"westus", 0}, "eastus:42": {"eastus", 42}}
	for s, want := range good {
		got, err := ParseCursor(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v and back", s, got, err, want)
		}
	}
	for _, s := range []string{"westus", ":1", "westus:", "westus:-1", "westus:1x", "westus:+1", "westus:01"} {
		if _, err := ParseCursor(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseCursor(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestConnectionString(t *testing.T) {
	c := ConnectionString{Name: "factory1", SyncToken: "factory1-sync-token", SyncPassword: "p=w;x", ParentEndpoint: "127.0.0.1:5000", Protocol: "http"}
	c.SyncPassword = "secret"
	got, err := ParseConnectionString(c.String() + "\n")
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, c)
	}
	if got.BaseURL() != "http://127.0.0.1:5000" {
		t.Errorf("BaseURL %q", got.BaseURL())
	}
	bad := []string{
		"",
		"ConnectedRegistryName=factory1",
		"ConnectedRegistryName=factory1;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=h:1;ParentEndpointProtocol=ftp",
		"ConnectedRegistryName=f-1;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=h:1;ParentEndpointProtocol=http",
		"ConnectedRegistryName=factory1;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=h:1;ParentEndpointProtocol=http;Extra=1",
		"garbage",
	}
	for _, s := range bad {
		if _, err := ParseConnectionString(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseConnectionString(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func FuzzParseConnectionString(f *testing.F) {
	f.Add("ConnectedRegistryName=factory1;SyncTokenName=factory1-sync-token;SyncTokenPassword=x;ParentGatewayEndpoint=127.0.0.1:5000;ParentEndpointProtocol=http")
	f.Add("westus:12")
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseConnectionString(s); err == nil {
			again, err := ParseConnectionString(c.String())
			if err != nil || again != c {
				t.Fatalf("%q parsed as %+v, which does not round-trip: %+v, %v", s, c, again, err)
			}
		}
		if c, err := ParseCursor(s); err == nil {
			if again, err := ParseCursor(c.String()); err != nil || again != c {
				t.Fatalf("cursor %q: %+v does not round-trip", s, c)
			}
		}
	})
}
