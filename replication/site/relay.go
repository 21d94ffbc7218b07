package site

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/georeg/georeg/base/connected"
)

// Nesting: a connected registry with children of its own serves their sync
// calls as the cloud serves its own (zone/gateway, at the site's node). Its
// events are the site's own notice log, content moves through the site's
// Distribution API, and a ReadWrite child's writes merge into the site's
// metadata and enter its outbox, which syncs them up (upload.go). Only
// activation and status reports need the cloud, which keeps the
// definitions: the Syncer relays them to its own parent with its own sync
// token, so every level authenticates to its parent only. What the Syncer
// knows of the registries below it comes with its activation's Config.

// ErrOutsideWindow refuses a relayed call while the site is outside its
// sync window (it opens no connection to its parent then) or not syncing
// (not activated yet, or not the leader of its region).
var ErrOutsideWindow = errors.New("this connected registry is not connected to its parent now (outside its sync window, or not activated yet)")

// ErrNotBelow refuses a relayed call for a connected registry that is not
// below this one (as far as its last activation knows).
var ErrNotBelow = errors.New("not a connected registry below this one")

// ConnectedParent returns the parent of connected registry name if it is
// below this one, as the last activation's Config lists them. It
// implements zone/gateway's Lineage.
func (s *Syncer) ConnectedParent(name string) (string, bool) {
	cfg := s.lastApply.Load()
	if cfg == nil {
		return "", false
	}
	for _, c := range cfg.Children {
		if c.Name == name {
			return c.Parent, true
		}
	}
	return "", false
}

// relayable checks a relayed call for name before it goes to the parent.
func (s *Syncer) relayable(name string) error {
	if !s.connected.Load() {
		return ErrOutsideWindow
	}
	if _, ok := s.ConnectedParent(name); !ok {
		return fmt.Errorf("%w: %s", ErrNotBelow, name)
	}
	return nil
}

// RelayActivate activates connected registry name, below this one, with
// hello (its instance's), through this registry's parent, and returns
// its Config as the parent answered it. A refusal of the parent is an
// *HTTPError.
func (s *Syncer) RelayActivate(ctx context.Context, name string, hello connected.Hello) (connected.Config, error) {
	var cfg connected.Config
	if err := s.relayable(name); err != nil {
		return cfg, err
	}
	_, err := s.c.call(ctx, http.MethodPost, connected.APIPrefix+"/"+name+"/activate", hello, &cfg, callTimeout)
	if err == nil && cfg.Registry.Name != name {
		err = fmt.Errorf("activating %s: malformed answer: the config is of %q", name, cfg.Registry.Name)
	}
	return cfg, err
}

// RelayReport sends the status report of connected registry name, below
// this one, through this registry's parent.
func (s *Syncer) RelayReport(ctx context.Context, name string, st connected.Status) error {
	if err := s.relayable(name); err != nil {
		return err
	}
	return s.c.status(ctx, name, st)
}

// refreshEvery bounds how often Refresh activates out of turn.
const refreshEvery = 5 * time.Second

// Refresh asks for an activation now rather than at the next
// ActivateInterval, at most once every refreshEvery: a child whose sync
// token was given a new password (get-settings) is refused here until this
// registry's Config has it, and the child's first failed call is the sign.
func (s *Syncer) Refresh() {
	now := time.Now().UnixNano()
	last := s.refreshedAt.Load()
	if now-last < int64(refreshEvery) || !s.refreshedAt.CompareAndSwap(last, now) {
		return
	}
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}
