package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/chaos"
)

func newController(e env, dir string) (*chaos.Controller, error) {
	return chaos.NewController(chaos.Config{Dir: dir, Out: e.stdout, Progress: e.stderr})
}

func meshUp(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "mesh up", "", "Start a local mesh in the background: the zone nodes of every region, each\nwith its own data directory, the simulated WAN between regions and the\ntraffic manager on --port; return once every region has a Raft leader and\nthe endpoint answers.")
	dir := dirFlag(fs)
	regions := fs.String("regions", "westus,eastus,westeurope", "comma-separated `names` of the regions")
	home := fs.String("home", "", "home `region` (default: the first of --regions)")
	zones := fs.Int("zones", 3, "zone nodes per region")
	port := fs.Int("port", 5000, "endpoint `port`: the home region's location; other locations, then the nodes, use the ports after it")
	regiond := fs.String("regiond", "", "`path` of regiond (default: regiond next to the georeg executable)")
	trafficmgr := fs.String("trafficmgr", "", "`path` of trafficmgr (default: trafficmgr next to the georeg executable)")
	noTM := fs.Bool("no-trafficmgr", false, "no traffic manager and no simulated WAN: the home region's first node is the endpoint")
	wanFile := fs.String("wan", "", "`file` of simulated links (latency, bandwidth, loss, cuts) replacing the default latency matrix")
	wait := fs.Duration("wait", chaos.DefaultWait, "how long to wait for every node to answer")
	auth := fs.Bool("auth", false, "turn authentication on: generate the admin credential into DIR/credentials.json (management commands use it); clients log in with tokens (georeg token create)")
	allowPrivate := fs.Bool("webhook-allow-private", true, "start the nodes with --webhook-allow-private: webhooks may target loopback and private addresses, where a local mesh's receivers are (false: refused, as in production)")
	useTLS := fs.Bool("tls", false, "serve the endpoint and the nodes' HTTP over HTTPS with certificates of the mesh's CA (DIR/tls/ca.crt), and print how to make docker trust it")
	tmProcs := fs.Int("trafficmgr-procs", 1, "GOMAXPROCS of the traffic manager (0: Go's default); one, because on one machine it shares the cores with the nodes (docs/design.md)")
	var nodeArgs listFlag
	fs.Var(&nodeArgs, "node-arg", "extra regiond `argument` for every node, e.g. --node-arg=--max-manifest-bytes=1000 (repeatable)")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *noTM && *wanFile != "" {
		return usagef("--wan needs the traffic manager (drop --no-trafficmgr)")
	}
	if *tmProcs < 0 {
		return usagef("--trafficmgr-procs %d: want 0 or more", *tmProcs)
	}
	bin := func(name, flagValue string) (string, error) {
		if flagValue != "" {
			return flagValue, nil
		}
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find %s next to georeg: %w (pass --%s PATH)", name, err, name)
		}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		return filepath.Join(filepath.Dir(exe), name), nil
	}
	var err error
	if *regiond, err = bin("regiond", *regiond); err != nil {
		return err
	}
	if *noTM {
		*trafficmgr = ""
	} else if *trafficmgr, err = bin("trafficmgr", *trafficmgr); err != nil {
		return err
	}
	cfg := chaos.UpConfig{
		Regions:    splitList(*regions),
		Home:       *home,
		Zones:      *zones,
		Port:       *port,
		Regiond:    *regiond,
		Trafficmgr: *trafficmgr,
		WAN:        *wanFile,
		NodeArgs:   nodeArgs,
		Wait:       *wait,
		HTTPS:      *useTLS,
	}
	if *tmProcs > 0 {
		cfg.TrafficmgrEnv = []string{"GOMAXPROCS=" + strconv.Itoa(*tmProcs)}
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if *allowPrivate {
		cfg.NodeArgs = append(cfg.NodeArgs, "--webhook-allow-private")
	}
	if *auth {
		hashFile, err := prepareAuth(*dir)
		if err != nil {
			return err
		}
		cfg.NodeArgs = append(cfg.NodeArgs, "--auth", "--admin-password-hash-file", hashFile)
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	m, err := c.Up(ctx, cfg)
	if err != nil {
		return err
	}
	if m.HTTPS {
		printTrust(e, m)
	}
	if *auth {
		fmt.Fprintf(e.stderr, "authentication is ON: the admin credential is in %s (management commands use it);\n"+
			"  clients log in with a token: georeg token create --name NAME --scope-map _repositories_push\n", filepath.Join(*dir, CredentialsFile))
	} else {
		fmt.Fprintf(e.stderr, "authentication is OFF: anyone who can reach the endpoint may push, pull and delete (fine on loopback; use --auth otherwise)\n")
	}
	if *allowPrivate {
		fmt.Fprintf(e.stderr, "webhooks may target loopback and private addresses (--webhook-allow-private, for local receivers; mesh up --webhook-allow-private=false refuses them as production should)\n")
	}
	return nil
}

// printTrust tells how to make clients trust the HTTPS endpoint of m.
func printTrust(e env, m *chaos.Mesh) {
	ca := filepath.Join(m.Dir, chaos.TLSDir, "ca.crt")
	fmt.Fprintf(e.stderr, "the endpoint is HTTPS with a certificate of this mesh's CA, %s. To make docker trust it:\n", ca)
	addrs := []string{m.Endpoint}
	for _, l := range m.Locations {
		if l.Addr != m.Endpoint {
			addrs = append(addrs, l.Addr)
		}
	}
	for _, a := range addrs {
		dir := "/etc/docker/certs.d/" + strings.Replace(a, "127.0.0.1", "localhost", 1)
		fmt.Fprintf(e.stderr, "  sudo mkdir -p %s && sudo cp %s %s/ca.crt\n", dir, ca, dir)
	}
	fmt.Fprintf(e.stderr, "  (then push to localhost:PORT; no daemon restart needed). crane, regctl, oras, skopeo: SSL_CERT_FILE=%s\n", ca)
}

// adminHashFile holds the bcrypt hash of the admin password, which the home
// region records when the registry is first started.
const adminHashFile = "admin-password.hash"

// prepareAuth generates the admin credential of a new mesh (or keeps the
// one an existing mesh was started with) and returns the hash file nodes
// read.
func prepareAuth(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	hashFile, err := filepath.Abs(filepath.Join(dir, adminHashFile))
	if err != nil {
		return "", err
	}
	if c, err := loadCredentials(dir); err == nil && c != nil {
		if _, err := os.Stat(hashFile); err == nil {
			return hashFile, nil
		}
	}
	secret, pw, err := access.NewPassword(access.Password1, time.Now(), time.Time{})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(hashFile, pw.Hash, 0o600); err != nil {
		return "", err
	}
	if err := saveCredentials(dir, credentials{Username: access.AdminUser, Password: secret}); err != nil {
		return "", err
	}
	return hashFile, nil
}

func meshStatus(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "mesh status", "", "Show every node of the mesh: its address, process and state (up, down or\nunresponsive). Exits non-zero when DIR has no mesh.")
	dir := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON for programs")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return encodeIndented(e, st)
	}
	return st.WriteText(e.stdout)
}

func meshDown(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "mesh down", "", "Stop every node of the mesh: SIGTERM, then SIGKILL after --grace. Data and\nlogs are kept unless --purge. Stopping a stopped mesh succeeds.")
	dir := dirFlag(fs)
	grace := fs.Duration("grace", chaos.DefaultGrace, "how long nodes get to exit after SIGTERM before SIGKILL")
	purge := fs.Bool("purge", false, "also delete the nodes' data")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *grace <= 0 {
		return usagef("--grace must be positive")
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	return c.Down(ctx, chaos.DownConfig{Grace: *grace, Purge: *purge})
}

// oneTarget parses the single REGION[/ZONE] argument of a chaos verb.
func oneTarget(pos []string, wantZone, allowZone bool) (chaos.Target, error) {
	if len(pos) != 1 {
		return chaos.Target{}, usagef("want exactly one target, got %d", len(pos))
	}
	t, err := chaos.ParseTarget(pos[0])
	if err != nil {
		return t, usagef("%v", err)
	}
	if wantZone && t.Zone == 0 {
		return t, usagef("target %q names no zone: want REGION/ZONE, e.g. %s/1 (kill-region kills a whole region)", pos[0], t.Region)
	}
	if !allowZone && t.Zone != 0 {
		return t, usagef("target %q names a zone: want REGION (kill-zone kills one zone)", pos[0])
	}
	return t, nil
}

func chaosKillZone(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos kill-zone", "REGION/ZONE", "SIGKILL one zone node, as a crash of its zone would. Its data stays for\n`georeg chaos restart`.")
	dir := dirFlag(fs)
	return kill(ctx, e, fs, dir, args, true)
}

func chaosKillRegion(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos kill-region", "REGION", "SIGKILL every zone node of a region, as a region outage would. Their data\nstays for `georeg chaos restart`.")
	dir := dirFlag(fs)
	return kill(ctx, e, fs, dir, args, false)
}

// kill runs kill-zone (zone set) or kill-region.
func kill(ctx context.Context, e env, fs *flag.FlagSet, dir *string, args []string, zone bool) error {
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	t, err := oneTarget(pos, zone, zone)
	if err != nil {
		return err
	}
	if cl, err := containerCluster(e, *dir); err != nil || cl != nil {
		if err != nil {
			return err
		}
		return cl.Kill(ctx, t)
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	return c.Kill(ctx, t)
}

func chaosRestart(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos restart", "REGION[/ZONE]", "Start the killed nodes of a region, or one zone node, again on their data\nwith the command line they had, and wait until they answer.")
	dir := dirFlag(fs)
	wait := fs.Duration("wait", chaos.DefaultWait, "how long to wait for the nodes to answer")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	t, err := oneTarget(pos, false, true)
	if err != nil {
		return err
	}
	if *wait <= 0 {
		return usagef("--wait must be positive")
	}
	if cl, err := containerCluster(e, *dir); err != nil || cl != nil {
		if err != nil {
			return err
		}
		return cl.Restart(ctx, t, *wait)
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	err = c.Restart(ctx, t, *wait)
	if errors.Is(err, chaos.ErrPortInUse) {
		return fmt.Errorf("%w (is something else listening there? `georeg mesh status --dir %s`)", err, *dir)
	}
	return err
}

func chaosRollingRestart(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos rolling-restart", "", "Restart every running process of the mesh one at a time, as an upgrade would:\neach zone node gets SIGTERM, starts again on its data and must serve again\nbefore the next stops; the traffic manager last, handing its port over to\nits successor without refusing a connection.")
	dir := dirFlag(fs)
	grace := fs.Duration("grace", chaos.DefaultGrace, "how long each process gets to exit after SIGTERM before SIGKILL")
	wait := fs.Duration("wait", chaos.DefaultWait, "how long a restarted process may take to serve again")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if *grace <= 0 || *wait <= 0 {
		return usagef("--grace and --wait must be positive")
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	return c.RollingRestart(ctx, chaos.RollingConfig{Grace: *grace, Wait: *wait})
}
