//go:build !linux

package storage

import (
	"fmt"
	"io/fs"
)

// fileStamp fingerprints a file by size and modification time, all that is
// portable.
func fileStamp(fi fs.FileInfo) string {
	return fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
}
