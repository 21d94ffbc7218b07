package chaos

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/zone"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// The tests in this file check the suite's own machinery without a mesh:
// that the recorder and the invariants catch what they exist to catch.

func TestLongestGap(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(loc string, ms int) Op { return Op{Location: loc, End: at(ms)} }
	bad := func(loc string, ms int) Op { return Op{Location: loc, End: at(ms), Err: "boom"} }
	tests := []struct {
		name     string
		ops      []Op
		from, to int
		want     time.Duration
		where    string
	}{
		{"no window", []Op{ok("a", 5)}, 0, 0, 0, ""},
		{"steady successes", []Op{ok("a", 100), ok("a", 200), ok("a", 300)}, 50, 350, 100 * time.Millisecond, "a"},
		{"failures do not count", []Op{ok("a", 100), bad("a", 500), ok("a", 900)}, 0, 1000, 800 * time.Millisecond, "a"},
		{"gap to the window's end", []Op{ok("a", 100)}, 0, 1000, 900 * time.Millisecond, "a"},
		{"worst location wins", []Op{ok("a", 100), ok("a", 700), ok("b", 100), ok("b", 750)}, 0, 800, 650 * time.Millisecond, "b"},
		{"ops outside the window", []Op{ok("a", -500), ok("a", 100), ok("a", 2000)}, 0, 200, 100 * time.Millisecond, "a"},
		{"direct and random ops do not count", []Op{ok("a", 100), ok("direct:westus/1", 150), ok("random", 160)}, 0, 200, 100 * time.Millisecond, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var from, to time.Time
			if tt.to > tt.from {
				from, to = at(tt.from), at(tt.to)
			}
			got, where := LongestGap(tt.ops, from, to)
			if got != tt.want || where != tt.where {
				t.Errorf("LongestGap = %v in %q, want %v in %q", got, where, tt.want, tt.where)
			}
		})
	}
}

func TestLeaks(t *testing.T) {
	base := Resources{Goroutines: 100, FDs: 30, Sockets: 20, Uploads: 0}
	tests := []struct {
		name  string
		after Resources
		want  []string // substrings, one per violation
	}{
		{"same", base, nil},
		{"within slack", Resources{Goroutines: 120, FDs: 40, Sockets: 20}, nil},
		{"goroutines beyond slack", Resources{Goroutines: 121, FDs: 30, Sockets: 20}, []string{"goroutines"}},
		{"pooled sockets bring their goroutines", Resources{Goroutines: 100 + 20 + 4*10, FDs: 40, Sockets: 30}, nil},
		{"goroutines beyond the sockets' share", Resources{Goroutines: 100 + 20 + 4*10 + 1, FDs: 40, Sockets: 30}, []string{"goroutines"}},
		{"file leak", Resources{Goroutines: 100, FDs: 41, Sockets: 20}, []string{"open files"}},
		{"socket leak", Resources{Goroutines: 100 + 20 + 4*65, FDs: 30 + 65, Sockets: 20 + 65}, []string{"sockets"}},
		{"upload sessions", Resources{Goroutines: 100, FDs: 30, Sockets: 20, Uploads: 1}, []string{"upload sessions"}},
		{"sockets unknown", Resources{Goroutines: 100, FDs: 30 + FileSlack + SocketSlack + 1, Sockets: -1}, []string{"open fds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := leaks("n", base, tt.after, SocketSlack)
			if len(got) != len(tt.want) {
				t.Fatalf("leaks = %q, want %d violations %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}

func TestCheckTags(t *testing.T) {
	d1, d2, d3 := digest.FromString("1"), digest.FromString("2"), digest.FromString("3")
	push := func(tag string, d digest.Digest, acked bool) Op {
		return Op{Kind: OpOverwrite, Repo: "r", Tag: tag, Digest: d, Acked: acked}
	}
	tests := []struct {
		name   string
		ops    []Op
		agreed ociclient.RepoMap
		want   int
	}{
		{"last writer of two", []Op{push("t", d1, true), push("t", d2, true)}, ociclient.RepoMap{"r": {"t": d2}}, 0},
		{"an unacknowledged write may win", []Op{push("t", d1, true), push("t", d2, false)}, ociclient.RepoMap{"r": {"t": d2}}, 0},
		{"a digest nobody wrote to the tag", []Op{push("t", d1, true), push("u", d3, true)}, ociclient.RepoMap{"r": {"t": d3, "u": d3}}, 1},
		{"an acknowledged tag vanished", []Op{push("t", d1, true)}, ociclient.RepoMap{}, 1},
		{"a deleted tag may vanish", []Op{push("t", d1, true), {Kind: OpDelete, Repo: "r", Tag: "t"}}, ociclient.RepoMap{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkTags(context.Background(), &Evidence{Ops: tt.ops, Converged: true, Agreed: tt.agreed})
			if len(got) != tt.want {
				t.Errorf("checkTags = %q, want %d violations", got, tt.want)
			}
		})
	}
	if got := checkTags(context.Background(), &Evidence{}); len(got) != 1 {
		t.Errorf("checkTags without convergence = %q, want one violation", got)
	}
}

func TestLeaderSampler(t *testing.T) {
	st := func(state string, term uint64) zone.Status {
		var s zone.Status
		s.Raft.State, s.Raft.Term = state, term
		return s
	}
	a, b := harness.Node{Region: "r", Zone: 1}, harness.Node{Region: "r", Zone: 2}
	tests := []struct {
		name           string
		samples        func(s *LeaderSampler)
		violations     int
		notes, leaders int
	}{
		{"one leader per term", func(s *LeaderSampler) {
			s.add(a, st("Leader", 2))
			s.add(a, st("Leader", 2))
			s.add(b, st("Follower", 2))
			s.add(b, st("Leader", 3))
			s.add(b, st("Leader", 3))
		}, 0, 0, 2},
		{"two confirmed leaders of one term", func(s *LeaderSampler) {
			s.add(a, st("Leader", 2))
			s.add(a, st("Leader", 2))
			s.add(b, st("Leader", 2))
			s.add(b, st("Leader", 2))
		}, 1, 0, 1},
		{"a single torn sample is a note", func(s *LeaderSampler) {
			s.add(a, st("Leader", 2))
			s.add(a, st("Leader", 2))
			s.add(b, st("Leader", 2))
			s.add(b, st("Follower", 3))
		}, 0, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &LeaderSampler{last: map[string]nodeSample{}, leaders: map[leaderKey]map[string]bool{}, glimpse: map[leaderKey]map[string]bool{}}
			tt.samples(s)
			v, notes, leaders, _ := s.Result()
			if len(v) != tt.violations || len(notes) != tt.notes || leaders != tt.leaders {
				t.Errorf("Result = violations %q, notes %q, %d leaderships; want %d, %d, %d", v, notes, leaders, tt.violations, tt.notes, tt.leaders)
			}
		})
	}
}

// fakeRegistry serves one image, optionally with a wrong byte in a blob or
// without one of its blobs.
func fakeRegistry(t *testing.T, img ociclient.Image, mode string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Georeg-Region", "fake")
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/"+img.Digest.String()):
			w.Header().Set("Docker-Content-Digest", img.Digest.String())
			w.Write(img.Manifest)
		case strings.Contains(r.URL.Path, "/blobs/"):
			for _, b := range img.Blobs() {
				if !strings.HasSuffix(r.URL.Path, b.Digest.String()) {
					continue
				}
				data := b.Data
				switch {
				case mode == "flip" && b.Digest == img.Layers[0].Digest:
					data = append([]byte(nil), data...)
					data[len(data)/2] ^= 1
				case mode == "short" && b.Digest == img.Layers[0].Digest:
					data = data[:len(data)-1]
				case mode == "missing" && b.Digest == img.Layers[0].Digest:
					w.WriteHeader(http.StatusNotFound)
					json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "BLOB_UNKNOWN"}}})
					return
				}
				w.Write(data)
				return
			}
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRecorderPullChecksBytes(t *testing.T) {
	img := ociclient.NewImage("x", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1, 4096)))
	tests := []struct {
		mode                  string
		failed, bad, missingB bool
	}{
		{"good", false, false, false},
		{"flip", true, true, false},
		{"short", true, true, false},
		{"missing", true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			srv := fakeRegistry(t, img, tt.mode)
			h := &History{}
			rc := NewRecorder(&Mesh{Mesh: &harness.Mesh{Locations: map[string]string{"here": srv.URL}}}, h, 5*time.Second)
			op := rc.Pull(context.Background(), PullSpec{Kind: OpPull, Location: "here", Repo: "r", Ref: img.Digest.String()})
			if op.Failed() != tt.failed || op.BadBytes != tt.bad || op.MissingBlob != tt.missingB {
				t.Errorf("pull: failed %v (%s), bad bytes %v, missing blob %v; want %v, %v, %v", op.Failed(), op.Err, op.BadBytes, op.MissingBlob, tt.failed, tt.bad, tt.missingB)
			}
			if op.Region != "fake" || h.Len() != 1 {
				t.Errorf("recorded region %q and %d ops, want fake and 1", op.Region, h.Len())
			}
			ev := &Evidence{Ops: h.Ops()}
			if got := len(checkNoBadBytes(context.Background(), ev)) > 0; got != tt.bad {
				t.Errorf("I2 violated = %v, want %v", got, tt.bad)
			}
			if got := len(checkPulls(context.Background(), ev)) > 0; got != tt.failed {
				t.Errorf("I5 violated = %v, want %v", got, tt.failed)
			}
		})
	}
}

func TestScoreboardWrite(t *testing.T) {
	s := &Scoreboard{Generated: time.Now(), Mode: "test"}
	s.Add(Row{Scenario: "one", Faults: 2, Ops: 10, Converged: true, ConvergenceSeconds: 1.25, Passed: []string{"I1"}, Pass: true})
	s.Add(Row{Scenario: "two", Failed: []string{"I2"}, Missed: []string{"bad bytes"}, Notes: []string{"a figure"}})
	dir := t.TempDir()
	if err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "scoreboard.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| one | 2 | 10 | 0 | 0 | 0 | 0 | 1.2 s | - | none | pass |", "| two |", "not converged", "**FAIL**", "MISSED: bad bytes", "a figure"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("scoreboard.md lacks %q:\n%s", want, md)
		}
	}
	var back struct {
		Rows []Row `json:"rows"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "scoreboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Rows) != 2 || back.Rows[1].Missed[0] != "bad bytes" {
		t.Errorf("scoreboard.json: %v, %+v", err, back.Rows)
	}
}

func TestFlipByte(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blob")
	data := ociclient.RandomBytes(3, 1001)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	off, err := flipByte(p)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	diff := 0
	for i := range data {
		if data[i] != got[i] {
			diff++
		}
	}
	if off != 500 || len(got) != len(data) || diff != 1 || got[off] != data[off]^1 {
		t.Errorf("flipByte changed %d bytes at %d (size %d -> %d)", diff, off, len(data), len(got))
	}
}

func TestSiteSyncs(t *testing.T) {
	s := &siteHandle{spec: SiteSpec{Repositories: []string{"samples/*", "hello-world"}}}
	for repo, want := range map[string]bool{
		"samples/app": true, "samples/x/y": true, "hello-world": true,
		"samples": false, "hello-world2": false, "other/samples/app": false, "chaos/app0": false,
	} {
		if got := s.syncs(repo); got != want {
			t.Errorf("syncs(%q) = %v, want %v", repo, got, want)
		}
	}
}
