package connected

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/connected"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestNestedSites runs issue 18's hierarchy on a 2-region mesh: the cloud,
// factory1 (ReadWrite) at a site of its own, and below it line1 (ReadOnly)
// and cell1 (ReadWrite), each at a site that reaches only factory1's node.
// It checks from outside: an image pushed in the cloud reaches all three
// sites; an image pushed at cell1 reaches factory1, both cloud regions and
// line1; with the link between cell1 and factory1 cut, cell1 takes pushes,
// and after heal they reach the cloud and the cloud's reach cell1; line1
// refuses pushes; the cloud shows every level Online (the
// nested ones' activations and reports are relayed by factory1 with its
// own sync token); a nested registry's own sync token cannot activate at
// the cloud; and a ReadWrite registry under a ReadOnly one is refused.
func TestNestedSites(t *testing.T) {
	m := harness.StartMesh(t, "--regions", "westus,eastus", "--zones", "1")
	ctx := context.Background()
	must := func(args ...string) string {
		t.Helper()
		return m.MustRun(t, ctx, args...)
	}
	pusher := m.CreateToken(t, "pusher1", "--scope-map", "_repositories_push")
	reader := m.CreateToken(t, "reader1", "--scope-map", "_repositories_pull")
	must("connected-registry", "create", "--name", "factory1", "--mode", "ReadWrite", "--repository", "samples/*",
		"--client-tokens", pusher.User, reader.User)
	must("connected-registry", "create", "--name", "line1", "--parent", "factory1", "--repository", "samples/*",
		"--client-tokens", pusher.User, reader.User)
	must("connected-registry", "create", "--name", "cell1", "--parent", "factory1", "--mode", "ReadWrite",
		"--repository", "samples/app", "--client-tokens", pusher.User, reader.User)

	// Bad input: a ReadWrite registry under a ReadOnly one, and a child
	// outside its parent's repositories, each refused with nothing made.
	for _, bad := range [][]string{
		{"--name", "cell2", "--parent", "line1", "--mode", "ReadWrite", "--repository", "samples/app"},
		{"--name", "cell3", "--parent", "factory1", "--repository", "other/x"},
	} {
		out, err := m.Run(ctx, append([]string{"connected-registry", "create"}, bad...)...)
		if err == nil {
			t.Errorf("connected-registry create %v: accepted, want refused\n%s", bad, out)
		} else {
			t.Logf("create %v: refused: %s", bad[1], strings.TrimSpace(out))
		}
	}
	if out := must("connected-registry", "list"); strings.Contains(out, "cell2") || strings.Contains(out, "cell3") {
		t.Errorf("a refused registry was made:\n%s", out)
	}

	start := time.Now()
	for _, name := range []string{"factory1", "line1", "cell1"} {
		must("mesh", "add-site", "--name", name)
	}
	t.Logf("three sites up in %v", time.Since(start).Round(time.Millisecond))
	m.Reload()
	siteURL := map[string]string{}
	for _, name := range []string{"factory1", "line1", "cell1"} {
		siteURL[name] = m.Sites[name].URL()
	}
	logs := func() string {
		var b strings.Builder
		for _, name := range []string{"factory1", "line1", "cell1"} {
			b.WriteString("--- " + name + "\n" + m.Sites[name].LogTail(2000) + "\n")
		}
		return b.String()
	}
	regions := map[string]string{}
	for _, r := range []string{"westus", "eastus"} {
		regions[r] = m.RegionNodes(r)[0].URL()
	}
	cloud := m.Client(30 * time.Second)
	local := ociclient.NewWithCredential(30*time.Second, pusher)
	pull := ociclient.NewWithCredential(30*time.Second, reader)
	// reaches waits until repo:tag is img at every place named.
	reaches := func(what string, c *ociclient.Client, img ociclient.Image, repo, tag string, places map[string]string) {
		t.Helper()
		from := time.Now()
		for place, url := range places {
			err := ociclient.Poll(ctx, 60*time.Second, 100*time.Millisecond, func() (bool, error) {
				d, _, err := c.GetManifest(ctx, url, repo, tag)
				return err == nil && d == img.Digest, nil
			})
			if err != nil {
				t.Fatalf("%s: %s:%s is not at %s: %v\n%s", what, repo, tag, place, err, logs())
			}
			// Bytes checked: every blob pulls back with its digest.
			for _, b := range img.Blobs() {
				data, err := c.GetBlob(ctx, url, repo, b.Digest)
				if err != nil || digest.FromBytes(data) != b.Digest {
					t.Fatalf("%s: blob %s of %s:%s at %s: %v", what, b.Digest, repo, tag, place, err)
				}
			}
			t.Logf("%s: at %s within %v", what, place, time.Since(from).Round(time.Millisecond))
		}
	}

	// Down the hierarchy: pushed in the cloud, pulled at every level.
	fromCloud := ociclient.NewImage("samples/app:cloud", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1, 64<<10)))
	if err := cloud.PushImage(ctx, m.URL(), "samples/app", "cloud", fromCloud); err != nil {
		t.Fatal(err)
	}
	reaches("pushed in the cloud", pull, fromCloud, "samples/app", "cloud",
		map[string]string{"factory1": siteURL["factory1"], "line1": siteURL["line1"], "cell1": siteURL["cell1"]})

	// Up and across: pushed at cell1 (once it activated through
	// factory1), pulled in both regions, at factory1 and at line1.
	fromCell := ociclient.NewImage("samples/app:cell", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(2, 64<<10)))
	if err := ociclient.Poll(ctx, 60*time.Second, 200*time.Millisecond, func() (bool, error) {
		err := local.PushImage(ctx, siteURL["cell1"], "samples/app", "cell", fromCell)
		return err == nil, err
	}); err != nil {
		t.Fatalf("pushing at cell1: %v\n%s", err, logs())
	}
	reaches("pushed at cell1", pull, fromCell, "samples/app", "cell", map[string]string{"factory1": siteURL["factory1"], "line1": siteURL["line1"]})
	reaches("pushed at cell1", cloud, fromCell, "samples/app", "cell", regions)

	// The link between cell1 and factory1 cut: cell1 takes pushes and
	// serves what it holds; after heal, what was pushed on either side
	// meanwhile is on the other.
	must("chaos", "partition", "cell1", "factory1")
	cutAt := time.Now()
	atCell := ociclient.NewImage("samples/app:cut", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(4, 64<<10)))
	if err := local.PushImage(ctx, siteURL["cell1"], "samples/app", "cut", atCell); err != nil {
		t.Errorf("pushing at cell1 while it is cut off: %v", err)
	}
	inCloud := ociclient.NewImage("samples/app:during", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(5, 64<<10)))
	if err := cloud.PushImage(ctx, m.URL(), "samples/app", "during", inCloud); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pull.GetManifest(ctx, siteURL["cell1"], "samples/app", "cloud"); err != nil {
		t.Errorf("cell1 cut off does not serve what it holds: %v", err)
	}
	time.Sleep(3 * time.Second)
	if _, _, err := pull.GetManifest(ctx, siteURL["cell1"], "samples/app", "during"); err == nil {
		t.Errorf("samples/app:during reached cell1 through a cut link")
	}
	must("chaos", "heal", "cell1", "factory1")
	t.Logf("cell1 cut off from factory1 for %v", time.Since(cutAt).Round(time.Millisecond))
	reaches("pushed at cell1 while cut off, after heal", cloud, atCell, "samples/app", "cut", regions)
	reaches("pushed in the cloud while cell1 was cut off, after heal", pull, inCloud, "samples/app", "during", map[string]string{"cell1": siteURL["cell1"]})

	// line1 is ReadOnly: a push there is refused, even with a token that
	// may push, and nothing is stored.
	err := local.PushImage(ctx, siteURL["line1"], "samples/app", "line", ociclient.NewImage("samples/app:line",
		ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(3, 1<<10))))
	if e := (*ociclient.Error)(nil); !errors.As(err, &e) || !e.Has("DENIED") {
		t.Errorf("a push at line1 (ReadOnly): %v, want DENIED", err)
	}
	if _, _, err := pull.GetManifest(ctx, siteURL["line1"], "samples/app", "line"); !ociclient.IsStatus(err, http.StatusNotFound) {
		t.Errorf("samples/app:line at line1 after the refused push: %v, want 404", err)
	}

	// The cloud sees every level: the nested ones' activations and
	// reports came through factory1.
	state := func(name string) (string, string) {
		var r struct {
			State      string `json:"connectionState"`
			Activation string `json:"activationStatus"`
		}
		json.Unmarshal([]byte(must("connected-registry", "show", "--name", name, "--json")), &r)
		return r.State, r.Activation
	}
	for _, name := range []string{"factory1", "line1", "cell1"} {
		if err := ociclient.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, error) {
			s, _ := state(name)
			return s == "Online", nil
		}); err != nil {
			s, a := state(name)
			t.Errorf("the cloud shows %s %s (%s), want Online", name, s, a)
		}
	}

	// Each level authenticates to its parent only: line1's sync token
	// does not activate at the cloud.
	b, err := os.ReadFile(filepath.Join(m.Dir, "sites", "line1.connection"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := connected.ParseConnectionString(string(b))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, m.URL()+connected.APIPrefix+"/line1/activate", strings.NewReader(`{"instance":"elsewhere"}`))
	req.SetBasicAuth(cs.SyncToken, cs.SyncPassword)
	resp, err := m.Transport(http.DefaultTransport).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("line1's sync token activating at the cloud: %d, want 403", resp.StatusCode)
	}
}
