package connected

import (
	"fmt"
	"strings"
	"time"

	"github.com/sosodev/duration"
)

// maxDuration bounds a parsed duration, far above every range taken and
// far below time.Duration's own limit.
const maxDuration = 10 * 365 * 24 * time.Hour

// ParseDuration parses an ISO 8601 duration of fixed length, as ACR's
// sync window and message TTL take them: weeks, days, hours, minutes and
// seconds (P2D, PT3H, P1DT12H, P1W, PT1.5H). Years and months, whose
// length varies, negative durations and ones over 10 years are refused.
func ParseDuration(s string) (time.Duration, error) {
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("%w: duration %q: %s (ISO 8601, as in PT3H, P2D or P1DT12H)", ErrInvalid, s, why)
	}
	if s == "P" || strings.HasSuffix(s, "T") {
		return bad("no length")
	}
	d, err := duration.Parse(s)
	switch {
	case err != nil:
		return bad(err.Error())
	case d.Negative:
		return bad("negative")
	case d.Years != 0 || d.Months != 0:
		return bad("years and months have no fixed length: give weeks or days")
	}
	hours := d.Weeks*7*24 + d.Days*24 + d.Hours + d.Minutes/60 + d.Seconds/3600
	if !(hours >= 0 && hours <= maxDuration.Hours()) { // NaN fails too
		return bad("longer than 10 years")
	}
	td := d.ToTimeDuration()
	if td%time.Second != 0 {
		// A fraction of a second would be dropped when show prints it back.
		return bad("not a whole number of seconds")
	}
	return td, nil
}

// FormatDuration spells d as ISO 8601 in days and time, the way
// ParseDuration reads it back (whole seconds; P0D for zero).
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return "P0D"
	}
	d = d.Truncate(time.Second)
	var b strings.Builder
	b.WriteString("P")
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&b, "%dD", days)
		d -= days * 24 * time.Hour
	}
	if d > 0 {
		b.WriteString("T")
		for _, u := range []struct {
			d time.Duration
			c string
		}{{time.Hour, "H"}, {time.Minute, "M"}, {time.Second, "S"}} {
			if n := d / u.d; n > 0 {
				fmt.Fprintf(&b, "%d%s", n, u.c)
				d -= n * u.d
			}
		}
	}
	return b.String()
}
