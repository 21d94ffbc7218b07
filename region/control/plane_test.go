package control_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
	"github.com/georeg/georeg/region/control"
	"github.com/georeg/georeg/region/regiontest"
	"github.com/georeg/georeg/replication"
)

// These tests run the control plane on the zone nodes of in-process regions
// (regiontest), call it over gRPC as the CLI does, and stop nodes under it.

const home = "westus"

// region is a regiontest cluster whose nodes run the control plane.
type region struct {
	*regiontest.Cluster
	mu     sync.Mutex
	planes map[string]*control.Plane // by node ID, while the node runs
}

// startRegion starts a region of zones nodes, each running the control
// plane of a registry whose home region is westus.
func startRegion(t *testing.T, cfg regiontest.Config, opts ...func(*control.Config)) *region {
	t.Helper()
	r := &region{planes: map[string]*control.Plane{}}
	cfg.Services = func(n *regiontest.Node, s *grpc.Server) func() {
		pc := control.Config{
			Home: home, Meta: n.Group, Members: n.Members, Replication: noReplication{}, Webhooks: n.Group,
			Dir: n.Dir, Logger: n.Logger(),
		}
		for _, o := range opts {
			o(&pc)
		}
		p := control.New(pc)
		p.Register(s)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Run(ctx)
		}()
		r.mu.Lock()
		r.planes[n.ID] = p
		r.mu.Unlock()
		return func() {
			cancel()
			<-done
			p.Close()
			r.mu.Lock()
			delete(r.planes, n.ID)
			r.mu.Unlock()
		}
	}
	r.Cluster = regiontest.New(t, cfg)
	return r
}

// plane returns the control plane of a running node.
func (r *region) plane(n *regiontest.Node) *control.Plane {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.planes[n.ID]
}

// client returns a control client of node n, as the CLI makes.
func client(t *testing.T, n *regiontest.Node) controlpb.ControlClient {
	t.Helper()
	conn, err := grpc.NewClient(n.GRPCAddr, proto.DialOptions(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return controlpb.NewControlClient(conn)
}

// noReplication is a node without replication running: no peer, never
// synced.
type noReplication struct{}

func (noReplication) Peers() []replication.PeerStatus { return nil }
func (noReplication) Synced() map[string]time.Time    { return nil }

// replicationsOf returns the regions of n's live replications, sorted.
func replicationsOf(p *control.Plane) []string {
	var out []string
	for _, r := range p.Replications() {
		if !r.Deleted {
			out = append(out, r.Region)
		}
	}
	slices.Sort(out)
	return out
}

func listed(t *testing.T, c controlpb.ControlClient) []string {
	t.Helper()
	resp, err := c.ListReplications(t.Context(), &controlpb.ListReplicationsRequest{})
	if err != nil {
		t.Fatalf("list replications: %v", err)
	}
	var out []string
	for _, r := range resp.GetReplications() {
		out = append(out, r.GetRegion())
	}
	slices.Sort(out)
	return out
}

// TestReplications creates, lists and deletes replications through each
// zone of a three-zone home region: a follower's call is as good as the
// leader's, and every zone's replica agrees afterwards.
func TestReplications(t *testing.T) {
	r := startRegion(t, regiontest.Config{Region: home})
	for _, n := range r.Nodes() {
		t.Run(n.ID, func(t *testing.T) {
			c := client(t, n)
			if got := listed(t, c); !slices.Equal(got, []string{home}) {
				t.Fatalf("replications before any call = %v, want the home region registered from gossip", got)
			}
			steps := []struct {
				name string
				call func(ctx context.Context) error
				want codes.Code
			}{
				{"create", func(ctx context.Context) error {
					info, err := c.CreateReplication(ctx, &controlpb.CreateReplicationRequest{Region: "eastus"})
					if err == nil && (info.GetRegion() != "eastus" || info.GetStatus() != "Provisioning") {
						t.Errorf("created %s, %s; want eastus, Provisioning (no node of it is up)", info.GetRegion(), info.GetStatus())
					}
					return err
				}, codes.OK},
				{"create again", func(ctx context.Context) error {
					_, err := c.CreateReplication(ctx, &controlpb.CreateReplicationRequest{Region: "eastus"})
					return err
				}, codes.AlreadyExists},
				{"create a bad name", func(ctx context.Context) error {
					_, err := c.CreateReplication(ctx, &controlpb.CreateReplicationRequest{Region: "East_US"})
					return err
				}, codes.InvalidArgument},
				{"update", func(ctx context.Context) error {
					info, err := c.UpdateReplication(ctx, &controlpb.UpdateReplicationRequest{Region: "eastus", RegionEndpointEnabled: false})
					if err == nil && info.GetRegionEndpointEnabled() {
						t.Error("the endpoint flag is still on after the update")
					}
					return err
				}, codes.OK},
				{"delete the home region", func(ctx context.Context) error {
					_, err := c.DeleteReplication(ctx, &controlpb.DeleteReplicationRequest{Region: home})
					return err
				}, codes.FailedPrecondition},
				{"delete", func(ctx context.Context) error {
					info, err := c.DeleteReplication(ctx, &controlpb.DeleteReplicationRequest{Region: "eastus"})
					if err == nil && info.GetStatus() != "Deleted" {
						t.Errorf("deleted with status %s", info.GetStatus())
					}
					return err
				}, codes.OK},
				{"delete again", func(ctx context.Context) error {
					_, err := c.DeleteReplication(ctx, &controlpb.DeleteReplicationRequest{Region: "eastus"})
					return err
				}, codes.NotFound},
				{"update a deleted one", func(ctx context.Context) error {
					_, err := c.UpdateReplication(ctx, &controlpb.UpdateReplicationRequest{Region: "eastus"})
					return err
				}, codes.NotFound},
			}
			for _, s := range steps {
				if err := s.call(t.Context()); status.Code(err) != s.want {
					t.Fatalf("%s: %v, want %v", s.name, err, s.want)
				}
			}
			if got := listed(t, c); !slices.Equal(got, []string{home}) {
				t.Errorf("replications after the delete = %v, want [%s]", got, home)
			}
			r.WaitConverged()
			for _, o := range r.Running() {
				if !r.plane(o).Deleted("eastus") {
					t.Errorf("%s does not know eastus's replication was deleted", o.ID)
				}
			}
		})
	}
}

// TestWebhooks creates, lists and deletes a webhook through a follower.
func TestWebhooks(t *testing.T) {
	r := startRegion(t, regiontest.Config{Region: home})
	c := client(t, r.Followers()[0])
	hook := &controlpb.Webhook{Name: "buildhook", Uri: "http://198.51.100.7:1/hook", Actions: []string{"push"},
		Headers: map[string]string{"Authorization": "Bearer s3cret", "X-Team": "build"}}
	refused := func(uri, rule string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{Name: "otherhook", Uri: uri, Actions: hook.Actions}})
			if msg := status.Convert(err).Message(); !strings.Contains(msg, rule) || !strings.Contains(msg, "--webhook-allow-private") {
				t.Errorf("creating a webhook to %s: %q does not name the rule %q and the flag", uri, msg, rule)
			}
			return err
		}
	}
	masked := func(w *controlpb.Webhook) {
		t.Helper()
		if h := w.GetHeaders(); len(h) != 2 || h["Authorization"] != "****" || h["X-Team"] != "****" {
			t.Errorf("webhook %s answered with headers %v, want both values masked", w.GetName(), h)
		}
	}
	tests := []struct {
		name string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"create", func(ctx context.Context) error {
			got, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: hook})
			if err == nil && (got.GetRegion() != home || !got.GetEnabled()) {
				t.Errorf("created a webhook in %q, enabled %v; want the home region, enabled", got.GetRegion(), got.GetEnabled())
			}
			if err == nil {
				masked(got)
			}
			return err
		}, codes.OK},
		{"a loopback target", refused("http://127.0.0.1:8080/hook", "loopback"), codes.InvalidArgument},
		{"a localhost target", refused("http://localhost:8080/hook", "loopback"), codes.InvalidArgument},
		{"the cloud metadata service", refused("http://169.254.169.254/latest/meta-data/", "link-local"), codes.InvalidArgument},
		{"a private target", refused("https://10.1.2.3/hook", "private"), codes.InvalidArgument},
		{"a ULA target", refused("https://[fd00::1]/hook", "private"), codes.InvalidArgument},
		{"another scheme", func(ctx context.Context) error {
			_, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{Name: "otherhook", Uri: "ftp://198.51.100.7/x", Actions: hook.Actions}})
			return err
		}, codes.InvalidArgument},
		{"create again", func(ctx context.Context) error {
			_, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: hook})
			return err
		}, codes.AlreadyExists},
		{"a bad name", func(ctx context.Context) error {
			_, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{Name: "x", Uri: hook.Uri, Actions: hook.Actions}})
			return err
		}, codes.InvalidArgument},
		{"a bad action", func(ctx context.Context) error {
			_, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{Name: "otherhook", Uri: hook.Uri, Actions: []string{"pull"}}})
			return err
		}, codes.InvalidArgument},
		{"a region without a replication", func(ctx context.Context) error {
			_, err := c.CreateWebhook(ctx, &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{Name: "otherhook", Uri: hook.Uri, Actions: hook.Actions, Region: "nowhere"}})
			return err
		}, codes.InvalidArgument},
		{"list", func(ctx context.Context) error {
			resp, err := c.ListWebhooks(ctx, &controlpb.ListWebhooksRequest{})
			if err == nil && (len(resp.GetWebhooks()) != 1 || resp.GetWebhooks()[0].GetName() != hook.Name) {
				t.Errorf("listed %v, want [%s]", resp.GetWebhooks(), hook.Name)
			} else if err == nil {
				masked(resp.GetWebhooks()[0])
			}
			return err
		}, codes.OK},
		{"the state other regions copy keeps the values", func(ctx context.Context) error {
			st, err := c.State(ctx, &controlpb.StateRequest{})
			if err == nil && (len(st.GetWebhooks()) != 1 || st.GetWebhooks()[0].GetHeaders()["Authorization"] != "Bearer s3cret") {
				t.Errorf("State carries webhooks %v, want %s with its header values", st.GetWebhooks(), hook.Name)
			}
			return err
		}, codes.OK},
		{"delete", func(ctx context.Context) error {
			_, err := c.DeleteWebhook(ctx, &controlpb.NameRequest{Name: hook.Name})
			return err
		}, codes.OK},
		{"delete again", func(ctx context.Context) error {
			_, err := c.DeleteWebhook(ctx, &controlpb.NameRequest{Name: hook.Name})
			return err
		}, codes.NotFound},
		{"list after the delete", func(ctx context.Context) error {
			resp, err := c.ListWebhooks(ctx, &controlpb.ListWebhooksRequest{})
			if err == nil && len(resp.GetWebhooks()) != 0 {
				t.Errorf("listed %v after the delete", resp.GetWebhooks())
			}
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		if err := tt.call(t.Context()); status.Code(err) != tt.want {
			t.Fatalf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestWebhookAllowPrivate runs the control plane with
// --webhook-allow-private: a loopback receiver is accepted, and a ping to
// one that answers 307 is a failed delivery whose redirect target, and the
// webhook's Authorization header, go nowhere.
func TestWebhookAllowPrivate(t *testing.T) {
	var stolen atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen.Add(1) }))
	defer target.Close()
	var auth atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer hook.Close()
	r := startRegion(t, regiontest.Config{Region: home, Zones: 1}, func(c *control.Config) { c.WebhookAllowPrivate = true })
	c := client(t, r.Leader())
	_, err := c.CreateWebhook(t.Context(), &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{
		Name: "localhook", Uri: hook.URL + "/hook", Actions: []string{"push"}, Headers: map[string]string{"Authorization": "Bearer s3cret"}}})
	if err != nil {
		t.Fatalf("creating a loopback webhook with --webhook-allow-private: %v", err)
	}
	d, err := c.PingWebhook(t.Context(), &controlpb.NameRequest{Name: "localhook"})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetStatus() != http.StatusTemporaryRedirect || !strings.Contains(d.GetError(), "not followed") {
		t.Errorf("ping answered status %d, error %q; want 307, not followed", d.GetStatus(), d.GetError())
	}
	if got, _ := auth.Load().(string); got != "Bearer s3cret" {
		t.Errorf("the receiver got Authorization %q, want the stored value", got)
	}
	if n := stolen.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests, want none", n)
	}
}

// holdApply is a server option that, while armed, holds every metadata
// write a follower forwards to this zone, and says when one arrived: the
// leader can then be lost in the middle of a control call.
type holdApply struct {
	armed   atomic.Bool
	arrived chan struct{}
	once    sync.Once
}

func (h *holdApply) option() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if h.armed.Load() && strings.HasSuffix(info.FullMethod, "/Apply") {
			h.once.Do(func() { close(h.arrived) })
			<-ctx.Done()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return handler(ctx, req)
	})
}

// TestLeaderLossMidCall loses the leader while it holds the write of a
// control call made through a follower: the call either succeeds or fails
// with Unavailable, and either way the replication exists once or not at
// all on every zone; a retry settles it.
func TestLeaderLossMidCall(t *testing.T) {
	holds := map[int]*holdApply{}
	for z := 1; z <= 3; z++ {
		holds[z] = &holdApply{arrived: make(chan struct{})}
	}
	r := startRegion(t, regiontest.Config{Region: home, ServerOptions: func(zone int) []grpc.ServerOption {
		return []grpc.ServerOption{holds[zone].option()}
	}})
	leader, follower := r.Leader(), r.Followers()[0]
	c := client(t, follower)
	listed(t, c) // registers the home region first: the held write is the create's own

	holds[leader.Zone].armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateReplication(context.Background(), &controlpb.CreateReplicationRequest{Region: "eastus"})
		done <- err
	}()
	select {
	case <-holds[leader.Zone].arrived:
	case err := <-done:
		t.Fatalf("the create returned before reaching the leader: %v", err)
	}
	leader.Stop()
	err := <-done
	t.Logf("create with the leader lost mid-call: %v", err)
	if err != nil && status.Code(err) != codes.Unavailable {
		t.Fatalf("create with the leader lost mid-call: %v, want success or Unavailable", err)
	}
	r.Leader()
	r.WaitConverged()
	for _, n := range r.Running() {
		got := replicationsOf(r.plane(n))
		if err == nil && !slices.Equal(got, []string{"eastus", home}) {
			t.Errorf("%s: replications %v after a create that succeeded", n.ID, got)
		}
		if err != nil && !slices.Equal(got, []string{"eastus", home}) && !slices.Equal(got, []string{home}) {
			t.Errorf("%s: replications %v after a create that failed", n.ID, got)
		}
	}
	_, retry := c.CreateReplication(t.Context(), &controlpb.CreateReplicationRequest{Region: "eastus"})
	if code := status.Code(retry); code != codes.OK && code != codes.AlreadyExists {
		t.Fatalf("retrying the create: %v", retry)
	}
	if err == nil && status.Code(retry) != codes.AlreadyExists {
		t.Errorf("retrying a create that succeeded: %v, want AlreadyExists", retry)
	}
	leader.Start()
	r.WaitConverged()
	if got := replicationsOf(r.plane(leader)); !slices.Equal(got, []string{"eastus", home}) {
		t.Errorf("the old leader, restarted, knows replications %v", got)
	}
}

// TestNoQuorumMidCall loses two of three zones while the leader holds the
// write of a control call: the call fails with Unavailable within the
// write's timeout instead of hanging, and once the zones are back the
// replication exists once or not at all.
func TestNoQuorumMidCall(t *testing.T) {
	holds := map[int]*holdApply{}
	for z := 1; z <= 3; z++ {
		holds[z] = &holdApply{arrived: make(chan struct{})}
	}
	r := startRegion(t, regiontest.Config{Region: home, ApplyTimeout: 3 * time.Second, ServerOptions: func(zone int) []grpc.ServerOption {
		return []grpc.ServerOption{holds[zone].option()}
	}})
	followers := r.Followers()
	leader, follower, other := r.Leader(), followers[0], followers[1]
	c := client(t, follower)
	listed(t, c)

	holds[leader.Zone].armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateReplication(context.Background(), &controlpb.CreateReplicationRequest{Region: "eastus"})
		done <- err
	}()
	<-holds[leader.Zone].arrived
	leader.Stop()
	other.Stop()
	err := <-done
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("create without a quorum: %v, want Unavailable", err)
	}
	if !strings.Contains(status.Convert(err).Message(), home) {
		t.Errorf("the error %q does not name the home region", status.Convert(err).Message())
	}

	leader.Start()
	other.Start()
	r.Leader()
	r.WaitConverged()
	var first []string
	for i, n := range r.Running() {
		got := replicationsOf(r.plane(n))
		if i == 0 {
			first = got
		}
		if !slices.Equal(got, first) || (!slices.Equal(got, []string{home}) && !slices.Equal(got, []string{"eastus", home})) {
			t.Errorf("%s: replications %v after a failed create (first zone: %v)", n.ID, got, first)
		}
	}
}

// TestCopyServesWhileHomeIsDown checks that a region outside the home
// region copies the control state, and keeps serving it (to itself: its
// replications, webhooks and endpoint flags) while the home region is
// down, across a restart; management calls there name the home region.
func TestCopyServesWhileHomeIsDown(t *testing.T) {
	westus := startRegion(t, regiontest.Config{Region: home})
	eastus := startRegion(t, regiontest.Config{Region: "eastus", Zones: 1, Join: westus.GossipAddrs()})
	c := client(t, westus.Leader())
	for _, call := range []func() error{
		func() error {
			_, err := c.CreateReplication(t.Context(), &controlpb.CreateReplicationRequest{Region: "westeurope"})
			return err
		},
		func() error {
			_, err := c.UpdateReplication(t.Context(), &controlpb.UpdateReplicationRequest{Region: "westeurope", RegionEndpointEnabled: false})
			return err
		},
		func() error {
			_, err := c.CreateWebhook(t.Context(), &controlpb.CreateWebhookRequest{Webhook: &controlpb.Webhook{
				Name: "easthook", Uri: "http://198.51.100.7:1/hook", Actions: []string{"push"}, Region: "eastus",
				Headers: map[string]string{"Authorization": "Bearer s3cret"}}})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	east := eastus.Node(1)
	want := []string{"eastus", "westeurope", home}
	serves := func(p *control.Plane) bool {
		flags, fetched := p.EndpointsEnabled()
		ws := p.Webhooks()
		return slices.Equal(replicationsOf(p), want) && !fetched.IsZero() &&
			flags["westeurope"] == false && flags[home] && len(ws) == 1 && ws[0].Name == "easthook" &&
			ws[0].Headers["Authorization"] == "Bearer s3cret" // the region that delivers needs the value
	}
	regiontest.WaitFor(t, "eastus to copy the control state", func() bool { return serves(eastus.plane(east)) })

	for _, n := range westus.Running() {
		n.Stop()
	}
	regiontest.WaitFor(t, "eastus to see the home region down", func() bool { return len(east.Members.Region(home)) == 0 })
	if !serves(eastus.plane(east)) {
		t.Error("eastus stopped serving its copy when the home region went down")
	}
	east.Stop()
	east.Start()
	if !serves(eastus.plane(east)) {
		t.Error("eastus, restarted while the home region is down, does not serve its copy")
	}
	_, err := client(t, east).ListReplications(t.Context(), &controlpb.ListReplicationsRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), home) {
		t.Errorf("a management call outside the home region: %v, want FailedPrecondition naming %s", err, home)
	}
}
