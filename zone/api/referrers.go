package api

import (
	"net/http"

	ocispec "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func (h *Handler) getReferrers(w http.ResponseWriter, r *http.Request, name, ref string) error {
	subject, err := parseDigestParam(ref)
	if err != nil {
		return err
	}
	if err := h.settle(r.Context()); err != nil {
		return err
	}
	refs, err := h.cfg.Meta.Referrers(name, subject)
	if err != nil {
		return err
	}
	filter := r.URL.Query().Get("artifactType")
	idx := v1.Index{
		Versioned: ocispec.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{},
	}
	for _, rf := range refs {
		if filter != "" && rf.ArtifactType != filter {
			continue
		}
		idx.Manifests = append(idx.Manifests, v1.Descriptor{
			MediaType:    rf.MediaType,
			Digest:       rf.Digest,
			Size:         rf.Size,
			ArtifactType: rf.ArtifactType,
			Annotations:  rf.Annotations,
		})
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, v1.MediaTypeImageIndex, idx)
}
