package zone

import "testing"

func TestAdvertised(t *testing.T) {
	for _, tc := range []struct{ addr, host, want string }{
		{"0.0.0.0:5000", "10.213.1.11", "10.213.1.11:5000"},
		{"127.0.0.1:5100", "", "127.0.0.1:5100"},
		{"[::]:5100", "fd00::1", "[fd00::1]:5100"},
		{"no-port", "10.0.0.1", "no-port"},
	} {
		if got := advertised(tc.addr, tc.host); got != tc.want {
			t.Errorf("advertised(%q, %q) = %q, want %q", tc.addr, tc.host, got, tc.want)
		}
	}
}
