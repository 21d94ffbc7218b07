package zone

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// registryError is an answer with a status the client did not expect.
type registryError struct {
	Method, URL string
	Status      int
	// Codes are the codes of the spec's error envelope, when the body is one.
	Codes []string
	Body  string
}

func (e *registryError) Error() string {
	body := e.Body
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, strings.TrimSpace(body))
}

// has reports whether the error envelope carries code.
func (e *registryError) has(code string) bool {
	for _, c := range e.Codes {
		if c == code {
			return true
		}
	}
	return false
}

// errWrongBytes means the registry answered with content that does not match
// the digest asked for: never acceptable, whatever the region's state.
var errWrongBytes = errors.New("content does not match its digest")

// client is a plain OCI distribution client over net/http. It talks to one
// node per call; callers choose the node.
type client struct {
	hc *http.Client
	// observe, when set, is called after every answer with a 2xx status.
	observe func()
	// done, when set, is called after every request with when it started,
	// how long it took and how it ended.
	done func(method, url string, start time.Time, took time.Duration, status int, err error)
}

func newClient(timeout time.Duration) *client {
	return &client{hc: &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8},
	}}
}

// do sends one request to base+path (path may also be a full URL) and reads
// the whole answer. A status outside want is a *registryError.
func (c *client) do(ctx context.Context, method, base, path string, hdr http.Header, body []byte, want ...int) (*http.Response, []byte, error) {
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
	resp, err := c.hc.Do(req)
	if err != nil {
		c.report(method, u, start, 0, err)
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		err = fmt.Errorf("%s %s: reading the body: %w", method, u, err)
		c.report(method, u, start, resp.StatusCode, err)
		return nil, nil, err
	}
	c.report(method, u, start, resp.StatusCode, nil)
	for _, w := range want {
		if resp.StatusCode == w {
			if c.observe != nil {
				c.observe()
			}
			return resp, b, nil
		}
	}
	re := &registryError{Method: method, URL: u, Status: resp.StatusCode, Body: string(b)}
	var env struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &env) == nil {
		for _, e := range env.Errors {
			re.Codes = append(re.Codes, e.Code)
		}
	}
	return resp, b, re
}

func (c *client) report(method, u string, start time.Time, status int, err error) {
	if c.done != nil {
		c.done(method, u, start, time.Since(start), status, err)
	}
}

// image is a small single-layer OCI image with random content.
type image struct {
	Repo, Tag string
	Layer     []byte
	Config    []byte
	Manifest  []byte
	// Digests of the three.
	LayerDigest, ConfigDigest, Digest digest.Digest
}

// newImage returns an image with a random layer of layerSize bytes, tagged
// tag in repo.
func newImage(repo, tag string, layerSize int) *image {
	img := &image{Repo: repo, Tag: tag, Layer: make([]byte, layerSize)}
	rand.Read(img.Layer)
	img.LayerDigest = digest.FromBytes(img.Layer)
	img.Config = fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{"Labels":{"tag":%q}},"rootfs":{"type":"layers","diff_ids":[%q]}}`, tag, img.LayerDigest)
	img.ConfigDigest = digest.FromBytes(img.Config)
	img.Manifest = manifestFor(img.ConfigDigest, len(img.Config), img.LayerDigest, len(img.Layer), nil)
	img.Digest = digest.FromBytes(img.Manifest)
	return img
}

// manifestFor returns an OCI image manifest with one layer and the given
// annotations.
func manifestFor(config digest.Digest, configSize int, layer digest.Digest, layerSize int, annotations map[string]string) []byte {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        map[string]any{"mediaType": mediaConfig, "digest": config, "size": configSize},
		"layers":        []any{map[string]any{"mediaType": mediaLayer, "digest": layer, "size": layerSize}},
	}
	if annotations != nil {
		m["annotations"] = annotations
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// uploadMonolithic uploads data in one POST ?digest= request.
func (c *client) uploadMonolithic(ctx context.Context, base, repo string, data []byte) error {
	d := digest.FromBytes(data)
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, _, err := c.do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+url.QueryEscape(d.String()), hdr, data, http.StatusCreated)
	if err != nil {
		return err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("upload of %s answered Docker-Content-Digest %s", d, got)
	}
	return nil
}

// startUpload opens an upload session and returns its location.
func (c *client) startUpload(ctx context.Context, base, repo string) (string, error) {
	resp, _, err := c.do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("POST upload on %s: 202 without a Location", base)
	}
	return loc, nil
}

// patchUpload sends chunk at offset to the session at loc and returns the
// session's next location.
func (c *client) patchUpload(ctx context.Context, base, loc string, chunk []byte, offset int) (string, error) {
	hdr := http.Header{
		"Content-Type":  {"application/octet-stream"},
		"Content-Range": {strconv.Itoa(offset) + "-" + strconv.Itoa(offset+len(chunk)-1)},
	}
	resp, _, err := c.do(ctx, http.MethodPatch, base, loc, hdr, chunk, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	if next := resp.Header.Get("Location"); next != "" {
		loc = next
	}
	return loc, nil
}

// finishUpload closes the session at loc with the blob's digest and an
// optional last chunk.
func (c *client) finishUpload(ctx context.Context, base, loc string, d digest.Digest, last []byte) error {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	_, _, err := c.do(ctx, http.MethodPut, base, loc+sep+"digest="+url.QueryEscape(d.String()), hdr, last, http.StatusCreated)
	return err
}

// uploadChunked uploads data in a session: POST, one PATCH per chunk of
// about len(data)/chunks bytes, and a closing PUT.
func (c *client) uploadChunked(ctx context.Context, base, repo string, data []byte, chunks int) error {
	loc, err := c.startUpload(ctx, base, repo)
	if err != nil {
		return err
	}
	step := (len(data) + chunks - 1) / chunks
	for off := 0; off < len(data); off += step {
		end := min(off+step, len(data))
		if loc, err = c.patchUpload(ctx, base, loc, data[off:end], off); err != nil {
			return err
		}
	}
	return c.finishUpload(ctx, base, loc, digest.FromBytes(data), nil)
}

// putManifest pushes an image manifest under ref (a tag or digest).
func (c *client) putManifest(ctx context.Context, base, repo, ref string, body []byte) error {
	hdr := http.Header{"Content-Type": {mediaManifest}}
	resp, _, err := c.do(ctx, http.MethodPut, base, "/v2/"+repo+"/manifests/"+ref, hdr, body, http.StatusCreated)
	if err != nil {
		return err
	}
	if got, want := resp.Header.Get("Docker-Content-Digest"), digest.FromBytes(body).String(); got != want {
		return fmt.Errorf("manifest PUT on %s answered Docker-Content-Digest %q, want %s", base, got, want)
	}
	return nil
}

// getManifest fetches a manifest and checks that its bytes match the digest
// the registry names (and the one in ref, when ref is a digest).
func (c *client) getManifest(ctx context.Context, base, repo, ref string) ([]byte, digest.Digest, error) {
	hdr := http.Header{"Accept": {mediaManifest}}
	resp, b, err := c.do(ctx, http.MethodGet, base, "/v2/"+repo+"/manifests/"+ref, hdr, nil, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	got := digest.FromBytes(b)
	if named := resp.Header.Get("Docker-Content-Digest"); named != got.String() {
		return nil, "", fmt.Errorf("%w: manifest %s/%s from %s is %s, Docker-Content-Digest says %s", errWrongBytes, repo, ref, base, got, named)
	}
	if d, err := digest.Parse(ref); err == nil && d != got {
		return nil, "", fmt.Errorf("%w: manifest %s@%s from %s is %s", errWrongBytes, repo, ref, base, got)
	}
	return b, got, nil
}

// getBlob fetches a blob and checks its bytes against d.
func (c *client) getBlob(ctx context.Context, base, repo string, d digest.Digest) ([]byte, error) {
	_, b, err := c.do(ctx, http.MethodGet, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(b); got != d {
		return nil, fmt.Errorf("%w: blob %s/%s from %s is %s (%d bytes)", errWrongBytes, repo, d, base, got, len(b))
	}
	return b, nil
}

// pullImage pulls img by ref (its tag or digest) from base and checks that
// the manifest is img's and that both blobs match their digests.
func (c *client) pullImage(ctx context.Context, base string, img *image, ref string) error {
	_, d, err := c.getManifest(ctx, base, img.Repo, ref)
	if err != nil {
		return err
	}
	if d != img.Digest {
		return fmt.Errorf("%w: %s:%s on %s is %s, the push was acknowledged as %s", errWrongBytes, img.Repo, ref, base, d, img.Digest)
	}
	if _, err := c.getBlob(ctx, base, img.Repo, img.ConfigDigest); err != nil {
		return err
	}
	_, err = c.getBlob(ctx, base, img.Repo, img.LayerDigest)
	return err
}

// pushImage pushes img's blobs and manifest (by tag) through base, the
// layer in chunks when chunked.
func (c *client) pushImage(ctx context.Context, base string, img *image, chunked bool) error {
	var err error
	if chunked {
		err = c.uploadChunked(ctx, base, img.Repo, img.Layer, 2)
	} else {
		err = c.uploadMonolithic(ctx, base, img.Repo, img.Layer)
	}
	if err != nil {
		return err
	}
	if err := c.uploadMonolithic(ctx, base, img.Repo, img.Config); err != nil {
		return err
	}
	return c.putManifest(ctx, base, img.Repo, img.Tag, img.Manifest)
}

// headBlob reports the status of HEAD on a blob.
func (c *client) headBlob(ctx context.Context, base, repo string, d digest.Digest) (int, error) {
	resp, _, err := c.do(ctx, http.MethodHead, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	var re *registryError
	if errors.As(err, &re) {
		return re.Status, nil
	}
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
