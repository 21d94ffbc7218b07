package upload

import (
	"context"
	"crypto/sha256"
	_ "crypto/sha512" // digests the client may name at Finish
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/storage"
)

// Errors callers branch on.
var (
	// ErrUnknown means no session with that ID exists (never did, finished,
	// cancelled, expired, or held by another node).
	ErrUnknown = errors.New("upload session unknown")
	// ErrOutOfOrder means a chunk did not start where the session ends.
	ErrOutOfOrder = errors.New("chunk out of order")
	// ErrTooMany means the node holds Config.MaxSessions sessions already.
	ErrTooMany = errors.New("too many upload sessions")
	// ErrTooManyForClient means the client holds Config.MaxPerClient
	// sessions already.
	ErrTooManyForClient = errors.New("too many upload sessions for this client")
	// ErrShortBody means the request body ended before its declared length.
	ErrShortBody = errors.New("body shorter than declared")
	// ErrDigestMismatch means the session's bytes do not hash to the digest
	// the client named when closing it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrBusy means another request on the session is in progress (a chunk
	// still arriving). Nothing waits for it: a request that finds the
	// session busy fails at once and changes nothing.
	ErrBusy = errors.New("upload session busy with another request")
	// ErrLongBody means a chunk's body held more bytes than its declared
	// length (Content-Range); the chunk is refused and nothing is kept.
	ErrLongBody = errors.New("body longer than declared")
)

// Config configures a Manager.
type Config struct {
	// Dir holds the staged files. It must be on the same filesystem as the
	// blob store for closing a session to be a rename.
	Dir string
	// IdleTimeout is how long a session may go without a request before it
	// is removed. Zero means 1 hour.
	IdleTimeout time.Duration
	// MaxSessions bounds the open sessions of the node. Zero means 10,000.
	MaxSessions int
	// MaxPerClient bounds the open sessions of one client (see StartFor),
	// so that one client abandoning sessions cannot take every slot of
	// the node. Zero means 1,000.
	MaxPerClient int
	// IDPrefix starts every session id, so that the id names the node that
	// holds the session: regiond uses "<region>.<zone>." and the traffic
	// manager pins every request of the session to that node.
	IDPrefix string
	// Logger receives the manager's logs; nil discards them.
	Logger *slog.Logger
}

// Manager holds a node's upload sessions. It is safe for concurrent use.
// One request at a time works on a session; a second one that arrives
// meanwhile fails with ErrBusy instead of waiting, and Size and Cancel
// answer at once whatever the session is doing, so that neither a client
// nor expiry ever waits on a chunk that trickles in.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	sessions  map[string]*Session
	perClient map[string]int // open sessions by client
}

// Session is one upload in progress.
type Session struct {
	ID      string
	Repo    string
	Started time.Time
	// Client is who opened the session (an address), "" when unknown.
	Client string

	// mu guards the fields below. A request (Append, StoreWhole, Finish)
	// holds it for its whole length, after claiming busy; everything else
	// holds it briefly, and takes it only when busy is clear or with
	// TryLock, so that nothing queues behind a request whose body is slow.
	mu       sync.Mutex
	size     int64
	hash     hash.Hash // sha256 of bytes [0, size); nil until rebuilt
	lastUsed time.Time
	done     bool

	// busy is set while a request works on the session; committed mirrors
	// size for readers that do not hold mu (the status of a busy session);
	// cancelled is set by Cancel on a busy session, whose request removes
	// it when it ends.
	busy      atomic.Bool
	committed atomic.Int64
	cancelled atomic.Bool
}

// Busy reports whether a request is working on the session (a chunk still
// arriving).
func (s *Session) Busy() bool { return s.busy.Load() }

// setSize records the session's size; mu must be held.
func (s *Session) setSize(n int64) {
	s.size = n
	s.committed.Store(n)
}

// begin takes the session for one request: ErrBusy when another request
// has it, ErrUnknown when it is over. The request ends with Manager.end.
func (m *Manager) begin(s *Session) error {
	if !s.busy.CompareAndSwap(false, true) {
		if s.cancelled.Load() {
			return ErrUnknown
		}
		return ErrBusy
	}
	s.mu.Lock()
	if s.done || s.cancelled.Load() {
		return m.end(s, ErrUnknown)
	}
	return nil
}

// end releases the session after a request that returned err. A session
// cancelled while the request ran (and not finished by it) is removed now
// and the request fails with ErrUnknown. busy is cleared before cancelled
// is read, and Cancel sets cancelled before it reads busy, so one of them
// always sees the other and removes the files.
func (m *Manager) end(s *Session, err error) error {
	s.busy.Store(false)
	if s.cancelled.Load() && !s.done {
		m.removeLocked(s)
		err = ErrUnknown
	}
	s.mu.Unlock()
	return err
}

type info struct {
	Repo    string    `json:"repo"`
	Started time.Time `json:"started"`
	Client  string    `json:"client,omitempty"`
}

// New opens the manager on cfg.Dir and recovers the sessions found there.
func New(cfg Config) (*Manager, error) {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Hour
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 10000
	}
	if cfg.MaxPerClient == 0 {
		cfg.MaxPerClient = 1000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	m := &Manager{cfg: cfg, log: log, sessions: map[string]*Session{}, perClient: map[string]int{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	for _, e := range entries {
		id := e.Name()
		b, err := os.ReadFile(filepath.Join(cfg.Dir, id, "info"))
		var inf info
		if err == nil {
			err = json.Unmarshal(b, &inf)
		}
		st, err2 := os.Stat(filepath.Join(cfg.Dir, id, "data"))
		if err != nil || err2 != nil {
			os.RemoveAll(filepath.Join(cfg.Dir, id))
			continue
		}
		s := &Session{ID: id, Repo: inf.Repo, Started: inf.Started, Client: inf.Client, lastUsed: time.Now()}
		s.setSize(st.Size())
		m.sessions[id] = s
		if inf.Client != "" {
			m.perClient[inf.Client]++
		}
	}
	if len(m.sessions) > 0 {
		log.Info("recovered upload sessions", "count", len(m.sessions))
	}
	return m, nil
}

// Start opens a new session for repo, for a client of unknown address.
func (m *Manager) Start(repo string) (*Session, error) { return m.StartFor(repo, "") }

// StartFor opens a new session for repo on behalf of client (its address,
// "" when unknown). It fails with ErrTooMany when the node holds
// Config.MaxSessions sessions and with ErrTooManyForClient when client
// holds Config.MaxPerClient.
func (m *Manager) StartFor(repo, client string) (*Session, error) {
	if err := m.admit(client); err != nil {
		return nil, err
	}
	s := &Session{ID: m.cfg.IDPrefix + uuid.NewString(), Repo: repo, Started: time.Now().UTC(), Client: client, hash: sha256.New(), lastUsed: time.Now()}
	// The files are made outside the manager's lock: creating inodes is the
	// slow part of starting a session, and sessions do not share files.
	dir := filepath.Join(m.cfg.Dir, s.ID)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	b, _ := json.Marshal(info{Repo: repo, Started: s.Started, Client: client})
	if err := os.WriteFile(filepath.Join(dir, "info"), b, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("upload: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("upload: %w", err)
	}
	f.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.admitLocked(client); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	m.sessions[s.ID] = s
	if client != "" {
		m.perClient[client]++
	}
	return s, nil
}

// admit checks the node's and the client's session limits before the
// session's files are made; admitLocked checks them again once they are.
func (m *Manager) admit(client string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.admitLocked(client)
}

func (m *Manager) admitLocked(client string) error {
	if len(m.sessions) >= m.cfg.MaxSessions {
		return ErrTooMany
	}
	if client != "" && m.perClient[client] >= m.cfg.MaxPerClient {
		return ErrTooManyForClient
	}
	return nil
}

// Get returns the session id of repo, or ErrUnknown.
func (m *Manager) Get(repo, id string) (*Session, error) {
	m.mu.Lock()
	s := m.sessions[id]
	m.mu.Unlock()
	if s == nil || s.Repo != repo {
		return nil, ErrUnknown
	}
	return s, nil
}

// Count returns the number of open sessions.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *Manager) dataPath(s *Session) string { return filepath.Join(m.cfg.Dir, s.ID, "data") }

// Size returns the number of bytes the session holds. It never waits: on
// a session busy with a chunk it returns the bytes held before that chunk
// (the chunk counts once it is complete).
func (m *Manager) Size(s *Session) (int64, error) {
	if s.cancelled.Load() {
		return 0, ErrUnknown
	}
	if !s.mu.TryLock() {
		return s.committed.Load(), nil
	}
	defer s.mu.Unlock()
	if s.done {
		return 0, ErrUnknown
	}
	s.lastUsed = time.Now()
	return s.size, nil
}

// Append writes a chunk that must start at offset start (-1: wherever the
// session ends) and holds length bytes (-1: until r ends). With a length,
// r must end there: a body longer than its declared length fails with
// ErrLongBody, a shorter one with ErrShortBody. It returns the session's
// new size. On any error the session is left as it was. It fails at once
// with ErrBusy while another request works on the session.
func (m *Manager) Append(ctx context.Context, s *Session, start, length int64, r io.Reader) (size int64, err error) {
	if err := m.begin(s); err != nil {
		return s.committed.Load(), err
	}
	defer func() { err = m.end(s, err) }()
	s.lastUsed = time.Now()
	if start >= 0 && start != s.size {
		return s.size, fmt.Errorf("%w: chunk starts at %d, session holds %d bytes", ErrOutOfOrder, start, s.size)
	}
	if err := m.rebuildHash(s); err != nil {
		return s.size, err
	}
	f, err := os.OpenFile(m.dataPath(s), os.O_WRONLY, 0)
	if err != nil {
		return s.size, fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.size, io.SeekStart); err != nil {
		return s.size, fmt.Errorf("upload: %w", err)
	}
	src := r
	if length >= 0 {
		// One byte more than declared tells a long body from an exact one.
		src = io.LimitReader(r, length+1)
	}
	// Hash a copy of the chunk so a rolled-back chunk does not poison the
	// session's running hash.
	h := cloneHash(s.hash)
	buf := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(storage.NewWriteBehind(f, s.size), h), ctxReader{ctx, src}, *buf)
	copyBuffers.Put(buf)
	switch {
	case err == nil && length >= 0 && n > length:
		err = fmt.Errorf("%w: more than the %d bytes declared", ErrLongBody, length)
	case err == nil && length >= 0 && n != length:
		err = fmt.Errorf("%w: got %d of %d bytes", ErrShortBody, n, length)
	}
	if err != nil {
		if terr := f.Truncate(s.size); terr != nil {
			// The staged file can no longer be trusted; drop the session.
			m.log.Error("upload: rollback failed, dropping session", "id", s.ID, "err", terr)
			m.removeLocked(s)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %v", ErrShortBody, err)
		}
		return s.size, err
	}
	s.setSize(s.size + n)
	s.hash = h
	return s.size, nil
}

// StoreWhole hands a still empty session's content to store instead of
// staging it: when the request that closes the session carries every byte
// (a monolithic upload on a session, the way many clients push), the blob
// store can take them straight from the request, and, in a zone-replicated
// region, stream them to the other zones while they arrive. It returns
// false without calling store when the session already holds bytes. The
// session is locked while store runs, so no chunk can slip in; it is
// removed when store succeeds and left as it was (empty and open) when
// store fails.
func (m *Manager) StoreWhole(s *Session, store func() error) (stored bool, err error) {
	if err := m.begin(s); err != nil {
		return false, err
	}
	defer func() { err = m.end(s, err) }()
	s.lastUsed = time.Now()
	if s.size != 0 {
		return false, nil
	}
	if err := store(); err != nil {
		s.lastUsed = time.Now()
		return true, err
	}
	// Stored: the blob is in, whether or not the session was cancelled
	// meanwhile.
	m.removeLocked(s)
	return true, nil
}

// Finish checks that the session's bytes hash to want and returns the path
// of the staged file, which the caller moves into the blob store, and its
// size. The session is then closed; call Remove when the file has been
// taken (or to discard it). On ErrDigestMismatch the session is closed and
// removed.
func (m *Manager) Finish(s *Session, want digest.Digest) (path string, size int64, err error) {
	if err := m.begin(s); err != nil {
		return "", 0, err
	}
	defer func() { err = m.end(s, err) }()
	var got digest.Digest
	if want.Algorithm() == digest.SHA256 {
		if err := m.rebuildHash(s); err != nil {
			return "", 0, err
		}
		got = digest.NewDigest(digest.SHA256, s.hash)
	} else {
		f, err := os.Open(m.dataPath(s))
		if err != nil {
			return "", 0, fmt.Errorf("upload: %w", err)
		}
		got, err = want.Algorithm().FromReader(f)
		f.Close()
		if err != nil {
			return "", 0, fmt.Errorf("upload: %w", err)
		}
	}
	s.done = true
	if got != want {
		m.removeLocked(s)
		return "", 0, fmt.Errorf("%w: content is %s, client said %s", ErrDigestMismatch, got, want)
	}
	return m.dataPath(s), s.size, nil
}

// Remove deletes the session and whatever is left of its files. It waits
// for a request working on the session; only the request that finished the
// session calls it.
func (m *Manager) Remove(s *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.removeLocked(s)
}

func (m *Manager) removeLocked(s *Session) {
	s.done = true
	m.forget(s)
	if err := os.RemoveAll(filepath.Join(m.cfg.Dir, s.ID)); err != nil {
		m.log.Warn("upload: remove session files", "id", s.ID, "err", err)
	}
}

// Cancel removes the session of repo with the given id. It never waits:
// a session busy with a request is taken out of the manager at once (its
// slot is free, later requests find it unknown) and its files are removed
// when that request ends, which then fails with ErrUnknown; Cancel
// reports that case with ErrBusy.
func (m *Manager) Cancel(repo, id string) error {
	s, err := m.Get(repo, id)
	if err != nil {
		return err
	}
	if s.cancelled.Swap(true) {
		return ErrUnknown
	}
	m.forget(s)
	// Not busy, mu is held at most briefly (a status, expiry, or a request
	// that has just ended); busy, the request removes the session when it
	// ends (see end).
	for !s.mu.TryLock() {
		if s.busy.Load() {
			return ErrBusy
		}
		time.Sleep(time.Millisecond)
	}
	defer s.mu.Unlock()
	if s.done {
		return ErrUnknown
	}
	m.removeLocked(s)
	return nil
}

// forget takes s out of the manager's table and the client's count.
func (m *Manager) forget(s *Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[s.ID]; ok && s.Client != "" {
		if m.perClient[s.Client]--; m.perClient[s.Client] <= 0 {
			delete(m.perClient, s.Client)
		}
	}
	delete(m.sessions, s.ID)
}

// Expire removes sessions idle for longer than the idle timeout and returns
// how many it removed. A session with a request in progress is not idle and
// is skipped without waiting for it: one slow client must not hold up the
// expiry of every other session.
func (m *Manager) Expire(now time.Time) int {
	m.mu.Lock()
	var idle []*Session
	for _, s := range m.sessions {
		idle = append(idle, s)
	}
	m.mu.Unlock()
	n := 0
	for _, s := range idle {
		if !s.mu.TryLock() {
			continue
		}
		if now.Sub(s.lastUsed) > m.cfg.IdleTimeout && !s.done {
			m.removeLocked(s)
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// Run expires idle sessions until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(max(m.cfg.IdleTimeout/10, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := m.Expire(now); n > 0 {
				m.log.Info("expired idle upload sessions", "count", n)
			}
		}
	}
}

// rebuildHash recomputes the running hash from the staged file after a
// restart.
func (m *Manager) rebuildHash(s *Session) error {
	if s.hash != nil {
		return nil
	}
	f, err := os.Open(m.dataPath(s))
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, s.size); err != nil {
		return fmt.Errorf("upload: rehash %s: %w", s.ID, err)
	}
	s.hash = h
	return nil
}

// cloneHash copies a running hash so a chunk can be hashed tentatively.
func cloneHash(h hash.Hash) hash.Hash {
	c, err := h.(hash.Cloner).Clone()
	if err != nil {
		panic(err) // the standard library's sha256 always clones
	}
	return c
}

// copyBuffers holds 1 MiB buffers: large writes keep system calls few on
// big layers.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
