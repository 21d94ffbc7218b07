package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/georeg/georeg/base/meta"
)

func (h *Handler) getTags(w http.ResponseWriter, r *http.Request, name string) error {
	n, last, err := h.pageArgs(r)
	if err != nil {
		return err
	}
	if err := h.settle(r.Context()); err != nil {
		return err
	}
	var tags []string
	more := false
	if n > 0 {
		tags, more, err = h.cfg.Meta.Tags(name, last, n)
	} else {
		// n=0 asks for an empty page, but an unknown repository is still
		// unknown.
		_, _, err = h.cfg.Meta.Tags(name, "", 1)
		tags = []string{}
	}
	if errors.Is(err, meta.ErrRepositoryUnknown) {
		return ErrNameUnknown.WithDetail(map[string]string{"name": name})
	}
	if err != nil {
		return err
	}
	if more {
		setNextLink(w, r.URL.Path, n, tags[len(tags)-1])
	}
	return writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, tags})
}

func (h *Handler) getCatalog(w http.ResponseWriter, r *http.Request) error {
	n, last, err := h.pageArgs(r)
	if err != nil {
		return err
	}
	if err := h.settle(r.Context()); err != nil {
		return err
	}
	repos := []string{}
	more := false
	if n > 0 {
		if repos, more, err = h.cfg.Meta.Repositories(last, n); err != nil {
			return err
		}
	}
	if more {
		setNextLink(w, r.URL.Path, n, repos[len(repos)-1])
	}
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}

func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Write(b)
	return nil
}
