package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/meta"
	"github.com/georeg/georeg/storage"
	"github.com/georeg/georeg/zone/upload"
)

// Metadata is the registry metadata the handler reads and changes. Reads see
// at least every change this node applied (read-your-writes for the client
// that wrote through this node). Apply returns meta's errors
// (meta.ErrManifestUnknown, *meta.MissingContentError, ...) or an error
// wrapping storage.ErrUnavailable when the change could not be made durable.
type Metadata interface {
	Repositories(last string, n int) ([]string, bool, error)
	Tags(repo, last string, n int) ([]string, bool, error)
	Tag(repo, tag string) (meta.TagRecord, error)
	Manifest(repo string, dgst digest.Digest) (meta.ManifestRecord, error)
	BlobLink(repo string, dgst digest.Digest) (int64, error)
	Blob(dgst digest.Digest) (int64, error)
	Referrers(repo string, subject digest.Digest) ([]meta.Referrer, error)
	Apply(ctx context.Context, cmd meta.Command) error
}

// Blobs is the blob layer the handler stores and serves blob bytes
// through. The blob layer owns their integrity: its writes check the bytes
// against the digest and it knows which stored copies match theirs; the
// handler only asks. *region.Blobs implements it, and so does a plain
// *storage.Checked (a node without zones).
type Blobs interface {
	storage.BlobStore
	// Check returns nil once the store holds a copy of dgst that matches
	// its digest, hashing it unless it is known good; the handler calls it
	// before every read. A corrupt copy is removed (and replaced from
	// elsewhere when the store can). It fails with an error wrapping
	// storage.ErrNotFound or storage.ErrCorrupt when no good copy can be
	// had.
	Check(ctx context.Context, dgst digest.Digest) error
}

// Authorizer decides whether a request may proceed. It is called once per
// request, before any work, with everything the request needs. A nil
// Authorizer allows everything. Returning an *Error (UNAUTHORIZED with a
// WWW-Authenticate header, DENIED) sends it to the client.
type Authorizer interface {
	Authorize(ctx context.Context, r *http.Request, access []Access) error
}

// UnaskedRegionsHeader, on a 404, names the peer regions that read-through
// could not ask in time (down or cut off): the answer is "not found in the
// regions that answered", and the traffic manager may ask another region.
const UnaskedRegionsHeader = "Georeg-Unasked-Regions"

// noteUnasked sets UnaskedRegionsHeader from a read-through error that
// names regions it could not ask.
func noteUnasked(w http.ResponseWriter, err error) {
	if unasked := unaskedRegions(err); len(unasked) > 0 {
		w.Header().Set(UnaskedRegionsHeader, strings.Join(unasked, ","))
	}
}

// unaskedRegions returns the regions a read-through error says it could
// not ask (see ReadThrough).
func unaskedRegions(err error) []string {
	var u interface{ UnaskedRegions() []string }
	if errors.As(err, &u) {
		return u.UnaskedRegions()
	}
	return nil
}

// unavailable makes a read-through failure other than "not found" a 503.
func unavailable(err error) error {
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: read-through: %v", storage.ErrUnavailable, err)
}

// ReadThrough fetches content the node's region lacks from other regions,
// so that a pull never fails because replication has not delivered yet. The
// handler calls it when a manifest or blob is unknown locally, then looks
// again. An error wrapping storage.ErrNotFound answers the usual unknown
// error, with UnaskedRegionsHeader when the error names regions it could
// not ask (an UnaskedRegions() []string method); any other error (a region
// holds it but could not deliver it yet) answers 503.
type ReadThrough interface {
	FetchManifest(ctx context.Context, repo, ref string) error
	FetchBlob(ctx context.Context, repo string, dgst digest.Digest) error
}

// EarlyReplication is told of every blob a client stored through the node,
// once it is linked, so that other regions may fetch big ones before a
// manifest references them. BlobLanded must not block.
type EarlyReplication interface {
	BlobLanded(repo string, dgst digest.Digest, size int64)
}

// GeoDurability waits until a pushed manifest is held by n regions.
type GeoDurability interface {
	WaitReplicated(ctx context.Context, repo string, dgst digest.Digest, n int) error
}

// GeoDurabilityHeader is the request header with which a push asks to be
// acknowledged only once that many regions hold the manifest (its blobs
// travel with it).
const GeoDurabilityHeader = "Georeg-Geo-Durability"

// Config configures a Handler.
type Config struct {
	Meta    Metadata
	Blobs   Blobs
	Uploads *upload.Manager
	// MaxManifestBytes bounds a manifest body. Zero means 4 MiB.
	MaxManifestBytes int64
	// DefaultPageSize is the page size of tags and catalog listings when the
	// client names none; MaxPageSize caps what a client may ask. Zero means
	// 1000 and 10000.
	DefaultPageSize, MaxPageSize int
	// Authorizer checks every request; nil allows everything.
	Authorizer Authorizer
	// ReadThrough, when set, fetches unknown content from other regions.
	ReadThrough ReadThrough
	// EarlyReplication, when set, learns of every blob stored.
	EarlyReplication EarlyReplication
	// GeoDurability, when set, lets pushes wait for other regions.
	// MinRegions is the registry's default number of regions a manifest push
	// waits for (0 or 1: this region only); GeoTimeout bounds the wait
	// (default 2 minutes).
	GeoDurability GeoDurability
	MinRegions    int
	GeoTimeout    time.Duration
	// TrustedProxies are the addresses whose X-Forwarded-For names the
	// client (the traffic manager's); a request from anywhere else is the
	// client itself. Limits per client (open upload sessions) use it.
	TrustedProxies []netip.Prefix
	// BodyIdleTimeout is how long a request body may go without delivering
	// a byte before the request fails (408) and its connection is closed;
	// an upload session it was writing to is left as it was. Zero means
	// DefaultBodyIdleTimeout; negative, no limit.
	BodyIdleTimeout time.Duration
	// Signer signs blob URLs for data endpoints and checks signed ones;
	// nil: neither.
	Signer BlobSigner
	// DataEndpoints are this node's data endpoints by client location
	// (scheme://host:port; "" for any location not listed): a blob GET
	// with DataLocationHeader is answered 307 to the one of its location,
	// with a URL Signer signed. Empty: blobs are always served here.
	DataEndpoints map[string]string
	// DataRedirectMinBytes is the smallest blob redirected to a data
	// endpoint; smaller ones are served here, where the bytes cost less
	// than the client's second request would. Zero means
	// DefaultDataRedirectMinBytes; negative, every blob.
	DataRedirectMinBytes int64
	Logger               *slog.Logger
}

// Handler serves the distribution API. It is safe for concurrent use.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Meta == nil || cfg.Blobs == nil || cfg.Uploads == nil {
		return nil, fmt.Errorf("api: Meta, Blobs and Uploads are required")
	}
	if cfg.MaxManifestBytes == 0 {
		cfg.MaxManifestBytes = 4 << 20
	}
	if cfg.GeoTimeout == 0 {
		cfg.GeoTimeout = 2 * time.Minute
	}
	if cfg.DefaultPageSize == 0 {
		cfg.DefaultPageSize = 1000
	}
	if cfg.MaxPageSize == 0 {
		cfg.MaxPageSize = 10000
	}
	if cfg.BodyIdleTimeout == 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if cfg.DataRedirectMinBytes == 0 {
		cfg.DataRedirectMinBytes = DefaultDataRedirectMinBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log}, nil
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	body := watchBody(w, r, h.cfg.BodyIdleTimeout)
	err := h.serve(w, r)
	if err == nil {
		return
	}
	var e *Error
	if body != nil && body.idle.Load() {
		// Whatever the failed read turned into on its way up.
		h.log.Info("request body idle; connection closed", "method", r.Method, "path", r.URL.Path,
			"client", h.clientAddr(r), "timeout", h.cfg.BodyIdleTimeout)
		e = bodyIdleError(r, h.cfg.BodyIdleTimeout)
	} else if !errors.As(err, &e) {
		switch {
		case errors.Is(err, storage.ErrUnavailable):
			e = ErrUnavailable.WithDetail(err.Error())
			e.Header = http.Header{"Retry-After": {"1"}}
		case errors.Is(err, storage.ErrNoSpace):
			// This zone's store is full; the region's other zones are
			// not, and the traffic manager stops routing here.
			e = ErrUnavailable.WithDetail("this zone's blob store is full; retry (another zone will take the write): " + err.Error())
			e.Header = http.Header{"Retry-After": {"1"}}
		case r.Context().Err() == nil:
			h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
	}
	if e != nil {
		err = e
	}
	body.release()
	ServeError(w, r, err)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	rt, rerr := parseRoute(r.URL.Path)
	if rerr != nil {
		return rerr
	}
	if h.cfg.Signer != nil && rt.Kind == KindBlob && IsSignedBlobRead(r) {
		// A data endpoint's download: the signature stands for the
		// credentials the caller showed the endpoint.
		if err := h.cfg.Signer.VerifyBlobURL(r.Context(), r, rt.Name); err != nil {
			return err
		}
	} else if a := h.cfg.Authorizer; a != nil {
		if err := a.Authorize(r.Context(), r, rt.access(r.Method)); err != nil {
			return err
		}
	}
	m := r.Method
	switch rt.Kind {
	case KindBase:
		if m != http.MethodGet && m != http.MethodHead {
			return ErrUnsupported.WithDetail(m)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if m == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return nil
	case KindCatalog:
		if m != http.MethodGet {
			return ErrUnsupported.WithDetail(m)
		}
		return h.getCatalog(w, r)
	case KindTags:
		if m != http.MethodGet {
			return ErrUnsupported.WithDetail(m)
		}
		return h.getTags(w, r, rt.Name)
	case KindReferrers:
		if m != http.MethodGet {
			return ErrUnsupported.WithDetail(m)
		}
		return h.getReferrers(w, r, rt.Name, rt.Ref)
	case KindManifest:
		switch m {
		case http.MethodGet, http.MethodHead:
			return h.getManifest(w, r, rt.Name, rt.Ref)
		case http.MethodPut:
			return h.putManifest(w, r, rt.Name, rt.Ref)
		case http.MethodDelete:
			return h.deleteManifest(w, r, rt.Name, rt.Ref)
		}
	case KindBlob:
		switch m {
		case http.MethodGet, http.MethodHead:
			return h.getBlob(w, r, rt.Name, rt.Ref)
		case http.MethodDelete:
			return h.deleteBlob(w, r, rt.Name, rt.Ref)
		}
	case KindUpload:
		if rt.Ref == "" {
			if m == http.MethodPost {
				return h.startUpload(w, r, rt.Name)
			}
			return ErrUnsupported.WithDetail(m)
		}
		switch m {
		case http.MethodGet:
			return h.uploadStatus(w, r, rt.Name, rt.Ref)
		case http.MethodPatch:
			return h.patchUpload(w, r, rt.Name, rt.Ref)
		case http.MethodPut:
			return h.putUpload(w, r, rt.Name, rt.Ref)
		case http.MethodDelete:
			return h.cancelUpload(w, r, rt.Name, rt.Ref)
		}
	}
	return ErrUnsupported.WithDetail(m)
}

// pageArgs reads the n and last query parameters of a listing.
func (h *Handler) pageArgs(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = h.cfg.DefaultPageSize
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, "", ErrorCode{"PAGINATION_NUMBER_INVALID", "invalid number of results requested", http.StatusBadRequest}.WithDetail(s)
		}
		n = min(v, h.cfg.MaxPageSize)
	}
	return n, q.Get("last"), nil
}

// setNextLink sets the RFC 5988 Link header of a listing with more pages.
func setNextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, q.Encode()))
}

// clientAddr returns the address of the client behind r.
func (h *Handler) clientAddr(r *http.Request) string {
	addr, _ := ClientAddr(r, h.cfg.TrustedProxies)
	return addr
}

// ClientAddr returns the address of the client behind r: for a connection
// from a trusted proxy (the traffic manager), the last hop of
// X-Forwarded-For, the one that proxy appended (the address it saw
// connect), else the connection's own address; proxied reports whether r
// came through a trusted proxy. The hops left of it were written by the
// client and are never used, even when they name trusted addresses: the
// default trusted range is loopback, where a local mesh's clients are too,
// and walking on would let them choose their own key. The hop must parse
// as an IP address (an optional port is dropped); when it does not, the
// header is ignored and the proxy's address counts, so a garbled value can
// neither pick the key a client is limited by nor put text into logs.
func ClientAddr(r *http.Request, trustedProxies []netip.Prefix) (addr string, proxied bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host, false
	}
	ip = ip.Unmap().WithZone("")
	if !trusted(ip, trustedProxies) {
		return ip.String(), false
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return ip.String(), true
	}
	hops := strings.Split(xff[len(xff)-1], ",")
	if hop, ok := parseHop(hops[len(hops)-1]); ok {
		ip = hop
	}
	return ip.String(), true
}

// parseHop parses one X-Forwarded-For element: an IPv4 or IPv6 address,
// optionally with a port ("1.2.3.4:80", "[::1]:80").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone(""), true
}

func trusted(ip netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// settleTimeout bounds how long a read waits to catch up with its region.
const settleTimeout = 2 * time.Second

// settle waits, before every read, until this node has applied every write
// its region had acknowledged, when Meta can tell (a zone of a replicated
// region): whichever zone serves it, a read sees the client's own writes
// and never an older state than an earlier read. An error wraps
// storage.ErrUnavailable (no leader to catch up with, or too slow): the
// client, or the traffic manager, retries.
func (h *Handler) settle(ctx context.Context) error {
	b, ok := h.cfg.Meta.(interface{ Barrier(context.Context) error })
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := b.Barrier(ctx); err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: catching up with the region: %v", storage.ErrUnavailable, err)
	}
	return nil
}
