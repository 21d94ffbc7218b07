package site

import "testing"

func TestRangeEnd(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"0-0", 0, true}, // empty (or one byte: see rangeEnd)
		{"0-1", 2, true},
		{"0-1023", 1024, true},
		{"0--1", 0, true},
		{"bytes=0-9", 10, true},
		{"0-x", 0, false},
		{"12", 0, false},
		{"0--5", 0, false},
	}
	for _, tt := range tests {
		got, err := rangeEnd(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("rangeEnd(%q) = %d, %v; want %d (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestResolve(t *testing.T) {
	c := &client{base: "http://127.0.0.1:5000"}
	tests := []struct{ in, want string }{
		{"/v2/a/blobs/uploads/x?s=1", "http://127.0.0.1:5000/v2/a/blobs/uploads/x?s=1"},
		{"http://127.0.0.1:5000/v2/a/blobs/uploads/x", "http://127.0.0.1:5000/v2/a/blobs/uploads/x"},
		// Elsewhere: kept at the parent's endpoint, so the sync token goes
		// nowhere else.
		{"http://evil.example:80/v2/a/blobs/uploads/x", "http://127.0.0.1:5000/v2/a/blobs/uploads/x"},
	}
	for _, tt := range tests {
		if got, err := c.resolve(tt.in); err != nil || got != tt.want {
			t.Errorf("resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
