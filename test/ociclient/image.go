package ociclient

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
)

// Media types of the images the tests push.
const (
	MediaManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaConfig   = "application/vnd.oci.image.config.v1+json"
	MediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// MiB is a mebibyte, the unit the tests print sizes in.
const MiB = 1 << 20

// Blob is content with its digest and media type.
type Blob struct {
	MediaType string
	Digest    digest.Digest
	Data      []byte
}

// NewBlob returns data as a blob of mediaType.
func NewBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digest.FromBytes(data), Data: data}
}

// RandomBytes returns n pseudo-random bytes from seed: incompressible,
// different for every seed, and cheap to make on a busy machine.
func RandomBytes(seed uint64, n int) []byte {
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

// Image is an OCI image: a config, layers and the manifest naming them.
type Image struct {
	Config   Blob
	Layers   []Blob
	Manifest []byte
	Digest   digest.Digest
}

// NewImage builds an image whose config is unique to name.
func NewImage(name string, layers ...Blob) Image {
	cfg := fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"test":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, name)
	img := Image{Config: NewBlob(MediaConfig, []byte(cfg)), Layers: layers}
	img.Manifest = Manifest(img.Config, layers, nil)
	img.Digest = digest.FromBytes(img.Manifest)
	return img
}

// Manifest returns an OCI image manifest naming config and layers, with
// annotations when there are any.
func Manifest(config Blob, layers []Blob, annotations map[string]string) []byte {
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int           `json:"size"`
	}
	m := struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Config        desc              `json:"config"`
		Layers        []desc            `json:"layers"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	}{
		SchemaVersion: 2,
		MediaType:     MediaManifest,
		Config:        desc{config.MediaType, config.Digest, len(config.Data)},
		Layers:        []desc{},
		Annotations:   annotations,
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc{l.MediaType, l.Digest, len(l.Data)})
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // strings and numbers always marshal
	}
	return b
}

// Blobs returns the config and the layers.
func (img Image) Blobs() []Blob { return append([]Blob{img.Config}, img.Layers...) }

// Size is the bytes of the config and layers.
func (img Image) Size() int64 {
	var n int64
	for _, b := range img.Blobs() {
		n += int64(len(b.Data))
	}
	return n
}
