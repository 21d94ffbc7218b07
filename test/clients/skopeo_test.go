package clients

import (
	"path/filepath"
	"testing"
)

// TestSkopeo copies a multi-layer image and a two-platform OCI index from an
// OCI layout into the registry, between repositories of the registry, and
// back out to an OCI layout, checking every digest on the way.
func TestSkopeo(t *testing.T) {
	t.Parallel()
	skopeo := newClient(t, lookPath(t, "skopeo", "apt-get install -y skopeo (Debian package; .ci/run installs it)"))
	reg := startRegistry(t)
	reg.login(t, skopeo)
	host := reg.host

	src := newLayout(t, t.TempDir())
	img := src.image("amd64", []int{300 << 10, 1 << 20, 2<<20 + 12345})
	shared := src.sharedLayer(512 << 10)
	idx := src.imageIndex(
		src.image("amd64", []int{200 << 10}, shared),
		src.image("arm64", []int{150 << 10}, shared),
	)
	src.tag(img, "multi")
	src.tag(idx, "index")
	src.write()

	// --preserve-digests makes skopeo fail rather than silently convert, so
	// a registry that rejects the OCI media types shows up as an error.
	copyFlags := []string{"--insecure-policy", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false"}
	copyCmd := func(t *testing.T, all bool, from, to string) {
		t.Helper()
		args := append([]string(nil), copyFlags...)
		if all {
			args = append(args, "--all")
		}
		skopeo.run(t, append(args, from, to)...)
	}
	rawDigest := func(t *testing.T, ref string) string {
		t.Helper()
		return sha256Digest([]byte(skopeo.run(t, "--insecure-policy", "inspect", "--raw", "--tls-verify=false", ref)))
	}

	a, b := repoName("skopeo-a"), repoName("skopeo/b")
	t.Run("image", func(t *testing.T) {
		copyCmd(t, false, "oci:"+src.dir+":multi", "docker://"+host+"/"+a+":multi")
		checkTree(t, reg, a, img.Digest, src.blobs)
		if d := rawDigest(t, "docker://"+host+"/"+a+":multi"); d != img.Digest {
			t.Fatalf("skopeo inspect --raw %s:multi: digest %s, pushed %s", a, d, img.Digest)
		}
		copyCmd(t, false, "docker://"+host+"/"+a+":multi", "docker://"+host+"/"+b+":multi")
		checkTree(t, reg, b, img.Digest, src.blobs)
		if _, _, d := getManifest(t, reg, b, "multi"); d != img.Digest {
			t.Fatalf("%s:multi after copy between repositories: %s, pushed %s", b, d, img.Digest)
		}
		out := filepath.Join(t.TempDir(), "out")
		copyCmd(t, false, "docker://"+host+"/"+b+":multi", "oci:"+out+":multi")
		src.checkPulledLayout(t, out, img)
	})

	t.Run("index", func(t *testing.T) {
		copyCmd(t, true, "oci:"+src.dir+":index", "docker://"+host+"/"+a+":index")
		checkTree(t, reg, a, idx.Digest, src.blobs)
		if d := rawDigest(t, "docker://"+host+"/"+a+":index"); d != idx.Digest {
			t.Fatalf("skopeo inspect --raw %s:index: digest %s, pushed %s", a, d, idx.Digest)
		}
		copyCmd(t, true, "docker://"+host+"/"+a+":index", "docker://"+host+"/"+b+":index")
		checkTree(t, reg, b, idx.Digest, src.blobs)
		if _, _, d := getManifest(t, reg, b, "index"); d != idx.Digest {
			t.Fatalf("%s:index after copy between repositories: %s, pushed %s", b, d, idx.Digest)
		}
		out := filepath.Join(t.TempDir(), "out")
		copyCmd(t, true, "docker://"+host+"/"+b+":index", "oci:"+out+":index")
		src.checkPulledLayout(t, out, idx)
	})
}
