package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteBehindStarts checks that the write-back is started once per
// writeBehindEvery bytes, whatever the size of the writes, and that the
// file gets every byte.
func TestWriteBehindStarts(t *testing.T) {
	tests := []struct {
		name      string
		total     int
		writeSize int
		want      int64 // bytes whose write-back was started
	}{
		{"nothing", 0, 1, 0},
		{"under one step", writeBehindEvery - 1, 256 << 10, 0},
		{"one step exactly", writeBehindEvery, 256 << 10, writeBehindEvery},
		// The 84th write passes the first step; the rest stay under a second.
		{"uneven writes", 2*writeBehindEvery + 5, 100_003, 84 * 100_003},
		{"one large write", 3*writeBehindEvery + 1, 3*writeBehindEvery + 1, 3*writeBehindEvery + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			data := bytes.Repeat([]byte{0xa5}, tt.total)
			w := newWriteBehind(f)
			for p := data; len(p) > 0; {
				n := min(tt.writeSize, len(p))
				if _, err := w.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
			if w.started != tt.want {
				t.Errorf("write-back started for %d bytes, want %d", w.started, tt.want)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("file holds %d bytes, want the %d written", len(got), len(data))
			}
		})
	}
}

// TestWriteBehindError: a failed write is reported, not hidden by the
// write-back.
func TestWriteBehindError(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
	if err != nil {
		t.Fatal(err)
	}
	w := newWriteBehind(f)
	f.Close()
	if _, err := w.Write(make([]byte, writeBehindEvery)); err == nil {
		t.Error("Write to a closed file succeeded")
	}
}
