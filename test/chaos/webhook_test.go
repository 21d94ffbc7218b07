package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/georeg/georeg/test/ociclient"
)

// webhookDown creates a push webhook in eastus pointing at a receiver in
// the test, takes the receiver down for 2 minutes while pushes go on (and
// restarts eastus's Raft leader in the middle), then brings it back: every
// image acknowledged after the webhook was created must be announced to
// the receiver at least once.
func webhookDown(full bool) Scenario {
	outage := 2 * time.Minute
	if !full {
		outage = 20 * time.Second
	}
	var (
		rcv     *receiver
		created time.Time
	)
	return Scenario{
		Name:   "webhook-down",
		Fault:  fmt.Sprintf("eastus's webhook receiver down (connection refused) for %v, eastus's Raft leader restarted meanwhile", outage),
		Target: "every push acknowledged after the webhook existed is delivered at least once",
		Zones:  3,
		Load:   &WorkloadConfig{Seed: 12, Pullers: 1, OverwriteRatio: -1, DeleteRatio: -1, ReferrerRatio: -1, PushPace: 200 * time.Millisecond},
		Inject: func(ctx context.Context, r *Run) error {
			var err error
			if rcv, err = newReceiver(); err != nil {
				return err
			}
			r.T.Cleanup(rcv.down)
			out, err := r.Mesh.Run(ctx, "webhook", "create", "--name", "chaoshook", "--uri", "http://"+rcv.addr+"/hook",
				"--actions", "push", "--region", "eastus")
			if err != nil {
				return fmt.Errorf("webhook create: %w\n%s", err, out)
			}
			// Every region copies the control state every second; pushes
			// from now on must be announced.
			r.Sleep(ctx, 3*time.Second)
			created = time.Now()
			r.Sleep(ctx, 5*time.Second)
			rcv.down()
			down := time.Now()
			r.Fault("webhook receiver %s down", rcv.addr)
			r.Sleep(ctx, outage/2)
			leader, err := r.Mesh.Leader(ctx, "eastus", 30*time.Second)
			if err != nil {
				return err
			}
			if err := r.Chaos(ctx, "kill-zone", leader.String()); err != nil {
				return err
			}
			r.Sleep(ctx, 3*time.Second)
			if err := r.Chaos(ctx, "restart", leader.String()); err != nil {
				return err
			}
			r.Sleep(ctx, time.Until(down.Add(outage)))
			if err := rcv.up(); err != nil {
				return err
			}
			r.T.Logf("heal: webhook receiver %s up again after %v", rcv.addr, time.Since(down).Round(time.Millisecond))
			return nil
		},
		Verify: func(ctx context.Context, r *Run) {
			if rcv == nil || created.IsZero() {
				return
			}
			want := map[string]Op{}
			for _, o := range r.History.Ops() {
				if o.Kind == OpPush && o.Acked && o.Start.After(created) {
					want[o.Repo+":"+o.Tag+"@"+o.Digest.String()] = o
				}
			}
			back := time.Now()
			var missing []string
			err := ociclient.Poll(ctx, 3*time.Minute, time.Second, func() (bool, error) {
				got := rcv.accepted()
				missing = missing[:0]
				for k := range want {
					if got[k] == 0 {
						missing = append(missing, k)
					}
				}
				return len(missing) == 0, fmt.Errorf("%d of %d events not delivered", len(missing), len(want))
			})
			got := rcv.accepted()
			dups := 0
			for _, n := range got {
				dups += max(0, n-1)
			}
			if err != nil {
				r.Missf("%v, for example %v", err, missing[:min(5, len(missing))])
				return
			}
			var rows []struct {
				Status int    `json:"status"`
				Error  string `json:"error"`
			}
			failedTries := -1
			if out, err := r.Mesh.Run(ctx, "webhook", "list-events", "--name", "chaoshook", "--json"); err == nil && json.Unmarshal([]byte(out), &rows) == nil {
				failedTries = 0
				for _, row := range rows {
					if row.Status < 200 || row.Status > 299 {
						failedTries++
					}
				}
			}
			r.Notef("all %d push events delivered, the last %v after the checks began; %d POSTs received, %d duplicates; list-events shows %d failed attempts",
				len(want), time.Since(back).Round(time.Second), rcv.posts(), dups, failedTries)
		},
	}
}

// receiver is a webhook endpoint that can be taken down (its port then
// refuses connections) and brought back on the same address.
type receiver struct {
	addr string

	mu       sync.Mutex
	srv      *http.Server
	got      map[string]int // "repo:tag@digest" -> deliveries answered 200
	attempts int
}

func newReceiver() (*receiver, error) {
	rc := &receiver{got: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc.addr = ln.Addr().String()
	rc.serve(ln)
	return rc, nil
}

func (rc *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(rc.handle), ReadHeaderTimeout: 10 * time.Second}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go srv.Serve(ln)
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		Action string `json:"action"`
		Target struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
			Digest     string `json:"digest"`
		} `json:"target"`
	}
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.attempts++
	if ev.Action == "push" {
		rc.got[ev.Target.Repository+":"+ev.Target.Tag+"@"+ev.Target.Digest]++
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// down closes the listener and every open connection.
func (rc *receiver) down() {
	rc.mu.Lock()
	srv := rc.srv
	rc.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens on the same address again.
func (rc *receiver) up() error {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", rc.addr); err == nil {
			rc.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook receiver: listening on %s again: %w", rc.addr, err)
}

func (rc *receiver) accepted() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.got))
	for k, v := range rc.got {
		out[k] = v
	}
	return out
}

func (rc *receiver) posts() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.attempts
}
