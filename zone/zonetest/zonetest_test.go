package zonetest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/georeg/georeg/zone/zonetest"
)

// put sends body and returns the status code and the answer.
func put(t *testing.T, method, url, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually retries f for up to 15 s until it answers want.
func eventually(t *testing.T, what string, want int, f func() (int, string)) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := f()
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s, want %d", what, code, body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMesh pushes through one zone of a 2-region, 3-zone mesh of full
// nodes and reads from the others: at once in the same region, soon in the
// other; then loses the zone it pushed through and pushes again.
func TestMesh(t *testing.T) {
	m := zonetest.Start(t, zonetest.Config{Regions: []string{"westus", "eastus"}, Zones: 3})
	w1, w2, w3, e2 := m.Node("westus/1"), m.Node("westus/2"), m.Node("westus/3"), m.Node("eastus/2")

	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(config))
	code, body := put(t, http.MethodPost, w1.URL+"/v2/demo/app/blobs/uploads/?digest="+dgst, "application/octet-stream", config)
	if code != http.StatusCreated {
		t.Fatalf("monolithic upload at %s: %d %s", w1, code, body)
	}
	manifest := func(tag string) []byte {
		b, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config":      map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dgst, "size": len(config)},
			"layers":      []any{},
			"annotations": map[string]string{"tag": tag},
		})
		return b
	}
	pushTag := func(n *zonetest.Node, tag string) (int, string) {
		return put(t, http.MethodPut, n.URL+"/v2/demo/app/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", manifest(tag))
	}
	get := func(n *zonetest.Node, tag string) func() (int, string) {
		return func() (int, string) { return put(t, http.MethodGet, n.URL+"/v2/demo/app/manifests/"+tag, "", nil) }
	}
	if code, body := pushTag(w1, "v1"); code != http.StatusCreated {
		t.Fatalf("manifest push at %s: %d %s", w1, code, body)
	}
	// Read-your-writes in the region: at once, from every zone.
	for _, n := range []*zonetest.Node{w2, w3} {
		if code, body := get(n, "v1")(); code != http.StatusOK {
			t.Errorf("GET v1 at %s right after the push at %s: %d %s", n, w1, code, body)
		}
	}
	// The other region: replication (or read-through) brings it.
	eventually(t, "GET v1 at "+e2.String(), http.StatusOK, get(e2, "v1"))

	// Lose the zone pushed through: the other two are a majority.
	m.Stop(w1)
	eventually(t, "push v2 at "+w2.String()+" with "+w1.String()+" down", http.StatusCreated, func() (int, string) { return pushTag(w2, "v2") })
	if code, body := get(w3, "v2")(); code != http.StatusOK {
		t.Errorf("GET v2 at %s: %d %s", w3, code, body)
	}
	m.Restart(w1)
	if code, body := get(w1, "v2")(); code != http.StatusOK {
		t.Errorf("GET v2 at %s after its restart: %d %s", w1, code, body)
	}
}
