package clients

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/georeg/georeg/test/harness"
)

// Artifact types of the content TestOras pushes.
const (
	sbomType      = "application/vnd.example.sbom"
	signatureType = "application/vnd.example.signature"
)

// TestOras drives oras: push and pull an artifact with an artifactType,
// attach a signature-like artifact and an SBOM to an image, and find them
// through the referrers API (forced with --distribution-spec
// v1.1-referrers-api, so the tag-schema fallback cannot hide a missing API),
// also after `oras cp -r` to another repository.
func TestOras(t *testing.T) {
	t.Parallel()
	oras := newClient(t, harness.Tool(t, "oras"))
	reg := startRegistry(t)
	reg.login(t, oras)
	host := reg.host
	repo, copied := repoName("oras"), repoName("oras/copy")
	ref := host + "/" + repo

	// oras refuses absolute file paths, so the files live in its working
	// directory.
	sbom := []byte(fmt.Sprintf(`{"sbom":"georeg client test","run":%q}`, runID))
	sig := []byte("signature of the image, run " + runID + "\n")
	harness.Must(t, os.WriteFile(filepath.Join(oras.dir, "sbom.json"), sbom, 0o644))
	harness.Must(t, os.WriteFile(filepath.Join(oras.dir, "sig.bin"), sig, 0o644))

	src := newLayout(t, t.TempDir())
	img := src.image("amd64", []int{40 << 10, 1<<20 + 600<<10}) // the second above the redirect threshold
	src.tag(img, "img")
	src.write()

	// pushed decodes the descriptor that oras push and attach print with
	// --format json.
	pushed := func(t *testing.T, out string) descriptor {
		t.Helper()
		var d descriptor
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("oras output: %v\n%s", err, out)
		}
		return d
	}

	t.Run("push and pull artifact", func(t *testing.T) {
		out := oras.run(t, "push", "--plain-http", "--format", "json", "--artifact-type", sbomType,
			ref+":sbom", "sbom.json:application/vnd.example.sbom.v1+json")
		d := pushed(t, out)
		checkTree(t, reg, repo, d.Digest, nil)
		body, _, _ := getManifest(t, reg, repo, "sbom")
		var m struct {
			ArtifactType string       `json:"artifactType"`
			Layers       []descriptor `json:"layers"`
		}
		harness.Must(t, json.Unmarshal(body, &m))
		if m.ArtifactType != sbomType || len(m.Layers) != 1 || m.Layers[0].Digest != sha256Digest(sbom) {
			t.Fatalf("manifest of the pushed artifact: artifactType %q, layers %+v; want %q and one layer %s",
				m.ArtifactType, m.Layers, sbomType, sha256Digest(sbom))
		}
		outDir := filepath.Join(t.TempDir(), "pulled")
		oras.run(t, "pull", "--plain-http", "-o", outDir, ref+":sbom")
		checkFile(t, filepath.Join(outDir, "sbom.json"), sbom)
	})

	var sigDesc descriptor
	t.Run("attach and discover", func(t *testing.T) {
		oras.run(t, "cp", "--from-oci-layout", "--to-plain-http", src.dir+":img", ref+":img")
		checkTree(t, reg, repo, img.Digest, src.blobs)

		subject := ref + "@" + img.Digest
		sigDesc = pushed(t, oras.run(t, "attach", "--plain-http", "--distribution-spec", "v1.1-referrers-api", "--format", "json",
			"--artifact-type", signatureType, subject, "sig.bin"))
		sbomDesc := pushed(t, oras.run(t, "attach", "--plain-http", "--distribution-spec", "v1.1-referrers-api", "--format", "json",
			"--artifact-type", sbomType, subject, "sbom.json"))
		checkTree(t, reg, repo, sigDesc.Digest, nil)

		// Straight from the API first, so a failure says whether the
		// registry or the client is wrong.
		got := referrers(t, reg, repo, img.Digest, "")
		if !hasReferrer(got, sigDesc.Digest, signatureType) || !hasReferrer(got, sbomDesc.Digest, sbomType) {
			t.Fatalf("GET /v2/%s/referrers/%s: %+v; want %s (%s) and %s (%s)", repo, img.Digest, got,
				sigDesc.Digest, signatureType, sbomDesc.Digest, sbomType)
		}

		found := discover(t, oras, subject, "")
		if !hasReferrer(found, sigDesc.Digest, signatureType) || !hasReferrer(found, sbomDesc.Digest, sbomType) {
			t.Fatalf("oras discover %s: %+v; want the signature %s and the SBOM %s", subject, found, sigDesc.Digest, sbomDesc.Digest)
		}
		found = discover(t, oras, subject, signatureType)
		if len(found) != 1 || found[0].Digest != sigDesc.Digest {
			t.Fatalf("oras discover --artifact-type %s: %+v; want only %s", signatureType, found, sigDesc.Digest)
		}
	})

	t.Run("pull attached", func(t *testing.T) {
		if sigDesc.Digest == "" {
			t.Fatal("no attached signature to work with: the attach subtest failed")
		}
		outDir := filepath.Join(t.TempDir(), "sig")
		oras.run(t, "pull", "--plain-http", "-o", outDir, ref+"@"+sigDesc.Digest)
		checkFile(t, filepath.Join(outDir, "sig.bin"), sig)
	})

	t.Run("copy with referrers", func(t *testing.T) {
		if sigDesc.Digest == "" {
			t.Fatal("no attached signature to work with: the attach subtest failed")
		}
		oras.run(t, "cp", "-r", "--from-plain-http", "--to-plain-http", ref+":img", host+"/"+copied+":img")
		checkTree(t, reg, copied, img.Digest, src.blobs)
		subject := host + "/" + copied + "@" + img.Digest
		found := discover(t, oras, subject, signatureType)
		if len(found) != 1 || found[0].Digest != sigDesc.Digest {
			t.Fatalf("oras discover %s after oras cp -r: %+v; want %s", subject, found, sigDesc.Digest)
		}
	})
}

// discover runs oras discover through the referrers API and returns the
// referrers it prints.
func discover(t *testing.T, oras *client, subject, artifactType string) []descriptor {
	t.Helper()
	args := []string{"discover", "--plain-http", "--distribution-spec", "v1.1-referrers-api", "--format", "json"}
	if artifactType != "" {
		args = append(args, "--artifact-type", artifactType)
	}
	out := oras.run(t, append(args, subject)...)
	var res struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("oras discover output: %v\n%s", err, out)
	}
	return res.Manifests
}

// referrers fetches GET /v2/<repo>/referrers/<digest> over HTTP.
func referrers(t *testing.T, r *registry, repo, digest, artifactType string) []descriptor {
	t.Helper()
	u := r.base + "/v2/" + repo + "/referrers/" + digest
	if artifactType != "" {
		u += "?artifactType=" + artifactType
	}
	resp, err := r.http.Get(u)
	harness.Must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	var idx struct {
		MediaType string       `json:"mediaType"`
		Manifests []descriptor `json:"manifests"`
	}
	harness.Must(t, json.NewDecoder(resp.Body).Decode(&idx))
	if idx.MediaType != mediaTypeOCIIndex {
		t.Errorf("GET %s: mediaType %q, want %q", u, idx.MediaType, mediaTypeOCIIndex)
	}
	return idx.Manifests
}

func hasReferrer(ds []descriptor, digest, artifactType string) bool {
	return slices.ContainsFunc(ds, func(d descriptor) bool {
		return d.Digest == digest && d.ArtifactType == artifactType
	})
}

// checkFile fails t unless the file at path holds want.
func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	harness.Must(t, err)
	if sha256Digest(got) != sha256Digest(want) {
		t.Fatalf("%s: pulled %d bytes with digest %s, pushed %d bytes with digest %s",
			path, len(got), sha256Digest(got), len(want), sha256Digest(want))
	}
}
