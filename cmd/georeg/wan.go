package main

import (
	"context"
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/chaos"
)

// twoLocations parses the "R1 R2" arguments of a link verb.
func twoLocations(pos []string, extra int) (a, b string, rest []string, err error) {
	if len(pos) != 2+extra {
		return "", "", nil, usagef("want %d arguments, got %d", 2+extra, len(pos))
	}
	return pos[0], pos[1], pos[2:], nil
}

func chaosPartition(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos partition", "REGION1 REGION2", "Cut the simulated link between two regions: replication between them and\nclients of one location reaching the other region fail until `chaos heal`.")
	dir := dirFlag(fs)
	return linkVerb(ctx, e, fs, dir, args, 0, func(ch *chaos.LinkChange, _ []string) error {
		cut := true
		ch.Cut = &cut
		return nil
	})
}

func chaosHeal(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos heal", "[REGION1 REGION2]", "Heal a cut link, or every cut link without arguments.")
	dir := dirFlag(fs)
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	healed := false
	ch := chaos.LinkChange{Cut: &healed}
	switch len(pos) {
	case 0:
	case 2:
		ch.A, ch.B = pos[0], pos[1]
	default:
		return usagef("want no arguments or two regions, got %d arguments", len(pos))
	}
	return changeLink(ctx, e, *dir, ch)
}

func chaosLatency(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos latency", "REGION1 REGION2 DURATION", "Set the round-trip time of the simulated link between two regions (the same\nregion twice: the path from clients in that location to its own region),\nfor example `chaos latency westus eastus 300ms`.")
	dir := dirFlag(fs)
	return linkVerb(ctx, e, fs, dir, args, 1, func(ch *chaos.LinkChange, rest []string) error {
		d, err := time.ParseDuration(rest[0])
		if err != nil || d < 0 {
			return usagef("latency %q: want a duration such as 80ms", rest[0])
		}
		ch.RTT = &d
		return nil
	})
}

func chaosBandwidth(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos bandwidth", "REGION1 REGION2 RATE", "Cap the bandwidth of the simulated link between two regions, each way, for\nexample 100MB/s, 50Mbit/s, or off.")
	dir := dirFlag(fs)
	return linkVerb(ctx, e, fs, dir, args, 1, func(ch *chaos.LinkChange, rest []string) error {
		r, err := wan.ParseRate(rest[0])
		if err != nil {
			return usagef("%v", err)
		}
		ch.Bandwidth = &r
		return nil
	})
}

func chaosLoss(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "chaos loss", "REGION1 REGION2 PERCENT", "Set the packet loss of the simulated link between two regions, for example\n2%. Loss shows as retransmission delays.")
	dir := dirFlag(fs)
	return linkVerb(ctx, e, fs, dir, args, 1, func(ch *chaos.LinkChange, rest []string) error {
		p, err := strconv.ParseFloat(strings.TrimSuffix(rest[0], "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return usagef("loss %q: want a percentage between 0 and 100", rest[0])
		}
		p /= 100
		ch.Loss = &p
		return nil
	})
}

func linkVerb(ctx context.Context, e env, fs *flag.FlagSet, dir *string, args []string, extra int, set func(*chaos.LinkChange, []string) error) error {
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	a, b, rest, err := twoLocations(pos, extra)
	if err != nil {
		return err
	}
	ch := chaos.LinkChange{A: a, B: b}
	if err := set(&ch, rest); err != nil {
		return err
	}
	return changeLink(ctx, e, *dir, ch)
}

// changeLink applies ch to the simulated WAN of a mesh. In a container
// cluster a cut or a heal disconnects or reconnects the regions' networks,
// and latency, bandwidth and loss go to the simulated WAN in every zone
// container (no tc netem on the kernels georeg runs on; see
// docs/cluster.md).
func changeLink(ctx context.Context, e env, dir string, ch chaos.LinkChange) error {
	cl, err := containerCluster(e, dir)
	if err != nil {
		return err
	}
	if cl != nil {
		switch {
		case ch.Cut == nil:
			return cl.ChangeLink(ctx, ch)
		case *ch.Cut:
			return cl.Partition(ctx, ch.A, ch.B)
		default:
			return cl.Heal(ctx, ch.A, ch.B)
		}
	}
	c, err := newController(e, dir)
	if err != nil {
		return err
	}
	return c.ChangeLink(ctx, ch)
}
