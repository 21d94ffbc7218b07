package site

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/base/meta"
)

// A site of several zones is one region of its own: its zones share a Raft
// group, a local push is acknowledged once a majority holds it, and the
// Syncer runs on whichever zone leads. What the zones must agree on about
// the site itself is in the Raft log too (meta.Site): the instance the
// leader activates as, so that a new leader is the same instance to the
// parent and not a second one, and the definition the last activation
// brought, so that every zone enforces the same mode and repositories. The
// state file keeps what is a zone's own: its cursor (a new leader whose
// cursor is behind compares its repositories whole once) and where its
// notifications stand (the parent announces each once).

// adoptSite makes this zone's instance and definition the site's, as the
// Raft log has them: the first leader records its own.
func (s *Syncer) adoptSite(ctx context.Context) error {
	site, ok, err := s.cfg.Meta.Site()
	if err != nil {
		return err
	}
	if !ok {
		if err := s.cfg.Meta.Apply(ctx, meta.PutSite{Site: meta.Site{Instance: s.Instance()}}); err != nil {
			return fmt.Errorf("recording the site's instance: %w", err)
		}
		if site, ok, err = s.cfg.Meta.Site(); err != nil || !ok {
			return fmt.Errorf("reading the site's instance back: %v", err)
		}
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	reg := site.Registry
	changed := s.st.Instance != site.Instance
	if changed {
		s.log.Info("taking the site's instance from its Raft log (another zone led before)", "instance", site.Instance, "was", s.st.Instance)
		s.st.Instance = site.Instance
	}
	if reg.Name != "" && (s.st.Mode != reg.Mode || s.st.SyncSchedule != reg.SyncSchedule || s.st.SyncWindow != reg.SyncWindow || !slices.Equal(s.st.Repositories, reg.Repositories)) {
		s.st.Mode, s.st.SyncSchedule, s.st.SyncWindow, s.st.Repositories = reg.Mode, reg.SyncSchedule, reg.SyncWindow, slices.Clone(reg.Repositories)
		s.mode.Store(reg.Mode)
		s.registry.Store(&reg)
		changed = true
	}
	if changed {
		return s.saveState()
	}
	return nil
}

// shareDefinition records reg as the site's definition when it changed, so
// that every zone enforces it.
func (s *Syncer) shareDefinition(ctx context.Context, reg connected.Registry) error {
	site, ok, err := s.cfg.Meta.Site()
	if err != nil {
		return err
	}
	if ok && sameJSON(site.Registry, reg) {
		return nil
	}
	return s.cfg.Meta.Apply(ctx, meta.PutSite{Site: meta.Site{Instance: s.Instance(), Registry: reg}})
}

// shared returns the site's definition as the Raft log has it, and false
// before the first activation recorded one. It reads the store again only
// after a write: every request the site authorizes asks (Mode, Syncs),
// and decoding the record each time cost more than the check itself.
func (s *Syncer) shared() (connected.Registry, bool) {
	if c := s.site.Load(); c != nil {
		select {
		case <-c.valid:
		default:
			return c.reg, c.ok
		}
	}
	// Taken before the read, so that a write committed meanwhile makes
	// the next call read again.
	valid := s.cfg.Meta.Changed()
	site, ok, err := s.cfg.Meta.Site()
	if err != nil {
		return connected.Registry{}, false
	}
	c := &sharedSite{valid: valid, reg: site.Registry, ok: ok && site.Registry.Name != ""}
	if !c.ok {
		c.reg = connected.Registry{}
	}
	s.site.Store(c)
	return c.reg, c.ok
}

// sharedSite is the site's definition as shared last read it, good until
// valid is closed.
type sharedSite struct {
	valid <-chan struct{}
	reg   connected.Registry
	ok    bool
}

// ErrNotActivated is Ready's answer before the site's first activation.
var ErrNotActivated = errors.New("this connected registry has not activated with its parent yet, and knows none of its client tokens: retry in a moment (its parent must be reachable once)")

// Ready tells whether the site knows its definition and client tokens:
// from an activation, now or before a restart (on any zone of the site).
func (s *Syncer) Ready() error {
	if _, ok := s.shared(); ok || s.restarted {
		return nil
	}
	return ErrNotActivated
}
