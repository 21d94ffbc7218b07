package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/georeg/georeg/region/api"
	"github.com/georeg/georeg/region/meta"
	"github.com/georeg/georeg/region/upload"
	"github.com/georeg/georeg/storage"
)

// Config configures a Node.
type Config struct {
	// Region and Zone name this node ("westus", 1).
	Region string
	Zone   int
	// HTTPAddr is the address the distribution API listens on.
	HTTPAddr string
	// DataDir holds everything the node stores: metadata, staged uploads and,
	// with the filesystem blob store, the blobs.
	DataDir string
	// BlobStore is "fs" (default) or "s3".
	BlobStore string
	// S3 configures the S3 blob store.
	S3 storage.S3Config
	// MaxManifestBytes bounds a manifest body (default 4 MiB).
	MaxManifestBytes int64
	// UploadIdleTimeout expires idle upload sessions (default 1h).
	UploadIdleTimeout time.Duration
	// MaxUploadSessions bounds the node's open upload sessions (default 10,000).
	MaxUploadSessions int
	Logger            *slog.Logger
}

// Node is one running zone node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	meta    *meta.Store
	blobs   storage.BlobStore
	uploads *upload.Manager
	handler *api.Handler
	ln      net.Listener
}

// NewNode opens the node's stores and binds its listener. Call Run to serve.
func NewNode(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Region == "" || cfg.Zone <= 0 || cfg.DataDir == "" || cfg.HTTPAddr == "" {
		return nil, fmt.Errorf("region: Region, Zone (>0), DataDir and HTTPAddr are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("region", cfg.Region, "zone", cfg.Zone)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	n := &Node{cfg: cfg, log: log}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	var err error
	n.meta, err = meta.Open(meta.Config{Path: filepath.Join(cfg.DataDir, "meta.db"), Logger: log})
	if err != nil {
		return nil, err
	}
	switch cfg.BlobStore {
	case "", "fs":
		n.blobs, err = storage.NewFS(storage.FSConfig{Root: filepath.Join(cfg.DataDir, "blobs"), Logger: log})
	case "s3":
		s3cfg := cfg.S3
		s3cfg.Logger = log
		n.blobs, err = storage.NewS3(ctx, s3cfg)
	default:
		err = fmt.Errorf("unknown blob store %q (want fs or s3)", cfg.BlobStore)
	}
	if err != nil {
		return nil, fmt.Errorf("region: blob store: %w", err)
	}
	// Staged uploads sit beside the blobs so that finishing one is a rename.
	n.uploads, err = upload.New(upload.Config{
		Dir:         filepath.Join(cfg.DataDir, "blobs", "uploads"),
		IdleTimeout: cfg.UploadIdleTimeout,
		MaxSessions: cfg.MaxUploadSessions,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	n.handler, err = api.New(api.Config{
		Meta:             n.meta,
		Blobs:            n.blobs,
		Uploads:          n.uploads,
		MaxManifestBytes: cfg.MaxManifestBytes,
		ServedBy:         cfg.Region + "/" + strconv.Itoa(cfg.Zone),
		Logger:           log,
	})
	if err != nil {
		return nil, err
	}
	n.ln, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("region: listen: %w", err)
	}
	ok = true
	return n, nil
}

// Addr returns the address the API listens on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Handler returns the node's HTTP handler.
func (n *Node) Handler() http.Handler { return n.handler }

// Run serves until ctx is cancelled, then drains requests for up to 10 s and
// closes the stores.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	srv := &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	go n.uploads.Run(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(n.ln) }()
	n.log.Info("serving the distribution API", "addr", n.Addr(), "data", n.cfg.DataDir)
	select {
	case err := <-errc:
		return fmt.Errorf("region: serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	n.log.Info("stopped")
	return nil
}

func (n *Node) close() {
	if n.meta != nil {
		n.meta.Close()
	}
	if n.ln != nil {
		n.ln.Close()
	}
}
