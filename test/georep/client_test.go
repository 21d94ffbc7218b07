package georep

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// MiB is a mebibyte, the unit the tests print sizes in.
const MiB = 1 << 20

// registryError is an answer with a status the client did not expect.
type registryError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *registryError) Error() string {
	body := e.Body
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, strings.TrimSpace(body))
}

// isStatus reports whether err is an answer with HTTP status code.
func isStatus(err error, code int) bool {
	var re *registryError
	return errors.As(err, &re) && re.Status == code
}

// errWrongBytes means a node answered with content that does not match the
// digest asked for: never acceptable, whatever replication's state.
var errWrongBytes = errors.New("content does not match its digest")

// client is a plain OCI distribution client over net/http. Every call names
// the node (base URL) it talks to.
type client struct{ hc *http.Client }

func newClient() *client {
	return &client{hc: &http.Client{
		Timeout:       5 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
	}}
}

// do sends one request to base+path and reads the whole answer. A status
// outside want is a *registryError.
func (c *client) do(ctx context.Context, method, base, path string, hdr http.Header, body []byte, want ...int) (*http.Response, []byte, error) {
	u := base + path
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
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, b, nil
		}
	}
	return resp, b, &registryError{Method: method, URL: u, Status: resp.StatusCode, Body: string(b)}
}

// blob is content with its digest and media type.
type blob struct {
	MediaType string
	Digest    digest.Digest
	Data      []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{MediaType: mediaType, Digest: digest.FromBytes(data), Data: data}
}

// randomBytes returns n pseudo-random bytes from seed: incompressible,
// different for every seed, and cheap to make on a busy machine.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	for i := range 4 {
		key[i*8] = byte(seed >> (8 * i))
		key[i*8+1] = byte(seed >> (8*i + 32))
	}
	key[31] = byte(n)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// image is an OCI image: a config, layers and the manifest naming them.
type image struct {
	Config   blob
	Layers   []blob
	Manifest []byte
	Digest   digest.Digest
}

// newImage builds an image whose config is unique to name.
func newImage(name string, layers ...blob) image {
	cfg := fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"test":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, name)
	img := image{Config: newBlob(mediaConfig, []byte(cfg)), Layers: layers}
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int           `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{SchemaVersion: 2, MediaType: mediaManifest, Config: desc{mediaConfig, img.Config.Digest, len(img.Config.Data)}, Layers: []desc{}}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc{l.MediaType, l.Digest, len(l.Data)})
	}
	img.Manifest, _ = json.Marshal(m)
	img.Digest = digest.FromBytes(img.Manifest)
	return img
}

// blobs returns the config and the layers.
func (img image) blobs() []blob { return append([]blob{img.Config}, img.Layers...) }

// size is the bytes of the config and layers.
func (img image) size() int64 {
	var n int64
	for _, b := range img.blobs() {
		n += int64(len(b.Data))
	}
	return n
}

// pushBlob uploads b into repo in one request (POST with ?digest=).
func (c *client) pushBlob(ctx context.Context, base, repo string, b blob) error {
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	_, _, err := c.do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+url.QueryEscape(b.Digest.String()), hdr, b.Data, http.StatusCreated)
	return err
}

// mountBlob links a blob of repository from into repo without uploading it.
func (c *client) mountBlob(ctx context.Context, base, repo, from string, d digest.Digest) error {
	q := url.Values{"mount": {d.String()}, "from": {from}}
	_, _, err := c.do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?"+q.Encode(), nil, nil, http.StatusCreated)
	return err
}

// putManifest pushes img's manifest as repo:ref and checks the digest the
// registry answers.
func (c *client) putManifest(ctx context.Context, base, repo, ref string, img image) error {
	hdr := http.Header{"Content-Type": {mediaManifest}}
	resp, _, err := c.do(ctx, http.MethodPut, base, "/v2/"+repo+"/manifests/"+ref, hdr, img.Manifest, http.StatusCreated)
	if err != nil {
		return err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != img.Digest.String() {
		return fmt.Errorf("PUT %s:%s answered digest %q, want %s", repo, ref, got, img.Digest)
	}
	return nil
}

// pushImage uploads every blob of img, then the manifest as repo:tag.
func (c *client) pushImage(ctx context.Context, base, repo, tag string, img image) error {
	for _, b := range img.blobs() {
		if err := c.pushBlob(ctx, base, repo, b); err != nil {
			return err
		}
	}
	return c.putManifest(ctx, base, repo, tag, img)
}

// getManifest fetches repo:ref and returns its digest, checked against the
// bytes (and against ref when ref is a digest).
func (c *client) getManifest(ctx context.Context, base, repo, ref string) (digest.Digest, []byte, error) {
	hdr := http.Header{"Accept": {mediaManifest}}
	resp, body, err := c.do(ctx, http.MethodGet, base, "/v2/"+repo+"/manifests/"+ref, hdr, nil, http.StatusOK)
	if err != nil {
		return "", nil, err
	}
	d := digest.FromBytes(body)
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != d.String() {
		return "", nil, fmt.Errorf("GET %s:%s: header digest %s, body %s: %w", repo, ref, h, d, errWrongBytes)
	}
	if rd, err := digest.Parse(ref); err == nil && rd != d {
		return "", nil, fmt.Errorf("GET %s@%s: body is %s: %w", repo, ref, d, errWrongBytes)
	}
	return d, body, nil
}

// headBlob reports whether repo holds blob d on that node. HEAD never reads
// through to other regions, so it shows what replication has delivered.
func (c *client) headBlob(ctx context.Context, base, repo string, d digest.Digest) (bool, error) {
	_, _, err := c.do(ctx, http.MethodHead, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	if isStatus(err, http.StatusNotFound) {
		return false, nil
	}
	return err == nil, err
}

// getBlob fetches blob d of repo and checks its bytes.
func (c *client) getBlob(ctx context.Context, base, repo string, d digest.Digest) error {
	_, body, err := c.do(ctx, http.MethodGet, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	if err != nil {
		return err
	}
	if got := digest.FromBytes(body); got != d {
		return fmt.Errorf("GET blob %s of %s: body is %s: %w", d, repo, got, errWrongBytes)
	}
	return nil
}

// pullImage fetches repo:ref and every blob it names, checking digests, and
// returns the manifest's digest.
func (c *client) pullImage(ctx context.Context, base, repo, ref string) (digest.Digest, error) {
	d, body, err := c.getManifest(ctx, base, repo, ref)
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
		if err := c.getBlob(ctx, base, repo, bd); err != nil {
			return "", err
		}
	}
	return d, nil
}

// deleteRef deletes a tag or (with a digest) a manifest.
func (c *client) deleteRef(ctx context.Context, base, repo, ref string) error {
	_, _, err := c.do(ctx, http.MethodDelete, base, "/v2/"+repo+"/manifests/"+ref, nil, nil, http.StatusAccepted)
	return err
}

// list follows a paginated listing (catalog or tags) and returns the field
// key of every page.
func (c *client) list(ctx context.Context, base, path, key string) ([]string, error) {
	var out []string
	next := path
	for next != "" {
		resp, body, err := c.do(ctx, http.MethodGet, base, next, nil, nil, http.StatusOK)
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

// tags lists repo's tags; an unknown repository has none.
func (c *client) tags(ctx context.Context, base, repo string) ([]string, error) {
	tags, err := c.list(ctx, base, "/v2/"+repo+"/tags/list", "tags")
	if isStatus(err, http.StatusNotFound) {
		return nil, nil
	}
	return tags, err
}

// hasTag reports whether repo lists tag on that node. Listing never reads
// through to other regions.
func (c *client) hasTag(ctx context.Context, base, repo, tag string) (bool, error) {
	tags, err := c.tags(ctx, base, repo)
	for _, t := range tags {
		if t == tag {
			return true, err
		}
	}
	return false, err
}

// metrics scrapes a node's /metrics: series name with labels (as the text
// format prints them) to value.
func (c *client) metrics(ctx context.Context, base string) (map[string]float64, error) {
	_, body, err := c.do(ctx, http.MethodGet, base, "/metrics", nil, nil, http.StatusOK)
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

// series names a metric with one peer label, as /metrics prints it.
func series(name, label, value string) string {
	return fmt.Sprintf("%s{%s=%q}", name, label, value)
}

// poll calls f every interval until it reports done, returns an error, or
// timeout passes; the error then carries f's last complaint.
func poll(ctx context.Context, timeout, interval time.Duration, f func() (done bool, why error)) error {
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
