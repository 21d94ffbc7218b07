package zone

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/replication/site"
	"github.com/georeg/georeg/zone/api"
	"github.com/georeg/georeg/zone/auth"
	"github.com/georeg/georeg/zone/gateway"
)

// newSyncer makes the Syncer of a node started as a connected registry.
func (n *Node) newSyncer(cs connected.ConnectionString, clientTLS *tls.Config) (*site.Syncer, error) {
	cfg := site.Config{
		Connection: cs, Meta: n.group, Blobs: n.blobs,
		Dir: filepath.Join(n.cfg.DataDir, "connected"), Logger: n.log, Version: n.cfg.Version,
	}
	if n.cfg.Dial != nil {
		// A local mesh's site reaches its parent through the simulated
		// WAN, so that cutting the link cuts the sync.
		dial := n.cfg.Dial
		cfg.Dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	if n.cfg.TestClock != nil {
		cfg.Clock = n.cfg.TestClock
	}
	if clientTLS != nil && clientTLS.RootCAs != nil {
		// The parent's endpoint may carry a certificate of the cluster's
		// CA (georeg mesh up --tls); the site brings no certificate.
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: clientTLS.RootCAs}
	}
	return site.New(cfg)
}

// runSyncer runs the Syncer while this node leads its region, until ctx
// ends, and sweeps this zone's blob files all along. While another
// instance holds the activation the Syncer keeps asking for it, and the
// node serves what it holds.
func (n *Node) runSyncer(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// Every zone frees its own copies of the blobs the leader's garbage
	// collector removed from the metadata.
	var sweeper sync.WaitGroup
	defer sweeper.Wait()
	sweeper.Go(func() { n.syncer.RunSweeper(ctx, n.cfg.SiteGCGrace) })
	for {
		if n.group.IsLeader() {
			if err := n.syncWhileLeader(ctx, tick.C); err != nil && ctx.Err() == nil {
				n.log.Error("connected registry: syncer stopped", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// syncWhileLeader runs the Syncer until it stops, ctx ends or this node
// no longer leads.
func (n *Node) syncWhileLeader(ctx context.Context, tick <-chan time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.syncer.Run(ctx) }()
	// The garbage collector runs on the leader too, beside the Syncer,
	// and has stopped when this returns.
	var gc sync.WaitGroup
	defer gc.Wait()
	defer cancel()
	gc.Go(func() { n.syncer.RunGC(ctx, n.cfg.SiteGCGrace) })
	for {
		select {
		case err := <-done:
			return err
		case <-tick:
			if !n.group.IsLeader() {
				cancel()
				return <-done
			}
		}
	}
}

// apiBlobs is the blob store the API writes through: at a site, the one
// the garbage collector guards (site.GuardedBlobs), so that the bytes of a
// blob being uploaded are never collected under it.
func (n *Node) apiBlobs() api.Blobs {
	if n.syncer != nil {
		return n.syncer.Blobs()
	}
	return n.blobs
}

// siteAuthorizer is the API's authorizer on a connected registry: a
// ReadOnly one refuses pushes (DENIED) and deletes (UNSUPPORTED) before
// anything is stored, whoever asks; its content comes from the parent
// only. A ReadWrite one refuses them (DENIED) in repositories outside
// those it syncs: they could never sync up.
type siteAuthorizer struct {
	*auth.Authenticator
	mode  func() connected.Mode
	syncs func(repo string) bool
}

// Authorize implements api.Authorizer.
func (a siteAuthorizer) Authorize(ctx context.Context, r *http.Request, needs []api.Access) error {
	if err := a.Authenticator.Authorize(ctx, r, needs); err != nil {
		return err
	}
	if a.mode() != connected.ReadOnly {
		for _, nd := range needs {
			switch nd.Action {
			case api.ActionContentDelete, api.ActionContentWrite, api.ActionMetadataWrite:
				if !a.syncs(nd.Repository) {
					return api.ErrDenied.WithDetail(map[string]string{"repository": nd.Repository,
						"reason": "outside the repositories this connected registry syncs: a push here could never reach the parent"})
				}
			}
		}
		return nil
	}
	for _, nd := range needs {
		switch nd.Action {
		case api.ActionContentDelete:
			return api.ErrUnsupported.WithDetail(map[string]string{"repository": nd.Repository,
				"reason": "this connected registry is ReadOnly: delete at the parent registry"})
		case api.ActionContentWrite, api.ActionMetadataWrite:
			return api.ErrDenied.WithDetail(map[string]string{"repository": nd.Repository,
				"reason": "this connected registry is ReadOnly: push to the parent registry"})
		}
	}
	return nil
}

// siteHome is the gateway's Home on a connected registry with children of
// its own: their activations and status reports go to the site's parent
// through its Syncer, with the site's own sync token (the credential the
// child sent was checked here and goes no further).
type siteHome struct{ syncer *site.Syncer }

// Activate implements gateway.Home.
func (h siteHome) Activate(ctx context.Context, name, instance, version, _ string) (connected.Config, error) {
	cfg, err := h.syncer.RelayActivate(ctx, name, connected.Hello{Instance: instance, Version: version})
	return cfg, relayError(err)
}

// Report implements gateway.Home.
func (h siteHome) Report(ctx context.Context, name string, st connected.Status, _ string) error {
	return relayError(h.syncer.RelayReport(ctx, name, st))
}

// relayError is the error a child sees for a relayed call that failed:
// the parent's refusal as it was, except its refusal of this site's own
// credential, which is no fault of the child's.
func relayError(err error) error {
	var he *site.HTTPError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, site.ErrNotBelow):
		return api.ErrNameUnknown.WithDetail(err.Error())
	case errors.As(err, &he) && he.Status != http.StatusUnauthorized && he.Status < 500 && he.Code != "":
		return api.ErrorCode{Code: he.Code, Message: he.Msg, Status: he.Status}.WithDetail("from the parent of this connected registry")
	}
	return api.ErrUnavailable.WithDetail("relaying to the parent of this connected registry: " + err.Error())
}

// ForwardedByHeader marks a child's relayed call that a follower zone of a
// site passed on to the zone that leads it, naming the follower: a node
// passes such a call on no further, so that it cannot go round while
// leadership moves.
const ForwardedByHeader = "Georeg-Forwarded-By"

// relayTimeout bounds a relayed call passed on to the leading zone, which
// relays it to the parent in turn.
const relayTimeout = 30 * time.Second

// relayTransport returns the transport that carries children's relayed
// calls from this zone to the leading one, over the nodes' HTTP (with the
// cluster's CA when the nodes serve HTTPS).
func (n *Node) relayTransport(clientTLS *tls.Config) http.RoundTripper {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: relayTimeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
	}
	if n.cfg.Dial != nil {
		dial := n.cfg.Dial
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	if clientTLS != nil {
		tr.TLSClientConfig = clientTLS.Clone()
	}
	return tr
}

// forwardRelay passes a child's relayed call that reached a follower zone
// of this site on to the zone that leads it, with the child's credential,
// and reports whether it did. It does not when this zone leads, when the
// call was passed on once already, when no leader is known, or when the
// credential is refused here: the gateway then answers it here, and a
// wrong password counts against the client that sent it, not against
// this zone at the leader.
func (n *Node) forwardRelay(w http.ResponseWriter, r *http.Request) bool {
	if n.toLeader == nil || !gateway.RelayCall(r) || r.Header.Get(ForwardedByHeader) != "" || n.group.IsLeader() {
		return false
	}
	leader, ok := n.group.Leader()
	self := n.members.Self().ID
	if !ok || leader.HTTP == "" || leader.ID == self {
		return false
	}
	if _, err := n.auth.Caller(r.Context(), r); err != nil {
		return false
	}
	scheme := "http"
	if n.cfg.HTTPS {
		scheme = "https"
	}
	target := &url.URL{Scheme: scheme, Host: leader.HTTP}
	n.log.Debug("connected registry: passing a child's call on to the leading zone", "path", r.URL.Path, "leader", leader.ID)
	ctx, cancel := context.WithTimeout(r.Context(), relayTimeout)
	defer cancel()
	proxy := &httputil.ReverseProxy{
		// The leader sees this zone as the client: Rewrite sends no
		// X-Forwarded-For, which it would not trust from a zone anyway.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(ForwardedByHeader, self)
		},
		Transport: n.toLeader,
		ErrorLog:  slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			api.ServeError(w, r, api.ErrUnavailable.WithDetail("passing the call on to the zone that leads this connected registry: "+err.Error()))
		},
	}
	// The answer names the zone that gave it, the leader.
	w.Header().Del("Georeg-Region")
	w.Header().Del("Georeg-Zone")
	proxy.ServeHTTP(w, r.WithContext(ctx))
	return true
}
