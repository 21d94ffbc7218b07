package zone

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// trickle sends a chunked PATCH of the session at loc to the node at addr
// by hand, one byte every period, until stop is closed or the node closes
// the connection. It returns when the connection ended: when the node
// closed it, with the time the last byte was sent.
func trickle(t *testing.T, addr, loc string, cred ociclient.Credential, period time.Duration, stop <-chan struct{}) (closedByNode bool, lastByte time.Time) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Errorf("dial %s: %v", addr, err)
		return false, time.Time{}
	}
	defer conn.Close()
	auth := base64.StdEncoding.EncodeToString([]byte(cred.User + ":" + cred.Password))
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n", loc, addr, auth)
	closed := make(chan struct{})
	go func() {
		// The node's answer, then EOF when it closes the connection.
		io.Copy(io.Discard, bufio.NewReader(conn))
		close(closed)
	}()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		if _, err := io.WriteString(conn, "1\r\nx\r\n"); err == nil {
			lastByte = time.Now()
		}
		select {
		case <-closed:
			return true, lastByte
		case <-stop:
			return false, lastByte
		case <-tick.C:
		}
	}
}

// TestSlowClient is issue 16's acceptance for slow clients, against a real
// node run with --body-idle-timeout 3s and --upload-idle-timeout 10s: a
// PATCH trickling 1 byte every 10 s has its connection closed within the
// body deadline and its session unchanged; a PATCH trickling faster than
// the deadline (1 byte a second) stays in flight, yet three idle sessions
// opened meanwhile expire on time (gone within 15 s), and the status and
// DELETE of the busy session answer at once.
func TestSlowClient(t *testing.T) {
	const bodyIdle, sessionIdle = 3 * time.Second, 10 * time.Second
	m := harness.StartMesh(t, "--regions", regionName, "--zones", "1",
		"--node-arg=--body-idle-timeout="+bodyIdle.String(), "--node-arg=--upload-idle-timeout="+sessionIdle.String())
	ctx := context.Background()
	if err := m.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	node := m.Nodes[0]
	c := newClient(m, 10*time.Second)
	start := func(repo string) string {
		loc, err := c.StartUpload(ctx, node.URL(), repo)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		return u.RequestURI()
	}
	slow, slowEP, steady := start("slow/ten-seconds"), start("slow/ten-seconds-endpoint"), start("slow/one-second")
	for _, loc := range []string{slow, slowEP} {
		if _, err := c.PatchUpload(ctx, node.URL(), loc, []byte("hello"), 0); err != nil {
			t.Fatal(err)
		}
	}

	type ended struct {
		byNode   bool
		lastByte time.Time
	}
	stopSteady := make(chan struct{})
	slowDone, slowEPDone, steadyDone := make(chan ended, 1), make(chan ended, 1), make(chan ended, 1)
	slowStart := time.Now()
	go func() {
		by, last := trickle(t, node.HTTP, slow, m.Cred, 10*time.Second, nil)
		slowDone <- ended{by, last}
	}()
	go func() {
		// The same through the endpoint: the node's 408 reaches the client
		// and the traffic manager closes the client's connection.
		by, last := trickle(t, m.Endpoint, slowEP, m.Cred, 10*time.Second, nil)
		slowEPDone <- ended{by, last}
	}()
	go func() {
		by, last := trickle(t, node.HTTP, steady, m.Cred, time.Second, stopSteady)
		steadyDone <- ended{by, last}
	}()
	var idle []string
	for i := range 3 {
		idle = append(idle, start(fmt.Sprintf("slow/idle-%d", i)))
	}
	idleOpened := time.Now()

	// The 10-second trickles: closed within the body deadline of their
	// last byte, their sessions unchanged.
	for _, tr := range []struct {
		via  string
		done chan ended
		loc  string
	}{{"straight to the node", slowDone, slow}, {"through the endpoint", slowEPDone, slowEP}} {
		select {
		case e := <-tr.done:
			if !e.byNode {
				t.Fatalf("the 10 s trickle %s ended without its connection being closed", tr.via)
			}
			if took := time.Since(e.lastByte); took > bodyIdle+2*time.Second {
				t.Errorf("10 s trickle %s: connection closed %s after the last byte, body deadline %s", tr.via, took.Round(time.Millisecond), bodyIdle)
			}
			t.Logf("10 s trickle %s: connection closed %s after the request began (deadline %s)", tr.via, time.Since(slowStart).Round(time.Millisecond), bodyIdle)
		case <-time.After(bodyIdle + 8*time.Second):
			t.Fatalf("the 10 s trickle %s is still open after %s", tr.via, bodyIdle+8*time.Second)
		}
		resp, _, err := c.Do(ctx, http.MethodGet, node.URL(), tr.loc, nil, nil, http.StatusNoContent)
		if err != nil || resp.Header.Get("Range") != "0-4" {
			t.Fatalf("session of the trickle %s: %v, Range %q; want 204 0-4 (unchanged)", tr.via, err, rangeOf(resp))
		}
	}

	// The idle sessions expire on time while the 1-second trickle goes on.
	// The node's session count tells, without a status request that would
	// count as using them: 3 left, the busy one and the cut trickles'
	// (used by the status requests above, 3 s after the idle ones opened).
	var goneAfter time.Duration
	for {
		_, b, err := c.Do(ctx, http.MethodGet, node.URL(), "/_georeg/status", nil, nil, http.StatusOK)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Uploads int `json:"uploads"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uploads <= 3 {
			goneAfter = time.Since(idleOpened)
			break
		}
		if time.Since(idleOpened) > 20*time.Second {
			t.Fatalf("%d upload sessions left 20 s after the idle ones opened, want 3", st.Uploads)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if goneAfter > 15*time.Second {
		t.Errorf("idle sessions gone after %s, want within 15 s", goneAfter.Round(time.Millisecond))
	}
	t.Logf("idle sessions gone %s after they opened (--upload-idle-timeout %s)", goneAfter.Round(time.Millisecond), sessionIdle)
	for _, loc := range idle {
		if _, _, err := c.Do(ctx, http.MethodGet, node.URL(), loc, nil, nil, http.StatusNotFound); err != nil {
			t.Errorf("idle session %s: %v, want 404", loc, err)
		}
	}
	select {
	case e := <-steadyDone:
		t.Fatalf("the 1 s trickle ended early (closed by node: %v)", e.byNode)
	default:
	}

	// Its session answers at once: status, then DELETE (202: cancelled at once).
	for _, tc := range []struct {
		method string
		want   int
	}{{http.MethodGet, http.StatusNoContent}, {http.MethodDelete, http.StatusAccepted}} {
		began := time.Now()
		if _, _, err := c.Do(ctx, tc.method, node.URL(), steady, nil, nil, tc.want); err != nil {
			t.Errorf("%s of the busy session: %v", tc.method, err)
		}
		if took := time.Since(began); took > time.Second {
			t.Errorf("%s of the busy session took %s", tc.method, took)
		}
	}
	close(stopSteady)
	<-steadyDone
}

func rangeOf(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return resp.Header.Get("Range")
}
