package zone

import (
	"log/slog"
	"maps"
	"net"
	"testing"
)

// fakeListener is a listener that only has an address.
type fakeListener struct {
	net.Listener
	addr string
}

func (l fakeListener) Addr() net.Addr {
	a, err := net.ResolveTCPAddr("tcp", l.addr)
	if err != nil {
		panic(err)
	}
	return a
}

// TestDataEndpointURLs: clients are redirected only to a data listener of
// their location or to the advertised --data-url, never to the node's API
// address or to an unspecified bind address; a location with neither is
// missing, so its clients are relayed.
func TestDataEndpointURLs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		https   bool
		lns     map[string]string
		dataURL string
		want    map[string]string
	}{
		{"nothing: no redirect at all", false, nil, "", map[string]string{}},
		{"--data-http without --data-url", false, map[string]string{"": "127.0.0.1:7000"}, "", map[string]string{}},
		{"--data-http with --data-url", true, map[string]string{"": "0.0.0.0:7000"}, "https://data.example:7000/", map[string]string{"": "https://data.example:7000"}},
		{"local mesh", false, map[string]string{"westus": "127.0.0.1:7001", "eastus": "127.0.0.1:7002"}, "",
			map[string]string{"westus": "http://127.0.0.1:7001", "eastus": "http://127.0.0.1:7002"}},
		{"local mesh bound to 0.0.0.0 and ::", false, map[string]string{"westus": "0.0.0.0:7001", "eastus": "[::]:7002", "asia": "127.0.0.1:7003"}, "",
			map[string]string{"asia": "http://127.0.0.1:7003"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lns := map[string]net.Listener{}
			for loc, a := range tt.lns {
				lns[loc] = fakeListener{addr: a}
			}
			got := dataEndpointURLs(tt.https, lns, tt.dataURL, slog.New(slog.DiscardHandler))
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCheckDataURL: an advertised data endpoint must be dialable by a
// client and carry nothing the node's signed path would be appended to.
func TestCheckDataURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://data.example", true},
		{"http://10.1.2.3:7000/", true},
		{"https://[2001:db8::1]:443", true},
		{"https://0.0.0.0:7000", false},
		{"http://[::]:7000", false},
		{"https://:7000", false},
		{"ftp://data.example", false},
		{"data.example:7000", false},
		{"https://data.example/prefix", false},
		{"https://data.example/?a=b", false},
		{"https://user:pw@data.example", false},
	} {
		if err := CheckDataURL(tt.url); (err == nil) != tt.ok {
			t.Errorf("CheckDataURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}
