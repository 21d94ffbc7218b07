package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// AllowPrivateFlag is the regiond flag that lets webhooks reach the
// addresses Refused names; error messages name it.
const AllowPrivateFlag = "--webhook-allow-private"

// ErrRefusedTarget means a webhook's target is an address webhooks may not
// reach: a webhook would otherwise let whoever manages it make the registry
// send requests into its own network (SSRF).
var ErrRefusedTarget = errors.New("webhook target refused")

// The delivery bounds. A receiver gets Timeout for the whole exchange; the
// answer's body is read up to maxResponseBody (so the connection can be
// reused) and otherwise dropped.
const (
	// Timeout bounds one delivery: dial, TLS, request, answer and body.
	Timeout         = 10 * time.Second
	dialTimeout     = 5 * time.Second
	maxResponseBody = 64 << 10
	maxHeaderBytes  = 64 << 10
)

// refusedRanges are the address ranges webhooks may not reach unless the
// node allows private targets, each with the rule an error names. Cloud
// metadata services (169.254.169.254, fd00:ec2::254) fall in link-local and
// private.
var refusedRanges = []struct {
	rule   string
	prefix netip.Prefix
}{
	{"unspecified", netip.MustParsePrefix("0.0.0.0/8")},
	{"unspecified", netip.MustParsePrefix("::/128")},
	{"loopback", netip.MustParsePrefix("127.0.0.0/8")},
	{"loopback", netip.MustParsePrefix("::1/128")},
	{"private", netip.MustParsePrefix("10.0.0.0/8")},
	{"private", netip.MustParsePrefix("172.16.0.0/12")},
	{"private", netip.MustParsePrefix("192.168.0.0/16")},
	{"private", netip.MustParsePrefix("fc00::/7")},
	{"private", netip.MustParsePrefix("fec0::/10")}, // deprecated site-local
	{"link-local", netip.MustParsePrefix("169.254.0.0/16")},
	{"link-local", netip.MustParsePrefix("fe80::/10")},
	{"CGNAT", netip.MustParsePrefix("100.64.0.0/10")},
	{"multicast", netip.MustParsePrefix("224.0.0.0/4")},
	{"multicast", netip.MustParsePrefix("ff00::/8")},
	{"reserved", netip.MustParsePrefix("240.0.0.0/4")}, // and broadcast
}

// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4
// address in their last 32 bits, which is checked instead.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Refused returns the rule that refuses ip as a webhook target ("loopback",
// "private", "link-local", "CGNAT", "multicast", "unspecified", "reserved"),
// or "" when webhooks may reach it. IPv4-mapped and NAT64 IPv6 addresses are
// judged by the IPv4 address they reach.
func Refused(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() && nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	if ip.Zone() != "" {
		ip = ip.WithZone("")
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r.rule
		}
	}
	return ""
}

// CheckIP returns an error wrapping ErrRefusedTarget, naming the rule and
// the flag, when ip is refused and allowPrivate is false.
func CheckIP(ip netip.Addr, allowPrivate bool) error {
	if allowPrivate {
		return nil
	}
	if rule := Refused(ip); rule != "" {
		article := "a"
		if strings.ContainsRune("aeiou", rune(rule[0])) {
			article = "an"
		}
		return fmt.Errorf("%w: %s is %s %s address; webhooks may not reach loopback, private, link-local, CGNAT, multicast or unspecified addresses unless every regiond runs with %s",
			ErrRefusedTarget, ip, article, rule, AllowPrivateFlag)
	}
	return nil
}

// Resolver looks a host name up; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckURL validates a webhook's target when it is created: an absolute
// http or https URL whose host is not refused (see Refused). A host name is
// looked up with r (nil: net.DefaultResolver) and every address it has must
// be allowed. A name that does not resolve here is accepted: the region that
// delivers may resolve it differently, and every delivery checks the address
// it actually dials anyway (see NewClient), which is also what defeats a
// name that resolves elsewhere later (DNS rebinding).
func CheckURL(ctx context.Context, raw string, allowPrivate bool, r Resolver) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("webhook uri %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("webhook uri %q: want an http or https URL", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("webhook uri %q: no host", raw)
	}
	if allowPrivate {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return CheckIP(ip, false)
	}
	// RFC 6761: localhost names are loopback whatever DNS says.
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return fmt.Errorf("%w: %s is a loopback name; webhooks may not reach loopback addresses unless every regiond runs with %s",
			ErrRefusedTarget, host, AllowPrivateFlag)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(lctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if err := CheckIP(ip, false); err != nil {
			return fmt.Errorf("%s resolves to a refused address: %w", host, err)
		}
	}
	return nil
}

// ClientConfig configures NewClient.
type ClientConfig struct {
	// AllowPrivate lets deliveries reach the addresses Refused names (the
	// regiond flag --webhook-allow-private).
	AllowPrivate bool
}

// NewClient returns the HTTP client that delivers webhook events:
//   - it dials only addresses CheckIP allows, checked on the address each
//     connection is actually made to, after name resolution, so a name that
//     resolves to a public address when the webhook is created and to
//     169.254.169.254 later (DNS rebinding) is still refused;
//   - it follows no redirect: a 3xx answer is a failed delivery, and the
//     webhook's headers (an Authorization among them) never go anywhere but
//     its own URI;
//   - it ignores proxy settings from the environment, whose address would
//     otherwise be the one checked;
//   - every delivery is bounded by Timeout.
func NewClient(cfg ClientConfig) *http.Client {
	d := &net.Dialer{
		Timeout: dialTimeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: dialing %s: %v", ErrRefusedTarget, address, err)
			}
			return CheckIP(ap.Addr(), cfg.AllowPrivate)
		},
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    dialTimeout,
		ResponseHeaderTimeout:  Timeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
		MaxIdleConns:           16,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Mask is what header values are shown as: they are write-only, since they
// often carry the receiver's credential.
const Mask = "****"

// Masked returns headers with every value replaced by Mask.
func Masked(headers map[string]string) map[string]string {
	if headers == nil {
		return nil
	}
	out := make(map[string]string, len(headers))
	for k := range headers {
		out[k] = Mask
	}
	return out
}

// RedactedURI returns uri with the password of its user information, if
// any, replaced by "xxxxx", as shown to callers.
func RedactedURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	return u.Redacted()
}
