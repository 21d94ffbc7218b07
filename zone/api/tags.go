package api

import (
	"context"
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
	repos, more, cursor, err := h.visibleRepositories(r, last, n)
	if err != nil {
		return err
	}
	if more {
		setNextLink(w, r.URL.Path, n, cursor)
	}
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}

// Lister is the optional ability of an Authorizer to say which repositories
// the client of a request may see: _catalog lists only those. It
// identifies the client once and returns the test for each name.
type Lister interface {
	Visible(ctx context.Context, r *http.Request) func(repo string) bool
}

// maxCatalogScan bounds the repositories one _catalog page looks at when
// the client may see only some: past it the page ends early, with a Link
// to go on from where the scan stopped.
const maxCatalogScan = 10000

// visibleRepositories returns up to n repositories after last that the
// client may see, whether more may follow, and the cursor to go on from.
func (h *Handler) visibleRepositories(r *http.Request, last string, n int) ([]string, bool, string, error) {
	repos := []string{}
	if n <= 0 {
		return repos, false, "", nil
	}
	lister, filtered := h.cfg.Authorizer.(Lister)
	if !filtered {
		page, more, err := h.cfg.Meta.Repositories(last, n)
		if err != nil || len(page) == 0 {
			return repos, false, "", err
		}
		return page, more, page[len(page)-1], nil
	}
	visible := lister.Visible(r.Context(), r)
	cursor := last
	for scanned := 0; scanned < maxCatalogScan; {
		page, more, err := h.cfg.Meta.Repositories(cursor, n)
		if err != nil {
			return nil, false, "", err
		}
		for _, repo := range page {
			scanned++
			cursor = repo
			if visible(repo) {
				repos = append(repos, repo)
				if len(repos) == n {
					return repos, more || repo != page[len(page)-1], cursor, nil
				}
			}
		}
		if !more {
			return repos, false, cursor, nil
		}
	}
	return repos, true, cursor, nil
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
