package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// scaleResult is what the scale section measured on one target: a registry
// loaded with many repositories and tags, its memory and its listings.
type scaleResult struct {
	Target string `json:"target"`
	About  string `json:"about"`
	Repos  int    `json:"repos"`
	Tags   int    `json:"tags_per_repo"`
	// Load is the time to mount one small image's blobs into every
	// repository and PUT its manifest under every tag; Requests counts the
	// requests that took.
	Load     time.Duration `json:"load_ns"`
	Requests int           `json:"requests"`
	// LoadCPU is the CPU time (user and system) the target's processes
	// spent during the load: unlike Load, it hardly depends on what else
	// runs on the machine.
	LoadCPU time.Duration `json:"load_cpu_ns"`
	// RSSEmpty is the resident memory after start and one image's push;
	// RSS at the end, with every repository and tag, after the listings;
	// PeakRSS the most the process ever had resident (VmHWM). Bytes,
	// summed over the target's processes (one here).
	RSSEmpty int64 `json:"rss_empty_bytes"`
	RSS      int64 `json:"rss_bytes"`
	PeakRSS  int64 `json:"peak_rss_bytes"`
	// RSSAnon is the part of RSS that is anonymous memory (heap, stacks):
	// the rest is pages of mapped files, such as a bbolt database, that
	// the kernel may drop and read again.
	RSSAnon int64 `json:"rss_anon_bytes"`
	// CatalogRepos is how many repositories a full walk of _catalog
	// listed; CatalogPages the latency of each page of every walk.
	CatalogRepos int             `json:"catalog_repos"`
	CatalogPages []time.Duration `json:"catalog_page_ns"`
	TagsList     []time.Duration `json:"tags_list_ns"`
	// DataDir is where the server kept its data, with its filesystem.
	DataDir string `json:"data_dir"`
}

// defaultScaleDir returns /dev/shm when it is a tmpfs, else the system's
// temporary directory. distribution keeps several files and directories
// per tag, so the scale section leaves hundreds of thousands of them: on a
// virtual disk, creating and removing them takes minutes (over 5 and
// almost 7 on this project's machine), on a tmpfs seconds. Both registries get the same
// filesystem; what the section measures (memory, CPU, listings) does not
// depend on the disk's speed.
func defaultScaleDir() string {
	if strings.HasPrefix(filesystemOf("/dev/shm"), "tmpfs ") {
		return "/dev/shm"
	}
	return os.TempDir()
}

// scalePage is the page size of the _catalog walk, georeg's default.
const scalePage = 1000

// pider is an optional ability of a Target: the process ids of its
// servers, valid after Start, for reading their memory.
type pider interface {
	PIDs() []int
}

// runScale loads each target in turn with cfg.ScaleRepos repositories of
// cfg.ScaleTags tags and measures it, one target running at a time.
func runScale(ctx context.Context, cfg config, env targetEnv, w *workload, hc *http.Client, log *slog.Logger) ([]scaleResult, error) {
	work, err := os.MkdirTemp(cfg.ScaleDir, "georeg-bench-scale-")
	if err != nil {
		return nil, err
	}
	env.workDir = work
	if cfg.Keep {
		log.Info("keeping the scale section's data and logs", "dir", work)
	} else {
		defer func() {
			start := time.Now()
			os.RemoveAll(work)
			log.Info("scale: removed the servers' data", "dir", work, "took", time.Since(start).Round(time.Millisecond))
		}()
	}
	where := work
	if fs := filesystemOf(work); fs != "" {
		where += " (" + fs + ")"
	}
	var out []scaleResult
	for _, name := range []string{"georeg", "distribution"} {
		if cfg.Only != "both" && cfg.Only != name {
			continue
		}
		t, err := newTarget(name, env)
		if err != nil {
			return nil, err
		}
		r, err := scaleTarget(ctx, cfg, t, w, hc, log)
		if err != nil {
			return nil, fmt.Errorf("scale: %s: %w", name, err)
		}
		r.DataDir = where
		out = append(out, r)
	}
	return out, nil
}

func scaleTarget(ctx context.Context, cfg config, t Target, w *workload, hc *http.Client, log *slog.Logger) (scaleResult, error) {
	r := scaleResult{Target: t.Name(), Repos: cfg.ScaleRepos, Tags: cfg.ScaleTags}
	base, stop, err := t.Start(ctx)
	if err != nil {
		return r, err
	}
	defer stop()
	if d, ok := t.(describer); ok {
		r.About = d.Describe(ctx)
	}
	p, ok := t.(pider)
	if !ok || len(p.PIDs()) == 0 {
		return r, fmt.Errorf("target %s does not tell its process ids", t.Name())
	}
	c, err := newClient(hc, base)
	if err != nil {
		return r, err
	}
	imgs, err := w.smallImages(905, 1)
	if err != nil {
		return r, err
	}
	img := imgs[0]
	img.repo = "scale/base"
	if err := c.pushImage(ctx, img, 1); err != nil {
		return r, err
	}
	m, err := memOf(p.PIDs())
	if err != nil {
		return r, err
	}
	r.RSSEmpty = m.rss

	cpu0, err := cpuOf(p.PIDs())
	if err != nil {
		return r, err
	}
	start := time.Now()
	err = forEach(ctx, cfg.ScaleRepos, cfg.ScaleConc, func(ctx context.Context, i int) error {
		repo := scaleRepo(i)
		for _, b := range []blob{img.config, img.layers[0]} {
			if err := c.mountBlob(ctx, repo, img.repo, b); err != nil {
				return err
			}
		}
		for j := range cfg.ScaleTags {
			if err := c.pushManifest(ctx, repo, "v"+strconv.Itoa(j), img.manifest); err != nil {
				return fmt.Errorf("%s:v%d: %w", repo, j, err)
			}
		}
		if i%2000 == 1999 {
			log.Info("scale: loading", "target", t.Name(), "repos", i+1, "of", cfg.ScaleRepos, "elapsed", time.Since(start).Round(time.Second))
		}
		return nil
	})
	r.Load = time.Since(start)
	r.Requests = cfg.ScaleRepos * (2 + cfg.ScaleTags)
	if err != nil {
		return r, err
	}
	cpu1, err := cpuOf(p.PIDs())
	if err != nil {
		return r, err
	}
	r.LoadCPU = cpu1 - cpu0
	log.Info("scale: loaded", "target", t.Name(), "repos", cfg.ScaleRepos, "tags", cfg.ScaleRepos*cfg.ScaleTags, "took", r.Load.Round(time.Millisecond), "cpu", r.LoadCPU.Round(time.Millisecond))

	for range 3 {
		n, pages, err := c.catalogWalk(ctx, scalePage)
		if err != nil {
			return r, err
		}
		r.CatalogRepos = n
		r.CatalogPages = append(r.CatalogPages, pages...)
	}
	if want := cfg.ScaleRepos + 1; r.CatalogRepos != want {
		return r, fmt.Errorf("_catalog lists %d repositories, want %d", r.CatalogRepos, want)
	}
	for i := range 500 {
		repo := scaleRepo(i * 7919 % cfg.ScaleRepos)
		start := time.Now()
		tags, err := c.tagsList(ctx, repo)
		r.TagsList = append(r.TagsList, time.Since(start))
		if err != nil {
			return r, err
		}
		if len(tags) != cfg.ScaleTags {
			return r, fmt.Errorf("%s lists %d tags, want %d", repo, len(tags), cfg.ScaleTags)
		}
	}
	m, err = memOf(p.PIDs())
	r.RSS, r.PeakRSS, r.RSSAnon = m.rss, m.peak, m.anon
	return r, err
}

func scaleRepo(i int) string { return fmt.Sprintf("scale/r%05d", i) }

// mountBlob links b, held by repository from, into repo with a
// cross-repository mount; a registry that answers with an upload session
// instead gets the blob uploaded in full.
func (c *client) mountBlob(ctx context.Context, repo, from string, b blob) error {
	q := url.Values{"mount": {b.digest}, "from": {from}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/v2/"+repo+"/blobs/uploads/?"+q.Encode()), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return nil
	case http.StatusAccepted:
	default:
		return fmt.Errorf("mount %s into %s: %s", b.digest, repo, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("mount %s into %s: %w", b.digest, repo, err)
	}
	return c.finishUpload(ctx, loc, b)
}

// catalogWalk reads the whole _catalog n repositories at a time, following
// the Link headers, and returns how many repositories it listed and how
// long each page took.
func (c *client) catalogWalk(ctx context.Context, n int) (int, []time.Duration, error) {
	next := "/v2/_catalog?n=" + strconv.Itoa(n)
	total := 0
	var pages []time.Duration
	for next != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(next), nil)
		if err != nil {
			return 0, nil, err
		}
		start := time.Now()
		resp, err := c.do(req, http.StatusOK)
		if err != nil {
			return 0, nil, err
		}
		var page struct {
			Repositories []string `json:"repositories"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		drain(resp)
		pages = append(pages, time.Since(start))
		if err != nil {
			return 0, nil, fmt.Errorf("_catalog: %w", err)
		}
		total += len(page.Repositories)
		next = nextLink(resp.Header.Get("Link"))
		if len(pages) > 10*(total/max(n, 1)+10) {
			return 0, nil, fmt.Errorf("_catalog: %d pages for %d repositories", len(pages), total)
		}
	}
	return total, pages, nil
}

// nextLink returns the path and query of a Link header's rel="next" target,
// or "" when there is none.
func nextLink(h string) string {
	for l := range strings.SplitSeq(h, ",") {
		target, params, ok := strings.Cut(l, ";")
		if !ok || !strings.Contains(params, `rel="next"`) {
			continue
		}
		u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
		if err != nil {
			return ""
		}
		return u.RequestURI()
	}
	return ""
}

// tagsList GETs the (first page of the) tags of repo.
func (c *client) tagsList(ctx context.Context, repo string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/"+repo+"/tags/list"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	var tl struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
		return nil, fmt.Errorf("tags of %s: %w", repo, err)
	}
	return tl.Tags, nil
}

// memory is what /proc/PID/status says of a process's resident memory, in
// bytes.
type memory struct {
	rss  int64 // VmRSS
	peak int64 // VmHWM
	anon int64 // RssAnon
}

// memOf returns the resident memory of pids, summed.
func memOf(pids []int) (memory, error) {
	var m memory
	fields := map[string]*int64{"VmRSS": &m.rss, "VmHWM": &m.peak, "RssAnon": &m.anon}
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			return m, err
		}
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			dst := fields[k]
			if !ok || dst == nil {
				continue
			}
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return m, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
			}
			*dst += kib << 10
		}
	}
	return m, nil
}

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ), 100
// per second on every Linux platform Go supports.
const clockTick = 10 * time.Millisecond

// cpuOf returns the user and system CPU time pids have used, from
// /proc/PID/stat.
func cpuOf(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return 0, err
		}
		// The command name, in parentheses, may hold spaces; the fields
		// after it are numbered from 3 (state).
		_, rest, ok := cutLast(string(b), ")")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
		}
		for _, s := range f[11:13] { // utime, stime: fields 14 and 15
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
			}
			total += time.Duration(n) * clockTick
		}
	}
	return total, nil
}
