//go:build !linux

package chaos

// procInfo is what the operating system tells about a process.
type procInfo struct {
	start  uint64
	zombie bool
}

// procStat is unavailable without /proc; callers fall back to signal 0.
func procStat(pid int) (procInfo, bool) { return procInfo{}, false }
