package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/georeg/georeg/base/healthcheck"
	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/base/wan"
	"github.com/georeg/georeg/trafficmgr"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "trafficmgr:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trafficmgr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "`path` of the JSON configuration (required)")
	wanFile := fs.String("wan", "", "simulated WAN `file` of a local mesh (base/wan): probes and requests of each location go through its links")
	var tlsFiles tlsconf.Files
	fs.StringVar(&tlsFiles.Cert, "tls-cert", "", "PEM `file` of the traffic manager's certificate: with --tls-key and --tls-ca, the listeners serve HTTPS with it and the nodes are reached over HTTPS (regiond --https), verified against --tls-ca")
	fs.StringVar(&tlsFiles.Key, "tls-key", "", "PEM `file` of the key of --tls-cert")
	fs.StringVar(&tlsFiles.CA, "tls-ca", "", "PEM `file` of the cluster CA's certificate")
	dataEndpoints := fs.Bool("data-endpoints", true, "answer blob downloads with 307 to the serving node's data endpoint (a short-lived signed URL) instead of relaying the bytes; overrides the configuration's dataEndpoints when given")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	var health healthcheck.Config
	healthCheck := fs.Bool("health-check", false, "probe a running traffic manager instead of starting one (a container image's HEALTHCHECK): GET --health-url, exit 0 on 200 or 401")
	fs.StringVar(&health.URL, "health-url", "", "`URL` --health-check probes (default $"+healthcheck.EnvURL+", then "+healthcheck.DefaultURL+")")
	fs.StringVar(&health.CA, "health-ca", "", "PEM `file` of the CA an HTTPS answer to --health-check must be signed by (default $"+healthcheck.EnvCA+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "trafficmgr", version)
		return nil
	}
	if *healthCheck {
		return healthcheck.Probe(context.Background(), health)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *configPath == "" {
		return errors.New("--config is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg, err := trafficmgr.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "data-endpoints" {
			cfg.DataEndpoints = dataEndpoints
		}
	})
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := trafficmgr.Options{Logger: log}
	scheme := "http"
	if tlsFiles.Enabled() {
		if opts.TLS, err = tlsconf.Load(tlsFiles); err != nil {
			return fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err)
		}
		scheme = "https"
	}
	if *wanFile != "" {
		nw, err := wan.Open(ctx, wan.NetworkConfig{File: *wanFile, Logger: log})
		if err != nil {
			return fmt.Errorf("--wan: %w", err)
		}
		// A client of a location reaches every region, its own included,
		// through that location's links.
		opts.Dial = func(ctx context.Context, location, network, addr string) (net.Conn, error) {
			return nw.Dialer(location, false)(ctx, network, addr)
		}
	}
	m, err := trafficmgr.New(cfg, opts)
	if err != nil {
		return err
	}

	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-m.Ready():
	}
	for _, l := range cfg.Listeners {
		fmt.Fprintf(stdout, "serving %s on %s://%s\n", l.Location, scheme, m.Addr(l.Location))
	}
	return <-done
}
