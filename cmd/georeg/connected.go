package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/proto/controlpb"
)

// listFlags takes every "--FLAG VALUE..." list out of args, for each flag
// in flags (the values run up to the next word starting with "-"), as
// `az acr connected-registry` spells lists, and returns them by flag with
// the remaining args. A flag given twice adds to its list.
func listFlags(args []string, flags ...string) (map[string][]string, []string, error) {
	lists := map[string][]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || !slices.Contains(flags, name) {
			rest = append(rest, a)
			continue
		}
		n := 0
		for i++; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
			lists[name] = append(lists[name], args[i])
			n++
		}
		i--
		if n == 0 {
			return nil, nil, usagef("--%s needs at least one value", name)
		}
	}
	return lists, rest, nil
}

func listConnected(ctx context.Context, dir string) ([]*controlpb.ConnectedRegistry, error) {
	var resp *controlpb.ListConnectedRegistriesResponse
	err := homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ListConnectedRegistries(ctx, &controlpb.ListAccessRequest{})
		return err
	})
	return resp.GetRegistries(), err
}

func putConnected(ctx context.Context, dir string, r *controlpb.ConnectedRegistry, create bool) (*controlpb.ConnectedRegistry, error) {
	var out *controlpb.ConnectedRegistry
	err := homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		out, err = c.PutConnectedRegistry(ctx, &controlpb.PutConnectedRegistryRequest{Registry: r, Create: create})
		return err
	})
	return out, err
}

func connectedCreate(ctx context.Context, e env, args []string) error {
	lists, args, err := listFlags(args, "repository", "client-tokens", "notifications")
	if err != nil {
		return err
	}
	fs := newFlagSet(e, "connected-registry create", "", "Create a connected registry: a registry at a site that syncs --repository R... from its\n"+
		"parent (the cloud registry, or --parent NAME) and serves local clients with --client-tokens T....\n"+
		"Its sync token NAME-sync-token is created with it; `get-settings` gives its connection string.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "connected registry `name` (5-40 letters and digits)")
	parent := fs.String("parent", "", "parent connected registry `name` (default: the cloud registry)")
	mode := fs.String("mode", "ReadOnly", "ReadOnly (clients pull) or ReadWrite (clients also push)")
	logLevel := fs.String("log-level", "Information", "Debug, Information, Warning, Error or None")
	sync := syncFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" || len(lists["repository"]) == 0 {
		return usagef("--name and --repository R... are required")
	}
	r := &controlpb.ConnectedRegistry{Name: *name, Parent: *parent, Mode: *mode, LogLevel: *logLevel,
		Repositories: lists["repository"], ClientTokens: lists["client-tokens"], Notifications: lists["notifications"]}
	sync.apply(fs, r)
	out, err := putConnected(ctx, *dir, r, true)
	if err != nil {
		return err
	}
	return printConnected(e, []*controlpb.ConnectedRegistry{out}, *asJSON, true)
}

func connectedUpdate(ctx context.Context, e env, args []string) error {
	lists, args, err := listFlags(args, "add-repository", "remove-repository", "add-client-tokens", "remove-client-tokens", "add-notifications", "remove-notifications")
	if err != nil {
		return err
	}
	fs := newFlagSet(e, "connected-registry update", "", "Change a connected registry's repositories, client tokens, notifications, sync\n"+
		"schedule or log level (--add-repository/--remove-repository R..., --add-client-tokens/--remove-client-tokens T...,\n"+
		"--add-notifications/--remove-notifications P..., --sync-schedule, --sync-window, --sync-message-ttl;\n"+
		"--sync-schedule '' --sync-window '' returns to continuous sync). Its parent and mode cannot change.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "connected registry `name`")
	logLevel := fs.String("log-level", "", "Debug, Information, Warning, Error or None")
	sync := syncFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" || len(lists) == 0 && *logLevel == "" && !sync.given(fs) {
		return usagef("--name and a change are required")
	}
	r, err := connectedRegistries().find(ctx, *dir, *name)
	if err != nil {
		return err
	}
	edit := func(cur []string, add, remove []string) []string {
		out := slices.DeleteFunc(slices.Clone(cur), func(s string) bool { return slices.Contains(remove, s) })
		for _, a := range add {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		return out
	}
	r.Repositories = edit(r.Repositories, lists["add-repository"], lists["remove-repository"])
	r.ClientTokens = edit(r.ClientTokens, lists["add-client-tokens"], lists["remove-client-tokens"])
	r.Notifications = edit(r.Notifications, lists["add-notifications"], lists["remove-notifications"])
	if *logLevel != "" {
		r.LogLevel = *logLevel
	}
	sync.apply(fs, r)
	out, err := putConnected(ctx, *dir, r, false)
	if err != nil {
		return err
	}
	return printConnected(e, []*controlpb.ConnectedRegistry{out}, *asJSON, true)
}

// syncOptions are the sync flags of create and update, after ACR's.
type syncOptions struct {
	schedule, window, ttl *string
}

func syncFlags(fs *flag.FlagSet) syncOptions {
	return syncOptions{
		schedule: fs.String("sync-schedule", "", "cron `expression` (UTC) of the sync windows' starts, as in \"0 */6 * * *\" (default: continuous sync)"),
		window:   fs.String("sync-window", "", "ISO 8601 `duration` of each sync window, PT1H to P7D (with --sync-schedule)"),
		ttl:      fs.String("sync-message-ttl", "", "ISO 8601 `duration` the parent keeps the events meant for it, P1D to P90D (default P2D)"),
	}
}

// given reports whether a sync flag was set.
func (o syncOptions) given(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || strings.HasPrefix(f.Name, "sync-") })
	return set
}

// apply sets the fields of r whose flags were given (an empty value too:
// update --sync-schedule ” --sync-window ” is continuous sync again).
func (o syncOptions) apply(fs *flag.FlagSet, r *controlpb.ConnectedRegistry) {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "sync-schedule":
			r.SyncSchedule = *o.schedule
		case "sync-window":
			r.SyncWindow = *o.window
		case "sync-message-ttl":
			r.SyncMessageTtl = *o.ttl
		}
	})
}

func connectedDelete(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "connected-registry delete", "", "Delete a connected registry with its sync token and scope map (not its client tokens).\nAn Active one only with --force.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "connected registry `name`")
	force := fs.Bool("force", false, "delete it even while an instance is Active")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.DeleteConnectedRegistry(ctx, &controlpb.DeleteConnectedRegistryRequest{Name: *name, Force: *force})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted connected registry %s\n", *name)
	return nil
}

func connectedDeactivate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "connected-registry deactivate", "", "Deactivate a connected registry, so that another instance may start with its connection string.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "connected registry `name`")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.DeactivateConnectedRegistry(ctx, &controlpb.NameRequest{Name: *name})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deactivated connected registry %s\n", *name)
	return nil
}

func connectedGetSettings(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "connected-registry get-settings", "", "Generate a new password of the sync token and print the connection string an instance\n"+
		"starts with. It is shown once; running this again replaces the password.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "connected registry `name`")
	protocol := fs.String("parent-protocol", "http", "http or https: how the instance reaches its parent")
	parentEndpoint := fs.String("parent-endpoint", "", "`host:port` the instance reaches its parent at (default: the mesh endpoint for a child of the cloud registry)")
	password := fs.String("password", "password1", "which sync token password to generate: password1 or password2")
	days := fs.Int("expiration-in-days", 0, "days until the password expires (0: never)")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	if *protocol != "http" && *protocol != "https" {
		return usagef("--parent-protocol %q: want http or https", *protocol)
	}
	r, err := connectedRegistries().find(ctx, *dir, *name)
	if err != nil {
		return err
	}
	endpoint := *parentEndpoint
	if endpoint == "" {
		if r.GetParent() != "" {
			return usagef("connected registry %s has the parent %s: give --parent-endpoint HOST:PORT, where that instance listens", *name, r.GetParent())
		}
		m, err := chaos.LoadMesh(*dir)
		if err != nil {
			return err
		}
		endpoint = m.Endpoint
	}
	expiry, err := expiryFlag(*days)
	if err != nil {
		return err
	}
	var resp *controlpb.ConnectedRegistrySettingsResponse
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ConnectedRegistrySettings(ctx, &controlpb.ConnectedRegistrySettingsRequest{Name: *name, Password: *password, Expiry: expiry})
		return err
	})
	if err != nil {
		return err
	}
	cs := connected.ConnectionString{Name: *name, SyncToken: resp.GetRegistry().GetSyncToken(), SyncPassword: resp.GetSecret().GetValue(),
		ParentEndpoint: endpoint, Protocol: *protocol}
	fmt.Fprintln(e.stdout, cs.String())
	fmt.Fprintf(e.stderr, "the connection string holds a password, shown this once: keep it like one\n")
	return nil
}

func printConnected(e env, rs []*controlpb.ConnectedRegistry, asJSON, detail bool) error {
	type row struct {
		Name          string   `json:"name"`
		Parent        string   `json:"parent"`
		Mode          string   `json:"mode"`
		Activation    string   `json:"activationStatus"`
		Repositories  []string `json:"repositories"`
		ClientTokens  []string `json:"clientTokens"`
		SyncToken     string   `json:"syncToken"`
		LogLevel      string   `json:"logLevel"`
		Notifications []string `json:"notificationsList"`
		ActivatedAt   string   `json:"activatedAt,omitempty"`
		Created       string   `json:"creationDate"`
		State         string   `json:"connectionState"`
		LastSeen      string   `json:"lastActivityTime,omitempty"`
		LastSync      string   `json:"lastSyncTime,omitempty"`
		LastError     string   `json:"lastError,omitempty"`
		SyncSchedule  string   `json:"syncSchedule,omitempty"`
		SyncWindow    string   `json:"syncWindow,omitempty"`
		SyncTTL       string   `json:"syncMessageTtl"`
		NextWindow    *window  `json:"nextSyncWindow,omitempty"`
		// ReadWrite only: local writes not synced up yet, and tags
		// synced up that had been written elsewhere meanwhile.
		PendingWrites int64 `json:"pendingWrites,omitempty"`
		TagConflicts  int64 `json:"tagConflicts,omitempty"`
	}
	rows := make([]row, 0, len(rs))
	for _, r := range rs {
		ttl := r.GetSyncMessageTtl()
		if ttl == "" {
			ttl = connected.FormatDuration(connected.DefaultMessageTTL)
		}
		var next *window
		if r.GetNextSyncWindowStart() != nil {
			next = &window{Start: formatTime(r.GetNextSyncWindowStart()), End: formatTime(r.GetNextSyncWindowEnd())}
		}
		parent := r.GetParent()
		if parent == "" {
			parent = "(cloud)"
		}
		rows = append(rows, row{Name: r.GetName(), Parent: parent, Mode: r.GetMode(), Activation: r.GetActivation(),
			Repositories: nonNil(r.GetRepositories()), ClientTokens: nonNil(r.GetClientTokens()), SyncToken: r.GetSyncToken(),
			LogLevel: r.GetLogLevel(), Notifications: nonNil(r.GetNotifications()), ActivatedAt: formatTime(r.GetActivatedAt()), Created: formatTime(r.GetCreated()),
			State: r.GetConnectionState(), LastSeen: formatTime(r.GetLastSeen()), LastSync: formatTime(r.GetLastSync()), LastError: r.GetLastError(),
			SyncSchedule: r.GetSyncSchedule(), SyncWindow: r.GetSyncWindow(), SyncTTL: ttl, NextWindow: next,
			PendingWrites: r.GetPendingWrites(), TagConflicts: r.GetTagConflicts()})
	}
	if asJSON {
		return printJSON(e, rows, detail)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPARENT\tMODE\tACTIVATION\tCONNECTION\tLAST SYNC\tREPOSITORIES\tCLIENT TOKENS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Parent, r.Mode, r.Activation, r.State, r.LastSync,
			strings.Join(r.Repositories, " "), strings.Join(r.ClientTokens, " "))
	}
	if detail && len(rows) == 1 {
		r := rows[0]
		sync := "continuous"
		if r.SyncSchedule != "" {
			sync = fmt.Sprintf("windows of %s at %q (UTC)", r.SyncWindow, r.SyncSchedule)
			if r.NextWindow != nil {
				sync += fmt.Sprintf("; next window %s to %s", r.NextWindow.Start, r.NextWindow.End)
			}
		}
		fmt.Fprintf(tw, "\nsync: %s; message TTL %s\n", sync, r.SyncTTL)
		if r.Mode == "ReadWrite" {
			fmt.Fprintf(tw, "local writes not synced up: %d\ntag conflicts: %d\n", r.PendingWrites, r.TagConflicts)
		}
		if r.LastError != "" {
			fmt.Fprintf(tw, "last error: %s\n", r.LastError)
		}
	}
	return tw.Flush()
}

// window is a sync window as show prints it.
type window struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func meshAddSite(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "mesh add-site", "", "Start a connected registry (created first with `georeg connected-registry create`) at a new\n"+
		"site of the local mesh: the traffic manager gets a listener for the site's location, a new\n"+
		"password of its sync token goes into DIR/sites/NAME.connection, and its node starts with it.\n"+
		"The site's clients use the node's address; `chaos partition NAME westus` and `kill-zone NAME/1` act on it.\n"+
		"A connected registry whose parent is another one (nesting) syncs from that site's node, which must\n"+
		"be in the mesh already; `chaos partition NAME PARENT` cuts the link between the two.\n"+
		"With --zones N the site is N zone nodes of one Raft group (a region of its own): kill-zone NAME/Z acts on one.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "connected registry `name` (lower-case letters and digits)")
	rtt := fs.Duration("rtt", chaos.DefaultSiteRTT, "simulated round trip between the site and the home region (its parent site, when nested)")
	wait := fs.Duration("wait", chaos.DefaultWait, "how long to wait for the node to answer")
	zones := fs.Int("zones", 1, "the site's zones: nodes of one Raft group, so a local push is acknowledged once a majority holds it")
	var nodeArgs listFlag
	fs.Var(&nodeArgs, "node-arg", "extra regiond `argument` for the site's node (repeatable)")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	if *zones < 1 || *zones > chaos.MaxSiteZones {
		return usagef("--zones %d: a site has 1 to %d zones", *zones, chaos.MaxSiteZones)
	}
	r, err := connectedRegistries().find(ctx, *dir, *name)
	if err != nil {
		return err
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	return c.AddSite(ctx, chaos.SiteConfig{
		Name: *name, Parent: r.GetParent(), HomeRTT: *rtt, Wait: *wait, NodeArgs: nodeArgs, Zones: *zones,
		ConnectionString: func(ctx context.Context, parent string) (string, error) {
			var resp *controlpb.ConnectedRegistrySettingsResponse
			err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
				var err error
				resp, err = c.ConnectedRegistrySettings(ctx, &controlpb.ConnectedRegistrySettingsRequest{Name: *name})
				return err
			})
			if err != nil {
				return "", err
			}
			return connected.ConnectionString{Name: *name, SyncToken: resp.GetRegistry().GetSyncToken(), SyncPassword: resp.GetSecret().GetValue(),
				ParentEndpoint: parent, Protocol: "http"}.String(), nil
		},
	})
}
