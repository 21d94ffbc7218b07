//go:build linux

package storage

import (
	"fmt"
	"io/fs"
	"syscall"
)

// fileStamp fingerprints a file by identity, size and times, including the
// change time, which only the kernel sets.
func fileStamp(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
	}
	return fmt.Sprintf("%d:%d/%d/%d.%d/%d.%d", st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
}
