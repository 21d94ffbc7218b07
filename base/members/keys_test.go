package members

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
)

func TestReadKeyFile(t *testing.T) {
	k16 := base64.StdEncoding.EncodeToString(make([]byte, 16))
	k32, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		want    int // keys read; -1: an error
		wantErr error
	}{
		{"one key", k32 + "\n", 1, nil},
		{"two keys, comments and blanks", "# primary\n" + k32 + "\n\n" + k16 + "\n", 2, nil},
		{"empty", "# nothing\n", -1, ErrNoKey},
		{"not base64", "not a key!\n", -1, nil},
		{"wrong length", base64.StdEncoding.EncodeToString(make([]byte, 20)) + "\n", -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "gossip.key")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, err := ReadKeyFile(p)
			if tt.want < 0 {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("ReadKeyFile: %v, want an error wrapping %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(keys) != tt.want {
				t.Fatalf("ReadKeyFile: %d keys, %v; want %d", len(keys), err, tt.want)
			}
			if first := base64.StdEncoding.EncodeToString(keys[0]); first != k32 {
				t.Errorf("first key %s, want the file's first, %s", first, k32)
			}
		})
	}
}

// TestKeys: nodes holding the cluster's key see each other, one midway
// through a rotation (the old key first, a new one second) included; a
// node without the key, or with another, is never seen.
func TestKeys(t *testing.T) {
	key := func() []byte {
		s, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		k, _ := base64.StdEncoding.DecodeString(s)
		return k
	}
	old, next, other := key(), key(), key()
	ports := freeport.TCPAndUDP(t, 4)
	seed := []string{gossipAddr(ports[0])}
	a := startKeyed(t, testMember("westus", 1, ports[0]), ports[0], nil, [][]byte{old})
	b := startKeyed(t, testMember("westus", 2, ports[1]), ports[1], seed, [][]byte{old, next})
	plain := startKeyed(t, testMember("westus", 3, ports[2]), ports[2], seed, nil)
	stranger := startKeyed(t, testMember("westus", 4, ports[3]), ports[3], seed, [][]byte{other})
	waitFor(t, "the keyed nodes to see each other", func() bool { return len(a.Alive()) == 2 && len(b.Alive()) == 2 })
	// Give the others time to try (they retry their joins every 100 ms
	// and more).
	time.Sleep(2 * time.Second)
	for _, l := range []*List{a, b} {
		for _, m := range l.Alive() {
			if m.ID != "westus-1" && m.ID != "westus-2" {
				t.Errorf("%s sees %s, which lacks the key", l.Self().ID, m.ID)
			}
		}
	}
	for _, l := range []*List{plain, stranger} {
		if n := len(l.Alive()); n != 1 {
			t.Errorf("%s, without the key, sees %d members: %v", l.Self().ID, n, l.Alive())
		}
	}
	if _, err := Start(context.Background(), Config{Self: testMember("westus", 5, 1), BindAddr: "127.0.0.1:0", Keys: [][]byte{make([]byte, 7)}}); err == nil {
		t.Error("Start accepted a 7-byte key")
	}
}

func startKeyed(t *testing.T, self Member, port int, join []string, keys [][]byte) *List {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Start(ctx, Config{Self: self, BindAddr: gossipAddr(port), Join: join, Keys: keys, Logger: testLogger(t).With("node", self.ID)})
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", self.ID, err)
	}
	t.Cleanup(func() {
		cancel()
		l.ml.Shutdown()
	})
	return l
}

// TestSetKeys rotates the key of a running two-node gossip in the three
// steps ReadKeyFile describes; the nodes keep seeing each other
// throughout, and afterwards a node holding only the new key joins while
// one holding only the old key cannot.
func TestSetKeys(t *testing.T) {
	key := func() []byte {
		s, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		k, _ := base64.StdEncoding.DecodeString(s)
		return k
	}
	old, next := key(), key()
	ports := freeport.TCPAndUDP(t, 4)
	seed := []string{gossipAddr(ports[0])}
	a := startKeyed(t, testMember("westus", 1, ports[0]), ports[0], nil, [][]byte{old})
	b := startKeyed(t, testMember("westus", 2, ports[1]), ports[1], seed, [][]byte{old})
	waitFor(t, "the nodes to see each other", func() bool { return len(a.Alive()) == 2 && len(b.Alive()) == 2 })
	for i, step := range [][][]byte{{old, next}, {next, old}, {next}} {
		for _, l := range []*List{a, b} {
			if err := l.SetKeys(step); err != nil {
				t.Fatalf("step %d: %v", i+1, err)
			}
		}
		// Several gossip and probe rounds under the new keyring.
		time.Sleep(time.Second)
		if len(a.Alive()) != 2 || len(b.Alive()) != 2 {
			t.Fatalf("step %d: a sees %v, b sees %v", i+1, a.Alive(), b.Alive())
		}
	}
	if got := len(a.keyring.GetKeys()); got != 1 {
		t.Errorf("a holds %d keys after the rotation, want 1", got)
	}
	stale := startKeyed(t, testMember("westus", 3, ports[2]), ports[2], seed, [][]byte{old})
	fresh := startKeyed(t, testMember("westus", 4, ports[3]), ports[3], seed, [][]byte{next})
	waitFor(t, "the node with the new key to join", func() bool { return len(fresh.Alive()) == 3 })
	if n := len(stale.Alive()); n != 1 {
		t.Errorf("the node with the old key sees %d members", n)
	}
	plain := &List{}
	if err := plain.SetKeys([][]byte{next}); !errors.Is(err, ErrNoKeyring) {
		t.Errorf("SetKeys without a keyring: %v, want ErrNoKeyring", err)
	}
	if err := a.SetKeys(nil); !errors.Is(err, ErrNoKey) {
		t.Errorf("SetKeys(nil): %v, want ErrNoKey", err)
	}
}
