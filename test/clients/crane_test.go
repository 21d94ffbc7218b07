package clients

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
)

// TestCrane drives go-containerregistry's crane through push (of OCI layouts
// and of appended tarball layers), pull, copy, tag, catalog, ls, digest,
// manifest and delete.
func TestCrane(t *testing.T) {
	t.Parallel()
	crane := newClient(t, harness.Tool(t, "crane"))
	reg := startRegistry(t)
	reg.login(t, crane)
	host := reg.host
	c := func(t *testing.T, args ...string) string {
		t.Helper()
		return strings.TrimSpace(crane.run(t, append(args, "--insecure")...))
	}

	// crane push takes a layout with exactly one entry, so the image and the
	// index each get a layout of their own.
	imgLayout := newLayout(t, t.TempDir())
	img := imgLayout.image("amd64", []int{64 << 10, 1 << 20, 3<<20 + 7})
	imgLayout.tag(img, "v1")
	imgLayout.write()
	idxLayout := newLayout(t, t.TempDir())
	shared := idxLayout.sharedLayer(256 << 10)
	idx := idxLayout.imageIndex(
		idxLayout.image("amd64", []int{100 << 10}, shared),
		idxLayout.image("arm64", []int{120 << 10}, shared),
	)
	idxLayout.tag(idx, "index")
	idxLayout.write()

	repo, appended, copied := repoName("crane"), repoName("crane-append"), repoName("crane/copy")
	ref := host + "/" + repo

	t.Run("push", func(t *testing.T) {
		if got := findDigest(t, "crane push", c(t, "push", imgLayout.dir, ref+":v1")); got != img.Digest {
			t.Fatalf("crane push printed %s, pushed image is %s", got, img.Digest)
		}
		checkTree(t, reg, repo, img.Digest, imgLayout.blobs)
		if got := findDigest(t, "crane push", c(t, "push", idxLayout.dir, ref+":index")); got != idx.Digest {
			t.Fatalf("crane push printed %s, pushed index is %s", got, idx.Digest)
		}
		checkTree(t, reg, repo, idx.Digest, idxLayout.blobs)
	})

	t.Run("append", func(t *testing.T) {
		dir := t.TempDir()
		l1, l2 := filepath.Join(dir, "one.tar"), filepath.Join(dir, "two.tar")
		writeTar(t, l1, "one.bin", 700<<10)
		writeTar(t, l2, "two.bin", 90<<10)
		first := findDigest(t, "crane append", c(t, "append", "--oci-empty-base", "-f", l1, "-t", host+"/"+appended+":one"))
		second := findDigest(t, "crane append", c(t, "append", "-b", host+"/"+appended+":one", "-f", l2, "-t", host+"/"+appended+":two"))
		checkTree(t, reg, appended, first, nil)
		checkTree(t, reg, appended, second, nil)
		layers := func(d string) []descriptor {
			body, _, _ := getManifest(t, reg, appended, d)
			var m struct{ Layers []descriptor }
			harness.Must(t, json.Unmarshal(body, &m))
			return m.Layers
		}
		one, two := layers(first), layers(second)
		if len(one) != 1 || len(two) != 2 || two[0].Digest != one[0].Digest {
			t.Fatalf("appended images: layers %+v then %+v; want the second to extend the first", one, two)
		}
	})

	t.Run("digest and manifest", func(t *testing.T) {
		for _, tc := range []struct{ tag, want string }{{"v1", img.Digest}, {"index", idx.Digest}} {
			if got := c(t, "digest", ref+":"+tc.tag); got != tc.want {
				t.Errorf("crane digest %s: %s, pushed %s", tc.tag, got, tc.want)
			}
			// crane manifest prints the bytes as served; trim nothing.
			out := crane.run(t, "manifest", ref+":"+tc.tag, "--insecure")
			if got := sha256Digest([]byte(out)); got != tc.want {
				t.Errorf("crane manifest %s: bytes with digest %s, pushed %s", tc.tag, got, tc.want)
			}
		}
	})

	t.Run("pull", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "img")
		c(t, "pull", "--format", "oci", ref+":v1", out)
		imgLayout.checkPulledLayout(t, out, img)
		out = filepath.Join(t.TempDir(), "idx")
		c(t, "pull", "--format", "oci", ref+"@"+idx.Digest, out)
		idxLayout.checkPulledLayout(t, out, idx)
	})

	// The README's quick start names the endpoint localhost:5000. crane
	// refuses a redirect from one host to a private address literal, so
	// a data redirect to 127.0.0.1 failed every pull made that way.
	t.Run("pull through localhost", func(t *testing.T) {
		_, port, _ := strings.Cut(host, ":")
		out := filepath.Join(t.TempDir(), "img")
		c(t, "pull", "--format", "oci", "localhost:"+port+"/"+repo+":v1", out)
		imgLayout.checkPulledLayout(t, out, img)
	})

	t.Run("copy and tag", func(t *testing.T) {
		c(t, "copy", ref+":index", host+"/"+copied+":index")
		checkTree(t, reg, copied, idx.Digest, idxLayout.blobs)
		if got := c(t, "digest", host+"/"+copied+":index"); got != idx.Digest {
			t.Fatalf("crane digest of the copy: %s, pushed %s", got, idx.Digest)
		}
		c(t, "tag", ref+":v1", "v2")
		if got := c(t, "digest", ref+":v2"); got != img.Digest {
			t.Fatalf("crane digest v2 after crane tag v1 v2: %s, want %s", got, img.Digest)
		}
	})

	t.Run("ls and catalog", func(t *testing.T) {
		tags := strings.Fields(c(t, "ls", ref))
		for _, want := range []string{"index", "v1", "v2"} {
			if !slices.Contains(tags, want) {
				t.Errorf("crane ls %s: %q lacks %q", repo, tags, want)
			}
		}
		repos := strings.Fields(c(t, "catalog", host))
		for _, want := range []string{repo, appended, copied} {
			if !slices.Contains(repos, want) {
				t.Errorf("crane catalog: %q lacks %q", repos, want)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		c(t, "delete", ref+"@"+img.Digest)
		if code := manifestStatus(t, reg, repo, img.Digest); code != http.StatusNotFound {
			t.Errorf("GET manifest %s after crane delete: status %d, want 404", img.Digest, code)
		}
		if out, err := crane.try(t, "manifest", ref+"@"+img.Digest, "--insecure"); err == nil {
			t.Errorf("crane manifest of a deleted manifest succeeded:\n%s", out)
		}
		c(t, "delete", host+"/"+copied+"@"+idx.Digest)
		if code := manifestStatus(t, reg, copied, idx.Digest); code != http.StatusNotFound {
			t.Errorf("GET manifest %s in %s after crane delete: status %d, want 404", idx.Digest, copied, code)
		}
		// A delete in one repository leaves the same content in another alone.
		checkTree(t, reg, repo, idx.Digest, idxLayout.blobs)
	})
}

// writeTar writes an uncompressed tar file holding one file of size random
// bytes, a layer for crane append.
func writeTar(t *testing.T, path, name string, size int) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, uint64(size)))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	harness.Must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}))
	_, err := tw.Write(data)
	harness.Must(t, err)
	harness.Must(t, tw.Close())
	harness.Must(t, os.WriteFile(path, buf.Bytes(), 0o644))
}
