package zone

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/replication/site"
	"github.com/georeg/georeg/zone/api"
	"github.com/georeg/georeg/zone/auth"
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
