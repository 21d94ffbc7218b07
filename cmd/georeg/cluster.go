package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/georeg/georeg/chaos"
)

func newCluster(e env, dir string) (*chaos.Cluster, error) {
	return chaos.NewCluster(chaos.Config{Dir: dir, Out: e.stdout, Progress: e.stderr})
}

func clusterUp(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "cluster up", "", "Start a container cluster on this host's Docker engine: every zone node a\ncontainer with its own address on its region's network, the traffic manager\nin front, its listeners published on 127.0.0.1:--port and the next ports.\nTLS between nodes, HTTPS at the endpoint and authentication are on unless\nturned off. Needs the images of `make images`; nothing is pulled.")
	dir := dirFlag(fs)
	regions := fs.String("regions", "westus,eastus,westeurope", "comma-separated `names` of the regions")
	home := fs.String("home", "", "home `region` (default: the first of --regions)")
	zones := fs.Int("zones", 3, "zone containers per region")
	port := fs.Int("port", 5000, "endpoint `port` on 127.0.0.1: the home region's location; other locations, then the nodes' HTTP and gRPC, use the ports after it")
	project := fs.String("project", chaos.DefaultProject, "`name` prefixing the cluster's containers, networks and volumes")
	subnet := fs.String("subnet", chaos.DefaultSubnet, "IPv4 /16 the cluster's networks are carved from (must not overlap this host's networks)")
	regiondImage := fs.String("regiond-image", chaos.DefaultRegiondImage, "`image` of the zone nodes")
	tmImage := fs.String("trafficmgr-image", chaos.DefaultTMImage, "`image` of the traffic manager")
	auth := fs.Bool("auth", true, "turn authentication on (the admin credential goes to DIR/credentials.json; clients log in with tokens)")
	plainHTTP := fs.Bool("http", false, "serve the endpoint and the nodes' API over plain HTTP instead of HTTPS (nodes still use mutual TLS between them)")
	wait := fs.Duration("wait", chaos.DefaultWait, "how long to wait for every container to be healthy")
	docker := fs.Bool("docker", true, "run on the local Docker engine (the only runtime so far)")
	var nodeArgs listFlag
	fs.Var(&nodeArgs, "node-arg", "extra regiond `argument` for every node (repeatable)")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	if !*docker {
		return usagef("--docker=false: the Docker engine is the only runtime the cluster has")
	}
	cfg := chaos.ClusterConfig{
		Regions: splitList(*regions), Home: *home, Zones: *zones, Port: *port,
		Project: *project, Subnet: *subnet, RegiondImage: *regiondImage, TrafficmgrImage: *tmImage,
		HTTP: *plainHTTP, NodeArgs: nodeArgs, Wait: *wait,
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	c, err := newCluster(e, *dir)
	if err != nil {
		return err
	}
	// Bad input (no engine, no image, a port taken) fails before the
	// credentials are written, as well as before anything is created.
	if err := c.Check(ctx, cfg); err != nil {
		return err
	}
	if *auth {
		if cfg.AdminHashFile, err = prepareAuth(c.Dir()); err != nil {
			return err
		}
	}
	m, err := c.Up(ctx, cfg)
	if err != nil {
		return err
	}
	if m.HTTPS {
		printTrust(e, m)
		fmt.Fprintf(e.stderr, "  (docker on this host treats 127.0.0.0/8 as an insecure registry: it speaks HTTPS there without checking the certificate)\n")
	}
	if *auth {
		fmt.Fprintf(e.stderr, "authentication is ON: the admin credential is in %s;\n"+
			"  a push token: georeg token create --dir %s --name NAME --scope-map _repositories_push, then docker login %s\n",
			filepath.Join(c.Dir(), CredentialsFile), *dir, m.Endpoint)
	} else {
		fmt.Fprintf(e.stderr, "authentication is OFF: anyone who can reach the endpoint may push, pull and delete\n")
	}
	return nil
}

func clusterStatus(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "cluster status", "", "Show every container of the cluster: its node, published address, state\n(up, down or unresponsive), Raft role, the traffic manager's routes and the\npartitions in force.")
	dir := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON for programs")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	c, err := newCluster(e, *dir)
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
	if err := st.WriteText(e.stdout); err != nil {
		return err
	}
	for _, cut := range st.Cuts {
		fmt.Fprintf(e.stdout, "partitioned: %s\n", cut)
	}
	return nil
}

func clusterDown(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "cluster down", "", "Remove the cluster's containers and networks; --purge removes its volumes\n(the nodes' data) too. The CA and credentials in DIR stay.")
	dir := dirFlag(fs)
	purge := fs.Bool("purge", false, "also remove the volumes")
	if err := parseNoArgs(e, fs, args); err != nil {
		return err
	}
	c, err := newCluster(e, *dir)
	if err != nil {
		return err
	}
	return c.Down(ctx, *purge)
}

func clusterReplace(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "cluster replace", "REGION/ZONE", "Replace a zone node's container and volume with new, empty ones of the same\nidentity and address, as a lost machine would be; the node repairs itself\nfrom the other zones of its region.")
	dir := dirFlag(fs)
	wait := fs.Duration("wait", chaos.DefaultWait, "how long to wait for the new container to be healthy")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	t, err := oneTarget(pos, true, true)
	if err != nil {
		return err
	}
	c, err := newCluster(e, *dir)
	if err != nil {
		return err
	}
	hash := ""
	if _, err := os.Stat(filepath.Join(c.Dir(), adminHashFile)); err == nil {
		hash = filepath.Join(c.Dir(), adminHashFile)
	}
	return c.Replace(ctx, t, hash, *wait)
}

// containerCluster returns the cluster in dir when dir holds one, so the
// chaos verbs act on containers there; nil for a mesh of processes or no
// mesh.
func containerCluster(e env, dir string) (*chaos.Cluster, error) {
	m, err := chaos.LoadMesh(dir)
	if errors.Is(err, chaos.ErrNoMesh) {
		return nil, nil
	}
	if err != nil || m.Docker == nil {
		return nil, err
	}
	return newCluster(e, dir)
}
