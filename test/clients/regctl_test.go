package clients

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/georeg/georeg/test/harness"
)

// TestRegctl drives regclient's regctl: image copy from an OCI layout into
// the registry, between repositories and back out, manifest get and image
// digest. regctl is configured to push blobs over 256 KiB in 512 KiB chunks,
// so this test also covers chunked uploads (PATCH with Content-Range).
func TestRegctl(t *testing.T) {
	t.Parallel()
	regctl := newClient(t, harness.Tool(t, "regctl"))
	reg := startRegistry(t)
	reg.login(t, regctl)
	host := reg.host
	// REGCTL_CONFIG and HOME point into a temporary directory (newClient),
	// so this writes no user configuration.
	regctl.run(t, "registry", "set", "--tls", "disabled", "--blob-max", "262144", "--blob-chunk", "524288", host)

	src := newLayout(t, t.TempDir())
	img := src.image("amd64", []int{100 << 10, 1<<20 + 512<<10, 3<<20 + 99})
	shared := src.sharedLayer(300 << 10)
	idx := src.imageIndex(
		src.image("amd64", []int{10 << 10}, shared),
		src.image("arm64", []int{700 << 10}, shared),
	)
	src.tag(img, "img")
	src.tag(idx, "index")
	src.write()

	a, b := repoName("regctl-src"), repoName("regctl/dst")
	items := []struct {
		tag  string
		desc descriptor
	}{{"img", img}, {"index", idx}}

	t.Run("copy in", func(t *testing.T) {
		for _, it := range items {
			regctl.run(t, "image", "copy", "ocidir://"+src.dir+":"+it.tag, host+"/"+a+":"+it.tag)
			checkTree(t, reg, a, it.desc.Digest, src.blobs)
		}
	})

	t.Run("copy between repositories", func(t *testing.T) {
		for _, it := range items {
			regctl.run(t, "image", "copy", host+"/"+a+":"+it.tag, host+"/"+b+":"+it.tag)
			checkTree(t, reg, b, it.desc.Digest, src.blobs)
		}
	})

	t.Run("manifest get and digest", func(t *testing.T) {
		for _, it := range items {
			for _, ref := range []string{host + "/" + b + ":" + it.tag, host + "/" + b + "@" + it.desc.Digest} {
				raw := regctl.run(t, "manifest", "get", "--format", "raw-body", ref)
				if got := sha256Digest([]byte(raw)); got != it.desc.Digest {
					t.Errorf("regctl manifest get %s: bytes with digest %s, pushed %s", ref, got, it.desc.Digest)
				}
				if raw != string(src.blobs[it.desc.Digest]) {
					t.Errorf("regctl manifest get %s: bytes differ from the pushed manifest", ref)
				}
			}
			if got := strings.TrimSpace(regctl.run(t, "image", "digest", host+"/"+b+":"+it.tag)); got != it.desc.Digest {
				t.Errorf("regctl image digest %s:%s: %s, pushed %s", b, it.tag, got, it.desc.Digest)
			}
		}
		tags := strings.Fields(regctl.run(t, "tag", "ls", host+"/"+b))
		if !slices.Contains(tags, "img") || !slices.Contains(tags, "index") {
			t.Errorf("regctl tag ls %s: %q, want img and index", b, tags)
		}
	})

	t.Run("copy out", func(t *testing.T) {
		for _, it := range items {
			out := filepath.Join(t.TempDir(), "out")
			regctl.run(t, "image", "copy", host+"/"+b+":"+it.tag, "ocidir://"+out+":"+it.tag)
			src.checkPulledLayout(t, out, it.desc)
		}
	})
}
