package upload

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestAppendAndFinish(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Start("repo")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name          string
		start, length int64
		body          string
		short         bool
		wantSize      int64
		wantErr       error
	}{
		{"first chunk", 0, 5, "hello", false, 5, nil},
		{"out of order", 3, 2, "xx", false, 5, ErrOutOfOrder},
		{"short body rolls back", 5, 10, " wor", false, 5, ErrShortBody},
		{"broken body rolls back", 5, -1, " world", true, 5, iotest.ErrTimeout},
		{"streamed chunk", -1, -1, " world", false, 11, nil},
	}
	for _, st := range steps {
		var r = strings.NewReader(st.body)
		var rd interface{ Read([]byte) (int, error) } = r
		if st.short {
			rd = iotest.TimeoutReader(iotest.OneByteReader(r))
		}
		size, err := m.Append(ctx, s, st.start, st.length, rd)
		if !errors.Is(err, st.wantErr) || size != st.wantSize {
			t.Fatalf("%s: size %d err %v; want %d %v", st.name, size, err, st.wantSize, st.wantErr)
		}
	}
	// A restart keeps the session and rebuilds its hash from the file.
	m2, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := m2.Get("repo", s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Get("other", s.ID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("session visible from another repository: %v", err)
	}
	if _, _, err := m2.Finish(s2, digest.FromString("nope")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Finish with a wrong digest: %v", err)
	}
	if _, err := m2.Get("repo", s.ID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("session survived a digest mismatch: %v", err)
	}

	s3, _ := m2.Start("repo")
	m2.Append(ctx, s3, 0, 11, strings.NewReader("hello world"))
	for _, d := range []digest.Digest{digest.SHA512.FromString("hello world")} {
		path, size, err := m2.Finish(s3, d)
		if err != nil || size != 11 {
			t.Fatalf("Finish(%s) = %d, %v", d, size, err)
		}
		b, _ := os.ReadFile(path)
		if string(b) != "hello world" {
			t.Fatalf("staged %q", b)
		}
		m2.Remove(s3)
	}
	if n := m2.Count(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestLimitsAndExpiry(t *testing.T) {
	m, err := New(Config{Dir: t.TempDir(), MaxSessions: 2, IdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m.Start("a")
	m.Start("a")
	if _, err := m.Start("a"); !errors.Is(err, ErrTooMany) {
		t.Fatalf("third session: %v", err)
	}
	if n := m.Expire(time.Now()); n != 0 {
		t.Fatalf("expired %d fresh sessions", n)
	}
	if n := m.Expire(time.Now().Add(2 * time.Minute)); n != 2 {
		t.Fatalf("expired %d idle sessions, want 2", n)
	}
	entries, _ := os.ReadDir(m.cfg.Dir)
	if len(entries) != 0 {
		t.Fatalf("%d session dirs left after expiry", len(entries))
	}
}

func TestStoreWhole(t *testing.T) {
	ctx := context.Background()
	m, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	errStore := errors.New("store failed")
	tests := []struct {
		name       string
		before     string // appended before StoreWhole
		closed     bool   // the session is removed before StoreWhole
		storeErr   error
		wantCalled bool
		wantStored bool
		wantErr    error
		wantOpen   bool // the session still exists afterwards
	}{
		{name: "empty session, stored", wantCalled: true, wantStored: true},
		{name: "empty session, store fails", storeErr: errStore, wantCalled: true, wantStored: true, wantErr: errStore, wantOpen: true},
		{name: "session holds bytes", before: "hello", wantOpen: true},
		{name: "closed session", closed: true, wantErr: ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := m.Start("repo")
			if err != nil {
				t.Fatal(err)
			}
			if tt.before != "" {
				if _, err := m.Append(ctx, s, 0, int64(len(tt.before)), strings.NewReader(tt.before)); err != nil {
					t.Fatal(err)
				}
			}
			if tt.closed {
				m.Remove(s)
			}
			called := false
			stored, err := m.StoreWhole(s, func() error {
				called = true
				return tt.storeErr
			})
			if called != tt.wantCalled || stored != tt.wantStored || !errors.Is(err, tt.wantErr) {
				t.Fatalf("called %v, stored %v, err %v; want %v %v %v", called, stored, err, tt.wantCalled, tt.wantStored, tt.wantErr)
			}
			_, gerr := m.Get("repo", s.ID)
			if open := gerr == nil; open != tt.wantOpen {
				t.Fatalf("session open %v, want %v", open, tt.wantOpen)
			}
			if tt.wantOpen {
				if size, err := m.Size(s); err != nil || size != int64(len(tt.before)) {
					t.Fatalf("session holds %d bytes (%v), want %d", size, err, len(tt.before))
				}
				m.Remove(s)
			}
		})
	}

	t.Run("a chunk sent meanwhile fails at once, changing nothing", func(t *testing.T) {
		s, err := m.Start("repo")
		if err != nil {
			t.Fatal(err)
		}
		stored, err := m.StoreWhole(s, func() error {
			if _, err := m.Append(ctx, s, -1, 5, strings.NewReader("hello")); !errors.Is(err, ErrBusy) {
				t.Errorf("chunk while the whole blob was being stored: %v, want ErrBusy", err)
			}
			return nil
		})
		if !stored || err != nil {
			t.Fatalf("stored %v, err %v", stored, err)
		}
		if _, err := m.Append(ctx, s, -1, 5, strings.NewReader("hello")); !errors.Is(err, ErrUnknown) {
			t.Fatalf("chunk after the session was closed: %v, want ErrUnknown", err)
		}
	})
	if entries, _ := os.ReadDir(m.cfg.Dir); len(entries) != 0 {
		t.Fatalf("%d session dirs left", len(entries))
	}
}

// stallingReader yields its bytes, then blocks until release is closed and
// fails the way a body past its read deadline does.
type stallingReader struct {
	data    io.Reader
	release chan struct{}
}

var errStalled = errors.New("body idle past its deadline")

func (r *stallingReader) Read(p []byte) (int, error) {
	if n, err := r.data.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	<-r.release
	return 0, errStalled
}

// TestBusySession covers a session whose chunk trickles in: nothing waits
// on it (expiry, status, cancel, another chunk) and when the chunk fails
// the session is as it was.
func TestBusySession(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// during runs while a chunk of the session is stalled.
		during func(t *testing.T, m *Manager, s *Session)
		// wantAppendErr is what the stalled chunk fails with.
		wantAppendErr error
		wantOpen      bool
	}{
		{
			name: "expiry skips the busy session and expires the idle ones",
			during: func(t *testing.T, m *Manager, s *Session) {
				for range 3 {
					if _, err := m.Start("idle"); err != nil {
						t.Fatal(err)
					}
				}
				if n := m.Expire(time.Now().Add(2 * time.Minute)); n != 3 {
					t.Errorf("expired %d sessions, want the 3 idle ones", n)
				}
			},
			wantAppendErr: errStalled, wantOpen: true,
		},
		{
			name: "status answers the bytes held before the chunk",
			during: func(t *testing.T, m *Manager, s *Session) {
				if size, err := m.Size(s); err != nil || size != 5 {
					t.Errorf("Size = %d, %v; want 5", size, err)
				}
			},
			wantAppendErr: errStalled, wantOpen: true,
		},
		{
			name: "another chunk fails at once",
			during: func(t *testing.T, m *Manager, s *Session) {
				if _, err := m.Append(ctx, s, 5, 1, strings.NewReader("x")); !errors.Is(err, ErrBusy) {
					t.Errorf("second chunk: %v, want ErrBusy", err)
				}
				if _, _, err := m.Finish(s, digest.FromString("hello")); !errors.Is(err, ErrBusy) {
					t.Errorf("Finish: %v, want ErrBusy", err)
				}
			},
			wantAppendErr: errStalled, wantOpen: true,
		},
		{
			name: "cancel answers at once; the chunk's request removes the session",
			during: func(t *testing.T, m *Manager, s *Session) {
				if err := m.Cancel("repo", s.ID); !errors.Is(err, ErrBusy) {
					t.Errorf("Cancel: %v, want ErrBusy", err)
				}
				if _, err := m.Get("repo", s.ID); !errors.Is(err, ErrUnknown) {
					t.Errorf("cancelled session still listed: %v", err)
				}
				if _, err := m.Size(s); !errors.Is(err, ErrUnknown) {
					t.Errorf("Size of a cancelled session: %v", err)
				}
			},
			wantAppendErr: ErrUnknown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(Config{Dir: t.TempDir(), IdleTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			s, err := m.Start("repo")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Append(ctx, s, 0, 5, strings.NewReader("hello")); err != nil {
				t.Fatal(err)
			}
			r := &stallingReader{data: strings.NewReader(" wor"), release: make(chan struct{})}
			appended := make(chan error, 1)
			go func() {
				_, err := m.Append(ctx, s, 5, 6, r)
				appended <- err
			}()
			for !s.busy.Load() {
				time.Sleep(time.Millisecond)
			}
			done := make(chan struct{})
			go func() {
				tt.during(t, m, s)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("blocked on the busy session")
			}
			close(r.release)
			if err := <-appended; !errors.Is(err, tt.wantAppendErr) {
				t.Fatalf("stalled chunk: %v, want %v", err, tt.wantAppendErr)
			}
			_, gerr := m.Get("repo", s.ID)
			if open := gerr == nil; open != tt.wantOpen {
				t.Fatalf("session open %v, want %v", open, tt.wantOpen)
			}
			if tt.wantOpen {
				if size, err := m.Size(s); err != nil || size != 5 {
					t.Fatalf("after the failed chunk the session holds %d bytes (%v), want 5", size, err)
				}
			} else if _, err := os.Stat(filepath.Join(m.cfg.Dir, s.ID)); !os.IsNotExist(err) {
				t.Fatalf("cancelled session's files left: %v", err)
			}
		})
	}
}

func TestChunkLength(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		length   int64
		body     string
		wantErr  error
		wantSize int64
	}{
		{"exact", 3, "abc", nil, 5},
		{"longer than declared: refused, nothing kept", 3, "abcdefghij", ErrLongBody, 2},
		{"shorter than declared: refused, nothing kept", 3, "a", ErrShortBody, 2},
		{"no length: until the body ends", -1, "abcdefghij", nil, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			s, _ := m.Start("repo")
			if _, err := m.Append(ctx, s, 0, 2, strings.NewReader("xy")); err != nil {
				t.Fatal(err)
			}
			size, err := m.Append(ctx, s, 2, tt.length, strings.NewReader(tt.body))
			if !errors.Is(err, tt.wantErr) || size != tt.wantSize {
				t.Fatalf("Append = %d, %v; want %d, %v", size, err, tt.wantSize, tt.wantErr)
			}
			if st, _ := os.Stat(m.dataPath(s)); st.Size() != tt.wantSize {
				t.Fatalf("staged file holds %d bytes, want %d", st.Size(), tt.wantSize)
			}
		})
	}
}
