package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrNoDocker means the Docker engine does not answer (or the docker CLI is
// missing).
var ErrNoDocker = errors.New("chaos: the Docker engine does not answer")

// dockerTimeout bounds one docker command; none of those the cluster runs
// should take long, and a hung engine must not hang georeg.
const dockerTimeout = 60 * time.Second

// dockerCLI runs the docker command line. The cluster drives Docker through
// its CLI rather than its API so that it needs no client library and does
// exactly what an operator would type.
type dockerCLI struct {
	bin string
}

// DockerError is a docker command that failed, with what it printed.
type DockerError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *DockerError) Error() string {
	return fmt.Sprintf("docker %s: %v: %s", strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

func (e *DockerError) Unwrap() error { return e.Err }

// run runs docker with args (and stdin, if not nil) and returns its
// standard output without the trailing newline.
func (d dockerCLI) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return d.runFor(ctx, dockerTimeout, stdin, args...)
}

// runFor is run with its own bound on the command's time: starting a
// container sets up its networks, which a busy host can make slow.
func (d dockerCLI) runFor(ctx context.Context, timeout time.Duration, stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errOut
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (gave up after %v)", ctx.Err(), timeout)
		}
		return "", &DockerError{Args: args, Stderr: errOut.String(), Err: err}
	}
	return strings.TrimRight(out.String(), "\n"), nil
}

// pingTimeout bounds the first question Up asks the engine: one that does
// not answer in this time is taken for gone rather than waited on.
const pingTimeout = 10 * time.Second

// ping checks that the engine answers within pingTimeout. Its error names
// the engine it asked (DOCKER_HOST when set) and what to do about it.
func (d dockerCLI) ping(ctx context.Context) error {
	where := "the Docker engine"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		where += " at DOCKER_HOST=" + h
	}
	v, err := d.runFor(ctx, pingTimeout, nil, "version", "--format", "{{.Server.Version}}")
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("%w: the docker CLI (%s) is not installed or not on PATH: %v", ErrNoDocker, d.bin, err)
	case err != nil:
		return fmt.Errorf("%w: %s: %v; start it (`docker info` tells whether it answers) or point DOCKER_HOST or `docker context use` at one that runs",
			ErrNoDocker, where, err)
	case v == "":
		return fmt.Errorf("%w: `docker version` named no server for %s", ErrNoDocker, where)
	}
	return nil
}

// lines splits docker's output into non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// file is one file copied into a container.
type file struct {
	name string
	data []byte
	mode int64
}

// tarOf returns a tar archive of files for `docker cp -`. docker cp makes
// them root's (its -a, which would keep an owner, looks the image's
// numeric user up in the host's passwd and fails), so the files are
// readable by all: the container's one user, the images' unprivileged one,
// must read its key, and nothing else runs in the container.
func tarOf(files []file) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Now(), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// logs returns the last n lines a container wrote, stdout and stderr
// together (regiond and trafficmgr log to stderr), or why there are none.
func (d dockerCLI) logs(ctx context.Context, container string, n int) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.bin, "logs", "--tail", fmt.Sprint(n), container).CombinedOutput()
	if err != nil && len(out) == 0 {
		return err.Error()
	}
	return strings.TrimRight(string(out), "\n")
}
