package wan

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// rateUnits maps a unit, as written after the number, to bytes per second.
// Byte units are written with a capital B, bit units spelt "bit" or "bps",
// so "MB/s" and "Mbit/s" are never confused.
var rateUnits = map[string]float64{
	"B/s": 1, "kB/s": 1e3, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9,
	"KiB/s": 1 << 10, "MiB/s": 1 << 20, "GiB/s": 1 << 30,
	"bit/s": 1.0 / 8, "kbit/s": 1e3 / 8, "Kbit/s": 1e3 / 8, "Mbit/s": 1e6 / 8, "Gbit/s": 1e9 / 8,
	"bps": 1.0 / 8, "kbps": 1e3 / 8, "Kbps": 1e3 / 8, "Mbps": 1e6 / 8, "Gbps": 1e9 / 8,
}

// ParseRate parses a bandwidth such as "100MB/s", "10MiB/s", "50Mbit/s",
// "1Gbit/s" or "50Mbps" into bytes per second. "0", "off", "none" and
// "unlimited" mean no cap and return 0; a bare number is bytes per second.
// Decimal prefixes are powers of 1000, binary ones (KiB, MiB, GiB) of 1024.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "0", "off", "none", "unlimited":
		return 0, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool {
		return (r < '0' || r > '9') && r != '.'
	})
	num, unit := t, "B/s"
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
		if !strings.HasSuffix(unit, "/s") && !strings.HasSuffix(unit, "ps") {
			unit += "/s"
		}
	}
	mult, ok := rateUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("wan: rate %q: want a number and a unit such as 100MB/s, 10MiB/s, 50Mbit/s, 1Gbit/s, or off", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("wan: rate %q: %w", s, err)
	}
	bps := math.Round(v * mult)
	switch {
	case bps > math.MaxInt64/2:
		return 0, fmt.Errorf("wan: rate %q is too large", s)
	case v > 0 && bps < 1:
		return 0, fmt.Errorf("wan: rate %q is below 1 byte per second", s)
	}
	return int64(bps), nil
}

// FormatRate formats bytes per second for people, in a form ParseRate reads
// back exactly: "off" for 0, binary units when they are exact ("10MiB/s"),
// decimal ones otherwise ("6.25MB/s").
func FormatRate(bps int64) string {
	if bps <= 0 {
		return "off"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB/s", 1 << 30}, {"MiB/s", 1 << 20}, {"KiB/s", 1 << 10}} {
		if bps%u.size == 0 {
			return strconv.FormatInt(bps/u.size, 10) + u.name
		}
	}
	for _, u := range []struct {
		name string
		size float64
	}{{"GB/s", 1e9}, {"MB/s", 1e6}, {"kB/s", 1e3}} {
		if float64(bps) >= u.size {
			return strconv.FormatFloat(float64(bps)/u.size, 'f', -1, 64) + u.name
		}
	}
	return strconv.FormatInt(bps, 10) + "B/s"
}
