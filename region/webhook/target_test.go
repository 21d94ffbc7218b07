package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/georeg/georeg/base/meta"
)

func TestRefused(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"198.51.100.7", ""},
		{"2606:4700::1111", ""},
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"}, // IPv4-mapped
		{"64:ff9b::7f00:1", "loopback"},  // NAT64 of 127.0.0.1
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.254", "private"},
		{"172.32.0.1", ""},
		{"192.168.1.1", "private"},
		{"fd00:ec2::254", "private"}, // AWS metadata over IPv6
		{"fc00::1", "private"},
		{"169.254.169.254", "link-local"}, // cloud metadata
		{"::ffff:169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"100.128.0.1", ""},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"255.255.255.255", "reserved"},
	}
	for _, tt := range tests {
		if got := Refused(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Refused(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

// fakeResolver answers from a map; an absent name fails to resolve.
type fakeResolver map[string][]string

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ss, ok := r[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	r := fakeResolver{
		"hooks.example.com": {"198.51.100.7"},
		"internal.example":  {"10.0.0.5"},
		"metadata.example":  {"198.51.100.8", "169.254.169.254"},
		"dual.example.com":  {"198.51.100.9", "2001:db8::9"},
		"rebinding.example": {"198.51.100.10"}, // caught at dial time instead
		"loopback6.example": {"::1"},
		"mapped.example":    {"::ffff:192.168.0.1"},
	}
	tests := []struct {
		uri          string
		allowPrivate bool
		refused      string // the rule the error names; "" for no ErrRefusedTarget
		bad          bool   // any other error
	}{
		{uri: "https://hooks.example.com/acr"},
		{uri: "http://198.51.100.7:8080/x"},
		{uri: "http://[2606:4700::1111]/x"},
		{uri: "https://dual.example.com/x"},
		{uri: "https://rebinding.example/x"},
		{uri: "https://nowhere.invalid/x"}, // does not resolve here: accepted, checked on delivery
		{uri: "http://127.0.0.1:8080/hook", refused: "loopback"},
		{uri: "http://[::1]:8080/hook", refused: "loopback"},
		{uri: "http://localhost:8080/hook", refused: "loopback"},
		{uri: "http://api.LOCALHOST./hook", refused: "loopback"},
		{uri: "http://loopback6.example/hook", refused: "loopback"},
		{uri: "http://10.0.0.5/hook", refused: "private"},
		{uri: "http://internal.example/hook", refused: "private"},
		{uri: "http://mapped.example/hook", refused: "private"},
		{uri: "http://169.254.169.254/latest/meta-data/", refused: "link-local"},
		{uri: "http://metadata.example/x", refused: "link-local"}, // one bad address is enough
		{uri: "http://[fe80::1%25eth0]/x", refused: "link-local"},
		{uri: "http://100.100.100.200/x", refused: "CGNAT"},
		{uri: "http://0.0.0.0:9000/x", refused: "unspecified"},
		{uri: "http://[ff02::1]/x", refused: "multicast"},
		{uri: "http://127.0.0.1:8080/hook", allowPrivate: true},
		{uri: "http://169.254.169.254/", allowPrivate: true},
		{uri: "http://localhost:8080/hook", allowPrivate: true},
		{uri: "ftp://hooks.example.com/x", bad: true},
		{uri: "file:///etc/passwd", bad: true},
		{uri: "gopher://hooks.example.com/", bad: true},
		{uri: "//hooks.example.com/x", bad: true},
		{uri: "http:///x", bad: true},
		{uri: "hooks.example.com/x", bad: true},
		{uri: "http://[::1/x", bad: true},
		{uri: "ftp://127.0.0.1/x", allowPrivate: true, bad: true},
	}
	for _, tt := range tests {
		err := CheckURL(context.Background(), tt.uri, tt.allowPrivate, r)
		switch {
		case tt.refused != "":
			if !errors.Is(err, ErrRefusedTarget) || !strings.Contains(err.Error(), tt.refused) || !strings.Contains(err.Error(), AllowPrivateFlag) {
				t.Errorf("CheckURL(%q) = %v, want ErrRefusedTarget naming %q and %s", tt.uri, err, tt.refused, AllowPrivateFlag)
			}
		case tt.bad:
			if err == nil || errors.Is(err, ErrRefusedTarget) {
				t.Errorf("CheckURL(%q) = %v, want an invalid-URL error", tt.uri, err)
			}
		default:
			if err != nil {
				t.Errorf("CheckURL(%q, allowPrivate %v) = %v, want nil", tt.uri, tt.allowPrivate, err)
			}
		}
	}
}

// TestClientRefusesAtDial checks the address dialed, not the name in the
// URI: a name that resolved to a public address when the webhook was
// created may resolve to a refused one at delivery (DNS rebinding).
func TestClientRefusesAtDial(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, uri := range []string{srv.URL, "http://localhost" + port} {
		code, err := Post(context.Background(), NewClient(ClientConfig{}), meta.Webhook{URI: uri}, []byte("{}"))
		if !errors.Is(err, ErrRefusedTarget) || code != 0 {
			t.Errorf("Post to %s without AllowPrivate = %d, %v; want ErrRefusedTarget", uri, code, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests, want none", n)
	}
	code, err := Post(context.Background(), NewClient(ClientConfig{AllowPrivate: true}), meta.Webhook{URI: srv.URL}, []byte("{}"))
	if err != nil || code != http.StatusOK || hits.Load() != 1 {
		t.Fatalf("Post with AllowPrivate = %d, %v (%d requests), want 200", code, err, hits.Load())
	}
}

// TestNoRedirects: a receiver answering 307 gets a failed delivery; its
// redirect target never sees the request, nor the webhook's headers.
func TestNoRedirects(t *testing.T) {
	var redirected atomic.Int32
	var auth atomic.Value
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
		auth.Store(r.Header.Get("Authorization"))
	}))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		var got string
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Header.Get("Authorization")
			http.Redirect(w, r, target.URL+"/stolen", code)
		}))
		w := meta.Webhook{URI: hook.URL, Headers: map[string]string{"Authorization": "Bearer s3cret"}}
		status, err := Post(context.Background(), NewClient(ClientConfig{AllowPrivate: true}), w, []byte("{}"))
		hook.Close()
		if status != code || err == nil || !strings.Contains(err.Error(), "not followed") {
			t.Errorf("a %d: Post = %d, %v; want %d and a redirect-not-followed error", code, status, err, code)
		}
		if got != "Bearer s3cret" {
			t.Errorf("a %d: the webhook's own URI got Authorization %q", code, got)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests (Authorization %q), want none", n, auth.Load())
	}
}

// TestRedirectIsAFailedDelivery runs the dispatcher against a receiver
// that answers 307: the attempt is recorded as failed, with the status and
// why, and retried; the redirect target is never asked.
func TestRedirectIsAFailedDelivery(t *testing.T) {
	var redirected atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) }))
	defer target.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer hook.Close()
	md := &fakeMeta{notices: []meta.Notice{{Seq: 1, Action: "push", Repo: "r", Tag: "t"}}, recorded: make(chan meta.Delivery, 16)}
	w := meta.Webhook{Name: "hook1", URI: hook.URL, Actions: []string{"push"}, Region: "westus", Enabled: true,
		Headers: map[string]string{"Authorization": "Bearer s3cret"}}
	d := New(Config{Region: "westus", Meta: md, Webhooks: func() []meta.Webhook { return []meta.Webhook{w} }, AllowPrivate: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	for attempts := 0; attempts < 2; {
		del := <-md.recorded
		if del.ID == "" {
			continue // the cursor
		}
		attempts++
		if del.Final || del.Status != http.StatusTemporaryRedirect || !strings.Contains(del.Error, "not followed") {
			t.Fatalf("attempt %d recorded as %+v, want a failed 307 with a redirect error", attempts, del)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests, want none", n)
	}
}

// fakeMeta is one region's metadata for the dispatcher: a fixed list of
// notices, a leader, and a channel of what it records.
type fakeMeta struct {
	notices  []meta.Notice
	recorded chan meta.Delivery
}

func (m *fakeMeta) Apply(_ context.Context, cmd meta.Command) error {
	if c, ok := cmd.(meta.WebhookDelivered); ok {
		m.recorded <- c.Delivery
	}
	return nil
}

func (m *fakeMeta) NoticesAfter(seq uint64, n int) ([]meta.Notice, error) {
	var out []meta.Notice
	for _, x := range m.notices {
		if x.Seq > seq && len(out) < n {
			out = append(out, x)
		}
	}
	return out, nil
}

func (m *fakeMeta) WebhookCursor(string) (uint64, bool) { return 0, true }
func (m *fakeMeta) IsLeader() bool                      { return true }

func TestMasked(t *testing.T) {
	in := map[string]string{"Authorization": "Bearer s3cret", "X-Team": "build"}
	got := Masked(in)
	if len(got) != 2 || got["Authorization"] != Mask || got["X-Team"] != Mask {
		t.Errorf("Masked = %v", got)
	}
	if in["Authorization"] != "Bearer s3cret" {
		t.Error("Masked changed its argument")
	}
	if Masked(nil) != nil {
		t.Error("Masked(nil) is not nil")
	}
	for uri, want := range map[string]string{
		"https://user:pw@hooks.example.com/x?a=b": "https://user:xxxxx@hooks.example.com/x?a=b",
		"https://hooks.example.com/x":             "https://hooks.example.com/x",
	} {
		if got := RedactedURI(uri); got != want {
			t.Errorf("RedactedURI(%q) = %q, want %q", uri, got, want)
		}
	}
}
