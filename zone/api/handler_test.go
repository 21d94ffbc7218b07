package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/zone/upload"
)

// testServer serves a Handler over a store of its own on loopback.
type testServer struct {
	*httptest.Server
	uploads *upload.Manager
	meta    *meta.Store
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	dir := t.TempDir()
	m, err := meta.Open(meta.Config{Path: filepath.Join(dir, "meta.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	fs, err := storage.NewFS(storage.FSConfig{Root: filepath.Join(dir, "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	up, err := upload.New(upload.Config{Dir: filepath.Join(dir, "blobs", "uploads"), IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Meta, cfg.Blobs, cfg.Uploads = m, storage.NewChecked(storage.CheckedConfig{Store: fs}), up
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, uploads: up, meta: m}
}

// do sends a request and returns the status, header and the error code of
// the body (when it is an error envelope).
func (s *testServer) do(t *testing.T, method, path string, hdr http.Header, body io.Reader) (int, http.Header, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	code := ""
	if json.Unmarshal(b, &env) == nil && len(env.Errors) > 0 {
		code = env.Errors[0].Code
	}
	return resp.StatusCode, resp.Header, code, b
}

// startUpload opens a session and returns its location.
func (s *testServer) startUpload(t *testing.T, repo string) string {
	t.Helper()
	st, hdr, _, _ := s.do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if st != http.StatusAccepted {
		t.Fatalf("POST upload: %d", st)
	}
	return hdr.Get("Location")
}

// pushBlob stores content in repo.
func (s *testServer) pushBlob(t *testing.T, repo string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	st, _, _, b := s.do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), nil, bytes.NewReader(content))
	if st != http.StatusCreated {
		t.Fatalf("push blob: %d %s", st, b)
	}
	return d
}

// trickle is a body that sends its first bytes, then nothing until the
// test ends.
func trickle(t *testing.T, first string) io.Reader {
	pr, pw := io.Pipe()
	go pw.Write([]byte(first))
	t.Cleanup(func() { pw.Close() })
	return pr
}

func TestSlowBody(t *testing.T) {
	const deadline = 300 * time.Millisecond
	tests := []struct {
		name string
		// during runs while the PATCH stalls.
		during func(t *testing.T, s *testServer, loc string)
		// wantGone: the session is cancelled by the test.
		wantGone bool
	}{
		{
			name: "idle sessions expire meanwhile",
			during: func(t *testing.T, s *testServer, loc string) {
				for range 3 {
					s.startUpload(t, "idle")
				}
				if n := s.uploads.Expire(time.Now().Add(2 * time.Minute)); n != 3 {
					t.Errorf("expired %d sessions while a chunk stalled, want the 3 idle ones", n)
				}
			},
		},
		{
			name: "status of the busy session answers at once",
			during: func(t *testing.T, s *testServer, loc string) {
				st, hdr, _, _ := s.do(t, http.MethodGet, loc, nil, nil)
				if st != http.StatusNoContent || hdr.Get("Range") != "0-4" {
					t.Errorf("status: %d Range %q, want 204 0-4", st, hdr.Get("Range"))
				}
			},
		},
		{
			name: "another chunk is refused at once with 409",
			during: func(t *testing.T, s *testServer, loc string) {
				hdr := http.Header{"Content-Range": {"5-5"}}
				st, rh, code, _ := s.do(t, http.MethodPatch, loc, hdr, strings.NewReader("x"))
				if st != http.StatusConflict || code != "BLOB_UPLOAD_INVALID" || rh.Get("Range") != "0-4" {
					t.Errorf("second chunk: %d %s Range %q, want 409 BLOB_UPLOAD_INVALID 0-4", st, code, rh.Get("Range"))
				}
			},
		},
		{
			name: "DELETE of the busy session answers 202 at once",
			during: func(t *testing.T, s *testServer, loc string) {
				if st, _, _, _ := s.do(t, http.MethodDelete, loc, nil, nil); st != http.StatusAccepted {
					t.Errorf("DELETE: %d, want 202", st)
				}
				if st, _, code, _ := s.do(t, http.MethodGet, loc, nil, nil); st != http.StatusNotFound || code != "BLOB_UPLOAD_UNKNOWN" {
					t.Errorf("status after DELETE: %d %s", st, code)
				}
			},
			wantGone: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{BodyIdleTimeout: deadline})
			loc := s.startUpload(t, "repo")
			if st, _, _, _ := s.do(t, http.MethodPatch, loc, nil, strings.NewReader("hello")); st != http.StatusAccepted {
				t.Fatalf("first chunk: %d", st)
			}
			type result struct {
				status int
				err    error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				req, _ := http.NewRequest(http.MethodPatch, s.URL+loc, trickle(t, "ab"))
				resp, err := s.Client().Do(req)
				if err != nil {
					done <- result{err: err}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done <- result{status: resp.StatusCode}
			}()
			// Wait until the chunk holds the session.
			sess, err := s.uploads.Get("repo", loc[strings.LastIndex(loc, "/")+1:])
			if err != nil {
				t.Fatal(err)
			}
			for !sess.Busy() {
				time.Sleep(time.Millisecond)
			}
			tt.during(t, s, loc)
			select {
			case r := <-done:
				// The client sees the 408 or, having its body cut off, a
				// broken connection; either way the server let go.
				if r.err == nil && r.status != http.StatusRequestTimeout {
					t.Errorf("stalled PATCH answered %d, want 408", r.status)
				}
				if took := time.Since(start); took > deadline+2*time.Second {
					t.Errorf("stalled PATCH took %s to end, deadline %s", took, deadline)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("stalled PATCH still open after 10 s")
			}
			st, hdr, _, _ := s.do(t, http.MethodGet, loc, nil, nil)
			if tt.wantGone {
				if st != http.StatusNotFound {
					t.Fatalf("cancelled session answers %d", st)
				}
				return
			}
			if st != http.StatusNoContent || hdr.Get("Range") != "0-4" {
				t.Fatalf("after the stalled chunk: %d Range %q, want 204 0-4 (unchanged)", st, hdr.Get("Range"))
			}
		})
	}
}

// chunked hides a reader's length so the client sends it chunked.
type chunked struct{ io.Reader }

func TestChunkLength(t *testing.T) {
	tests := []struct {
		name         string
		contentRange string
		body         io.Reader
		wantStatus   int
		wantCode     string
		wantRange    string
	}{
		{"exact", "5-7", chunked{strings.NewReader("abc")}, http.StatusAccepted, "", "0-7"},
		{"body longer than Content-Range", "5-7", chunked{strings.NewReader("abcdefghij")}, http.StatusBadRequest, "SIZE_INVALID", "0-4"},
		{"body shorter than Content-Range", "5-7", chunked{strings.NewReader("a")}, http.StatusBadRequest, "SIZE_INVALID", "0-4"},
		{"Content-Length disagrees with Content-Range", "5-7", strings.NewReader("abcdefghij"), http.StatusBadRequest, "SIZE_INVALID", "0-4"},
		{"out of order", "6-8", strings.NewReader("abc"), http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "0-4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{})
			loc := s.startUpload(t, "repo")
			if st, _, _, _ := s.do(t, http.MethodPatch, loc, nil, strings.NewReader("hello")); st != http.StatusAccepted {
				t.Fatalf("first chunk: %d", st)
			}
			st, _, code, b := s.do(t, http.MethodPatch, loc, http.Header{"Content-Range": {tt.contentRange}}, tt.body)
			if st != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("PATCH: %d %s (%s), want %d %s", st, code, b, tt.wantStatus, tt.wantCode)
			}
			if _, hdr, _, _ := s.do(t, http.MethodGet, loc, nil, nil); hdr.Get("Range") != tt.wantRange {
				t.Fatalf("session Range %q, want %q", hdr.Get("Range"), tt.wantRange)
			}
		})
	}
}

func TestBlobRange(t *testing.T) {
	s := newTestServer(t, Config{})
	content := []byte("0123456789")
	d := s.pushBlob(t, "repo", content)
	path := "/v2/repo/blobs/" + d.String()
	tests := []struct {
		rangeHdr     string
		wantStatus   int
		wantBody     string
		wantCode     string
		contentRange string
	}{
		{"", http.StatusOK, "0123456789", "", ""},
		{"bytes=2-4", http.StatusPartialContent, "234", "", "bytes 2-4/10"},
		{"bytes=7-", http.StatusPartialContent, "789", "", "bytes 7-9/10"},
		{"bytes=-3", http.StatusPartialContent, "789", "", "bytes 7-9/10"},
		{"bytes=5-100", http.StatusPartialContent, "56789", "", "bytes 5-9/10"},
		// RFC 9110 14.2: a Range of a unit the server does not know, or one it
		// cannot parse, is ignored.
		{"items=0-1", http.StatusOK, "0123456789", "", ""},
		// A malformed bytes range is refused (RFC 9110 allows either).
		{"bytes=abc", http.StatusRequestedRangeNotSatisfiable, "", "SIZE_INVALID", "bytes */10"},
		{"bytes=4-2", http.StatusRequestedRangeNotSatisfiable, "", "SIZE_INVALID", "bytes */10"},
		// Several ranges: georeg serves whole blobs rather than multipart
		// bodies (RFC 9110 lets a server ignore Range).
		{"bytes=0-1,4-5", http.StatusOK, "0123456789", "", ""},
		{"bytes=10-", http.StatusRequestedRangeNotSatisfiable, "", "SIZE_INVALID", "bytes */10"},
		{"bytes=-0", http.StatusRequestedRangeNotSatisfiable, "", "SIZE_INVALID", "bytes */10"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.rangeHdr), func(t *testing.T) {
			hdr := http.Header{}
			if tt.rangeHdr != "" {
				hdr.Set("Range", tt.rangeHdr)
			}
			st, rh, code, b := s.do(t, http.MethodGet, path, hdr, nil)
			if st != tt.wantStatus || code != tt.wantCode || rh.Get("Content-Range") != tt.contentRange {
				t.Fatalf("%d %s Content-Range %q, want %d %s %q", st, code, rh.Get("Content-Range"), tt.wantStatus, tt.wantCode, tt.contentRange)
			}
			if tt.wantCode == "" && string(b) != tt.wantBody {
				t.Fatalf("body %q, want %q", b, tt.wantBody)
			}
		})
	}
}

// TestEarlyAnswerNotDrained: a request refused before its body is read
// (an unknown session, a bad digest) is answered without waiting for the
// rest of a trickling body, and its connection closed, within drainGrace.
func TestEarlyAnswerNotDrained(t *testing.T) {
	s := newTestServer(t, Config{BodyIdleTimeout: time.Minute})
	tests := []struct {
		name, method, path string
		wantStatus         int
	}{
		{"PATCH of an unknown session", http.MethodPatch, "/v2/repo/blobs/uploads/nosuch", http.StatusNotFound},
		{"POST with a bad digest", http.MethodPost, "/v2/repo/blobs/uploads/?digest=sha256:x", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: registry\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", tt.method, tt.path)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("answer %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("connection still open after the answer: %v", err)
			}
			if took := time.Since(start); took > drainGrace+time.Second {
				t.Fatalf("connection closed after %s, want within %s", took, drainGrace+time.Second)
			}
		})
	}
}

// fakeReadThrough fails every fetch with err and counts the fetches.
type fakeReadThrough struct {
	err   error
	calls *int
}

func (f fakeReadThrough) FetchManifest(context.Context, string, string) error {
	*f.calls++
	return f.err
}

func (f fakeReadThrough) FetchBlob(context.Context, string, digest.Digest) error {
	*f.calls++
	return f.err
}

// unaskedError is a "not found" that names regions it could not ask, as
// replication's read-through returns.
type unaskedError struct{ regions []string }

func (e unaskedError) Error() string            { return "in no peer region that could be asked" }
func (e unaskedError) Unwrap() error            { return storage.ErrNotFound }
func (e unaskedError) UnaskedRegions() []string { return e.regions }

// TestPutManifestMissingBlob: a manifest whose blob this region lacks
// reads it through; while a peer region could not be asked it asks again
// (fetchTries in all) and then refuses the manifest as
// MANIFEST_BLOB_UNKNOWN, as when every region said it does not hold it
// (once); a region that holds it but could not deliver it makes the push
// 503 (retryable), not a refusal for good. Nothing is stored either way.
func TestPutManifestMissingBlob(t *testing.T) {
	layer := digest.FromString("a layer pushed through another region")
	config := digest.FromString("{}")
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":10}]}`, config, layer)
	for _, tc := range []struct {
		name    string
		err     error // of every fetch; no read-through when nil
		status  int
		code    string
		fetches int // the first missing digest fails each round
	}{
		{"no read-through", nil, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", 0},
		{"in no region", &unaskedError{}, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", 1},
		{"a region not asked", &unaskedError{regions: []string{"westeurope"}}, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", fetchTries},
		{"a region that could not deliver", errors.New("westeurope: no leader"), http.StatusServiceUnavailable, "UNAVAILABLE", fetchTries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			cfg := Config{}
			if tc.err != nil {
				cfg.ReadThrough = fakeReadThrough{err: tc.err, calls: &calls}
			}
			srv := newTestServer(t, cfg)
			hdr := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
			status, _, code, body := srv.do(t, http.MethodPut, "/v2/app/manifests/v1", hdr, strings.NewReader(manifest))
			if status != tc.status || code != tc.code {
				t.Fatalf("PUT manifest: %d %s, want %d %s (%s)", status, code, tc.status, tc.code, body)
			}
			if calls != tc.fetches {
				t.Errorf("%d fetches, want %d", calls, tc.fetches)
			}
			// The fake read-through fails the GET's own read-through too
			// (404 or 503); what matters is that nothing was stored.
			if status, _, _, _ := srv.do(t, http.MethodGet, "/v2/app/manifests/v1", nil, nil); status == http.StatusOK {
				t.Errorf("GET after the refused push: %d, want it unknown", status)
			}
		})
	}
}
