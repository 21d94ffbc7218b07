package chaos

import (
	"bytes"
	"os"
	"strconv"
)

// procInfo is what /proc tells about a process.
type procInfo struct {
	start  uint64 // start time in clock ticks after boot
	zombie bool
}

// procStat reads /proc/<pid>/stat. ok is false when the process does not
// exist (or /proc is unavailable).
func procStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself; the fields after the last ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 {
		return procInfo{}, false
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procInfo{}, false
	}
	return procInfo{start: start, zombie: string(f[0]) == "Z" || string(f[0]) == "X"}, true
}
