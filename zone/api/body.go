package api

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// DefaultBodyIdleTimeout is how long a request body may go without
// delivering a byte when Config.BodyIdleTimeout is zero.
const DefaultBodyIdleTimeout = 30 * time.Second

// errBodyIdle means a request body delivered nothing for longer than the
// body idle timeout; the connection is then closed.
var errBodyIdle = errors.New("request body idle for too long")

// idleBody is a request body each of whose reads must make progress within
// timeout. Before every read it moves the connection's read deadline
// timeout ahead, so a client sending steadily is never cut off, however
// big its body, while one that stops (or trickles slower than one read per
// timeout) has its connection closed and holds nothing: the upload session
// it writes to, whose lock it holds, is rolled back and freed.
type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	// over is set once the body returned an error or EOF: from then on the
	// server owns the connection's deadline (it clears it to read the next
	// request), and another deadline set here would cut the connection
	// under the handler.
	over bool
	idle atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.over {
		return b.ReadCloser.Read(p)
	}
	if err := b.rc.SetReadDeadline(time.Now().Add(b.timeout)); err != nil {
		b.over = true // the connection has no deadlines (not HTTP/1 or 2)
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.over = true
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			b.idle.Store(true)
			err = fmt.Errorf("%w (%s without a byte): %w", errBodyIdle, b.timeout, err)
		}
	}
	return n, err
}

// drainGrace is how long the server may go on reading what is left of a
// body the handler did not read before it answers (it reads up to 256 KiB
// before writing the status line, so that the connection can serve the
// next request): enough for a client that sends at speed, while a
// trickling client's connection is closed after it.
const drainGrace = time.Second

// release is called before an error answer: a body the handler did not
// read to its end (refused before or while reading) gets drainGrace to be
// drained, instead of the server waiting on a slow client for it.
func (b *idleBody) release() {
	if b == nil || b.over {
		return
	}
	b.over = true
	b.rc.SetReadDeadline(time.Now().Add(drainGrace))
}

// watchBody makes r's body an idleBody when it has one.
func watchBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *idleBody {
	if timeout <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: timeout}
	r.Body = b
	return b
}

// bodyIdleError is the answer to a request whose body went idle: 408 with
// the code of what was being sent, and the connection closed.
func bodyIdleError(r *http.Request, timeout time.Duration) *Error {
	code := ErrBlobUploadInvalid
	if rt, err := parseRoute(r.URL.Path); err == nil && rt.Kind == KindManifest {
		code = ErrManifestInvalid
	}
	code.Status = http.StatusRequestTimeout
	e := code.WithDetail(fmt.Sprintf("the request body sent nothing for %s; the connection is closed and nothing of this request was kept", timeout))
	e.Header = http.Header{"Connection": {"close"}}
	return e
}
