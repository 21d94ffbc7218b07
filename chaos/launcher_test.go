package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/internal/syncbuf"
)

// fakeEnv makes the test binary act as a regiond stand-in: the launcher
// tests start os.Executable() as their "regiond", and TestMain turns it into
// fakeRegiond before the testing package sees the arguments.
const fakeEnv = "GEOREG_CHAOS_FAKE_REGIOND"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		os.Exit(fakeRegiond(os.Args[1:]))
	}
	// Every node a test starts inherits it.
	os.Setenv(fakeEnv, "1")
	os.Exit(m.Run())
}

// fakeRegiond accepts regiond's flags and serves GET /v2/. --fake-mode
// changes its behaviour: "exit" fails at once, "hang" never listens,
// "stubborn" ignores SIGTERM, "503" answers /v2/ with 503.
func fakeRegiond(args []string) int {
	fs := flag.NewFlagSet("fakeregiond", flag.ContinueOnError)
	region := fs.String("region", "", "")
	zone := fs.Int("zone", 0, "")
	addr := fs.String("http", "", "")
	data := fs.String("data", "", "")
	mode := fs.String("fake-mode", "", "")
	fs.String("max-manifest-bytes", "", "")
	for _, name := range []string{"zones", "home", "grpc", "raft", "gossip", "join", "tls-cert", "tls-key", "tls-ca", "gossip-key-file"} {
		fs.String(name, "", "")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Printf("fake regiond %s/%d starting on %s, mode %q\n", *region, *zone, *addr, *mode)
	// Each start is recorded in the data directory, so tests can see that
	// a restart reuses it.
	f, err := os.OpenFile(filepath.Join(*data, "starts"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	f.WriteString("start\n")
	f.Close()
	switch *mode {
	case "exit":
		fmt.Println("fake regiond: refusing to start: bad configuration")
		return 1
	case "hang":
		select {}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	status := http.StatusOK
	if *mode == "503" {
		status = http.StatusServiceUnavailable
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.WriteHeader(status)
	})}
	go func() {
		if *mode == "stubborn" {
			return
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		<-c
		fmt.Println("fake regiond: SIGTERM, stopping")
		srv.Close()
	}()
	srv.Serve(l)
	return 0
}

// testMesh is a controller on a fresh directory whose mesh is stopped when
// the test ends, so no fake node outlives it.
type testMesh struct {
	*Controller
	out  *syncbuf.Buffer
	port int
}

func newTestMesh(t *testing.T) *testMesh {
	t.Helper()
	out := &syncbuf.Buffer{}
	c, err := NewController(Config{Dir: t.TempDir(), Out: out, Progress: out, ProbeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Down(context.Background(), DownConfig{Grace: 2 * time.Second}); err != nil {
			t.Errorf("cleanup: Down: %v", err)
		}
		if t.Failed() {
			t.Logf("controller output:\n%s", out)
		}
	})
	return &testMesh{Controller: c, out: out, port: freeport.Block(t, 10)}
}

func (tm *testMesh) config(t *testing.T, regions []string, zones int, nodeArgs ...string) UpConfig {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return UpConfig{Regions: regions, Zones: zones, Port: tm.port, Regiond: exe, NodeArgs: nodeArgs, Wait: 20 * time.Second}
}

// states returns "name=state" for every node, in mesh order.
func (tm *testMesh) states(t *testing.T) string {
	t.Helper()
	st, err := tm.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range st.Regions {
		for _, z := range r.Zones {
			if (z.State == StateDown) != (z.PID == 0) {
				t.Errorf("%s/%d: state %s with pid %d", r.Name, z.Zone, z.State, z.PID)
			}
			s = append(s, fmt.Sprintf("%s/%d=%s", r.Name, z.Zone, z.State))
		}
	}
	return strings.Join(s, " ")
}

func TestLifecycleOneNode(t *testing.T) {
	ctx := context.Background()
	tm := newTestMesh(t)
	m, err := tm.Up(ctx, tm.config(t, []string{"westus"}, 1))
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(tm.port); m.Endpoint != want {
		t.Errorf("endpoint = %s, want %s", m.Endpoint, want)
	}
	if got := tm.states(t); got != "westus/1=up" {
		t.Fatalf("after up: %s", got)
	}
	st, _ := tm.Status(ctx)
	if st.Endpoint != m.Endpoint || st.Dir != tm.Dir() || !st.Regions[0].Home {
		t.Errorf("status = %+v", st)
	}
	pid := st.Regions[0].Zones[0].PID

	if _, err := tm.Up(ctx, tm.config(t, []string{"westus"}, 1)); !errors.Is(err, ErrRunning) ||
		!strings.Contains(err.Error(), "georeg mesh down --dir "+tm.Dir()) {
		t.Fatalf("second Up = %v, want ErrRunning naming `georeg mesh down --dir`", err)
	}
	if got := tm.states(t); got != "westus/1=up" {
		t.Fatalf("the refused Up disturbed the mesh: %s", got)
	}

	if err := tm.Kill(ctx, Target{Region: "westus", Zone: 1}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tm.out.String(), fmt.Sprintf("killed westus/1 (pid %d", pid)) {
		t.Errorf("Kill did not say what it did:\n%s", tm.out)
	}
	if got := tm.states(t); got != "westus/1=down" {
		t.Fatalf("after kill: %s", got)
	}
	if alive(pid, 0) {
		t.Fatalf("pid %d still alive after Kill", pid)
	}
	if err := tm.Kill(ctx, Target{Region: "westus", Zone: 1}); err != nil {
		t.Fatalf("killing a dead node: %v", err)
	}

	if err := tm.Restart(ctx, Target{Region: "westus"}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := tm.states(t); got != "westus/1=up" {
		t.Fatalf("after restart: %s", got)
	}
	starts, _ := os.ReadFile(filepath.Join(m.Nodes()[0].Data, "starts"))
	if n := strings.Count(string(starts), "start"); n != 2 {
		t.Errorf("data dir saw %d starts, want 2 (restart must reuse it)", n)
	}
	if err := tm.Restart(ctx, Target{Region: "westus", Zone: 1}, time.Second); err != nil {
		t.Fatalf("restarting a running node: %v", err)
	}

	if err := tm.Down(ctx, DownConfig{}); err != nil {
		t.Fatal(err)
	}
	if got := tm.states(t); got != "westus/1=down" {
		t.Fatalf("after down: %s", got)
	}
	saved, err := LoadMesh(tm.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if n := saved.Nodes()[0]; n.PID != 0 {
		t.Errorf("mesh.json keeps pid %d after down", n.PID)
	}
	if _, err := os.Stat(m.Nodes()[0].Data); err != nil {
		t.Errorf("down must keep data: %v", err)
	}
	if err := tm.Down(ctx, DownConfig{}); err != nil {
		t.Fatalf("second Down: %v", err)
	}

	// A stopped mesh comes back up on the same data.
	if _, err := tm.Up(ctx, tm.config(t, []string{"westus"}, 1)); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if err := tm.Down(ctx, DownConfig{Purge: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tm.Dir(), DataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("purge left the data: %v", err)
	}
	if _, err := os.Stat(m.Nodes()[0].Log); err != nil {
		t.Errorf("purge must keep logs: %v", err)
	}
}

func TestLifecycleRegions(t *testing.T) {
	ctx := context.Background()
	tm := newTestMesh(t)
	m, err := tm.Up(ctx, tm.config(t, []string{"westus", "eastus"}, 2, "--max-manifest-bytes=1000"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(tm.port); m.Endpoint != want {
		t.Errorf("endpoint = %s, want %s", m.Endpoint, want)
	}
	if got, want := tm.states(t), "westus/1=up westus/2=up eastus/1=up eastus/2=up"; got != want {
		t.Fatalf("after up: %s", got)
	}
	if err := tm.Kill(ctx, Target{Region: "eastus"}); err != nil {
		t.Fatal(err)
	}
	if got, want := tm.states(t), "westus/1=up westus/2=up eastus/1=down eastus/2=down"; got != want {
		t.Fatalf("after kill-region: %s", got)
	}
	if err := tm.Kill(ctx, Target{Region: "westus", Zone: 2}); err != nil {
		t.Fatal(err)
	}
	if err := tm.Restart(ctx, Target{Region: "eastus", Zone: 2}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := tm.states(t), "westus/1=up westus/2=down eastus/1=down eastus/2=up"; got != want {
		t.Fatalf("after restart eastus/2: %s", got)
	}
	if err := tm.Kill(ctx, Target{Region: "northeurope"}); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("Kill(northeurope) = %v, want ErrUnknownTarget", err)
	}
	if err := tm.Down(ctx, DownConfig{}); err != nil {
		t.Fatal(err)
	}
	if got, want := tm.states(t), "westus/1=down westus/2=down eastus/1=down eastus/2=down"; got != want {
		t.Fatalf("after down: %s", got)
	}
}

func TestUpFailures(t *testing.T) {
	tests := []struct {
		name     string
		nodeArgs []string
		wait     time.Duration
		want     error
		tail     string // expected in the error's log tail
	}{
		{"node exits", []string{"--fake-mode=exit"}, 20 * time.Second, ErrNodeExited, "refusing to start"},
		{"node never listens", []string{"--fake-mode=hang"}, time.Second, ErrNodeTimeout, `mode "hang"`},
		{"node answers 503", []string{"--fake-mode=503"}, time.Second, ErrNodeTimeout, `mode "503"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			tm := newTestMesh(t)
			cfg := tm.config(t, []string{"westus"}, 1, tt.nodeArgs...)
			cfg.Wait = tt.wait
			_, err := tm.Up(ctx, cfg)
			var ne *NodeError
			if !errors.Is(err, tt.want) || !errors.As(err, &ne) {
				t.Fatalf("Up = %v, want a NodeError wrapping %v", err, tt.want)
			}
			if ne.Node != "westus/1" || !strings.Contains(ne.Tail, tt.tail) || !strings.Contains(err.Error(), tt.tail) {
				t.Errorf("error does not show the node's log: %v", err)
			}
			m, err := LoadMesh(tm.Dir())
			if err != nil {
				t.Fatal(err)
			}
			if got := runningPIDs(m); len(got) != 0 {
				t.Errorf("a failed Up left nodes running: %v", got)
			}
			if got := tm.states(t); got != "westus/1=down" {
				t.Errorf("after failed up: %s", got)
			}
		})
	}
}

func TestUpStaleMesh(t *testing.T) {
	ctx := context.Background()
	tm := newTestMesh(t)
	cfg := tm.config(t, []string{"westus"}, 1)
	stale, err := Plan(tm.Dir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A pid that belonged to a process that is gone, as after a reboot or
	// a kill -9 of the whole mesh.
	stale.Nodes()[0].PID = deadPID(t)
	if err := stale.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Up(ctx, cfg); err != nil {
		t.Fatalf("Up over a stale mesh.json: %v", err)
	}
	if !strings.Contains(tm.out.String(), "stale") {
		t.Errorf("Up did not say it replaced a stale mesh:\n%s", tm.out)
	}
}

func TestUpPortInUse(t *testing.T) {
	tm := newTestMesh(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(tm.port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = tm.Up(context.Background(), tm.config(t, []string{"westus"}, 1))
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Up on a busy port = %v, want ErrPortInUse", err)
	}
}

func TestUpMissingRegiond(t *testing.T) {
	tm := newTestMesh(t)
	cfg := tm.config(t, []string{"westus"}, 1)
	cfg.Regiond = filepath.Join(t.TempDir(), "regiond")
	if _, err := tm.Up(context.Background(), cfg); !errors.Is(err, ErrRegiondNotFound) {
		t.Fatalf("Up = %v, want ErrRegiondNotFound", err)
	}
}

func TestDownEscalates(t *testing.T) {
	ctx := context.Background()
	tm := newTestMesh(t)
	if _, err := tm.Up(ctx, tm.config(t, []string{"westus"}, 1, "--fake-mode=stubborn")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := tm.Down(ctx, DownConfig{Grace: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Down took %v", d)
	}
	if !strings.Contains(tm.out.String(), "killed (no exit within 300ms of SIGTERM) westus/1") {
		t.Errorf("Down did not report the SIGKILL:\n%s", tm.out)
	}
	if got := tm.states(t); got != "westus/1=down" {
		t.Fatalf("after down: %s", got)
	}
}

func TestStatusNoMesh(t *testing.T) {
	c, err := NewController(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrNoMesh) {
		t.Fatalf("Status = %v, want ErrNoMesh", err)
	}
	if err := c.Down(context.Background(), DownConfig{}); err != nil {
		t.Fatalf("Down without a mesh = %v, want nil", err)
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	st, err := startProcess([]string{"/bin/true"}, nil, t.TempDir(), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !waitDead(ctx, st.pid, st.start) {
		t.Fatal("/bin/true did not exit")
	}
	return st.pid
}

// TestStartProcessEnv checks that a node starts with the launcher's
// environment plus its own, its own winning.
func TestStartProcessEnv(t *testing.T) {
	t.Setenv("GEOREG_TEST_INHERITED", "kept")
	t.Setenv("GOMAXPROCS", "2")
	dir, log := t.TempDir(), filepath.Join(t.TempDir(), "log")
	st, err := startProcess([]string{"/bin/sh", "-c", `echo "$GEOREG_TEST_INHERITED $GOMAXPROCS"`}, []string{"GOMAXPROCS=1"}, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !waitDead(ctx, st.pid, st.start) {
		t.Fatal("the shell did not exit")
	}
	out, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "kept 1" {
		t.Errorf("environment seen by the process: %q, want %q", got, "kept 1")
	}
}

func TestAlive(t *testing.T) {
	self := os.Getpid()
	info, hasProc := procStat(self)
	tests := []struct {
		name  string
		pid   int
		start uint64
		want  bool
		proc  bool // needs /proc
	}{
		{name: "no pid", pid: 0, want: false},
		{name: "dead pid", pid: deadPID(t), want: false},
		{name: "running, start unknown", pid: self, want: true},
		{name: "running, same start", pid: self, start: info.start, want: true, proc: true},
		{name: "pid reused by another process", pid: self, start: info.start + 1, want: false, proc: true},
	}
	for _, tt := range tests {
		if tt.proc && !hasProc {
			continue
		}
		if got := alive(tt.pid, tt.start); got != tt.want {
			t.Errorf("%s: alive(%d, %d) = %v, want %v", tt.name, tt.pid, tt.start, got, tt.want)
		}
	}
}
