//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// started describes a process startProcess launched.
type started struct {
	pid   int
	start uint64 // process identity, see Node.PIDStart
	// logOffset is where this run's output begins in the log file, so an
	// error can quote what this run printed rather than an earlier one.
	logOffset int64
}

// startProcess starts argv in its own session with cwd dir, this process's
// environment plus env (env wins), stdin from /dev/null, and stdout and
// stderr appended to logPath. The process outlives the caller; if the
// caller lives on, a goroutine reaps it when it exits.
func startProcess(argv, env []string, dir, logPath string) (started, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return started{}, err
	}
	defer logf.Close()
	off, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return started{}, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	// A session of its own: the node survives the georeg command and its
	// terminal, and it leads a process group we can signal as a whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return started{}, err
	}
	go cmd.Wait()
	st := started{pid: cmd.Process.Pid, logOffset: off}
	if info, ok := procStat(st.pid); ok {
		st.start = info.start
	}
	return st, nil
}

// alive reports whether process pid runs and is the one identified by start
// (0: not recorded). A zombie is not alive: it is dead but not yet reaped.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if info, ok := procStat(pid); ok {
		return !info.zombie && (start == 0 || info.start == start)
	}
	if _, ok := procStat(os.Getpid()); ok {
		// /proc works, so pid is gone.
		return false
	}
	// Without /proc, EPERM means some other user's process holds the pid:
	// not ours.
	return syscall.Kill(pid, 0) == nil
}

// signalProcess sends SIGTERM, or SIGKILL when force is set, to the process
// group led by pid, provided pid still is the process identified by start.
// It returns nil when the process is already gone.
func signalProcess(pid int, start uint64, force bool) error {
	if !alive(pid, start) {
		return nil
	}
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	// Nodes are session leaders, so -pid reaches any children they spawn.
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EPERM) {
		err = syscall.Kill(pid, sig)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chaos: signal pid %d: %w", pid, err)
	}
	return nil
}

// waitDead polls until process pid (identified by start) is gone or ctx is
// done, and reports whether it is gone.
func waitDead(ctx context.Context, pid int, start uint64) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if !alive(pid, start) {
			return true
		}
		select {
		case <-ctx.Done():
			return !alive(pid, start)
		case <-t.C:
		}
	}
}

// lockDir takes an exclusive lock on dir/mesh.lock, waiting for it until
// ctx is done; busy is called once if the lock is held by someone else.
// The lock is released by the returned function or when the process exits.
func lockDir(ctx context.Context, dir string, busy func()) (unlock func(), err error) {
	f, err := os.OpenFile(dir+"/"+LockFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: lock mesh: %w", err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("chaos: lock mesh: %w", err)
		}
		if !told && busy != nil {
			busy()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("chaos: another georeg command holds %s/%s: %w", dir, LockFile, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
