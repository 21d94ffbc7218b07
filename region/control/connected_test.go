package control_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/region/regiontest"
)

// TestConnectedRegistries creates, updates, activates and deletes connected
// registries through a follower of the home region, and checks that every
// bad definition is refused with a clear error and changes nothing.
func TestConnectedRegistries(t *testing.T) {
	r := startRegion(t, regiontest.Config{Region: home})
	c := client(t, r.Followers()[0])
	ctx := t.Context()
	cr := func(name, parent, mode string, repos ...string) *controlpb.ConnectedRegistry {
		return &controlpb.ConnectedRegistry{Name: name, Parent: parent, Mode: mode, Repositories: repos}
	}
	put := func(reg *controlpb.ConnectedRegistry, create bool) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.PutConnectedRegistry(ctx, &controlpb.PutConnectedRegistryRequest{Registry: reg, Create: create})
			return err
		}
	}
	withTokens := func(reg *controlpb.ConnectedRegistry, ts ...string) *controlpb.ConnectedRegistry {
		reg.ClientTokens = ts
		return reg
	}
	tests := []struct {
		name string
		call func(context.Context) error
		want codes.Code
		says string
	}{
		{"create", put(cr("factory1", "", "ReadWrite", "samples/*", "hello-world"), true), codes.OK, ""},
		{"duplicate name", put(cr("factory1", "", "ReadOnly", "hello-world"), true), codes.FailedPrecondition, "exists"},
		{"bad name", put(cr("fac-1", "", "ReadOnly", "hello-world"), true), codes.InvalidArgument, "only letters and digits"},
		{"unknown parent", put(cr("child1", "nothere", "ReadOnly", "hello-world"), true), codes.InvalidArgument, "does not exist"},
		{"bad mode", put(cr("child1", "", "Mirror", "hello-world"), true), codes.InvalidArgument, "ReadOnly or ReadWrite"},
		{"pattern grammar", put(cr("child1", "", "ReadOnly", "de*mo"), true), codes.InvalidArgument, "wildcard"},
		{"outside the parent", put(cr("child1", "factory1", "ReadOnly", "other/x"), true), codes.InvalidArgument, "outside its parent"},
		{"child", put(cr("child1", "factory1", "ReadOnly", "samples/a"), true), codes.OK, ""},
		{"ReadWrite under ReadOnly", put(cr("child2", "child1", "ReadWrite", "samples/a"), true), codes.InvalidArgument, "ReadWrite parent"},
		{"missing client token", put(withTokens(cr("factory1", "", "ReadWrite", "samples/*", "hello-world"), "nothere"), false), codes.InvalidArgument, "client token \"nothere\" does not exist"},
		{"delete a parent", func(ctx context.Context) error {
			_, err := c.DeleteConnectedRegistry(ctx, &controlpb.DeleteConnectedRegistryRequest{Name: "factory1"})
			return err
		}, codes.FailedPrecondition, "parent of"},
		{"get-settings", func(ctx context.Context) error {
			got, err := c.ConnectedRegistrySettings(ctx, &controlpb.ConnectedRegistrySettingsRequest{Name: "child1"})
			if err == nil && (got.GetSecret().GetValue() == "" || got.GetRegistry().GetSyncToken() != "child1-sync-token") {
				t.Errorf("get-settings answered %v", got)
			}
			return err
		}, codes.OK, ""},
		{"the sync token cannot be deleted", func(ctx context.Context) error {
			_, err := c.DeleteToken(ctx, &controlpb.NameRequest{Name: "child1-sync-token"})
			return err
		}, codes.InvalidArgument, "connected registry"},
		{"deactivate", func(ctx context.Context) error {
			got, err := c.DeactivateConnectedRegistry(ctx, &controlpb.NameRequest{Name: "child1"})
			if err == nil && got.GetActivation() != "Inactive" {
				t.Errorf("deactivate answered %v", got)
			}
			return err
		}, codes.OK, ""},
		{"delete child", func(ctx context.Context) error {
			_, err := c.DeleteConnectedRegistry(ctx, &controlpb.DeleteConnectedRegistryRequest{Name: "child1"})
			return err
		}, codes.OK, ""},
		{"delete unknown", func(ctx context.Context) error {
			_, err := c.DeleteConnectedRegistry(ctx, &controlpb.DeleteConnectedRegistryRequest{Name: "child1"})
			return err
		}, codes.NotFound, "child1"},
	}
	for _, tc := range tests {
		err := tc.call(ctx)
		if got := status.Code(err); got != tc.want || !strings.Contains(status.Convert(err).Message(), tc.says) {
			t.Fatalf("%s: %v (%s), want %s saying %q", tc.name, err, got, tc.want, tc.says)
		}
	}
	list, err := c.ListConnectedRegistries(ctx, &controlpb.ListAccessRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rs := list.GetRegistries(); len(rs) != 1 || rs[0].GetName() != "factory1" || rs[0].GetMode() != "ReadWrite" || rs[0].GetActivation() != "Inactive" || rs[0].GetLogLevel() != "Information" {
		t.Fatalf("list: %v", rs)
	}
	tokens, err := c.ListTokens(ctx, &controlpb.ListAccessRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tok := range tokens.GetTokens() {
		names = append(names, tok.GetName())
	}
	if strings.Join(names, ",") != "factory1-sync-token" {
		t.Fatalf("tokens %v: want only factory1's sync token left", names)
	}
}
