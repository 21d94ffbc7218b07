package site

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/oci"
)

// Bounds of what the parent may send.
const (
	// maxJSON bounds a JSON answer (Config, Events, catalog and tag pages).
	maxJSON = 4 << 20
	// maxManifest bounds a manifest, as the API bounds a pushed one.
	maxManifest = 4 << 20
	// callTimeout bounds a call other than the events long poll and blob
	// downloads.
	callTimeout = 30 * time.Second
	// pollSlack is how long past its wait an events long poll may take: a
	// link that went silent (no reset, as a cut link often is) is noticed
	// within wait plus this, not after TCP's keepalives give up.
	pollSlack = 10 * time.Second
	// blobTimeout bounds one blob download.
	blobTimeout = 30 * time.Minute
	// pageSize is the n of catalog and tags/list pages.
	pageSize = 1000
	// maxListed bounds the repositories of a catalog and the tags of a
	// repository a site takes, whatever pages the parent sends.
	maxListed = 100_000
)

// manifestAccept is every manifest media type georeg stores.
var manifestAccept = strings.Join([]string{
	oci.MediaTypeOCIManifest, oci.MediaTypeOCIIndex, oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList,
}, ", ")

// ErrActive is the refusal of an activation while another instance of the
// connected registry is Active.
var ErrActive = errors.New("another instance is active")

// HTTPError is an error answer of the parent.
type HTTPError struct {
	Status int
	Code   string // the first OCI error code of the answer, if any
	Msg    string
}

func (e *HTTPError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("parent answered %d %s: %s", e.Status, e.Code, e.Msg)
	}
	return fmt.Sprintf("parent answered %d", e.Status)
}

// client speaks to the parent endpoint with the sync token.
type client struct {
	base       string
	user, pass string
	http       *http.Client
}

func (c *client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.Contains(path, "/manifests/") {
		req.Header.Set("Accept", manifestAccept)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

// readError reads the Distribution API's error envelope of an answer.
func readError(resp *http.Response) error {
	e := &HTTPError{Status: resp.StatusCode}
	var env struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &env) == nil && len(env.Errors) > 0 {
		e.Code, e.Msg = env.Errors[0].Code, env.Errors[0].Message
	}
	return e
}

// getJSON calls and decodes a JSON answer of at most maxJSON bytes into
// out (nil: the body is dropped).
func (c *client) call(ctx context.Context, method, path string, body, out any, timeout time.Duration) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if len(b) > maxJSON {
		return nil, fmt.Errorf("%s %s: answer over %d bytes", method, path, maxJSON)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: malformed answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func (c *client) activate(ctx context.Context, name string, hello connected.Hello) (connected.Config, error) {
	var cfg connected.Config
	_, err := c.call(ctx, http.MethodPost, connected.APIPrefix+"/"+name+"/activate", hello, &cfg, callTimeout)
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusConflict {
		return cfg, fmt.Errorf("activating %s: %w (%s): run `georeg connected-registry deactivate %s` on the cloud registry to move it to this instance",
			name, ErrActive, he.Msg, name)
	}
	if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
		return cfg, fmt.Errorf("activating %s: the parent refused the sync token's password (wrong, expired or replaced): get a new connection string with `georeg connected-registry get-settings --name %s`: %w",
			name, name, err)
	}
	if err != nil {
		return cfg, fmt.Errorf("activating %s: %w", name, err)
	}
	if cfg.Registry.Name != name {
		return cfg, fmt.Errorf("activating %s: malformed answer: the config is of %q", name, cfg.Registry.Name)
	}
	return cfg, nil
}

func (c *client) events(ctx context.Context, name string, since connected.Cursor, wait, ttl time.Duration) (connected.Events, error) {
	var ev connected.Events
	q := url.Values{"since": {since.String()}, "wait": {fmt.Sprint(int(wait / time.Second))}}
	if ttl > 0 {
		q.Set("ttl", fmt.Sprint(int64(ttl/time.Second)))
	}
	_, err := c.call(ctx, http.MethodGet, connected.APIPrefix+"/"+name+"/events?"+q.Encode(), nil, &ev, wait+pollSlack)
	if err != nil {
		return ev, err
	}
	if err := validEvents(ev); err != nil {
		return ev, fmt.Errorf("events: malformed answer: %w", err)
	}
	return ev, nil
}

// validEvents checks an events answer before any of it is applied.
func validEvents(ev connected.Events) error {
	if ev.Region == "" {
		return errors.New("no region")
	}
	if len(ev.Events) > connected.MaxEvents {
		return fmt.Errorf("%d events, over %d", len(ev.Events), connected.MaxEvents)
	}
	for _, e := range ev.Events {
		if e.Action != "push" && e.Action != "delete" {
			return fmt.Errorf("event %d: action %q", e.Seq, e.Action)
		}
		if err := oci.ValidateName(e.Repo); err != nil {
			return fmt.Errorf("event %d: %w", e.Seq, err)
		}
		if e.Tag == "" && e.Digest == "" {
			return fmt.Errorf("event %d: neither tag nor digest", e.Seq)
		}
		if e.Tag != "" {
			if err := oci.ValidateTag(e.Tag); err != nil {
				return fmt.Errorf("event %d: %w", e.Seq, err)
			}
		}
		if e.Digest != "" {
			if _, err := oci.ParseDigest(e.Digest); err != nil {
				return fmt.Errorf("event %d: %w", e.Seq, err)
			}
		}
	}
	return nil
}

func (c *client) status(ctx context.Context, name string, st connected.Status) error {
	_, err := c.call(ctx, http.MethodPost, connected.APIPrefix+"/"+name+"/status", st, nil, callTimeout)
	return err
}

// nextPage returns the last of a page when the answer links a next one.
func nextPage(h http.Header, names []string) (string, bool) {
	if h.Get("Link") == "" || len(names) == 0 {
		return "", false
	}
	return names[len(names)-1], true
}

// catalog lists the repositories the sync token reads.
func (c *client) catalog(ctx context.Context) ([]string, error) {
	var all []string
	last := ""
	for {
		var page struct {
			Repositories []string `json:"repositories"`
		}
		q := url.Values{"n": {fmt.Sprint(pageSize)}}
		if last != "" {
			q.Set("last", last)
		}
		h, err := c.call(ctx, http.MethodGet, "/v2/_catalog?"+q.Encode(), nil, &page, callTimeout)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		for _, r := range page.Repositories {
			if err := oci.ValidateName(r); err != nil {
				return nil, fmt.Errorf("catalog: malformed answer: %w", err)
			}
		}
		all = append(all, page.Repositories...)
		if len(all) > maxListed {
			return nil, fmt.Errorf("catalog: malformed answer: over %d repositories", maxListed)
		}
		next, ok := nextPage(h, page.Repositories)
		if !ok || next <= last {
			return all, nil
		}
		last = next
	}
}

// tags lists a repository's tags at the parent; an unknown repository
// has none.
func (c *client) tags(ctx context.Context, repo string) ([]string, error) {
	var all []string
	last := ""
	for {
		var page struct {
			Tags []string `json:"tags"`
		}
		q := url.Values{"n": {fmt.Sprint(pageSize)}}
		if last != "" {
			q.Set("last", last)
		}
		h, err := c.call(ctx, http.MethodGet, "/v2/"+repo+"/tags/list?"+q.Encode(), nil, &page, callTimeout)
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return all, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tags of %s: %w", repo, err)
		}
		for _, t := range page.Tags {
			if err := oci.ValidateTag(t); err != nil {
				return nil, fmt.Errorf("tags of %s: malformed answer: %w", repo, err)
			}
		}
		all = append(all, page.Tags...)
		if len(all) > maxListed {
			return nil, fmt.Errorf("tags of %s: malformed answer: over %d tags", repo, maxListed)
		}
		next, ok := nextPage(h, page.Tags)
		if !ok || next <= last {
			return all, nil
		}
		last = next
	}
}

// headManifest returns the digest ref names at the parent.
func (c *client) headManifest(ctx context.Context, repo, ref string) (digest.Digest, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.request(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	d, err := oci.ParseDigest(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("manifest %s:%s: malformed answer: %w", repo, ref, err)
	}
	return d, nil
}

// manifest fetches a manifest, checked against its digest: the digest
// ref names, or else the one the parent announces.
func (c *client) manifest(ctx context.Context, repo, ref string) (content []byte, mediaType string, dgst digest.Digest, err error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.request(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return nil, "", "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	defer resp.Body.Close()
	content, err = io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, "", "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	if len(content) > maxManifest {
		return nil, "", "", fmt.Errorf("manifest %s:%s: over %d bytes", repo, ref, maxManifest)
	}
	want := resp.Header.Get("Docker-Content-Digest")
	if d, perr := digest.Parse(ref); perr == nil {
		want = d.String()
	}
	if want == "" {
		dgst = digest.FromBytes(content)
	} else {
		if dgst, err = oci.ParseDigest(want); err != nil {
			return nil, "", "", fmt.Errorf("manifest %s:%s: malformed answer: %w", repo, ref, err)
		}
		if dgst.Algorithm().FromBytes(content) != dgst {
			return nil, "", "", fmt.Errorf("manifest %s:%s: malformed answer: the content does not match %s", repo, ref, dgst)
		}
	}
	return content, resp.Header.Get("Content-Type"), dgst, nil
}

// proxyBlobsHeader asks the traffic manager for a blob's bytes rather than
// a redirect (trafficmgr.ProxyBlobsHeader).
const proxyBlobsHeader = "Georeg-Proxy-Blobs"

// blob opens a blob of repo at the parent, from offset on.
func (c *client) blob(ctx context.Context, repo string, dgst digest.Digest, offset int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v2/"+repo+"/blobs/"+dgst.String(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	// The bytes through the parent's endpoint, not a redirect to a node's
	// data endpoint: a site's only path to its parent is the one it dials
	// (its link on the simulated WAN, its proxy, its firewall's one hole),
	// and resuming from offset stays with this client.
	req.Header.Set(proxyBlobsHeader, "1")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}
