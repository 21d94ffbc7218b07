//go:build !unix

package chaos

import (
	"context"
	"errors"
)

// errNoProcesses is returned where the launcher would need Unix sessions
// and signals.
var errNoProcesses = errors.New("chaos: local meshes need a Unix system")

type started struct {
	pid       int
	start     uint64
	logOffset int64
}

func startProcess(argv, env []string, dir, logPath string) (started, error) {
	return started{}, errNoProcesses
}

func alive(pid int, start uint64) bool { return false }

func signalProcess(pid int, start uint64, force bool) error { return errNoProcesses }

func waitDead(ctx context.Context, pid int, start uint64) bool { return true }

func lockDir(ctx context.Context, dir string, busy func()) (func(), error) {
	return nil, errNoProcesses
}
