package ociclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Error is an answer with a status the client did not expect.
type Error struct {
	Method, URL string
	Status      int
	// Codes are the codes of the spec's error envelope, when the body is one.
	Codes []string
	Body  string
}

func (e *Error) Error() string {
	body := e.Body
	if len(body) > 1000 {
		body = body[:1000] + "..."
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, strings.TrimSpace(body))
}

// Has reports whether the error envelope carries code.
func (e *Error) Has(code string) bool { return slices.Contains(e.Codes, code) }

// IsStatus reports whether err is an answer with HTTP status code.
func IsStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == code
}

// ErrWrongBytes means a node answered with content that does not match the
// digest asked for: never acceptable, whatever replication's state.
var ErrWrongBytes = errors.New("content does not match its digest")

// Client is a plain OCI distribution client over net/http. Every call names
// the node (base URL) it talks to.
type Client struct {
	HTTP *http.Client
	// Observe, when set, is called after every answer with a wanted status.
	Observe func()
	// Done, when set, is called after every request with when it started,
	// how long it took and how it ended (status 0 when there was no answer).
	Done func(method, url string, start time.Time, took time.Duration, status int, err error)
}

// New returns a client whose requests give up after timeout. It follows no
// redirects and asks for no compression, so tests see the node's own answer.
func New(timeout time.Duration) *Client {
	return &Client{HTTP: &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
	}}
}

// Do sends one request to base+path (path may also be a full URL, as an
// upload's Location is) and reads the whole answer. A status outside want is
// an *Error.
func (c *Client) Do(ctx context.Context, method, base, path string, hdr http.Header, body []byte, want ...int) (*http.Response, []byte, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = base + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, b, err := c.roundTrip(req, body, !slices.Contains(want, http.StatusTemporaryRedirect))
	if err != nil && resp == nil {
		c.report(method, u, start, 0, err)
		return nil, nil, err
	}
	if err != nil {
		err = fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
		c.report(method, u, start, resp.StatusCode, err)
		return resp, nil, err
	}
	c.report(method, u, start, resp.StatusCode, nil)
	if slices.Contains(want, resp.StatusCode) {
		if c.Observe != nil {
			c.Observe()
		}
		return resp, b, nil
	}
	e := &Error{Method: method, URL: u, Status: resp.StatusCode, Body: string(b)}
	var env struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &env) == nil {
		for _, ee := range env.Errors {
			e.Codes = append(e.Codes, ee.Code)
		}
	}
	return resp, b, e
}

// dataRedirectTries is how many times a GET redirected to a data endpoint
// is asked again of the registry when the download from the data endpoint
// fails (its node died): the retry a real client makes, which gets a fresh
// redirect to a healthy node.
const dataRedirectTries = 4

// roundTrip sends req and reads the answer. A GET answered 307 with an
// absolute Location (a blob on a node's data endpoint) is followed, as
// every registry client follows a blob redirect, and asked again of the
// registry when the redirected download fails; a 307 the caller wants is
// not followed. The error is the transport's (resp nil) or the body's.
func (c *Client) roundTrip(req *http.Request, body []byte, follow bool) (*http.Response, []byte, error) {
	var lastErr error
	for try := 0; try < dataRedirectTries; try++ {
		if try > 0 && body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			if lastErr != nil {
				err = fmt.Errorf("%w (after a failed redirected download: %v)", err, lastErr)
			}
			return nil, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if err != nil || !follow || req.Method != http.MethodGet || resp.StatusCode != http.StatusTemporaryRedirect ||
			!(strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://")) {
			return resp, b, err
		}
		dreq, err := http.NewRequestWithContext(req.Context(), http.MethodGet, loc, nil)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range req.Header {
			dreq.Header[k] = v
		}
		dresp, err := c.HTTP.Do(dreq)
		if err == nil {
			b, err = io.ReadAll(dresp.Body)
			dresp.Body.Close()
			if err == nil && dresp.StatusCode < 500 {
				return dresp, b, nil
			}
			if err == nil {
				err = fmt.Errorf("data endpoint answered %d", dresp.StatusCode)
			}
		}
		if req.Context().Err() != nil {
			return nil, nil, err
		}
		lastErr = fmt.Errorf("GET %s: %w", loc, err)
	}
	return nil, nil, lastErr
}

func (c *Client) report(method, u string, start time.Time, status int, err error) {
	if c.Done != nil {
		c.Done(method, u, start, time.Since(start), status, err)
	}
}

// Poll calls f every interval until it reports done or timeout passes; the
// error then carries f's last complaint.
func Poll(ctx context.Context, timeout, interval time.Duration, f func() (done bool, why error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var why error
	for {
		var done bool
		done, why = f()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done after %v: %v", timeout, why)
		case <-time.After(interval):
		}
	}
}
