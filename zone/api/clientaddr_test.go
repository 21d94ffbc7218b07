package api

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	h := &Handler{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct client", "10.1.2.3:5555", nil, "10.1.2.3"},
		{"untrusted X-Forwarded-For is ignored", "10.1.2.3:5555", []string{"6.6.6.6"}, "10.1.2.3"},
		{"trusted proxy names the client", "127.0.0.1:4000", []string{"10.9.9.9"}, "10.9.9.9"},
		{"the last hop counts, not what the client claims", "127.0.0.1:4000", []string{"6.6.6.6, 10.9.9.9"}, "10.9.9.9"},
		{"several headers: the last", "127.0.0.1:4000", []string{"6.6.6.6", "10.8.8.8"}, "10.8.8.8"},
		{"trusted proxy without header", "127.0.0.1:4000", nil, "127.0.0.1"},
		{"mapped IPv4", "[::ffff:10.1.2.3]:5555", nil, "10.1.2.3"},
		{"an invalid hop is ignored", "127.0.0.1:4000", []string{"not-an-address"}, "127.0.0.1"},
		{"an invalid last hop: the proxy", "127.0.0.1:4000", []string{"10.9.9.9, 10.9.9.9<script>"}, "127.0.0.1"},
		{"an invalid hop left of the last does not matter", "127.0.0.1:4000", []string{"10.5.5.5, junk, 127.0.0.2"}, "127.0.0.2"},
		{"empty header", "127.0.0.1:4000", []string{""}, "127.0.0.1"},
		{"hop with a port", "127.0.0.1:4000", []string{"10.9.9.9:1234"}, "10.9.9.9"},
		{"IPv6 hop with a port", "127.0.0.1:4000", []string{"[2001:db8::1]:1234"}, "2001:db8::1"},
		{"IPv6 hop", "127.0.0.1:4000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"mapped IPv4 hop", "127.0.0.1:4000", []string{"::ffff:10.9.9.9"}, "10.9.9.9"},
		{"a loopback client cannot pick its key by forging hops", "127.0.0.1:4000", []string{"6.6.6.6, 127.0.0.5"}, "127.0.0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := h.clientAddr(r); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}
