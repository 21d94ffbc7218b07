package trafficmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// headerTimeout bounds the wait for response headers of a GET or HEAD before
// it is retried elsewhere. It is long because a node reading a blob through
// from a peer region answers only once it holds the blob; a node that dies
// or is cut off is abandoned much sooner, when its probes fail (errNodeDown).
const headerTimeout = 5 * time.Minute

// LocationHeader names, on every response, the listener location that
// served it.
const LocationHeader = "Georeg-Location"

// handler serves one listener location.
type handler struct {
	m   *Manager
	loc *location
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(LocationHeader, h.loc.name)
	if r.URL.Path == "/metrics" {
		// A scraper is not a client: it leaves an idle endpoint idle.
		promhttp.HandlerFor(h.m.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	}
	// A status request counts: whoever asks for routes gets fresh ones.
	h.m.noteRequest()
	switch r.URL.Path {
	case StatusPath:
		h.m.serveStatus(w, r)
		return
	}
	rec := &recorder{ResponseWriter: w}
	answered := "none"
	defer func() {
		class := rec.class()
		p := recover()
		if p != nil {
			class = "aborted"
		}
		h.m.metrics.requests.WithLabelValues(h.loc.name, answered, methodLabel(r.Method), class).Inc()
		if p != nil {
			panic(p)
		}
	}()
	if n, id := h.m.uploadNode(r.URL.Path); n != nil {
		answered = h.pinned(rec, r, n, id)
		return
	}
	answered = h.routed(rec, r)
}

// uploadNode returns the node an upload session path names
// (/v2/<name>/blobs/uploads/<region>.<zone>.<uuid>) and the session id, or
// nil when the path is not a session or names no configured node.
func (m *Manager) uploadNode(path string) (*node, string) {
	const marker = "/blobs/uploads/"
	i := strings.LastIndex(path, marker)
	if !strings.HasPrefix(path, "/v2/") || i < len("/v2/x")-1 {
		return nil, ""
	}
	id := path[i+len(marker):]
	if id == "" || strings.Contains(id, "/") {
		return nil, ""
	}
	parts := strings.SplitN(id, ".", 3)
	if len(parts) != 3 || parts[2] == "" {
		return nil, ""
	}
	r := m.byName[parts[0]]
	zone, err := strconv.Atoi(parts[1])
	if r == nil || err != nil {
		return nil, ""
	}
	for _, n := range r.nodes {
		if n.zone == zone {
			return n, id
		}
	}
	return nil, ""
}

// isBlobGet reports whether r downloads a blob (/v2/<name>/blobs/<digest>),
// the one kind of response that can resume on another node: a blob's bytes
// are the same everywhere.
func isBlobGet(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v2/") {
		return false
	}
	i := strings.LastIndex(r.URL.Path, "/blobs/")
	if i < len("/v2/x")-1 {
		return false
	}
	dgst := r.URL.Path[i+len("/blobs/"):]
	return strings.Contains(dgst, ":") && !strings.Contains(dgst, "/")
}

// isMetadata reports whether r reads or writes a registry's metadata
// (manifests, tags, referrers, the catalog) rather than blob bytes or
// upload sessions: such requests go to a region's Raft leader first.
func isMetadata(r *http.Request) bool {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/v2/") {
		return false
	}
	return p == "/v2/_catalog" || strings.HasSuffix(p, "/tags/list") ||
		strings.Contains(p, "/manifests/") || strings.Contains(p, "/referrers/")
}

// pinned sends an upload session request to the node holding the session;
// if that node cannot be reached the session is lost, and the client is
// told so in the way every client handles: BLOB_UPLOAD_UNKNOWN, start over.
func (h *handler) pinned(w http.ResponseWriter, r *http.Request, n *node, id string) string {
	body := newClientBody(w, r, time.Duration(h.m.cfg.BodyIdleTimeout))
	defer body.release()
	w = body.guard(w)
	a, err := h.send(r, n, body, "")
	if err != nil {
		if body.idled(w) || r.Context().Err() != nil {
			return "none"
		}
		h.m.markDownIf(h.loc, n, err, body)
		h.m.metrics.uploadsLost.WithLabelValues(h.loc.name).Inc()
		h.m.log.Warn("upload session node unreachable", "location", h.loc.name, "node", n.String(), "session", id, "error", err)
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
			fmt.Sprintf("upload session %s lives on node %s, which is unreachable: start a new upload", id, n))
		return "none"
	}
	h.relay(w, r, a)
	return n.region
}

// routed sends a request along the location's route. GET and HEAD move on
// to the next node and region on any failure before response headers and
// on 502, 503 and 504; other methods move on only when no connection could
// be made (nothing was sent), since their body is read once.
func (h *handler) routed(w http.ResponseWriter, r *http.Request) string {
	cands := h.m.candidates(h.loc, isMetadata(r))
	if len(cands) == 0 {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "service unavailable", "no region endpoint is enabled")
		return "none"
	}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	body := newClientBody(w, r, time.Duration(h.m.cfg.BodyIdleTimeout))
	defer body.release()
	w = body.guard(w)
	var saved *savedResponse
	var lastErr error
	skip := map[string]bool{} // regions whose answer is known
	for i, n := range cands {
		if skip[n.region] {
			continue
		}
		if i > 0 {
			h.m.metrics.retries.WithLabelValues(h.loc.name).Inc()
		}
		a, err := h.send(r, n, body, "")
		if err != nil {
			if body.idled(w) || r.Context().Err() != nil {
				return "none"
			}
			connected := a.connected.Load()
			h.m.markDownIf(h.loc, n, err, body)
			lastErr = fmt.Errorf("%s: %w", n, err)
			h.m.log.Debug("request failed before response", "location", h.loc.name, "node", n.String(),
				"method", r.Method, "path", r.URL.Path, "error", err)
			if safe || (!connected && body.untouched()) {
				continue
			}
			writeError(w, http.StatusBadGateway, "UNAVAILABLE", "service unavailable",
				fmt.Sprintf("node %s failed while the request was sent; retrying is safe: %v", n, err))
			return "none"
		}
		if safe && retryStatus(a.resp.StatusCode) && (i < len(cands)-1 || saved != nil && !retryStatus(saved.status)) {
			if saved == nil || retryStatus(saved.status) {
				saved = save(a)
			} else {
				a.done()
			}
			h.m.log.Debug("retrying after status", "location", h.loc.name, "node", n.String(),
				"method", r.Method, "path", r.URL.Path, "status", a.resp.StatusCode)
			continue
		}
		if safe && a.resp.StatusCode == http.StatusNotFound && a.resp.Header.Get(UnaskedRegionsHeader) != "" && hasOtherRegion(cands[i+1:], n.region) {
			// "Not found in the regions this one could ask": another
			// region may reach the one that holds it. The first such
			// answer stands if no region finds more.
			if saved == nil || retryStatus(saved.status) {
				saved = save(a)
			} else {
				a.done()
			}
			skip[n.region] = true
			h.m.log.Debug("asking another region after an incomplete not-found", "location", h.loc.name, "node", n.String(),
				"method", r.Method, "path", r.URL.Path, "unasked", a.resp.Header.Get(UnaskedRegionsHeader))
			continue
		}
		if safe && isBlobGet(r) && (a.resp.StatusCode == http.StatusOK || a.resp.StatusCode == http.StatusPartialContent) {
			h.relayBlob(w, r, a)
		} else {
			if a.resp.StatusCode == http.StatusTemporaryRedirect && a.resp.Header.Get(DataRedirectHeader) != "" {
				h.m.metrics.redirects.WithLabelValues(h.loc.name, n.region).Inc()
			}
			h.relay(w, r, a)
		}
		return n.region
	}
	if saved != nil {
		saved.write(w)
		return saved.region
	}
	writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "service unavailable",
		fmt.Sprintf("no region could serve the request: %v", lastErr))
	return "none"
}

// DataLocationHeader asks a node to answer a blob GET with 307 to its data
// endpoint for clients of the named location (zone/api's header of the
// same name); DataRedirectHeader marks such an answer, whose absolute
// Location is passed on as is.
const (
	DataLocationHeader = "Georeg-Data-Location"
	DataRedirectHeader = "Georeg-Data-Redirect"
)

// ProxyBlobsHeader, on a client's request, asks for the blob's bytes
// through the endpoint rather than a redirect: for a client that cannot
// follow one (or cannot reach the nodes).
const ProxyBlobsHeader = "Georeg-Proxy-Blobs"

// redirects reports whether a blob GET of r may be answered with a
// redirect to a data endpoint.
func (h *handler) redirects(r *http.Request) bool {
	return h.m.cfg.dataEndpoints() && isBlobGet(r) && r.Header.Get(ProxyBlobsHeader) == ""
}

// UnaskedRegionsHeader is the header with which a node answers a 404 that
// speaks only for the regions it could ask (zone/api sets it).
const UnaskedRegionsHeader = "Georeg-Unasked-Regions"

// hasOtherRegion reports whether any of nodes is outside region.
func hasOtherRegion(nodes []*node, region string) bool {
	for _, n := range nodes {
		if n.region != region {
			return true
		}
	}
	return false
}

func retryStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// markDownIf applies passive health after a request to n failed before its
// response: a node that refused or dropped the connection is down. A node
// abandoned because the probes already took it down, one that merely
// answered slowly, and a failure of the client's own body are left to the
// probes.
func (m *Manager) markDownIf(l *location, n *node, err error, body *clientBody) {
	if errors.Is(err, errNodeDown) || errors.Is(err, errHeaderTimeout) || body.failed() {
		return
	}
	m.markDown(l, n, err)
}

// attempt is one request sent to one node.
type attempt struct {
	node      *node
	resp      *http.Response
	connected atomic.Bool
	cancel    context.CancelCauseFunc
	stop      func() bool // stops watching the node's health
}

// done releases the attempt's context; call it once the body is consumed.
func (a *attempt) done() {
	a.resp.Body.Close()
	a.stop()
	a.cancel(nil)
}

// send forwards r to n. rangeHdr, when set, replaces the client's Range
// (resuming a blob). The returned attempt is non-nil even on error, to say
// whether a connection was made.
func (h *handler) send(r *http.Request, n *node, body *clientBody, rangeHdr string) (*attempt, error) {
	a := &attempt{node: n, stop: func() bool { return false }}
	ctx, cancel := context.WithCancelCause(r.Context())
	a.cancel = cancel
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	if down := h.m.downContext(h.loc, n); down != nil {
		if safe {
			// Retried or resumed elsewhere: abandon the node at once.
			a.stop = context.AfterFunc(down, func() { cancel(errNodeDown) })
		} else {
			// A write cannot move; abandon it only if it makes no progress,
			// so that probes timing out on a busy node do not kill uploads.
			a.stop = context.AfterFunc(down, func() {
				go abandonIfStalled(ctx, body, time.Duration(h.m.cfg.ProbeTimeout), cancel)
			})
		}
	}
	fail := func(err error) (*attempt, error) {
		a.stop()
		cancel(nil)
		return a, err
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { a.connected.Store(true) },
	})
	out, err := http.NewRequestWithContext(ctx, r.Method, n.base+r.URL.RequestURI(), nil)
	if err != nil {
		return fail(err)
	}
	out.Header = forwardHeader(r)
	if rangeHdr != "" {
		out.Header.Set("Range", rangeHdr)
		out.Header.Del("If-Range")
	} else if h.redirects(r) {
		out.Header.Set(DataLocationHeader, h.loc.name)
	}
	if body != nil && rangeHdr == "" {
		out.Body, out.ContentLength = body, r.ContentLength
		// Lets the transport resend on a stale keep-alive connection as
		// long as not a byte of the client's body was consumed.
		out.GetBody = body.again
	}
	var timer *time.Timer
	if safe {
		timer = time.AfterFunc(headerTimeout, func() { cancel(errHeaderTimeout) })
	}
	resp, err := h.loc.transport.RoundTrip(out)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && r.Context().Err() == nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return fail(err)
	}
	a.resp = resp
	return a, nil
}

// abandonIfStalled cancels a write to a node that went down once a period
// passes in which not a byte of its body moved (or it has none).
func abandonIfStalled(ctx context.Context, body *clientBody, period time.Duration, cancel context.CancelCauseFunc) {
	t := time.NewTicker(period)
	defer t.Stop()
	last := body.progress()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := body.progress()
		if now == last {
			cancel(errNodeDown)
			return
		}
		last = now
	}
}

// relay copies a node's response to the client as it comes. A body that
// breaks off mid-way aborts the client connection, so that the client sees
// a failure and never a short body it could take for a whole one.
func (h *handler) relay(w http.ResponseWriter, r *http.Request, a *attempt) {
	defer a.done()
	writeHeader(w, r, a.resp)
	if r.Method == http.MethodHead {
		return
	}
	if _, rerr, werr := copyFlush(w, a.resp.Body); rerr != nil && werr == nil && r.Context().Err() == nil {
		h.m.log.Warn("response body cut", "location", h.loc.name, "node", a.node.String(), "path", r.URL.Path, "error", rerr)
		panic(http.ErrAbortHandler)
	}
}

// relayBlob copies a blob download to the client and, when the node's body
// breaks off, resumes it from another node or region with a Range request
// starting at the first byte the client has not received. If no node can,
// the client connection is aborted.
func (h *handler) relayBlob(w http.ResponseWriter, r *http.Request, a *attempt) {
	start, end, total, ok := span(a.resp)
	writeHeader(w, r, a.resp)
	if !ok {
		// A response this proxy cannot place in the blob is relayed as is.
		h.relayBody(w, r, a)
		return
	}
	tried := map[*node]bool{}
	var written int64
	for {
		tried[a.node] = true
		n, rerr, werr := copyFlush(w, a.resp.Body)
		written += n
		a.done()
		if rerr == nil || werr != nil || r.Context().Err() != nil {
			return
		}
		if end >= 0 && start+written > end {
			return // every byte arrived; only the end of the stream was lost
		}
		from := start + written
		h.m.log.Info("blob download cut, resuming", "location", h.loc.name, "node", a.node.String(),
			"path", r.URL.Path, "offset", from, "error", rerr)
		if a = h.resume(r, from, end, total, tried); a == nil {
			h.m.metrics.resumes.WithLabelValues(h.loc.name, "aborted").Inc()
			h.m.log.Warn("blob download cut and no node could resume it", "location", h.loc.name,
				"path", r.URL.Path, "offset", from)
			panic(http.ErrAbortHandler)
		}
		h.m.metrics.resumes.WithLabelValues(h.loc.name, "resumed").Inc()
	}
}

func (h *handler) relayBody(w http.ResponseWriter, r *http.Request, a *attempt) {
	defer a.done()
	if _, rerr, werr := copyFlush(w, a.resp.Body); rerr != nil && werr == nil && r.Context().Err() == nil {
		panic(http.ErrAbortHandler)
	}
}

// resume finds a node, other than those tried, that answers the rest of the
// blob from byte from: 206 with a Content-Range starting there and matching
// the end and size already sent.
func (h *handler) resume(r *http.Request, from, end, total int64, tried map[*node]bool) *attempt {
	rng := fmt.Sprintf("bytes=%d-", from)
	if end >= 0 {
		rng += strconv.FormatInt(end, 10)
	}
	for _, n := range h.m.candidates(h.loc, false) {
		if tried[n] {
			continue
		}
		tried[n] = true
		a, err := h.send(r, n, nil, rng)
		if err != nil {
			if r.Context().Err() != nil {
				return nil
			}
			h.m.markDownIf(h.loc, n, err, nil)
			continue
		}
		s, e, t, ok := span(a.resp)
		if a.resp.StatusCode == http.StatusPartialContent && ok && s == from &&
			(end < 0 || e == end) && (total < 0 || t < 0 || t == total) {
			return a
		}
		h.m.log.Debug("resume refused", "location", h.loc.name, "node", n.String(), "status", a.resp.StatusCode,
			"contentRange", a.resp.Header.Get("Content-Range"), "want", rng)
		a.done()
	}
	return nil
}

// span places a blob response in the blob: the first and last byte offsets
// it carries (end -1 when unknown) and the blob size (-1 when unknown).
func span(resp *http.Response) (start, end, total int64, ok bool) {
	if resp.StatusCode == http.StatusOK {
		if resp.ContentLength < 0 {
			return 0, -1, -1, true
		}
		return 0, resp.ContentLength - 1, resp.ContentLength, true
	}
	// Content-Range: bytes first-last/size (size may be *).
	cr, found := strings.CutPrefix(resp.Header.Get("Content-Range"), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, size, found := strings.Cut(cr, "/")
	first, last, found2 := strings.Cut(rng, "-")
	if !found || !found2 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	end, err2 = strconv.ParseInt(strings.TrimSpace(last), 10, 64)
	total = -1
	if size = strings.TrimSpace(size); size != "*" {
		total, err3 = strconv.ParseInt(size, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// hopHeaders are meaningful for one connection only (RFC 9110, 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// forwardHeader is the header of r as sent to a node: the client's, less
// the hop-by-hop fields, plus the X-Forwarded ones.
func forwardHeader(r *http.Request) http.Header {
	out := r.Header.Clone()
	if out == nil {
		out = http.Header{}
	}
	removeHopHeaders(out)
	out.Del(DataLocationHeader) // only this proxy says where its clients are
	out.Del(ProxyBlobsHeader)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := out.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out.Set("X-Forwarded-For", ip)
	}
	out.Set("X-Forwarded-Host", r.Host)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	out.Set("X-Forwarded-Proto", proto)
	if _, ok := out["User-Agent"]; !ok {
		out.Set("User-Agent", "") // keep Go from adding its own
	}
	return out
}

// writeHeader sends a node's status and header to the client, less the
// hop-by-hop fields, with an absolute Location made relative so that the
// client keeps talking to the traffic manager.
func writeHeader(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	dst := w.Header()
	for k, vs := range resp.Header {
		dst[k] = append(dst[k][:0:0], vs...)
	}
	removeHopHeaders(dst)
	if dst.Get(DataRedirectHeader) != "" {
		// A node's data endpoint: the client is meant to go there.
		dst.Del(DataRedirectHeader)
		if loc := dataLocation(dst.Get("Location"), r.Host); loc != "" {
			dst.Set("Location", loc)
		}
	} else if loc := dst.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil && u.IsAbs() {
			dst.Set("Location", u.RequestURI())
		}
	}
	w.WriteHeader(resp.StatusCode)
}

// dataLocation returns a data redirect's Location as a client that named
// this endpoint host should follow it, or "" to keep it as it is. A
// client that came as "localhost" is sent to "localhost" rather than to
// the loopback address the node listens on: the same place, but clients
// that refuse redirects from one host to a private address literal
// (go-containerregistry's crane since v0.22, against SSRF) would refuse
// 127.0.0.1 after localhost. Other names are left alone: this endpoint
// cannot know where they resolve.
func dataLocation(loc, host string) string {
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() {
		return ""
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ip.IsLoopback() {
		return ""
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if !strings.EqualFold(name, "localhost") {
		return ""
	}
	if p := u.Port(); p != "" {
		u.Host = net.JoinHostPort("localhost", p)
	} else {
		u.Host = "localhost"
	}
	return u.String()
}

// bufPool holds relay buffers. They are large so that a bulk download moves
// in few system calls: a read returns whatever the node's socket has, often
// far more than 64 KiB on loopback.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyFlush copies src to w, flushing after every write so that a large
// body streams through at the pace it arrives. It tells read errors from
// write errors: only the former can be resumed elsewhere.
func copyFlush(w http.ResponseWriter, src io.Reader) (written int64, readErr, writeErr error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, nil, werr
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return written, nil, ferr
			}
		}
		if err == io.EOF {
			return written, nil, nil
		}
		if err != nil {
			return written, err, nil
		}
	}
}

// clientBody is a client's request body shared by the attempts of one
// request: it counts what was read so that a request is sent again only
// while nothing of the body is gone, and it is never closed on the
// transport's behalf (the server owns the client's body). Every read must
// bring a byte within the body idle timeout: before each read it moves the
// client connection's read deadline that far ahead, so a client that stops
// sending, or trickles slower, has its request fail and its connection
// closed instead of holding a node's upload session.
type clientBody struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	read    atomic.Int64
	broken  atomic.Bool // reading the client's body failed
	ended   atomic.Bool // the body returned EOF or an error
	idle    atomic.Bool // the client sent nothing for timeout

	// mu orders deadline changes: once released, reads set none.
	mu       sync.Mutex
	released bool
}

// errBodyConsumed refuses to resend a request part of whose body is gone.
var errBodyConsumed = errors.New("request body partly sent; cannot resend")

// errBodyReleased fails a read of a body whose request was answered.
var errBodyReleased = errors.New("request answered; body no longer read")

// drainGrace is how long the server may go on reading what is left of a
// body nobody read to its end once the request was answered (it reads up
// to 256 KiB, so that the connection can serve the next request): enough
// for a client that sends at speed, and a trickling client's connection is
// closed after it.
const drainGrace = time.Second

func newClientBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *clientBody {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	return &clientBody{r: r.Body, rc: http.NewResponseController(w), timeout: timeout}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if !b.ended.Load() {
		// After EOF the server owns the deadline again (it clears it to
		// read the next request); one set then would cut the connection.
		b.mu.Lock()
		if b.released {
			b.mu.Unlock()
			return 0, errBodyReleased
		}
		if b.timeout > 0 {
			b.rc.SetReadDeadline(time.Now().Add(b.timeout))
		}
		b.mu.Unlock()
	}
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	if err != nil {
		b.ended.Store(true)
	}
	if err != nil && err != io.EOF {
		b.broken.Store(true)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.idle.Store(true)
		}
	}
	return n, err
}

// idled answers a request whose client body went idle: 408, and true. The
// node was not at fault (see markDownIf).
func (b *clientBody) idled(w http.ResponseWriter) bool {
	if b == nil || !b.idle.Load() {
		return false
	}
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestTimeout, "BLOB_UPLOAD_INVALID", "request body idle for too long",
		fmt.Sprintf("the request body sent nothing for %s; the connection is closed and the upload session is as it was", b.timeout))
	return true
}

// release ends the request's hold on the client's body once it is
// answered: a body not read to its end (the node answered early, or
// failed) is read no more by the attempts, and the server gets drainGrace
// to read the rest, so that a slow client cannot keep the connection
// (and the handler) waiting on it.
func (b *clientBody) release() {
	if b == nil || b.ended.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.released {
		b.released = true
		b.rc.SetReadDeadline(time.Now().Add(drainGrace))
	}
}

// guard returns w, releasing the body when the answer starts: the server
// reads what is left of an unread body before it writes the status line.
func (b *clientBody) guard(w http.ResponseWriter) http.ResponseWriter {
	if b == nil {
		return w
	}
	return &releasingWriter{ResponseWriter: w, body: b}
}

// releasingWriter releases its request's body before the answer starts.
type releasingWriter struct {
	http.ResponseWriter
	body *clientBody
}

func (w *releasingWriter) WriteHeader(code int) {
	w.body.release()
	w.ResponseWriter.WriteHeader(code)
}

func (w *releasingWriter) Write(p []byte) (int, error) {
	w.body.release()
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *releasingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (b *clientBody) progress() int64 {
	if b == nil {
		return 0
	}
	return b.read.Load()
}

func (b *clientBody) failed() bool { return b != nil && b.broken.Load() }

func (b *clientBody) Close() error { return nil }

func (b *clientBody) untouched() bool { return b == nil || b.read.Load() == 0 }

func (b *clientBody) again() (io.ReadCloser, error) {
	if !b.untouched() {
		return nil, errBodyConsumed
	}
	return b, nil
}

// savedResponse keeps a retryable error answer (502, 503, 504) of a node in
// case every other node fails worse: the client then gets that real answer.
type savedResponse struct {
	region string
	status int
	header http.Header
	body   []byte
}

func save(a *attempt) *savedResponse {
	defer a.done()
	body, _ := io.ReadAll(io.LimitReader(a.resp.Body, 64<<10))
	return &savedResponse{region: a.node.region, status: a.resp.StatusCode, header: a.resp.Header, body: body}
}

func (s *savedResponse) write(w http.ResponseWriter) {
	for k, vs := range s.header {
		w.Header()[k] = vs
	}
	removeHopHeaders(w.Header())
	w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	w.WriteHeader(s.status)
	io.Copy(w, bytes.NewReader(s.body))
}

// recorder notes the status sent to the client, for the request metric.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection to flush.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) class() string {
	if r.status == 0 {
		return "aborted"
	}
	return strconv.Itoa(r.status/100) + "xx"
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
		return m
	}
	return "OTHER"
}
