package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/georeg/georeg/proto/controlpb"
)

// repoGroups takes every "--FLAG REPO ACTION..." group out of args, for
// each flag in flags (the actions run up to the next word starting with
// "-"), and returns them by flag with the remaining args.
func repoGroups(args []string, flags ...string) (map[string][]*controlpb.Permission, []string, error) {
	groups := map[string][]*controlpb.Permission{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || !slices.Contains(flags, name) {
			rest = append(rest, a)
			continue
		}
		if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
			return nil, nil, usagef("--%s needs a repository and its actions: --%s REPO ACTION...", name, name)
		}
		p := &controlpb.Permission{Repository: args[i+1]}
		i += 2
		for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
			p.Actions = append(p.Actions, args[i])
		}
		i--
		if len(p.Actions) == 0 && name != "remove-repository" {
			return nil, nil, usagef("--%s %s: give at least one action (content/read, content/write, content/delete, metadata/read, metadata/write)", name, p.Repository)
		}
		groups[name] = append(groups[name], p)
	}
	return groups, rest, nil
}

func scopeMapCreate(ctx context.Context, e env, args []string) error {
	groups, args, err := repoGroups(args, "repository")
	if err != nil {
		return err
	}
	fs := newFlagSet(e, "scope-map create", "", "Create a scope map: a named set of repository permissions.\n--repository REPO ACTION... (repeatable); REPO is a name or a prefix ending in *.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "scope map `name` (5-50 letters, digits, - and _)")
	desc := fs.String("description", "", "`text` describing the scope map")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" || len(groups["repository"]) == 0 {
		return usagef("--name and at least one --repository REPO ACTION... are required")
	}
	var out *controlpb.ScopeMap
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		out, err = c.PutScopeMap(ctx, &controlpb.PutScopeMapRequest{Create: true,
			ScopeMap: &controlpb.ScopeMap{Name: *name, Description: *desc, Repositories: groups["repository"]}})
		return err
	})
	if err != nil {
		return err
	}
	return printScopeMaps(e, []*controlpb.ScopeMap{out}, *asJSON, true)
}

func listScopeMaps(ctx context.Context, dir string) ([]*controlpb.ScopeMap, error) {
	var resp *controlpb.ListScopeMapsResponse
	err := homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ListScopeMaps(ctx, &controlpb.ListAccessRequest{})
		return err
	})
	return resp.GetScopeMaps(), err
}

func scopeMapUpdate(ctx context.Context, e env, args []string) error {
	groups, args, err := repoGroups(args, "add-repository", "remove-repository")
	if err != nil {
		return err
	}
	fs := newFlagSet(e, "scope-map update", "", "Change a scope map: --add-repository REPO ACTION... adds actions, --remove-repository REPO [ACTION...] removes them (all of the repository's without actions).")
	dir := dirFlag(fs)
	name := fs.String("name", "", "scope map `name`")
	desc := fs.String("description", "", "new `text` describing the scope map")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	var out *controlpb.ScopeMap
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		ms, err := c.ListScopeMaps(ctx, &controlpb.ListAccessRequest{})
		if err != nil {
			return err
		}
		var m *controlpb.ScopeMap
		for _, x := range ms.ScopeMaps {
			if x.Name == *name {
				m = x
			}
		}
		if m == nil {
			return fmt.Errorf("no scope map %q", *name)
		}
		if *desc != "" {
			m.Description = *desc
		}
		m.Repositories = editPermissions(m.Repositories, groups["add-repository"], groups["remove-repository"])
		out, err = c.PutScopeMap(ctx, &controlpb.PutScopeMapRequest{ScopeMap: m})
		return err
	})
	if err != nil {
		return err
	}
	return printScopeMaps(e, []*controlpb.ScopeMap{out}, *asJSON, true)
}

// editPermissions adds and removes actions, keeping the order of
// repositories; a repository left with no action is dropped.
func editPermissions(perms, add, remove []*controlpb.Permission) []*controlpb.Permission {
	byRepo := map[string]*controlpb.Permission{}
	var order []string
	for _, p := range perms {
		byRepo[p.Repository] = &controlpb.Permission{Repository: p.Repository, Actions: append([]string(nil), p.Actions...)}
		order = append(order, p.Repository)
	}
	for _, a := range add {
		p, ok := byRepo[a.Repository]
		if !ok {
			p = &controlpb.Permission{Repository: a.Repository}
			byRepo[a.Repository] = p
			order = append(order, a.Repository)
		}
		for _, act := range a.Actions {
			if !slices.Contains(p.Actions, act) {
				p.Actions = append(p.Actions, act)
			}
		}
	}
	for _, r := range remove {
		p, ok := byRepo[r.Repository]
		if !ok {
			continue
		}
		if len(r.Actions) == 0 {
			p.Actions = nil
		}
		var keep []string
		for _, act := range p.Actions {
			if !slices.Contains(r.Actions, act) {
				keep = append(keep, act)
			}
		}
		p.Actions = keep
	}
	var out []*controlpb.Permission
	for _, r := range order {
		if p := byRepo[r]; len(p.Actions) > 0 {
			out = append(out, p)
		}
	}
	return out
}

func scopeMapDelete(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "scope-map delete", "", "Delete a scope map no token uses.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "scope map `name`")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.DeleteScopeMap(ctx, &controlpb.NameRequest{Name: *name})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted scope map %s\n", *name)
	return nil
}

func printScopeMaps(e env, ms []*controlpb.ScopeMap, asJSON, detail bool) error {
	type perm struct {
		Repository string   `json:"repository"`
		Actions    []string `json:"actions"`
	}
	type row struct {
		Name        string `json:"name"`
		Type        string `json:"type"`
		Description string `json:"description,omitempty"`
		Actions     []perm `json:"repositories"`
		Created     string `json:"creationDate,omitempty"`
	}
	rows := make([]row, 0, len(ms))
	for _, m := range ms {
		r := row{Name: m.Name, Type: "UserDefined", Description: m.Description, Created: formatTime(m.Created)}
		if m.BuiltIn {
			r.Type = "SystemDefined"
		}
		for _, p := range m.Repositories {
			r.Actions = append(r.Actions, perm{p.Repository, p.Actions})
		}
		rows = append(rows, r)
	}
	if asJSON {
		return printJSON(e, rows, detail)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tREPOSITORIES\tDESCRIPTION")
	for _, r := range rows {
		var ps []string
		for _, p := range r.Actions {
			ps = append(ps, p.Repository+"="+strings.Join(p.Actions, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Type, strings.Join(ps, " "), r.Description)
	}
	return tw.Flush()
}

// printJSON prints one object when single is set and there is one, else a
// list.
func printJSON[T any](e env, rows []T, single bool) error {
	if single && len(rows) == 1 {
		return encodeIndented(e, rows[0])
	}
	return encodeIndented(e, rows)
}

// encodeIndented prints v as indented JSON, for programs.
func encodeIndented(e env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func formatTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// expiryFlag turns --expiration-in-days into a timestamp (nil: never).
func expiryFlag(days int) (*timestamppb.Timestamp, error) {
	if days < 0 {
		return nil, usagef("--expiration-in-days %d: must be 1 or more (0: never expires)", days)
	}
	if days == 0 {
		return nil, nil
	}
	return timestamppb.New(time.Now().Add(time.Duration(days) * 24 * time.Hour)), nil
}

func tokenCreate(ctx context.Context, e env, args []string) error {
	groups, args, err := repoGroups(args, "repository")
	if err != nil {
		return err
	}
	fs := newFlagSet(e, "token create", "", "Create a token: a user name and two generated passwords, limited to a scope map\n(--scope-map, or --repository REPO ACTION... which creates NAME-scope-map).")
	dir := dirFlag(fs)
	name := fs.String("name", "", "token `name`: the user name clients log in with")
	scopeMap := fs.String("scope-map", "", "`name` of the scope map the token is limited to")
	status := fs.String("status", "enabled", "enabled or disabled")
	days := fs.Int("expiration-in-days", 0, "`days` until the passwords expire (0: never)")
	output := fs.String("output", "table", "table or json")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" || (*scopeMap == "") == (len(groups["repository"]) == 0) {
		return usagef("--name and one of --scope-map or --repository REPO ACTION... are required")
	}
	expiry, err := expiryFlag(*days)
	if err != nil {
		return err
	}
	var info *controlpb.TokenInfo
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		sm := *scopeMap
		if sm == "" {
			sm = *name + "-scope-map"
			if _, err := c.PutScopeMap(ctx, &controlpb.PutScopeMapRequest{Create: true, ScopeMap: &controlpb.ScopeMap{
				Name: sm, Description: "created with token " + *name, Repositories: groups["repository"]}}); err != nil {
				return err
			}
		}
		var err error
		info, err = c.PutToken(ctx, &controlpb.PutTokenRequest{Create: true, Name: *name, ScopeMap: sm, Status: *status, Expiry: expiry})
		return err
	})
	if err != nil {
		return err
	}
	return printTokenInfo(e, info, *output)
}

// printTokenInfo prints a token with the passwords generated for it, as
// `az acr token create` does.
func printTokenInfo(e env, info *controlpb.TokenInfo, output string) error {
	type password struct {
		Name   string `json:"name"`
		Value  string `json:"value"`
		Expiry string `json:"expiry,omitempty"`
	}
	type out struct {
		Name        string `json:"name"`
		ScopeMap    string `json:"scopeMapId"`
		Status      string `json:"status"`
		Credentials struct {
			Username  string     `json:"username"`
			Passwords []password `json:"passwords"`
		} `json:"credentials"`
	}
	t := info.GetToken()
	o := out{Name: t.GetName(), ScopeMap: t.GetScopeMap(), Status: t.GetStatus()}
	o.Credentials.Username = t.GetName()
	o.Credentials.Passwords = []password{}
	for _, s := range info.GetSecrets() {
		p := password{Name: s.Name, Value: s.Value}
		for _, tp := range t.GetPasswords() {
			if tp.Name == s.Name {
				p.Expiry = formatTime(tp.Expiry)
			}
		}
		o.Credentials.Passwords = append(o.Credentials.Passwords, p)
	}
	if output == "json" {
		return printJSON(e, []out{o}, true)
	}
	fmt.Fprintf(e.stdout, "token %s (scope map %s, %s)\n", o.Name, o.ScopeMap, o.Status)
	for _, p := range o.Credentials.Passwords {
		fmt.Fprintf(e.stdout, "  %s: %s", p.Name, p.Value)
		if p.Expiry != "" {
			fmt.Fprintf(e.stdout, " (expires %s)", p.Expiry)
		}
		fmt.Fprintln(e.stdout)
	}
	if len(o.Credentials.Passwords) > 0 {
		fmt.Fprintf(e.stdout, "The passwords are shown only now. Log in with: docker login <registry> -u %s -p <password>\n", o.Name)
	}
	return nil
}

func listTokens(ctx context.Context, dir string) ([]*controlpb.Token, error) {
	var resp *controlpb.ListTokensResponse
	err := homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ListTokens(ctx, &controlpb.ListAccessRequest{})
		return err
	})
	return resp.GetTokens(), err
}

func printTokens(e env, ts []*controlpb.Token, asJSON, detail bool) error {
	type password struct {
		Name    string `json:"name"`
		Created string `json:"creationDateTime"`
		Expiry  string `json:"expiry,omitempty"`
	}
	type row struct {
		Name      string     `json:"name"`
		ScopeMap  string     `json:"scopeMapId"`
		Status    string     `json:"status"`
		Created   string     `json:"creationDate"`
		Passwords []password `json:"passwords"`
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	rows := make([]row, 0, len(ts))
	for _, t := range ts {
		r := row{Name: t.Name, ScopeMap: t.ScopeMap, Status: t.Status, Created: formatTime(t.Created), Passwords: []password{}}
		for _, p := range t.Passwords {
			r.Passwords = append(r.Passwords, password{p.Name, formatTime(p.Created), formatTime(p.Expiry)})
		}
		rows = append(rows, r)
	}
	if asJSON {
		return printJSON(e, rows, detail)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPE MAP\tSTATUS\tPASSWORDS\tCREATED")
	for _, r := range rows {
		var ps []string
		for _, p := range r.Passwords {
			s := p.Name
			if p.Expiry != "" {
				s += " (expires " + p.Expiry + ")"
			}
			ps = append(ps, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.ScopeMap, r.Status, strings.Join(ps, ", "), r.Created)
	}
	return tw.Flush()
}

func tokenUpdate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "token update", "", "Change a token's scope map or status; it takes effect in every region within 2 s.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "token `name`")
	scopeMap := fs.String("scope-map", "", "new scope map `name`")
	status := fs.String("status", "", "enabled or disabled")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" || *scopeMap == "" && *status == "" {
		return usagef("--name and --scope-map or --status are required")
	}
	var info *controlpb.TokenInfo
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		info, err = c.PutToken(ctx, &controlpb.PutTokenRequest{Name: *name, ScopeMap: *scopeMap, Status: *status})
		return err
	})
	if err != nil {
		return err
	}
	return printTokens(e, []*controlpb.Token{info.Token}, false, true)
}

func tokenDelete(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "token delete", "", "Delete a token; clients using it are refused in every region within 2 s.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "token `name`")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usagef("--name is required")
	}
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.DeleteToken(ctx, &controlpb.NameRequest{Name: *name})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted token %s\n", *name)
	return nil
}

// tokenCredential is "token credential generate".
func tokenCredential(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] != "generate" {
		return usagef("usage: georeg token credential generate --name NAME --password1|--password2 [--expiration-in-days N]")
	}
	fs := newFlagSet(e, "token credential generate", "", "Generate a new password1 or password2 for a token; the other keeps working.")
	dir := dirFlag(fs)
	name := fs.String("name", "", "token `name`")
	p1 := fs.Bool("password1", false, "replace password1")
	p2 := fs.Bool("password2", false, "replace password2")
	days := fs.Int("expiration-in-days", 0, "`days` until the password expires (0: never)")
	output := fs.String("output", "table", "table or json")
	if _, err := parse(e, fs, args[1:]); err != nil {
		return err
	}
	if *name == "" || *p1 == *p2 {
		return usagef("--name and exactly one of --password1, --password2 are required")
	}
	expiry, err := expiryFlag(*days)
	if err != nil {
		return err
	}
	which := "password1"
	if *p2 {
		which = "password2"
	}
	var info *controlpb.TokenInfo
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		info, err = c.GenerateCredential(ctx, &controlpb.GenerateCredentialRequest{Name: *name, Password: which, Expiry: expiry})
		return err
	})
	if err != nil {
		return err
	}
	return printTokenInfo(e, info, *output)
}

func registryUpdate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "registry update", "", "Change the registry's access settings.")
	dir := dirFlag(fs)
	var admin, anon optionalBool
	fs.Var(&admin, "admin-enabled", "let the admin user log in to the registry (true|false)")
	fs.Var(&anon, "anonymous-pull-enabled", "let clients without credentials pull (true|false)")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (write --flag true|false)", pos[0])
	}
	if admin.v == nil && anon.v == nil {
		return usagef("give --admin-enabled and/or --anonymous-pull-enabled")
	}
	var s *controlpb.RegistrySettings
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		s, err = c.UpdateRegistry(ctx, &controlpb.UpdateRegistryRequest{AdminEnabled: admin.v, AnonymousPullEnabled: anon.v})
		return err
	})
	if err != nil {
		return err
	}
	return printJSON(e, []map[string]bool{{"authEnabled": s.AuthEnabled, "adminUserEnabled": s.AdminEnabled, "anonymousPullEnabled": s.AnonymousPullEnabled}}, true)
}

// optionalBool is a bool flag that remembers whether it was given.
type optionalBool struct{ v *bool }

func (o *optionalBool) String() string {
	if o == nil || o.v == nil {
		return ""
	}
	return fmt.Sprint(*o.v)
}

func (o *optionalBool) Set(s string) error {
	switch s {
	case "true":
		o.v = new(true)
	case "false":
		o.v = new(false)
	default:
		return fmt.Errorf("want true or false, not %q", s)
	}
	return nil
}

func credentialRotate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "credential rotate-signing-key", "", "Make a new key sign the registry's bearer tokens; tokens signed before keep working until they expire.")
	dir := dirFlag(fs)
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	var resp *controlpb.RotateSigningKeyResponse
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.RotateSigningKey(ctx, &controlpb.RotateSigningKeyRequest{})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "signing keys (current first): %s\n", strings.Join(resp.KeyIds, ", "))
	return nil
}
