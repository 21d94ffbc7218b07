package wan

import "testing"

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0", 0, false},
		{"off", 0, false},
		{"none", 0, false},
		{"OFF", 0, false},
		{"100MB/s", 100_000_000, false},
		{"100 MB/s", 100_000_000, false},
		{"10MiB/s", 10 << 20, false},
		{"10MiB", 10 << 20, false},
		{"50Mbit/s", 6_250_000, false},
		{"50Mbps", 6_250_000, false},
		{"1Gbit/s", 125_000_000, false},
		{"1.5GB/s", 1_500_000_000, false},
		{"512KiB/s", 512 << 10, false},
		{"64kB/s", 64_000, false},
		{"4096", 4096, false},
		{"8bit/s", 1, false},
		{"", 0, true},
		{"fast", 0, true},
		{"10MB/h", 0, true},
		{"10mb/s", 0, true}, // megabits or megabytes? refuse to guess
		{"-5MB/s", 0, true},
		{"1.2.3MB/s", 0, true},
		{"1bit/s", 0, true}, // below a byte per second
		{"1e30GB/s", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRate(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatRate(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "off"},
		{10 << 20, "10MiB/s"},
		{1 << 30, "1GiB/s"},
		{3 << 10, "3KiB/s"},
		{6_250_000, "6.25MB/s"},
		{100_000_000, "100MB/s"},
		{125_000_000, "125MB/s"},
		{1_500_000_000, "1.5GB/s"},
		{12_345_678, "12.345678MB/s"},
		{1000, "1kB/s"},
		{999, "999B/s"},
	}
	for _, tt := range tests {
		got := FormatRate(tt.in)
		if got != tt.want {
			t.Errorf("FormatRate(%d) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseRate(got); err != nil || back != tt.in {
			t.Errorf("ParseRate(FormatRate(%d)) = %d, %v", tt.in, back, err)
		}
	}
}
