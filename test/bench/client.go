package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OCI media types the benchmark pushes.
const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// errDigestMismatch means a registry served bytes that do not hash to the
// digest they were asked for: a correctness failure, not a slow answer.
var errDigestMismatch = errors.New("served content does not match its digest")

// newTransport returns the one http.Transport every target is measured
// through. Connections are kept and reused (enough idle ones for every
// concurrent client), compression is off so no side pays for gzip, and
// proxies from the environment are ignored because every target is on
// loopback.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		DisableCompression:    true,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
	}
}

// blob is content with its digest. Its bytes are prefix followed by rest, so
// that every run can stamp a shared buffer of random bytes with a prefix of
// its own without copying it.
type blob struct {
	prefix, rest []byte
	digest       string
}

// newBlob hashes prefix+rest.
func newBlob(prefix, rest []byte) blob {
	h := sha256.New()
	h.Write(prefix)
	h.Write(rest)
	return blob{prefix: prefix, rest: rest, digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}
}

func (b blob) size() int64 { return int64(len(b.prefix) + len(b.rest)) }

func (b blob) reader() io.Reader {
	if len(b.prefix) == 0 {
		return bytes.NewReader(b.rest)
	}
	return io.MultiReader(bytes.NewReader(b.prefix), bytes.NewReader(b.rest))
}

// descriptor, imageConfig and imageManifest are the parts of the OCI image
// spec the benchmark writes and reads.
type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type imageManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// image is an OCI image ready to push: layers, config and manifest with
// their digests.
type image struct {
	repo, tag string
	layers    []blob
	config    blob
	manifest  blob
}

// newImage builds the config and manifest of an image made of layers. The
// layers are uncompressed, so their digests are also their diff IDs.
func newImage(repo, tag string, layers []blob) (image, error) {
	var cfg imageConfig
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.RootFS.Type = "layers"
	m := imageManifest{SchemaVersion: 2, MediaType: mediaTypeManifest}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.digest)
		m.Layers = append(m.Layers, descriptor{MediaType: mediaTypeLayer, Digest: l.digest, Size: l.size()})
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return image{}, err
	}
	config := newBlob(nil, cb)
	m.Config = descriptor{MediaType: mediaTypeConfig, Digest: config.digest, Size: config.size()}
	mb, err := json.Marshal(m)
	if err != nil {
		return image{}, err
	}
	return image{repo: repo, tag: tag, layers: layers, config: config, manifest: newBlob(nil, mb)}, nil
}

// size is the number of bytes a push or pull of the image moves.
func (img image) size() int64 {
	n := img.config.size() + img.manifest.size()
	for _, l := range img.layers {
		n += l.size()
	}
	return n
}

// blobDigests returns the digests of the image's config and layers, sorted.
func (img image) blobDigests() []string {
	ds := []string{img.config.digest}
	for _, l := range img.layers {
		ds = append(ds, l.digest)
	}
	slices.Sort(ds)
	return slices.Compact(ds)
}

// client speaks the parts of the OCI distribution API the benchmark needs to
// one registry. It is safe for concurrent use.
type client struct {
	http  *http.Client
	base  string   // scheme://host:port, no trailing slash
	nodes []string // every node of the registry, in the form of base, base first
	// regions are, for a registry of several regions, each region's
	// nodes: settle then waits for replication between them too.
	regions [][]string
	bufs    sync.Pool // of *[]byte, copy buffers for reading blobs
}

// newClient returns a client of the registry at baseURL. nodes are the base
// URLs of the registry's other nodes, each a valid endpoint, for pulls
// spread over all of them.
func newClient(hc *http.Client, baseURL string, nodes ...string) (*client, error) {
	c := &client{http: hc}
	for _, n := range append([]string{baseURL}, nodes...) {
		u, err := url.Parse(n)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("registry URL %q: not an absolute URL", n)
		}
		if n = strings.TrimSuffix(n, "/"); !slices.Contains(c.nodes, n) {
			c.nodes = append(c.nodes, n)
		}
	}
	c.base = c.nodes[0]
	c.bufs.New = func() any { b := make([]byte, 256<<10); return &b }
	return c, nil
}

func (c *client) url(path string) string { return c.base + path }

// do sends req and returns the response when its status is want; otherwise it
// reads a little of the body into the error. The caller closes the body.
func (c *client) do(req *http.Request, want int) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		drain(resp)
		return nil, fmt.Errorf("%s %s: status %s, want %d: %s", req.Method, req.URL.Path, resp.Status, want, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// drain reads what is left of a response so its connection is reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// pushBlob uploads b monolithically: POST opens an upload session, one PUT
// with ?digest= streams the whole blob and closes it.
func (c *client) pushBlob(ctx context.Context, repo string, b blob) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/v2/"+repo+"/blobs/uploads/"), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	drain(resp)
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	if err := c.finishUpload(ctx, loc, b); err != nil {
		return fmt.Errorf("upload %s: %w", b.digest, err)
	}
	return nil
}

// finishUpload closes the upload session at loc with one PUT ?digest= that
// streams all of b.
func (c *client) finishUpload(ctx context.Context, loc *url.URL, b blob) error {
	q := loc.Query()
	q.Set("digest", b.digest)
	loc.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), b.reader())
	if err != nil {
		return err
	}
	req.ContentLength = b.size()
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(req, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// pushManifest PUTs an image manifest under ref.
func (c *client) pushManifest(ctx context.Context, repo, ref string, m blob) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url("/v2/"+repo+"/manifests/"+ref), m.reader())
	if err != nil {
		return err
	}
	req.ContentLength = m.size()
	req.Header.Set("Content-Type", mediaTypeManifest)
	resp, err := c.do(req, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// pushImage pushes the layers of img, parallel at a time, then its config and
// its manifest under its tag.
func (c *client) pushImage(ctx context.Context, img image, parallel int) error {
	err := forEach(ctx, len(img.layers), parallel, func(ctx context.Context, i int) error {
		return c.pushBlob(ctx, img.repo, img.layers[i])
	})
	if err != nil {
		return err
	}
	if err := c.pushBlob(ctx, img.repo, img.config); err != nil {
		return err
	}
	if err := c.pushManifest(ctx, img.repo, img.tag, img.manifest); err != nil {
		return fmt.Errorf("push manifest %s:%s: %w", img.repo, img.tag, err)
	}
	return nil
}

// getManifest GETs a manifest by tag or digest and returns its bytes.
func (c *client) getManifest(ctx context.Context, repo, ref string) ([]byte, error) {
	return c.getManifestFrom(ctx, c.base, repo, ref)
}

// getManifestFrom is getManifest from the node at base.
func (c *client) getManifestFrom(ctx context.Context, base, repo, ref string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", mediaTypeManifest)
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s:%s: %w", repo, ref, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s:%s: %w", repo, ref, err)
	}
	return b, nil
}

// getBlob GETs a blob from the node at base, reads it in full and checks its
// size and digest.
func (c *client) getBlob(ctx context.Context, base, repo string, d descriptor) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+d.Digest, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return fmt.Errorf("get blob: %w", err)
	}
	defer resp.Body.Close()
	buf := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(buf)
	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, *buf)
	if err != nil {
		return fmt.Errorf("get blob %s: %w", d.Digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != d.Size || got != d.Digest {
		return fmt.Errorf("get blob %s: got %d bytes hashing to %s: %w", d.Digest, n, got, errDigestMismatch)
	}
	return nil
}

// pullImage GETs the manifest of repo:ref, checks it is the manifest with
// digest want, then GETs its config and layers, parallel at a time.
func (c *client) pullImage(ctx context.Context, repo, ref, want string, parallel int) error {
	return c.pullImageFrom(ctx, c.nodes[:1], repo, ref, want, parallel)
}

// pullImageFrom is pullImage with the manifest read from nodes[0] and the
// i-th blob (the config, then the layers in order) from nodes[i%len(nodes)]:
// one pull spread round-robin over the nodes.
func (c *client) pullImageFrom(ctx context.Context, nodes []string, repo, ref, want string, parallel int) error {
	mb, err := c.getManifestFrom(ctx, nodes[0], repo, ref)
	if err != nil {
		return err
	}
	if got := newBlob(nil, mb).digest; got != want {
		return fmt.Errorf("get manifest %s:%s: got %s, want %s: %w", repo, ref, got, want, errDigestMismatch)
	}
	var m imageManifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	descs := append([]descriptor{m.Config}, m.Layers...)
	return forEach(ctx, len(descs), parallel, func(ctx context.Context, i int) error {
		return c.getBlob(ctx, nodes[i%len(nodes)], repo, descs[i])
	})
}

// forEach calls fn for 0 <= i < n from at most parallel goroutines and
// returns the first error, cancelling the context of the calls still running.
func forEach(ctx context.Context, n, parallel int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(parallel, n)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// nodeState is the part of a georeg node's GET /_georeg/state the benchmark
// reads: the Raft index it applied and the blobs it holds.
type nodeState struct {
	AppliedIndex uint64   `json:"appliedIndex"`
	Blobs        []string `json:"blobs"`
}

// states returns the state of every node, in the order of c.nodes.
func (c *client) states(ctx context.Context) ([]nodeState, error) {
	return c.statesOf(ctx, c.nodes)
}

// statesOf returns the states of nodes, in order.
func (c *client) statesOf(ctx context.Context, nodes []string) ([]nodeState, error) {
	sts := make([]nodeState, len(nodes))
	for i, n := range nodes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n+"/_georeg/state", nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.do(req, http.StatusOK)
		if err != nil {
			return nil, err
		}
		err = json.NewDecoder(resp.Body).Decode(&sts[i])
		drain(resp)
		if err != nil {
			return nil, fmt.Errorf("GET %s/_georeg/state: %w", n, err)
		}
	}
	return sts, nil
}

// statePoll is how often waitHeld and settle ask the nodes for their state:
// often enough to time a copy of a few hundred MB, rarely enough not to load
// the nodes while they copy.
const statePoll = 20 * time.Millisecond

// waitHeld waits until every node holds every blob in digests: the copies
// beyond the majority that acknowledged the upload have landed too.
func (c *client) waitHeld(ctx context.Context, digests []string) error {
	return c.pollStates(ctx, "every node holding the pushed blobs", func(sts []nodeState) bool {
		for _, st := range sts {
			for _, d := range digests {
				if _, ok := slices.BinarySearch(st.Blobs, d); !ok {
					return false
				}
			}
		}
		return true
	})
}

// settle waits until every node holds the same blobs and has applied the
// same Raft index, so that a region's background work (copies to the last
// zones, follower applies) is not billed to whatever is measured next.
func (c *client) settle(ctx context.Context) error {
	if len(c.regions) > 0 {
		return c.settleRegions(ctx)
	}
	return c.pollStates(ctx, "the nodes to hold the same blobs and metadata", func(sts []nodeState) bool {
		for _, st := range sts[1:] {
			if st.AppliedIndex != sts[0].AppliedIndex || !slices.Equal(st.Blobs, sts[0].Blobs) {
				return false
			}
		}
		return true
	})
}

// settleRegions waits until every node of every region holds the same
// blobs (replication has copied them) and the nodes of each region have
// applied the same Raft index.
func (c *client) settleRegions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		settled, err := c.regionsSettled(ctx)
		if err != nil {
			return fmt.Errorf("waiting for replication between regions: %w", err)
		}
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for replication between regions: %w", ctx.Err())
		case <-time.After(statePoll):
		}
	}
}

func (c *client) regionsSettled(ctx context.Context) (bool, error) {
	var first []string
	for i, nodes := range c.regions {
		sts, err := c.statesOf(ctx, nodes)
		if err != nil {
			return false, err
		}
		if i == 0 {
			first = sts[0].Blobs
		}
		for _, st := range sts {
			if st.AppliedIndex != sts[0].AppliedIndex || !slices.Equal(st.Blobs, first) {
				return false, nil
			}
		}
	}
	return true, nil
}

// pollStates polls the nodes' states until done says so, for at most two
// minutes.
func (c *client) pollStates(ctx context.Context, what string, done func([]nodeState) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		sts, err := c.states(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done(sts) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(statePoll):
		}
	}
}
