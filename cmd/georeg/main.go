// Command georeg is the georeg command line: it starts and stops a local mesh
// of regiond processes and injects faults into it (the chaos package), and
// manages the registry through the home region's control plane:
// replications, webhooks, scope maps, tokens and access settings.
//
// It parses flags into typed configurations and calls the chaos package or
// the control protocol; run `georeg --help` for the verbs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is what every verb writes to.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// verb is one action of a command group, such as "mesh up".
type verb struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	// run parses args (the words after the verb) and acts.
	run func(ctx context.Context, e env, args []string) error
}

// group is a top-level command such as "mesh" and its verbs.
type group struct {
	name    string
	summary string
	verbs   []verb
}

func groups() []group {
	return []group{
		{
			name:    "mesh",
			summary: "start, inspect and stop a local mesh",
			verbs: []verb{
				{name: "up", summary: "start a mesh in the background and wait until it answers", run: meshUp},
				{name: "status", summary: "show the mesh's nodes and whether they answer", run: meshStatus},
				{name: "down", summary: "stop every node of the mesh (data and logs are kept)", run: meshDown},
				{name: "add-site", summary: "start a connected registry at a new site of the mesh (--name)", run: meshAddSite},
			},
		},
		{
			name:    "cluster",
			summary: "start, inspect and stop a cluster of containers on this host's Docker engine (docs/cluster.md)",
			verbs: []verb{
				{name: "up", summary: "create the containers and networks, wait until every container is healthy", run: clusterUp},
				{name: "status", summary: "show the containers, their state and the partitions in force", run: clusterStatus},
				{name: "down", summary: "remove the containers and networks (--purge: the volumes too)", run: clusterDown},
				{name: "replace", args: "REGION/ZONE", summary: "replace a zone's container and volume with empty ones; it repairs itself", run: clusterReplace},
			},
		},
		{
			name:    "chaos",
			summary: "inject faults into a running mesh or container cluster",
			verbs: []verb{
				{name: "kill-zone", args: "REGION/ZONE", summary: "SIGKILL one zone node", run: chaosKillZone},
				{name: "kill-region", args: "REGION", summary: "SIGKILL every node of a region", run: chaosKillRegion},
				{name: "restart", args: "REGION[/ZONE]", summary: "start killed nodes again on their data and wait until they answer", run: chaosRestart},
				{name: "rolling-restart", summary: "restart every process one at a time, as an upgrade would", run: chaosRollingRestart},
				{name: "partition", args: "REGION1 REGION2", summary: "cut the simulated link between two regions", run: chaosPartition},
				{name: "heal", args: "[REGION1 REGION2]", summary: "heal a cut link, or every cut link", run: chaosHeal},
				{name: "latency", args: "REGION1 REGION2 DURATION", summary: "set a link's round-trip time (same region twice: its clients' path)", run: chaosLatency},
				{name: "bandwidth", args: "REGION1 REGION2 RATE", summary: "cap a link's bandwidth each way (100MB/s, 50Mbit/s, off)", run: chaosBandwidth},
				{name: "loss", args: "REGION1 REGION2 PERCENT", summary: "set a link's packet loss (shows as retransmission delays)", run: chaosLoss},
			},
		},
		{
			name:    "replication",
			summary: "manage the registry's regions (after `az acr replication`)",
			verbs: []verb{
				{name: "list", summary: "list replications with status, endpoint flag and lag", run: replicationList},
				{name: "show", summary: "show one replication (--region)", run: replicationShow},
				{name: "create", summary: "add a region (--region), start its nodes, wait until Ready", run: replicationCreate},
				{name: "update", summary: "change a replication (--region --region-endpoint-enabled)", run: replicationUpdate},
				{name: "delete", summary: "remove a region (--region) and stop its nodes", run: replicationDelete},
				{name: "status", args: "IMAGE", summary: "show per region whether an image is there yet", run: replicationStatus},
			},
		},
		{
			name:    "webhook",
			summary: "manage regional webhooks (after `az acr webhook`)",
			verbs: []verb{
				{name: "create", summary: "create a webhook (--name --uri --actions [--scope] [--region] [--headers k=v])", run: webhookCreate},
				{name: "list", summary: "list webhooks", run: webhookList},
				{name: "show", summary: "show a webhook (--name)", run: webhookShow},
				{name: "delete", summary: "delete a webhook (--name)", run: webhookDelete},
				{name: "ping", summary: "send a ping event now (--name)", run: webhookPing},
				{name: "list-events", summary: "list a webhook's deliveries (--name)", run: webhookListEvents},
			},
		},
		{
			name:    "scope-map",
			summary: "manage scope maps: named sets of repository permissions (after `az acr scope-map`)",
			verbs: []verb{
				{name: "create", summary: "create a scope map (--name --repository REPO ACTION... [--description])", run: scopeMapCreate},
				{name: "list", summary: "list scope maps, built-in ones included", run: scopeMaps().listVerb("List the scope maps, built-in ones included.")},
				{name: "show", summary: "show a scope map (--name)", run: scopeMaps().showVerb("Show one scope map.")},
				{name: "update", summary: "change a scope map (--name --add-repository/--remove-repository REPO ACTION... [--description])", run: scopeMapUpdate},
				{name: "delete", summary: "delete a scope map no token uses (--name)", run: scopeMapDelete},
			},
		},
		{
			name:    "token",
			summary: "manage registry tokens (after `az acr token`)",
			verbs: []verb{
				{name: "create", summary: "create a token (--name --scope-map S | --repository REPO ACTION... [--expiration-in-days N] [--output json])", run: tokenCreate},
				{name: "list", summary: "list tokens", run: tokens().listVerb("List the tokens.")},
				{name: "show", summary: "show a token (--name)", run: tokens().showVerb("Show one token (never its passwords).")},
				{name: "update", summary: "change a token (--name [--scope-map S] [--status enabled|disabled])", run: tokenUpdate},
				{name: "delete", summary: "delete a token (--name)", run: tokenDelete},
				{name: "credential", args: "generate", summary: "generate a password (generate --name --password1|--password2 [--expiration-in-days N])", run: tokenCredential},
			},
		},
		{
			name:    "connected-registry",
			summary: "manage connected registries: registries at sites that sync from the cloud (after `az acr connected-registry`)",
			verbs: []verb{
				{name: "create", summary: "create one (--name --repository R... [--parent P] [--mode ReadOnly|ReadWrite] [--client-tokens T...] [--notifications P...])", run: connectedCreate},
				{name: "list", summary: "list connected registries", run: connectedRegistries().listVerb("List the connected registries.")},
				{name: "show", summary: "show one (--name)", run: connectedRegistries().showVerb("Show one connected registry.")},
				{name: "update", summary: "change one (--name --add-repository/--remove-repository R... --add-client-tokens/--remove-client-tokens T... [--log-level L])", run: connectedUpdate},
				{name: "delete", summary: "delete one with its sync token (--name [--force])", run: connectedDelete},
				{name: "deactivate", summary: "let another instance start with its connection string (--name)", run: connectedDeactivate},
				{name: "get-settings", summary: "print a connection string with a new sync token password, once (--name [--parent-protocol http|https])", run: connectedGetSettings},
			},
		},
		{
			name:    "registry",
			summary: "the registry's access settings (after `az acr update`)",
			verbs: []verb{
				{name: "update", summary: "change settings (--admin-enabled true|false --anonymous-pull-enabled true|false)", run: registryUpdate},
			},
		},
		{
			name:    "credential",
			summary: "the registry's signing keys",
			verbs: []verb{
				{name: "rotate-signing-key", summary: "make a new key sign bearer tokens", run: credentialRotate},
			},
		},
		{
			name:    "login",
			summary: "store the admin credential the management commands use (--username --password-stdin)",
			verbs:   []verb{{name: "", run: loginRun}},
		},
	}
}

// usageError is a mistake in the command line; it exits with code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := env{stdin: os.Stdin, stdout: stdout, stderr: stderr}
	gs := groups()
	if len(args) == 0 {
		printUsage(stderr, gs)
		return exitUsage
	}
	if isHelp(args[0]) || args[0] == "help" {
		printUsage(stdout, gs)
		return exitOK
	}
	var g *group
	for i := range gs {
		if gs[i].name == args[0] {
			g = &gs[i]
		}
	}
	if g == nil {
		fmt.Fprintf(stderr, "georeg: unknown command %q\n\n", args[0])
		printUsage(stderr, gs)
		return exitUsage
	}
	if len(g.verbs) == 1 && g.verbs[0].name == "" {
		// A command without verbs ("georeg login --username u"): its
		// flags follow the command.
		args = append([]string{args[0], ""}, args[1:]...)
	}
	if len(args) == 1 {
		printGroupUsage(stderr, g)
		return exitUsage
	}
	if isHelp(args[1]) || args[1] == "help" {
		printGroupUsage(stdout, g)
		return exitOK
	}
	for _, v := range g.verbs {
		if v.name != args[1] {
			continue
		}
		err := v.run(ctx, e, args[2:])
		var ue *usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errFlagParse):
			// The flag package has already said what was wrong.
			return exitUsage
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "georeg %s %s: %v\nrun `georeg %s %s --help` for usage\n", g.name, v.name, err, g.name, v.name)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "georeg %s %s: %v\n", g.name, v.name, err)
			return exitError
		}
	}
	fmt.Fprintf(stderr, "georeg %s: unknown verb %q\n\n", g.name, args[1])
	printGroupUsage(stderr, g)
	return exitUsage
}

func isHelp(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

func printUsage(w io.Writer, gs []group) {
	fmt.Fprintf(w, "usage: georeg COMMAND VERB [flags]\n\ncommands:\n")
	for _, g := range gs {
		fmt.Fprintf(w, "  %-8s %s\n", g.name, g.summary)
		for _, v := range g.verbs {
			fmt.Fprintf(w, "    %-28s %s\n", strings.TrimSpace(v.name+" "+v.args), v.summary)
		}
	}
	fmt.Fprintf(w, "\nEvery command takes --dir DIR (default %s), the directory of the mesh.\nRun `georeg COMMAND VERB --help` for a verb's flags.\n", defaultDir)
}

func printGroupUsage(w io.Writer, g *group) {
	fmt.Fprintf(w, "usage: georeg %s VERB [flags]\n\n%s.\n\nverbs:\n", g.name, g.summary)
	for _, v := range g.verbs {
		fmt.Fprintf(w, "  %-28s %s\n", strings.TrimSpace(v.name+" "+v.args), v.summary)
	}
	fmt.Fprintf(w, "\nRun `georeg %s VERB --help` for a verb's flags.\n", g.name)
}
