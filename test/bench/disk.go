package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// diskWrite writes data to a new file in dir, 1 MiB per write, fsyncs it,
// removes it and returns how long the writes and the fsync took. That is the
// rate at which the filesystem under dir makes bytes durable: the bound for
// a registry that fsyncs every blob before acknowledging it, and, divided
// by the number of copies, for a region whose zones share that disk.
func diskWrite(dir string, data []byte) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "diskwrite-*")
	if err != nil {
		return 0, fmt.Errorf("disk write: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const chunk = 1 << 20
	start := time.Now()
	for off := 0; off < len(data); off += chunk {
		if _, err := f.Write(data[off:min(off+chunk, len(data))]); err != nil {
			return 0, fmt.Errorf("disk write: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("disk write: %w", err)
	}
	return time.Since(start), nil
}

// filesystemOf returns the device and type of the filesystem holding dir,
// from the longest matching mount point in /proc/self/mounts, or "" when it
// cannot tell.
func filesystemOf(dir string) string {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	best, fs := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		dev, mnt, typ := fields[0], fields[1], fields[2]
		inside := dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")
		if inside && len(mnt) >= len(best) {
			best, fs = mnt, typ+" on "+dev
		}
	}
	return fs
}
