package ociclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// PushBlob uploads b into repo in one request (POST with ?digest=).
func (c *Client) PushBlob(ctx context.Context, base, repo string, b Blob) error {
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, _, err := c.Do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+url.QueryEscape(b.Digest.String()), hdr, b.Data, http.StatusCreated)
	if err != nil {
		return err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != b.Digest.String() {
		return fmt.Errorf("upload of %s answered Docker-Content-Digest %s", b.Digest, got)
	}
	return nil
}

// MountBlob links a blob of repository from into repo without uploading it.
func (c *Client) MountBlob(ctx context.Context, base, repo, from string, d digest.Digest) error {
	q := url.Values{"mount": {d.String()}, "from": {from}}
	_, _, err := c.Do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?"+q.Encode(), nil, nil, http.StatusCreated)
	return err
}

// StartUpload opens an upload session and returns its location.
func (c *Client) StartUpload(ctx context.Context, base, repo string) (string, error) {
	resp, _, err := c.Do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("POST upload on %s: 202 without a Location", base)
	}
	return loc, nil
}

// PatchUpload sends chunk at offset to the session at loc and returns the
// session's next location.
func (c *Client) PatchUpload(ctx context.Context, base, loc string, chunk []byte, offset int) (string, error) {
	hdr := http.Header{
		"Content-Type":  {"application/octet-stream"},
		"Content-Range": {strconv.Itoa(offset) + "-" + strconv.Itoa(offset+len(chunk)-1)},
	}
	resp, _, err := c.Do(ctx, http.MethodPatch, base, loc, hdr, chunk, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	if next := resp.Header.Get("Location"); next != "" {
		loc = next
	}
	return loc, nil
}

// FinishUpload closes the session at loc with the blob's digest and an
// optional last chunk.
func (c *Client) FinishUpload(ctx context.Context, base, loc string, d digest.Digest, last []byte) error {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	_, _, err := c.Do(ctx, http.MethodPut, base, loc+sep+"digest="+url.QueryEscape(d.String()), hdr, last, http.StatusCreated)
	return err
}

// UploadChunked uploads data in a session: POST, one PATCH per chunk of
// about len(data)/chunks bytes, and a closing PUT.
func (c *Client) UploadChunked(ctx context.Context, base, repo string, data []byte, chunks int) error {
	loc, err := c.StartUpload(ctx, base, repo)
	if err != nil {
		return err
	}
	step := (len(data) + chunks - 1) / chunks
	for off := 0; off < len(data); off += step {
		end := min(off+step, len(data))
		if loc, err = c.PatchUpload(ctx, base, loc, data[off:end], off); err != nil {
			return err
		}
	}
	return c.FinishUpload(ctx, base, loc, digest.FromBytes(data), nil)
}

// PutManifest pushes an image manifest as repo:ref (a tag or digest) and
// checks the digest the registry answers.
func (c *Client) PutManifest(ctx context.Context, base, repo, ref string, manifest []byte) error {
	hdr := http.Header{"Content-Type": {MediaManifest}}
	resp, _, err := c.Do(ctx, http.MethodPut, base, "/v2/"+repo+"/manifests/"+ref, hdr, manifest, http.StatusCreated)
	if err != nil {
		return err
	}
	if got, want := resp.Header.Get("Docker-Content-Digest"), digest.FromBytes(manifest).String(); got != want {
		return fmt.Errorf("PUT %s:%s on %s answered Docker-Content-Digest %q, want %s", repo, ref, base, got, want)
	}
	return nil
}

// PushImage uploads every blob of img in one request each, then the
// manifest as repo:tag.
func (c *Client) PushImage(ctx context.Context, base, repo, tag string, img Image) error {
	for _, b := range img.Blobs() {
		if err := c.PushBlob(ctx, base, repo, b); err != nil {
			return err
		}
	}
	return c.PutManifest(ctx, base, repo, tag, img.Manifest)
}

// GetManifest fetches repo:ref and returns its digest and bytes, checked
// against the digest the registry names (and the one in ref, when ref is a
// digest).
func (c *Client) GetManifest(ctx context.Context, base, repo, ref string) (digest.Digest, []byte, error) {
	hdr := http.Header{"Accept": {MediaManifest}}
	resp, body, err := c.Do(ctx, http.MethodGet, base, "/v2/"+repo+"/manifests/"+ref, hdr, nil, http.StatusOK)
	if err != nil {
		return "", nil, err
	}
	got := digest.FromBytes(body)
	if named := resp.Header.Get("Docker-Content-Digest"); named != got.String() {
		return "", nil, fmt.Errorf("%w: manifest %s:%s from %s is %s, Docker-Content-Digest says %q", ErrWrongBytes, repo, ref, base, got, named)
	}
	if d, err := digest.Parse(ref); err == nil && d != got {
		return "", nil, fmt.Errorf("%w: manifest %s@%s from %s is %s", ErrWrongBytes, repo, ref, base, got)
	}
	return got, body, nil
}

// HeadBlob returns the status of HEAD on blob d of repo; an unexpected
// status is not an error.
func (c *Client) HeadBlob(ctx context.Context, base, repo string, d digest.Digest) (int, error) {
	resp, _, err := c.Do(ctx, http.MethodHead, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	var e *Error
	if errors.As(err, &e) {
		return e.Status, nil
	}
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// HasBlob reports whether repo holds blob d on that node; a status other
// than 200 or 404 is an error. HEAD never reads through to other regions,
// so it shows what replication has delivered.
func (c *Client) HasBlob(ctx context.Context, base, repo string, d digest.Digest) (bool, error) {
	_, _, err := c.Do(ctx, http.MethodHead, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	if IsStatus(err, http.StatusNotFound) {
		return false, nil
	}
	return err == nil, err
}

// GetBlob fetches blob d of repo and checks its bytes.
func (c *Client) GetBlob(ctx context.Context, base, repo string, d digest.Digest) ([]byte, error) {
	_, body, err := c.Do(ctx, http.MethodGet, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(body); got != d {
		return nil, fmt.Errorf("%w: blob %s of %s from %s is %s (%d bytes)", ErrWrongBytes, d, repo, base, got, len(body))
	}
	return body, nil
}

// PullImage fetches repo:ref and every blob it names, checking digests, and
// returns the manifest's digest.
func (c *Client) PullImage(ctx context.Context, base, repo, ref string) (digest.Digest, error) {
	d, body, err := c.GetManifest(ctx, base, repo, ref)
	if err != nil {
		return "", err
	}
	var m struct {
		Config struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	ds := []digest.Digest{m.Config.Digest}
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	for _, bd := range ds {
		if _, err := c.GetBlob(ctx, base, repo, bd); err != nil {
			return "", err
		}
	}
	return d, nil
}

// DeleteRef deletes a tag or (with a digest) a manifest.
func (c *Client) DeleteRef(ctx context.Context, base, repo, ref string) error {
	_, _, err := c.Do(ctx, http.MethodDelete, base, "/v2/"+repo+"/manifests/"+ref, nil, nil, http.StatusAccepted)
	return err
}

// List follows a paginated listing (catalog or tags) and returns the field
// key of every page.
func (c *Client) List(ctx context.Context, base, path, key string) ([]string, error) {
	var out []string
	next := path
	for next != "" {
		resp, body, err := c.Do(ctx, http.MethodGet, base, next, nil, nil, http.StatusOK)
		if err != nil {
			return nil, err
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("GET %s: %w", next, err)
		}
		var items []string
		if raw, ok := page[key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("GET %s: %s: %w", next, key, err)
			}
		}
		out = append(out, items...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			if i, j := strings.Index(l, "<"), strings.Index(l, ">"); i >= 0 && j > i {
				next = l[i+1 : j]
			}
		}
	}
	return out, nil
}

// Tags lists repo's tags; an unknown repository has none.
func (c *Client) Tags(ctx context.Context, base, repo string) ([]string, error) {
	tags, err := c.List(ctx, base, "/v2/"+repo+"/tags/list", "tags")
	if IsStatus(err, http.StatusNotFound) {
		return nil, nil
	}
	return tags, err
}

// HasTag reports whether repo lists tag on that node. Listing never reads
// through to other regions.
func (c *Client) HasTag(ctx context.Context, base, repo, tag string) (bool, error) {
	tags, err := c.Tags(ctx, base, repo)
	for _, t := range tags {
		if t == tag {
			return true, err
		}
	}
	return false, err
}

// Metrics scrapes a node's /metrics: series name with labels (as the text
// format prints them) to value.
func (c *Client) Metrics(ctx context.Context, base string) (map[string]float64, error) {
	_, body, err := c.Do(ctx, http.MethodGet, base, "/metrics", nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// Series names a metric with one label, as /metrics prints it.
func Series(name, label, value string) string {
	return fmt.Sprintf("%s{%s=%q}", name, label, value)
}
