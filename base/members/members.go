package members

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member is what a node announces about itself.
type Member struct {
	// ID is unique in the mesh: "<region>-<zone>".
	ID     string `json:"id"`
	Region string `json:"region"`
	Zone   int    `json:"zone"`
	HTTP   string `json:"http"`
	GRPC   string `json:"grpc"`
	Raft   string `json:"raft"`
}

// NodeID returns the ID of zone z of region r.
func NodeID(region string, zone int) string { return region + "-" + strconv.Itoa(zone) }

// Config configures a List.
type Config struct {
	Self Member
	// BindAddr is the gossip address (host:port), TCP and UDP.
	BindAddr string
	// Join are gossip addresses of other nodes to contact. Unreachable ones
	// are retried in the background until one answers.
	Join []string
	// Keys, when set, encrypt and authenticate every gossip message
	// (memberlist's AES-GCM keyring): Keys[0] encrypts, and a message
	// under any of them is accepted, so a key can be rotated without a
	// split (see ReadKeyFile). A node without the key cannot join or
	// announce anything. Each key is 16, 24 or 32 bytes. Nil gossips in
	// the clear.
	Keys   [][]byte
	Logger *slog.Logger
}

// List is this node's view of the mesh. It is safe for concurrent use.
type List struct {
	self    Member
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring // nil without Config.Keys
	log     *slog.Logger

	mu      sync.Mutex
	members map[string]Member // alive members by ID, self included
	known   map[string]Member // every member seen alive since Start, by ID
	addrs   map[string]string // gossip address of every known member, by ID
	changed chan struct{}     // closed and replaced on every change
}

// Start joins the gossip. Cancel ctx to stop retrying joins; call Leave to
// leave.
func Start(ctx context.Context, cfg Config) (*List, error) {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("members: bind address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("members: bind port: %w", err)
	}
	l := &List{self: cfg.Self, log: lg, members: map[string]Member{}, known: map[string]Member{}, addrs: map[string]string{}, changed: make(chan struct{})}
	mc := memberlist.DefaultLocalConfig()
	mc.Name = cfg.Self.ID
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	// Detect a dead node in about a second on a local mesh.
	mc.ProbeInterval = 400 * time.Millisecond
	mc.ProbeTimeout = 200 * time.Millisecond
	mc.GossipInterval = 100 * time.Millisecond
	mc.SuspicionMult = 2
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("members: gossip keys: %w", err)
		}
		mc.Keyring, l.keyring = kr, kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = delegate{l}
	mc.Events = events{l}
	mc.Logger = log.New(io.Discard, "", 0)
	if lg.Enabled(ctx, slog.LevelDebug) {
		mc.Logger = slog.NewLogLogger(lg.Handler(), slog.LevelDebug)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	l.ml = ml
	if len(cfg.Join) > 0 {
		go l.joinLoop(ctx, cfg.Join)
	}
	go l.rejoinLoop(ctx)
	return l, nil
}

// RejoinInterval is how often a node contacts the members it has seen
// alive and no longer sees. memberlist gossips with a dead node for a short
// while only, so two sides of a partition that outlasts that would never
// find each other again; asking them to join, as Serf's reconnect does,
// merges the sides once packets pass again.
const RejoinInterval = 5 * time.Second

func (l *List) rejoinLoop(ctx context.Context) {
	t := time.NewTicker(RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		var addrs []string
		for id := range l.known {
			if _, alive := l.members[id]; !alive && l.addrs[id] != "" {
				addrs = append(addrs, l.addrs[id])
			}
		}
		l.mu.Unlock()
		if len(addrs) == 0 {
			continue
		}
		if n, err := l.ml.Join(addrs); n > 0 {
			l.log.Info("rejoined members seen dead", "contacted", n)
		} else {
			l.log.Debug("rejoin failed", "members", len(addrs), "err", err)
		}
	}
}

func (l *List) joinLoop(ctx context.Context, seeds []string) {
	for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 2*time.Second) {
		n, err := l.ml.Join(seeds)
		if n > 0 {
			l.log.Info("joined the gossip", "contacted", n)
			return
		}
		l.log.Debug("gossip join failed, retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// Self returns this node's member record.
func (l *List) Self() Member { return l.self }

// Alive returns the members that answer, self included, sorted by ID.
func (l *List) Alive() []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Member, 0, len(l.members))
	for _, m := range l.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Region returns the alive members of region, self included, sorted by ID.
func (l *List) Region(region string) []Member {
	var out []Member
	for _, m := range l.Alive() {
		if m.Region == region {
			out = append(out, m)
		}
	}
	return out
}

// Known returns the members of region this node has seen alive since it
// started, self included, whether or not gossip thinks them alive now,
// sorted by ID. Gossip's failure detector can take a busy node for dead;
// a caller that must reach a majority tries these too before it gives up.
func (l *List) Known(region string) []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Member
	for _, m := range l.known {
		if m.Region == region {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns the alive member id.
func (l *List) Get(id string) (Member, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.members[id]
	return m, ok
}

// Changed returns a channel closed at the next change of the member set.
func (l *List) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// ErrNoKeyring means SetKeys was called on a List started without keys:
// turning encryption on takes a restart.
var ErrNoKeyring = errors.New("members: the gossip was started without keys")

// SetKeys replaces the gossip keys while running: keys[0] encrypts from
// now on, every key of keys is accepted, and no other. A key rotation is
// three calls on every node, each done on all nodes before the next (see
// ReadKeyFile): add the new key second, make it first, drop the old one.
func (l *List) SetKeys(keys [][]byte) error {
	if l.keyring == nil {
		return ErrNoKeyring
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: SetKeys with none", ErrNoKey)
	}
	for _, k := range keys {
		if err := l.keyring.AddKey(k); err != nil {
			return fmt.Errorf("members: gossip key: %w", err)
		}
	}
	if err := l.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("members: gossip key: %w", err)
	}
	for _, old := range l.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := l.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("members: gossip key: %w", err)
			}
		}
	}
	return nil
}

// Leave tells the others this node is leaving and stops gossiping.
func (l *List) Leave(timeout time.Duration) error {
	l.ml.Leave(timeout)
	return l.ml.Shutdown()
}

func (l *List) update(n *memberlist.Node, alive bool) {
	var m Member
	if err := json.Unmarshal(n.Meta, &m); err != nil || m.ID == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if alive {
		l.members[m.ID] = m
		l.known[m.ID] = m
		l.addrs[m.ID] = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	} else {
		delete(l.members, m.ID)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// delegate serves this node's metadata. memberlist calls it from its own
// goroutines.
type delegate struct{ l *List }

func (d delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.l.self)
	if len(b) > limit {
		return nil
	}
	return b
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events keeps the member set. memberlist calls it serially.
type events struct{ l *List }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.l.log.Debug("member up", "node", n.Name)
	e.l.update(n, true)
}
func (e events) NotifyLeave(n *memberlist.Node) {
	e.l.log.Info("member down", "node", n.Name)
	e.l.update(n, false)
}
func (e events) NotifyUpdate(n *memberlist.Node) { e.l.update(n, true) }
