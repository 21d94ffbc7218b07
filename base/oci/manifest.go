package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest media types georeg stores and serves.
const (
	MediaTypeOCIManifest        = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex           = ocispec.MediaTypeImageIndex
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// ErrManifestInvalid means a manifest is not valid JSON of a supported media
// type and schema.
var ErrManifestInvalid = errors.New("invalid manifest")

// ErrMediaTypeUnsupported means the manifest's media type is not one georeg
// serves.
var ErrMediaTypeUnsupported = errors.New("unsupported manifest media type")

// Descriptor is an OCI content descriptor.
type Descriptor = ocispec.Descriptor

// Manifest is the part of a parsed manifest that a registry needs: what it
// references, what it is about (subject) and how to list it as a referrer.
type Manifest struct {
	// MediaType is the manifest's media type (from the body or Content-Type).
	MediaType string
	// ArtifactType is the artifactType field, or for an image manifest
	// without one, the config's media type (as the referrers API reports).
	ArtifactType string
	// Config is the image config of an image manifest; nil for indexes.
	Config *Descriptor
	// Layers are the layers of an image manifest.
	Layers []Descriptor
	// Manifests are the children of an index.
	Manifests []Descriptor
	// Subject is the manifest this one refers to, if any.
	Subject *Descriptor
	// Annotations are the manifest's annotations.
	Annotations map[string]string
}

// IsIndex reports whether the manifest is an index or manifest list.
func (m *Manifest) IsIndex() bool {
	return m.MediaType == MediaTypeOCIIndex || m.MediaType == MediaTypeDockerManifestList
}

// Blobs returns the blobs the registry must hold before it accepts the
// manifest: the config and every layer, except non-distributable layers that
// name external URLs.
func (m *Manifest) Blobs() []Descriptor {
	var out []Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	for _, l := range m.Layers {
		if len(l.URLs) > 0 {
			continue
		}
		out = append(out, l)
	}
	return out
}

// rawManifest is the union of the fields of every supported schema.
type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// SupportedMediaType reports whether mt is a manifest media type georeg
// accepts.
func SupportedMediaType(mt string) bool {
	switch mt {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// ParseManifest parses and validates a manifest body sent with the given
// Content-Type (which may be empty when the body names its media type).
func ParseManifest(contentType string, body []byte) (*Manifest, error) {
	var raw rawManifest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrManifestInvalid)
	}
	mt := contentType
	switch {
	case mt == "" && raw.MediaType == "":
		return nil, fmt.Errorf("%w: no Content-Type and no mediaType field", ErrManifestInvalid)
	case mt == "":
		mt = raw.MediaType
	case raw.MediaType != "" && raw.MediaType != mt:
		return nil, fmt.Errorf("%w: mediaType %q does not match Content-Type %q", ErrManifestInvalid, raw.MediaType, mt)
	}
	if !SupportedMediaType(mt) {
		return nil, fmt.Errorf("%w: %q", ErrMediaTypeUnsupported, mt)
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion must be 2", ErrManifestInvalid)
	}
	m := &Manifest{
		MediaType:    mt,
		ArtifactType: raw.ArtifactType,
		Subject:      raw.Subject,
		Annotations:  raw.Annotations,
	}
	switch mt {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		if raw.Manifests != nil {
			return nil, fmt.Errorf("%w: an image manifest has no manifests field", ErrManifestInvalid)
		}
		if raw.Config == nil {
			return nil, fmt.Errorf("%w: config is required", ErrManifestInvalid)
		}
		if err := validateDescriptor("config", *raw.Config); err != nil {
			return nil, err
		}
		for i, l := range raw.Layers {
			if err := validateDescriptor(fmt.Sprintf("layers[%d]", i), l); err != nil {
				return nil, err
			}
		}
		m.Config, m.Layers = raw.Config, raw.Layers
		if m.ArtifactType == "" && mt == MediaTypeOCIManifest {
			m.ArtifactType = raw.Config.MediaType
		}
	default: // an index or manifest list
		if raw.Config != nil || raw.Layers != nil {
			return nil, fmt.Errorf("%w: an index has no config or layers", ErrManifestInvalid)
		}
		for i, c := range raw.Manifests {
			if err := validateDescriptor(fmt.Sprintf("manifests[%d]", i), c); err != nil {
				return nil, err
			}
		}
		m.Manifests = raw.Manifests
	}
	if m.Subject != nil {
		if err := validateDescriptor("subject", *m.Subject); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func validateDescriptor(field string, d Descriptor) error {
	if d.MediaType == "" {
		return fmt.Errorf("%w: %s.mediaType is required", ErrManifestInvalid, field)
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: %s.digest %q: %v", ErrManifestInvalid, field, d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: %s.size is negative", ErrManifestInvalid, field)
	}
	return nil
}

// Compile-time check that go-digest's type is the descriptor's.
var _ digest.Digest = Descriptor{}.Digest
