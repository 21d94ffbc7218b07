package main

import (
	"context"
	"fmt"

	"github.com/georeg/georeg/proto/controlpb"
)

// resource is one kind of thing the management commands list and show by
// name (scope maps, tokens, connected registries): how to fetch them all
// from the home region and how to print them.
type resource[T interface{ GetName() string }] struct {
	kind  string // "scope map"
	cmd   string // "scope-map"
	list  func(ctx context.Context, dir string) ([]T, error)
	print func(e env, rows []T, asJSON, detail bool) error
}

// find returns the one called name.
func (r resource[T]) find(ctx context.Context, dir, name string) (T, error) {
	var zero T
	all, err := r.list(ctx, dir)
	if err != nil {
		return zero, err
	}
	for _, x := range all {
		if x.GetName() == name {
			return x, nil
		}
	}
	return zero, fmt.Errorf("no %s %q", r.kind, name)
}

// listVerb is the `list` verb: every one, as a table or JSON.
func (r resource[T]) listVerb(summary string) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		fs := newFlagSet(e, r.cmd+" list", "", summary)
		dir := dirFlag(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parse(e, fs, args); err != nil {
			return err
		}
		all, err := r.list(ctx, *dir)
		if err != nil {
			return err
		}
		return r.print(e, all, *asJSON, false)
	}
}

// showVerb is the `show --name` verb: one, in detail.
func (r resource[T]) showVerb(summary string) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		fs := newFlagSet(e, r.cmd+" show", "", summary)
		dir := dirFlag(fs)
		name := fs.String("name", "", r.kind+" `name`")
		asJSON := fs.Bool("json", false, "print JSON")
		if _, err := parse(e, fs, args); err != nil {
			return err
		}
		if *name == "" {
			return usagef("--name is required")
		}
		x, err := r.find(ctx, *dir, *name)
		if err != nil {
			return err
		}
		return r.print(e, []T{x}, *asJSON, true)
	}
}

func scopeMaps() resource[*controlpb.ScopeMap] {
	return resource[*controlpb.ScopeMap]{kind: "scope map", cmd: "scope-map", list: listScopeMaps, print: printScopeMaps}
}

func tokens() resource[*controlpb.Token] {
	return resource[*controlpb.Token]{kind: "token", cmd: "token", list: listTokens, print: printTokens}
}

func connectedRegistries() resource[*controlpb.ConnectedRegistry] {
	return resource[*controlpb.ConnectedRegistry]{kind: "connected registry", cmd: "connected-registry", list: listConnected, print: printConnected}
}
