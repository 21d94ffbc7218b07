package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeSigner signs every URL with "ok" for the caller's Authorization and
// takes any URL signed "ok".
type fakeSigner struct{}

func (fakeSigner) SignBlobURL(_ context.Context, r *http.Request, _ string) (url.Values, error) {
	return url.Values{"georeg-sub": {r.Header.Get("Authorization")}, SignatureParam: {"ok"}}, nil
}

func (fakeSigner) VerifyBlobURL(_ context.Context, r *http.Request, _ string) error {
	if r.URL.Query().Get(SignatureParam) != "ok" {
		return ErrDenied.WithDetail("bad signature")
	}
	return nil
}

// TestDataRedirect: the traffic manager's blob GET is redirected to the
// data endpoint with a URL signed for the caller; a signed URL sent
// through the endpoint is served, not re-signed for its credential-less
// request (which would name no one).
func TestDataRedirect(t *testing.T) {
	s := newTestServer(t, Config{Signer: fakeSigner{}, DataEndpoints: map[string]string{"": "http://data.example"}, DataRedirectMinBytes: -1})
	s.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	content := []byte("the bytes of a blob")
	d := s.pushBlob(t, "repo", content)
	path := "/v2/repo/blobs/" + d.String()
	tm := http.Header{DataLocationHeader: {"westus"}, "Authorization": {"Basic caller"}}
	st, hdr, _, _ := s.do(t, http.MethodGet, path, tm, nil)
	if st != http.StatusTemporaryRedirect || !strings.HasPrefix(hdr.Get("Location"), "http://data.example"+path+"?") || !strings.Contains(hdr.Get("Location"), "Basic+caller") {
		t.Fatalf("blob GET through the endpoint: %d Location %q, want 307 to the data endpoint signed for the caller", st, hdr.Get("Location"))
	}
	st, hdr, _, body := s.do(t, http.MethodGet, path+"?"+SignatureParam+"=ok", http.Header{DataLocationHeader: {"westus"}}, nil)
	if st != http.StatusOK || !bytes.Equal(body, content) {
		t.Fatalf("a signed URL through the endpoint: %d Location %q, want 200 with the bytes", st, hdr.Get("Location"))
	}
}

// TestBlobBodyIdle: a client that stops reading a blob's body loses the
// connection once a chunk has waited BodyIdleTimeout, rather than holding
// it and the blob's file open for ever.
func TestBlobBodyIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	s := newTestServer(t, Config{BodyIdleTimeout: idle})
	content := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB: more than the socket buffers hold
	d := s.pushBlob(t, "repo", content)
	resp, err := s.Client().Get(s.URL + "/v2/repo/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(10 * idle) // the client reads nothing
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= int64(len(content)) {
		t.Fatalf("a client idle for %v read %d of %d bytes (%v), want the body cut short", 10*idle, n, len(content), err)
	}
	t.Logf("cut after %d of %d bytes: %v", n, len(content), err)
}
