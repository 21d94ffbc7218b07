package clients

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
)

// Media types of the content the tests build.
const (
	mediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeOCIConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeOCILayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     *platform         `json:"platform,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// layout writes an OCI image layout directory (image-spec image-layout.md)
// of images made of random layers, without any client: the tests push
// content whose every digest they computed themselves.
type layout struct {
	t     *testing.T
	dir   string
	rng   *rand.Rand
	blobs map[string][]byte // digest -> bytes of every blob and manifest
	index []descriptor      // index.json manifests, each with a ref.name
}

// newLayout returns an empty layout that will be written to dir. Each run
// gets fresh random content, so pushes never find their layers already in a
// long-lived registry.
func newLayout(t *testing.T, dir string) *layout {
	seed := uint64(time.Now().UnixNano())
	return &layout{
		t:     t,
		dir:   dir,
		rng:   rand.New(rand.NewPCG(seed, seed>>7|1)),
		blobs: map[string][]byte{},
	}
}

func (l *layout) add(mediaType string, b []byte) descriptor {
	d := sha256Digest(b)
	l.blobs[d] = b
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// layer returns a gzipped tar layer holding one file of size random bytes,
// and the digest of the uncompressed tar (the config's diff_id).
func (l *layout) layer(name string, size int) (descriptor, string) {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(l.rng.Uint32())
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	harness.Must(l.t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}))
	_, err := tw.Write(data)
	harness.Must(l.t, err)
	harness.Must(l.t, tw.Close())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(tarBuf.Bytes())
	harness.Must(l.t, err)
	harness.Must(l.t, zw.Close())
	return l.add(mediaTypeOCILayer, gz.Bytes()), sha256Digest(tarBuf.Bytes())
}

// image adds an image manifest for arch with one layer per size, plus the
// given extra layers (to share layers between images), and returns its
// descriptor.
func (l *layout) image(arch string, sizes []int, shared ...layerPair) descriptor {
	var layers []descriptor
	var diffIDs []string
	for i, size := range sizes {
		d, diff := l.layer(arch+"-layer-"+string(rune('a'+i)), size)
		layers, diffIDs = append(layers, d), append(diffIDs, diff)
	}
	for _, s := range shared {
		layers, diffIDs = append(layers, s.desc), append(diffIDs, s.diffID)
	}
	config := map[string]any{
		"architecture": arch,
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"GEOREG_TEST=" + runID}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	}
	cb, err := json.Marshal(config)
	harness.Must(l.t, err)
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeOCIManifest,
		"config":        l.add(mediaTypeOCIConfig, cb),
		"layers":        layers,
	}
	mb, err := json.Marshal(manifest)
	harness.Must(l.t, err)
	d := l.add(mediaTypeOCIManifest, mb)
	d.Platform = &platform{Architecture: arch, OS: "linux"}
	return d
}

// layerPair is a layer and its diff_id.
type layerPair struct {
	desc   descriptor
	diffID string
}

// sharedLayer returns a layer to pass to several images.
func (l *layout) sharedLayer(size int) layerPair {
	d, diff := l.layer("shared", size)
	return layerPair{d, diff}
}

// imageIndex adds an image index of the given manifests.
func (l *layout) imageIndex(manifests ...descriptor) descriptor {
	idx := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeOCIIndex,
		"manifests":     manifests,
	}
	b, err := json.Marshal(idx)
	harness.Must(l.t, err)
	return l.add(mediaTypeOCIIndex, b)
}

// tag names d in index.json.
func (l *layout) tag(d descriptor, name string) {
	d.Platform = nil
	d.Annotations = map[string]string{"org.opencontainers.image.ref.name": name}
	l.index = append(l.index, d)
}

// write writes the layout to its directory.
func (l *layout) write() {
	blobDir := filepath.Join(l.dir, "blobs", "sha256")
	harness.Must(l.t, os.MkdirAll(blobDir, 0o755))
	for d, b := range l.blobs {
		harness.Must(l.t, os.WriteFile(filepath.Join(blobDir, strings.TrimPrefix(d, "sha256:")), b, 0o644))
	}
	harness.Must(l.t, os.WriteFile(filepath.Join(l.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	idx, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaTypeOCIIndex, "manifests": l.index})
	harness.Must(l.t, err)
	harness.Must(l.t, os.WriteFile(filepath.Join(l.dir, "index.json"), idx, 0o644))
}

// closure returns the digests reachable from d among the layout's blobs, d
// included, sorted.
func (l *layout) closure(d string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(d string) {
		if seen[d] {
			return
		}
		seen[d] = true
		var m struct {
			SchemaVersion int          `json:"schemaVersion"`
			Manifests     []descriptor `json:"manifests"`
			Config        *descriptor  `json:"config"`
			Layers        []descriptor `json:"layers"`
		}
		// Only manifests have a schemaVersion; image configs also have a
		// "config" field, of another shape.
		b := l.blobs[d]
		if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &m) != nil || m.SchemaVersion != 2 {
			return
		}
		for _, c := range m.Manifests {
			walk(c.Digest)
		}
		if m.Config != nil {
			walk(m.Config.Digest)
		}
		for _, c := range m.Layers {
			walk(c.Digest)
		}
	}
	walk(d)
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// readLayout checks a layout directory written by a client: every blob file
// must hash to its name. It returns the manifest descriptors of index.json
// and the set of blob digests present.
func readLayout(t *testing.T, dir string) ([]descriptor, map[string]bool) {
	t.Helper()
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	harness.Must(t, err)
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("%s/index.json: %v", dir, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	harness.Must(t, err)
	have := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		harness.Must(t, err)
		want := "sha256:" + filepath.Base(f)
		if got := sha256Digest(b); got != want {
			t.Fatalf("pulled blob %s has digest %s", want, got)
		}
		have[want] = true
	}
	return idx.Manifests, have
}

// checkPulledLayout checks that the layout at dir, written by a client's
// pull, holds manifest d and every blob it references, with the pushed bytes.
func (l *layout) checkPulledLayout(t *testing.T, dir string, d descriptor) {
	t.Helper()
	manifests, have := readLayout(t, dir)
	found := false
	for _, m := range manifests {
		found = found || m.Digest == d.Digest
	}
	if !found {
		t.Fatalf("%s/index.json does not list %s: %+v", dir, d.Digest, manifests)
	}
	for _, c := range l.closure(d.Digest) {
		if !have[c] {
			t.Errorf("pulled layout %s lacks blob %s", dir, c)
		}
	}
}
