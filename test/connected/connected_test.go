// Package connected tests connected registries from outside: the georeg
// CLI's connected-registry commands against a mesh with authentication on,
// and what the sync token a connection string carries may do at the cloud
// endpoint.
package connected

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// registry is what `connected-registry show --json` prints.
type registry struct {
	Name         string   `json:"name"`
	Parent       string   `json:"parent"`
	Mode         string   `json:"mode"`
	Activation   string   `json:"activationStatus"`
	Repositories []string `json:"repositories"`
	ClientTokens []string `json:"clientTokens"`
	SyncToken    string   `json:"syncToken"`
	SyncSchedule string   `json:"syncSchedule"`
	SyncWindow   string   `json:"syncWindow"`
	SyncTTL      string   `json:"syncMessageTtl"`
	Next         *struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"nextSyncWindow"`
}

func TestConnectedRegistryCommands(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus", "--zones", "1")
	ctx := context.Background()
	run := func(args ...string) (string, error) { return m.Run(ctx, args...) }
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("georeg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	show := func(name string) registry {
		t.Helper()
		var r registry
		if err := json.Unmarshal([]byte(must("connected-registry", "show", "--name", name, "--json")), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	must("connected-registry", "create", "--name", "factory1", "--mode", "ReadWrite", "--repository", "samples/*", "hello-world")
	must("token", "create", "--name", "client1", "--scope-map", "_repositories_pull")
	must("connected-registry", "create", "--name", "shop1", "--parent", "factory1", "--repository", "samples/app", "--client-tokens", "client1")

	// Bad input: each refused with a clear error, nothing changed.
	refusals := []struct {
		args []string
		says string
	}{
		{[]string{"create", "--name", "fac-tory1", "--repository", "a"}, "only letters and digits"},
		{[]string{"create", "--name", "factory1", "--repository", "a"}, "exists"},
		{[]string{"create", "--name", "child1", "--parent", "nothere", "--repository", "a"}, "does not exist"},
		{[]string{"create", "--name", "child1", "--mode", "Mirror", "--repository", "a"}, "ReadOnly or ReadWrite"},
		{[]string{"create", "--name", "child1", "--parent", "shop1", "--mode", "ReadWrite", "--repository", "samples/app"}, "ReadWrite parent"},
		{[]string{"create", "--name", "child1", "--repository", "de*mo"}, "wildcard"},
		{[]string{"create", "--name", "child1", "--repository", "UPPER/case"}, "UPPER/case"},
		{[]string{"create", "--name", "child1", "--parent", "factory1", "--repository", "other/x"}, "outside its parent"},
		{[]string{"create", "--name", "child1", "--repository", "a", "--client-tokens", "nothere"}, "does not exist"},
		{[]string{"update", "--name", "factory1", "--remove-repository", "samples/*"}, "would no longer fit its child"},
		{[]string{"delete", "--name", "factory1"}, "parent of"},
		{[]string{"update", "--name", "shop1", "--sync-schedule", "0 */6 * * *", "--sync-window", "PT30M"}, "PT1H to P7D"},
		{[]string{"update", "--name", "shop1", "--sync-schedule", "0 */6 * * *", "--sync-window", "P8D"}, "PT1H to P7D"},
		{[]string{"update", "--name", "shop1", "--sync-window", "PT2H"}, "needs a sync schedule"},
		{[]string{"update", "--name", "shop1", "--sync-schedule", "every 6 hours", "--sync-window", "PT2H"}, "cron expression"},
		{[]string{"update", "--name", "shop1", "--sync-message-ttl", "PT12H"}, "P1D to P90D"},
		{[]string{"update", "--name", "shop1", "--sync-message-ttl", "P91D"}, "P1D to P90D"},
		{[]string{"create", "--name", "child1", "--repository", "a", "--sync-window", "PT2H"}, "needs a sync schedule"},
	}
	for _, r := range refusals {
		out, err := run(append([]string{"connected-registry"}, r.args...)...)
		if err == nil || !strings.Contains(out, r.says) {
			t.Errorf("connected-registry %s: err %v, output %q; want a refusal saying %q", strings.Join(r.args, " "), err, out, r.says)
		}
	}
	if out, err := run("token", "delete", "--name", "client1"); err == nil || !strings.Contains(out, "shop1") {
		t.Errorf("deleting a client token in use: err %v, output %q; want a refusal naming shop1", err, out)
	}
	list := must("connected-registry", "list", "--json")
	var all []registry
	if err := json.Unmarshal([]byte(list), &all); err != nil || len(all) != 2 {
		t.Fatalf("list after the refusals: %v\n%s", err, list)
	}
	if r := show("shop1"); r.Parent != "factory1" || r.Mode != "ReadOnly" || r.Activation != "Inactive" || r.SyncToken != "shop1-sync-token" || strings.Join(r.ClientTokens, ",") != "client1" ||
		r.SyncSchedule != "" || r.SyncTTL != "P2D" || r.Next != nil {
		t.Fatalf("shop1: %+v", r)
	}
	// Sync windows: the next one is shown.
	must("connected-registry", "update", "--name", "shop1", "--sync-schedule", "0 */6 * * *", "--sync-window", "PT1H", "--sync-message-ttl", "P7D")
	if r := show("shop1"); r.SyncSchedule != "0 */6 * * *" || r.SyncWindow != "PT1H" || r.SyncTTL != "P7D" || r.Next == nil || r.Next.Start == "" || r.Next.End == "" {
		t.Fatalf("shop1 with a sync schedule: %+v", r)
	} else {
		t.Logf("shop1 syncs %s at %q: next window %s to %s", r.SyncWindow, r.SyncSchedule, r.Next.Start, r.Next.End)
	}
	if out := must("connected-registry", "show", "--name", "shop1"); !strings.Contains(out, "next window") {
		t.Errorf("show does not say the next window:\n%s", out)
	}

	// The connection string: printed once, with a password that logs the
	// sync token in at the cloud endpoint for the registry's repositories
	// only.
	cs := must("connected-registry", "get-settings", "--name", "factory1")
	fields := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSpace(strings.Split(cs, "\n")[0]), ";") {
		k, v, _ := strings.Cut(kv, "=")
		fields[k] = v
	}
	if fields["ConnectedRegistryName"] != "factory1" || fields["SyncTokenName"] != "factory1-sync-token" || fields["SyncTokenPassword"] == "" ||
		fields["ParentGatewayEndpoint"] != m.Endpoint || fields["ParentEndpointProtocol"] != "http" {
		t.Fatalf("connection string %q", cs)
	}
	img := ociclient.NewImage("samples/app:v1", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(7, 4096)))
	admin := m.Client(30 * time.Second)
	if err := admin.PushImage(ctx, m.URL(), "samples/app", "v1", img); err != nil {
		t.Fatal(err)
	}
	if err := admin.PushImage(ctx, m.URL(), "other/x", "v1", img); err != nil {
		t.Fatal(err)
	}
	sync := ociclient.NewWithCredential(30*time.Second, ociclient.Credential{User: fields["SyncTokenName"], Password: fields["SyncTokenPassword"]})
	// The token may take a moment to reach the node that answers.
	err := ociclient.Poll(ctx, 10*time.Second, 100*time.Millisecond, func() (bool, error) {
		_, _, err := sync.Do(ctx, http.MethodGet, m.URL(), "/v2/samples/app/tags/list", nil, nil, http.StatusOK)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("the sync token reading its repository: %v", err)
	}
	if _, _, err := sync.Do(ctx, http.MethodGet, m.URL(), "/v2/other/x/tags/list", nil, nil, http.StatusOK); !ociclient.IsStatus(err, http.StatusUnauthorized) && !ociclient.IsStatus(err, http.StatusForbidden) {
		t.Errorf("the sync token reading a repository outside the connected registry: %v, want 401 or 403", err)
	}
	if _, _, err := sync.Do(ctx, http.MethodPost, m.URL(), "/v2/other/x/blobs/uploads/", nil, nil, http.StatusAccepted); err == nil {
		t.Errorf("the sync token opened an upload outside the connected registry's repositories")
	}

	must("connected-registry", "update", "--name", "shop1", "--remove-client-tokens", "client1")
	must("token", "delete", "--name", "client1")
	must("connected-registry", "deactivate", "--name", "shop1")
	must("connected-registry", "delete", "--name", "shop1")
	must("connected-registry", "delete", "--name", "factory1")
	if out := must("token", "list", "--json"); strings.Contains(out, "sync-token") {
		t.Errorf("sync tokens left after the connected registries were deleted:\n%s", out)
	}
}
