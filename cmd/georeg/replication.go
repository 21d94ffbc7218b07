package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/georeg/georeg/chaos"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/proto/controlpb"
)

// homeClient calls fn on the nodes of the mesh's home region in turn until
// one answers. It fails with a message naming the home region when none
// does: management needs the home region; the data plane does not.
func homeClient(ctx context.Context, dir string, fn func(context.Context, controlpb.ControlClient) error) error {
	m, err := chaos.LoadMesh(dir)
	if err != nil {
		return err
	}
	var addrs []string
	for _, r := range m.Regions {
		if r.Name != m.Home {
			continue
		}
		for _, n := range r.Zones {
			if p, ok := n.Ports["grpc"]; ok {
				addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(p))
			}
		}
	}
	var lastErr error
	for _, a := range addrs {
		conn, err := dialNode(dir, a)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		cctx, err = withCredentials(cctx, dir)
		if err != nil {
			cancel()
			conn.Close()
			return err
		}
		err = fn(cctx, controlpb.NewControlClient(conn))
		cancel()
		conn.Close()
		if err == nil {
			return nil
		}
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded {
			return errors.New(s.Message())
		}
		lastErr = err
	}
	return fmt.Errorf("the home region %s is unavailable (no node answers: %v); management calls need it, while pushes and pulls keep working in the other regions", m.Home, lastErr)
}

func printReplications(e env, reps []*controlpb.ReplicationInfo, asJSON bool) error {
	if asJSON {
		type row struct {
			Region                string    `json:"region"`
			Home                  bool      `json:"home"`
			Status                string    `json:"status"`
			RegionEndpointEnabled bool      `json:"regionEndpointEnabled"`
			LagEvents             uint64    `json:"lagEvents"`
			LagSeconds            float64   `json:"lagSeconds"`
			LastSync              string    `json:"lastSync,omitempty"`
			Created               string    `json:"created"`
			NodesUp               int32     `json:"nodesUp"`
			Inbound               []inbound `json:"inbound,omitempty"`
		}
		rows := []row{}
		for _, r := range reps {
			rows = append(rows, row{r.Region, r.Home, r.Status, r.RegionEndpointEnabled, r.LagEvents, r.LagSeconds, lastSync(r), proto.Time(r.Created).Format(time.RFC3339), r.NodesUp, inboundRows(r)})
		}
		return encodeIndented(e, rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tHOME\tSTATUS\tENDPOINT\tLAG (EVENTS)\tLAG (S)\tLAST SYNC\tNODES UP")
	for _, r := range reps {
		home, endpoint := "", "disabled"
		if r.Home {
			home = "home"
		}
		if r.RegionEndpointEnabled {
			endpoint = "enabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\t%s\t%d\n", r.Region, home, r.Status, endpoint, r.LagEvents, r.LagSeconds, lastSync(r), r.NodesUp)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// A region copying what it lacks (new, or back from a long outage)
	// says how far it got, under the table.
	for _, r := range reps {
		if r.Status == "Syncing" && running(r) {
			fmt.Fprintf(e.stdout, "%s catching up %s\n", r.Region, catchUps(r))
		}
	}
	return nil
}

// inbound is replication into a region from one other region.
type inbound struct {
	From               string  `json:"from"`
	EventsPerSecond    float64 `json:"eventsPerSecond"`
	BlobBytesPerSecond float64 `json:"blobBytesPerSecond"`
	LagEvents          uint64  `json:"lagEvents"`
	LagSeconds         float64 `json:"lagSeconds"`
	DeliverySeconds    float64 `json:"deliverySeconds"`
	OffersInFlight     int32   `json:"offersInFlight"`
	TransfersInFlight  int32   `json:"transfersInFlight"`
	DroppedEvents      uint64  `json:"droppedEvents,omitempty"`
	LastDrop           string  `json:"lastDrop,omitempty"`
	SyncRepos          int32   `json:"syncRepos,omitempty"`
	SyncReposDone      int32   `json:"syncReposDone,omitempty"`
	SyncManifests      int32   `json:"syncManifests,omitempty"`
	SyncRunning        bool    `json:"syncRunning,omitempty"`
	SyncETASeconds     float64 `json:"syncEtaSeconds,omitempty"`
	SyncTags           int64   `json:"syncTags,omitempty"`
	SyncTagsDone       int64   `json:"syncTagsDone,omitempty"`
	SyncBytes          int64   `json:"syncBytes,omitempty"`
	SyncBytesDone      int64   `json:"syncBytesDone,omitempty"`
	LastError          string  `json:"lastError,omitempty"`
}

// catchUp describes the last anti-entropy round that found repositories
// to reconcile: empty if none did.
func (p inbound) catchUp() string {
	if p.SyncRepos == 0 {
		return ""
	}
	s := fmt.Sprintf("%d/%d repos", p.SyncReposDone, p.SyncRepos)
	if p.SyncTags > 0 {
		s += fmt.Sprintf(", %d/%d tags", p.SyncTagsDone, p.SyncTags)
	}
	if p.SyncBytes > 0 {
		// Linked bytes: a blob in many repositories counts in each, though
		// it crosses the link once.
		s += fmt.Sprintf(", %s/%s linked", byteSize(p.SyncBytesDone), byteSize(p.SyncBytes))
	}
	s += fmt.Sprintf(", %d manifests", p.SyncManifests)
	switch {
	case p.SyncRunning && p.SyncReposDone == 0:
		return s // no pace yet, so no ETA
	case p.SyncRunning:
		return s + fmt.Sprintf(", eta %.0fs", p.SyncETASeconds)
	default:
		return "done: " + s
	}
}

// byteSize prints n bytes with a binary unit: 512 B, 3.1 MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// running reports whether a catch-up round into r runs.
func running(r *controlpb.ReplicationInfo) bool {
	for _, p := range r.Inbound {
		if p.SyncRunning && p.SyncRepos > 0 {
			return true
		}
	}
	return false
}

// catchUps describes the catch-up rounds into r that still run, one per
// source region ("from westus: 12/50 repos, ..."), or the last one's end.
func catchUps(r *controlpb.ReplicationInfo) string {
	var running, ended []string
	for _, p := range inboundRows(r) {
		switch c := p.catchUp(); {
		case c == "":
		case p.SyncRunning:
			running = append(running, "from "+p.From+": "+c)
		default:
			ended = append(ended, "from "+p.From+": "+c)
		}
	}
	if len(running) > 0 {
		return strings.Join(running, "; ")
	}
	return strings.Join(ended, "; ")
}

func inboundRows(r *controlpb.ReplicationInfo) []inbound {
	var out []inbound
	for _, p := range r.Inbound {
		lastDrop := ""
		if p.LastDrop != nil {
			lastDrop = proto.Time(p.LastDrop).Format(time.RFC3339)
		}
		out = append(out, inbound{p.Region, p.EventsPerSecond, p.BlobBytesPerSecond, p.Backlog, p.LagSeconds,
			p.DeliverySeconds, p.OffersInFlight, p.TransfersInFlight, p.DroppedEvents, lastDrop,
			p.SyncRepos, p.SyncReposDone, p.SyncManifests, p.SyncRunning, p.SyncEtaSeconds,
			p.SyncTags, p.SyncTagsDone, p.SyncBytes, p.SyncBytesDone, p.LastError})
	}
	return out
}

// printInbound prints, under replication show, replication into r from
// each other region: the rates, the lag (LAG (S) is the age of the oldest
// event not acknowledged yet; DELIVERY (S) how long the newest one
// acknowledged took), the work in flight, the events dropped past the
// outbox's bound, and the catch-up by anti-entropy (the last round that
// found repositories to reconcile: how far it got, and its ETA).
func printInbound(e env, r *controlpb.ReplicationInfo) error {
	if len(r.Inbound) == 0 {
		return nil
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tEVENTS/S\tBLOB BYTES/S\tLAG (EVENTS)\tLAG (S)\tDELIVERY (S)\tOFFERS IN FLIGHT\tTRANSFERS IN FLIGHT\tDROPPED (EVENTS)\tLAST DROP\tCATCH-UP\tLAST ERROR")
	for _, p := range inboundRows(r) {
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%d\t%.1f\t%.2f\t%d\t%d\t%d\t%s\t%s\t%s\n", p.From, p.EventsPerSecond, p.BlobBytesPerSecond,
			p.LagEvents, p.LagSeconds, p.DeliverySeconds, p.OffersInFlight, p.TransfersInFlight, p.DroppedEvents, p.LastDrop, p.catchUp(), p.LastError)
	}
	return tw.Flush()
}

// lastSync is when a replication was last found in step, to the second;
// empty if never.
func lastSync(r *controlpb.ReplicationInfo) string {
	if r.LastSync == nil {
		return ""
	}
	return proto.Time(r.LastSync).Format(time.RFC3339)
}

func replicationList(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replication list", "", "List the registry's replications with their status and lag.")
	dir := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	var resp *controlpb.ListReplicationsResponse
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ListReplications(ctx, &controlpb.ListReplicationsRequest{})
		return err
	})
	if err != nil {
		return err
	}
	return printReplications(e, resp.Replications, *asJSON)
}

func regionFlag(fs interface {
	String(string, string, string) *string
}) *string {
	return fs.String("region", "", "the replication's `region`")
}

func findReplication(ctx context.Context, dir, region string) (*controlpb.ReplicationInfo, error) {
	var resp *controlpb.ListReplicationsResponse
	err := homeClient(ctx, dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ListReplications(ctx, &controlpb.ListReplicationsRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, r := range resp.Replications {
		if r.Region == region {
			return r, nil
		}
	}
	return nil, fmt.Errorf("the registry has no replication in %s", region)
}

func replicationShow(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replication show", "", "Show one replication.")
	dir := dirFlag(fs)
	region := regionFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *region == "" {
		return usagef("--region is required")
	}
	r, err := findReplication(ctx, *dir, *region)
	if err != nil {
		return err
	}
	if err := printReplications(e, []*controlpb.ReplicationInfo{r}, *asJSON); err != nil || *asJSON {
		return err
	}
	return printInbound(e, r)
}

func replicationCreate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replication create", "", "Add a region to the registry: record it in the control plane, start its\nnodes in the local mesh, and wait while it copies existing content until\nit is Ready.")
	dir := dirFlag(fs)
	region := regionFlag(fs)
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for Ready (0: do not wait)")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *region == "" {
		return usagef("--region is required")
	}
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.CreateReplication(ctx, &controlpb.CreateReplicationRequest{Region: *region})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "replication %s created (Provisioning); starting its nodes\n", *region)
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	if err := c.AddRegion(ctx, *region, chaos.DefaultWait); err != nil {
		return err
	}
	if *wait == 0 {
		return nil
	}
	deadline := time.Now().Add(*wait)
	last, lastProgress := "", time.Time{}
	for {
		r, err := findReplication(ctx, *dir, *region)
		if err == nil && r.Status != last {
			fmt.Fprintf(e.stdout, "%s: %s\n", *region, r.Status)
			last = r.Status
		}
		// While it copies, its progress every few seconds.
		if err == nil && r.Status == "Syncing" && time.Since(lastProgress) >= 5*time.Second {
			if c := catchUps(r); c != "" {
				fmt.Fprintf(e.stdout, "%s: Syncing %s\n", *region, c)
				lastProgress = time.Now()
			}
		}
		if err == nil && r.Status == "Ready" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is still %s after %v", *region, last, *wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func replicationUpdate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replication update", "", "Change a replication: --region-endpoint-enabled=false stops client traffic\nto the region (it keeps replicating); true brings it back.")
	dir := dirFlag(fs)
	region := regionFlag(fs)
	enabled := fs.String("region-endpoint-enabled", "", "`true` or false")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *region == "" || *enabled == "" {
		return usagef("--region and --region-endpoint-enabled are required")
	}
	on, err := strconv.ParseBool(*enabled)
	if err != nil {
		return usagef("--region-endpoint-enabled: %v", err)
	}
	var info *controlpb.ReplicationInfo
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		info, err = c.UpdateReplication(ctx, &controlpb.UpdateReplicationRequest{Region: *region, RegionEndpointEnabled: on})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "replication %s: region endpoint %s\n", *region, map[bool]string{true: "enabled", false: "disabled"}[info.RegionEndpointEnabled])
	return nil
}

func replicationDelete(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replication delete", "", "Remove a region from the registry and stop its nodes (the home region\ncannot be deleted).")
	dir := dirFlag(fs)
	region := regionFlag(fs)
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *region == "" {
		return usagef("--region is required")
	}
	err := homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.DeleteReplication(ctx, &controlpb.DeleteReplicationRequest{Region: *region})
		return err
	})
	if err != nil {
		return err
	}
	c, err := newController(e, *dir)
	if err != nil {
		return err
	}
	if err := c.RemoveRegion(ctx, *region); err != nil && !errors.Is(err, chaos.ErrUnknownTarget) {
		return err
	}
	fmt.Fprintf(e.stdout, "replication %s deleted\n", *region)
	return nil
}

func replicationStatus(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replication status", "IMAGE", "Show, per region, whether IMAGE (repo:tag or repo@digest) is there yet.")
	dir := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one IMAGE (repo:tag or repo@digest)")
	}
	repo, ref := splitImage(pos[0])
	var resp *controlpb.ImageStatusResponse
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		var err error
		resp, err = c.ImageStatus(ctx, &controlpb.ImageStatusRequest{Repo: repo, Reference: ref})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(resp.Regions)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tPRESENT\tDIGEST")
	for _, r := range resp.Regions {
		present := "no"
		if r.Present {
			present = "yes"
		}
		if r.Error != "" {
			present = "unknown (" + r.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Region, present, r.Digest)
	}
	return tw.Flush()
}

// splitImage splits "repo:tag" or "repo@digest" (a host prefix such as
// "localhost:5000/" is dropped).
func splitImage(s string) (repo, ref string) {
	if i := strings.Index(s, "/"); i > 0 && strings.ContainsAny(s[:i], ".:") {
		s = s[i+1:]
	}
	if i := strings.Index(s, "@"); i >= 0 {
		return s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, ":"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, "latest"
}
