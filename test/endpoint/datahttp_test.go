package endpoint

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/internal/freeport"
	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// TestDataHTTP runs a node the way an operator outside the local mesh
// would, with no simulated WAN: a data endpoint on its own listener
// (`regiond --data-http`) advertised at the address clients reach it by
// (`--data-url`), behind a traffic manager started from its own config.
// A blob GET through the endpoint answers 307 to --data-url, the signed
// URL serves the bytes from --data-http and nothing else, and the node's
// API is not reachable through that listener.
func TestDataHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := freeport.Block(t, 6)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(p+i) }
	dir := t.TempDir()

	// Without authentication, blob URLs are signed with the cluster's key,
	// which comes from the gossip key.
	key := make([]byte, 32)
	rand.Read(key)
	keyFile := filepath.Join(dir, "gossip.key")
	harness.Must(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	dataURL := "http://" + addr(4)
	harness.Start(t, filepath.Join(dir, "regiond.log"), harness.Bin(t, "regiond"),
		"--region", "westus", "--zone", "1", "--zones", "1", "--home", "westus",
		"--http", addr(0), "--grpc", addr(1), "--raft", addr(2), "--gossip", addr(3),
		"--data", filepath.Join(dir, "data"), "--gossip-key-file", keyFile,
		"--data-http", addr(4), "--data-url", dataURL)

	cfg, err := json.Marshal(map[string]any{
		"home":      "westus",
		"regions":   []any{map[string]any{"name": "westus", "nodes": []any{map[string]any{"zone": 1, "http": addr(0)}}}},
		"listeners": []any{map[string]any{"location": "westus", "addr": addr(5)}},
	})
	harness.Must(t, err)
	cfgFile := filepath.Join(dir, "trafficmgr.json")
	harness.Must(t, os.WriteFile(cfgFile, cfg, 0o644))
	harness.Start(t, filepath.Join(dir, "trafficmgr.log"), harness.Bin(t, "trafficmgr"), "--config", cfgFile)

	endpoint := "http://" + addr(5)
	c := ociclient.New(time.Minute)
	err = ociclient.Poll(ctx, time.Minute, 100*time.Millisecond, func() (bool, error) {
		_, _, err := c.Do(ctx, http.MethodGet, endpoint, "/v2/", nil, nil, http.StatusOK)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("the endpoint never answered /v2/: %v", err)
	}

	repo := "data/http"
	img := ociclient.NewImage("datahttp", ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(1902, 4<<20)))
	if err := c.PushImage(ctx, endpoint, repo, "v1", img); err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	resp, _, err := c.Do(ctx, http.MethodGet, endpoint, "/v2/"+repo+"/blobs/"+layer.Digest.String(), nil, nil, http.StatusTemporaryRedirect)
	if err != nil {
		t.Fatalf("blob GET through the endpoint: %v, want 307 to %s", err, dataURL)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, dataURL+"/") || !strings.Contains(loc, "georeg-sig=") {
		t.Fatalf("307 Location %q: want a signed URL under --data-url %s", loc, dataURL)
	}
	status, body, _, err := anonymous(ctx, loc)
	if err != nil || status != http.StatusOK || digest.FromBytes(body) != layer.Digest {
		t.Fatalf("GET the data URL: %d, %d bytes, %v; want 200 with the blob", status, len(body), err)
	}
	t.Logf("307 to %s, %d MiB served by the --data-http listener", loc[:strings.Index(loc, "?")], len(body)>>20)

	// The data listener serves signed blob downloads and nothing else.
	for name, u := range map[string]string{
		"another digest":  strings.Replace(loc, layer.Digest.String(), img.Config.Digest.String(), 1),
		"the API":         dataURL + "/v2/" + repo + "/tags/list",
		"no signature":    dataURL + "/v2/" + repo + "/blobs/" + layer.Digest.String(),
		"the API's root":  dataURL + "/v2/",
		"a manifest":      dataURL + "/v2/" + repo + "/manifests/v1",
		"the node's page": dataURL + "/_georeg/status",
	} {
		status, body, _, err := anonymous(ctx, u)
		if err != nil || status == http.StatusOK {
			t.Errorf("data listener, %s: %d %.200s %v; want a refusal", name, status, body, err)
		}
	}
	// A client that asks for the bytes through the endpoint gets them.
	if _, body, err := c.Do(ctx, http.MethodGet, endpoint, "/v2/"+repo+"/blobs/"+layer.Digest.String(),
		http.Header{"Georeg-Proxy-Blobs": {"1"}}, nil, http.StatusOK); err != nil || digest.FromBytes(body) != layer.Digest {
		t.Errorf("blob GET with Georeg-Proxy-Blobs: %v, want the bytes through the relay", err)
	}
}
