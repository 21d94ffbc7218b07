package endpoint

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/ociclient"
)

// dataBlobBytes is the size of the blobs the data endpoint tests pull:
// above the nodes' 1 MiB redirect threshold, and large enough that a
// node killed after the first MiB has most of its blob unsent.
const dataBlobBytes = 32 << 20

// redirectOf asks base for blob d of repo with the mesh's credential and
// returns the data endpoint URL the endpoint redirected to.
func (m *mesh) redirectOf(ctx context.Context, base, repo string, d digest.Digest) (*url.URL, http.Header) {
	m.t.Helper()
	resp, _, err := m.c.Do(ctx, http.MethodGet, base, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusTemporaryRedirect)
	if err != nil {
		m.t.Fatalf("blob GET through %s: %v, want 307 to a data endpoint", base, err)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !u.IsAbs() || !u.Query().Has("georeg-sig") {
		m.t.Fatalf("307 Location %q: want an absolute signed URL (%v)", resp.Header.Get("Location"), err)
	}
	return u, resp.Header
}

// anonymous GETs u with no credential and returns the status and body.
func anonymous(ctx context.Context, u string) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// testDataEndpoints: a blob GET through the endpoint answers 307 to the
// serving node's data endpoint for the client's location; the signed URL
// serves that blob without credentials and is refused for another digest
// or repository, with its signature stripped, and once its token is
// disabled; a client that asks for the bytes gets them through the relay.
func testDataEndpoints(ctx context.Context, m *mesh) {
	repo := "data/redirect"
	img := ociclient.NewImage("redirect", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1901, dataBlobBytes)))
	if err := m.c.PushImage(ctx, m.Locations["westus"], repo, "v1", img); err != nil {
		m.t.Fatal(err)
	}
	layer := img.Layers[0]
	small := img.Config // below the redirect threshold: relayed
	if resp, body, err := m.c.Do(ctx, http.MethodGet, m.Locations["westus"], "/v2/"+repo+"/blobs/"+small.Digest.String(), nil, nil, http.StatusOK); err != nil || digest.FromBytes(body) != small.Digest {
		m.t.Errorf("small blob through the endpoint: %v, want 200 with its bytes (%v)", err, resp)
	}
	for _, loc := range regions {
		u, hdr := m.redirectOf(ctx, m.Locations[loc], repo, layer.Digest)
		if hdr.Get("Georeg-Region") != loc {
			m.t.Errorf("%s: redirected by region %s, want its own", loc, hdr.Get("Georeg-Region"))
		}
		start := time.Now()
		status, body, rh, err := anonymous(ctx, u.String())
		if err != nil || status != http.StatusOK || digest.FromBytes(body) != layer.Digest {
			m.t.Fatalf("%s: GET the data endpoint %s without credentials: %d, %d bytes, %v", loc, u.Host, status, len(body), err)
		}
		m.t.Logf("%s: 307 to %s (%s/%s), %d MiB downloaded from the data endpoint in %v", loc, u.Host,
			rh.Get("Georeg-Region"), rh.Get("Georeg-Zone"), len(body)>>20, time.Since(start).Round(time.Millisecond))
	}
	if _, body, err := ociclient.New(time.Minute).Do(ctx, http.MethodGet, m.Locations["westus"], "/v2/"+repo+"/blobs/"+layer.Digest.String(),
		http.Header{"Authorization": {"Basic " + basicOf(m.Cred)}, "Georeg-Proxy-Blobs": {"1"}}, nil, http.StatusOK); err != nil || digest.FromBytes(body) != layer.Digest {
		m.t.Errorf("blob GET with Georeg-Proxy-Blobs: %v, want the bytes through the relay", err)
	}

	u, _ := m.redirectOf(ctx, m.Locations["westus"], repo, layer.Digest)
	other := img.Config.Digest.String()
	for name, bad := range map[string]string{
		"another digest":     strings.Replace(u.String(), layer.Digest.String(), other, 1),
		"another repository": strings.Replace(u.String(), "/v2/"+repo+"/", "/v2/data/other/", 1),
		"a later expiry":     strings.Replace(u.String(), "georeg-exp=", "georeg-exp=9", 1),
	} {
		if status, body, _, err := anonymous(ctx, bad); err != nil || status != http.StatusForbidden {
			m.t.Errorf("signed URL replayed for %s: %d %s %v, want 403 DENIED", name, status, body, err)
		}
	}
	stripped := *u
	stripped.RawQuery = ""
	if status, _, _, err := anonymous(ctx, stripped.String()); err != nil || status != http.StatusNotFound {
		m.t.Errorf("data endpoint without a signature: %d %v, want 404", status, err)
	}

	// A URL stands only while its caller may read: disabling the token
	// ends it (once this region's copy of the access state has the change).
	cred := m.CreateToken(m.t, "data-redirect-reader", "--scope-map", "_repositories_pull")
	rc := ociclient.New(time.Minute)
	rc.HTTP.Transport = cred.Transport(nil)
	resp, _, err := rc.Do(ctx, http.MethodGet, m.Locations["westus"], "/v2/"+repo+"/blobs/"+layer.Digest.String(), nil, nil, http.StatusTemporaryRedirect)
	if err != nil {
		m.t.Fatalf("reader's blob GET: %v", err)
	}
	loc := resp.Header.Get("Location")
	m.georeg(ctx, "token", "update", "--name", "data-redirect-reader", "--status", "disabled")
	err = ociclient.Poll(ctx, 10*time.Second, 100*time.Millisecond, func() (bool, error) {
		status, _, _, err := anonymous(ctx, loc)
		return err == nil && status == http.StatusForbidden, fmt.Errorf("status %d, %v", status, err)
	})
	if err != nil {
		m.t.Errorf("signed URL of a disabled token: %v, want 403", err)
	}
	// Expiry after 60 s is checked by zone/auth's TestSignedBlobURL.
}

func basicOf(c ociclient.Credential) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(c.User, c.Password)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// testRedirectedFailover: a node dies in the middle of a blob the client
// downloads from its data endpoint. The client's retry (what docker and
// containerd do: the layer again, from where it broke off) through the
// endpoint gets a fresh redirect to a healthy node, and the blob arrives
// whole. The test logs the time from the kill to the last byte.
func testRedirectedFailover(ctx context.Context, m *mesh) {
	repo := "data/failover"
	img := ociclient.NewImage("failover", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1907, dataBlobBytes)))
	if err := m.c.PushImage(ctx, m.Locations["westus"], repo, "v1", img); err != nil {
		m.t.Fatal(err)
	}
	m.waitReplicated(ctx, repo, img)
	layer := img.Layers[0]
	u, _ := m.redirectOf(ctx, m.Locations["westus"], repo, layer.Digest)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		m.t.Fatalf("data endpoint: %v %v", resp, err)
	}
	victim := resp.Header.Get("Georeg-Region") + "/" + resp.Header.Get("Georeg-Zone")
	h := sha256.New()
	got, err := io.CopyN(h, resp.Body, 1<<20)
	if err != nil {
		m.t.Fatal(err)
	}
	m.Chaos(m.t, ctx, "kill-zone", victim)
	killed := time.Now()
	defer m.Restart(m.t, ctx, victim)
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	got += n
	if err == nil && got == int64(len(layer.Data)) {
		m.t.Skipf("the killed node %s had sent the whole blob already (socket buffers); nothing to fail over", victim)
	}
	m.t.Logf("node %s killed after %d of %d bytes; the download broke: %v", victim, got, len(layer.Data), err)

	// The client's retry: the blob again through the endpoint, from the
	// byte it broke off at.
	tries := 0
	for got < int64(len(layer.Data)) {
		tries++
		if tries > 20 {
			m.t.Fatalf("the blob is still short after %d retries", tries-1)
		}
		n, served, err := resume(ctx, m, repo, layer.Digest, got, h)
		got += n
		if err != nil {
			m.t.Logf("retry %d (from byte %d, served by %s): %v", tries, got-n, served, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if served == victim {
			m.t.Errorf("the retry was redirected to the dead node %s", victim)
		}
		m.t.Logf("retry %d: a fresh redirect to %s sent the remaining %d bytes", tries, served, n)
	}
	if d := digest.NewDigest(digest.SHA256, h); d != layer.Digest {
		m.t.Fatalf("resumed download hashes to %s, want %s", d, layer.Digest)
	}
	m.t.Logf("redirected download failover: %v from killing %s to the blob's last byte (%d retries)", time.Since(killed).Round(time.Millisecond), victim, tries)
}

// resume GETs blob d from offset through westus's endpoint, following the
// redirect, into h; it returns the bytes added and the node that sent them.
func resume(ctx context.Context, m *mesh, repo string, d digest.Digest, offset int64, h hash.Hash) (int64, string, error) {
	hdr := http.Header{"Range": {"bytes=" + strconv.FormatInt(offset, 10) + "-"}}
	resp, _, err := m.c.Do(ctx, http.MethodGet, m.Locations["westus"], "/v2/"+repo+"/blobs/"+d.String(), hdr, nil, http.StatusTemporaryRedirect)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, resp.Header.Get("Location"), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Range", hdr.Get("Range"))
	dresp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer dresp.Body.Close()
	served := dresp.Header.Get("Georeg-Region") + "/" + dresp.Header.Get("Georeg-Zone")
	if dresp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(dresp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(offset, 10)+"-") {
		return 0, served, fmt.Errorf("status %d, Content-Range %q", dresp.StatusCode, dresp.Header.Get("Content-Range"))
	}
	n, err := io.Copy(h, dresp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, served, err
	}
	return n, served, nil
}
