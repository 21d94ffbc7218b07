package wan

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// chunkSize is the largest unit the queues delay, lose and meter; it is
	// also the burst of a path's bandwidth budget.
	chunkSize = 64 << 10
	// window bounds the bytes queued in each direction of a connection:
	// what Write accepts ahead of the wire, and what the read pump takes
	// off the socket ahead of Read. It plays the part of TCP's send and
	// receive buffers, so a bulk transfer runs at up to window/delay
	// instead of chunk/RTT.
	window = 4 << 20
	// drainLimit bounds how long a closed connection keeps delivering
	// data written before Close.
	drainLimit = 10 * time.Second
	// sendPiece is the most a folded connection's ReadFrom hands the
	// socket (sendfile) at once, so that a cap or a loss rate set on the
	// link meanwhile applies to the rest of the transfer.
	sendPiece = 1 << 20
)

// aLongTimeAgo is a deadline in the past, to wake a blocked socket read.
var aLongTimeAgo = time.Unix(1, 0)

// conn is a connection through a simulated link. Data written goes through
// a queue of timestamped chunks that a write pump puts on the socket when
// due; data arriving is taken off the socket by a read pump into a queue
// that Read serves from when due. While the link adds nothing and the
// queues are empty, Read and Write go straight to the socket.
//
// A folded connection (the server side of a [Network.Listener]) moves the
// delay of its writes to its reads: data it writes goes straight to the
// socket while the link neither caps nor loses, and data it reads waits a
// whole round trip instead of half of one. A request and its response
// cost the client the same round trip either way, and the bytes a server
// sends, the bulk of a download, are neither copied nor queued (ReadFrom
// keeps sendfile).
//
// Lifecycle: Close marks the connection closed (Read and Write fail at
// once), then the socket is closed after the write queue drains, or at once
// when it is empty; shutdown is that final step, and it cancels ctx, which
// ends both pumps. A cut calls shutdown without draining.
type conn struct {
	raw     net.Conn
	out, in *path // out carries writes, in carries reads
	fold    bool  // writes' delay added to reads (see above)

	ctx    context.Context // canceled by shutdown
	cancel context.CancelFunc

	closed    atomic.Bool
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	shutOnce  sync.Once

	rdl, wdl           deadline // the caller's deadlines
	rdChange, wdChange signal   // a deadline was set

	wserial sync.Mutex // one Write at a time, so writes do not interleave
	wmu     sync.Mutex // guards the write queue and the fields below
	wq      []chunk
	wqBytes int  // queued bytes, the one being written included
	wpump   bool // a write pump is running
	werr    error
	closing bool      // Close is waiting for the queue to drain
	drainBy time.Time // until then
	wspace  signal

	rserial sync.Mutex // one Read at a time
	rmu     sync.Mutex // guards the read queue and the fields below
	rq      []chunk
	rqBytes int
	rpump   bool // a read pump is running
	rerr    error
	rcut    error
	rdata   signal // data or an error arrived
	rspace  signal // Read took data off the queue
}

// chunk is data with the time it entered its queue.
type chunk struct {
	b    []byte
	t    time.Time
	lost bool // delivered one retransmission timeout late
}

// due is when c may leave its queue after delay, on a path whose
// retransmission timeout is rto.
func (c *chunk) due(delay, rto time.Duration) time.Time {
	d := c.t.Add(delay)
	if c.lost {
		d = d.Add(rto)
	}
	return d
}

func newConn(raw net.Conn, out, in *path, fold bool) *conn {
	c := &conn{raw: raw, out: out, in: in, fold: fold, done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.rdl.init()
	c.wdl.init()
	if c.readsDelayed(in.load()) {
		c.rpump = true
		go c.readPump()
	}
	return c
}

// writesDirect reports whether data written under out, the outbound
// path's state, may go straight to the socket (when nothing is queued).
func (c *conn) writesDirect(out *linkState) bool {
	return out.zero() || c.fold && out.bandwidth == 0 && out.loss == 0
}

// readDelay is how long data arriving under in, the inbound path's state,
// waits before Read may take it.
func (c *conn) readDelay(in *linkState) time.Duration {
	d := in.delay
	if out := c.out.load(); c.fold && c.writesDirect(out) {
		d += out.delay
	}
	return d
}

// readsDelayed reports whether reads under in go through the read queue.
func (c *conn) readsDelayed(in *linkState) bool {
	return c.readDelay(in) > 0 || in.bandwidth > 0 || in.loss > 0
}

func lose(st *linkState) bool {
	return st.loss > 0 && rand.Float64() < st.loss
}

func (c *conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.raw.LocalAddr(), Addr: c.raw.RemoteAddr(), Err: err}
}

// Write queues p and returns once all of it is queued, waiting while the
// queue holds a window of data.
func (c *conn) Write(p []byte) (int, error) {
	c.wserial.Lock()
	defer c.wserial.Unlock()
	n := 0
	for {
		if c.closed.Load() {
			return n, c.opError("write", net.ErrClosed)
		}
		select {
		case <-c.wdl.wait():
			return n, c.opError("write", os.ErrDeadlineExceeded)
		default:
		}
		c.wmu.Lock()
		if c.werr != nil {
			err := c.werr
			c.wmu.Unlock()
			return n, err
		}
		if len(p) == 0 {
			c.wmu.Unlock()
			return n, nil
		}
		st := c.out.load()
		if c.wqBytes == 0 && c.writesDirect(st) {
			// Nothing queued and nothing to add: the socket is
			// ours, as Writes are serialized and the pump is idle.
			c.wmu.Unlock()
			m, err := c.raw.Write(p)
			if err != nil {
				err = c.directErr("write", err)
			}
			return n + m, err
		}
		if c.wqBytes >= window {
			space := c.wspace.wait()
			c.wmu.Unlock()
			select {
			case <-space:
			case <-c.done:
			case <-c.ctx.Done():
			case <-c.wdl.wait():
			}
			continue
		}
		now := time.Now()
		for len(p) > 0 && c.wqBytes < window {
			m := min(len(p), chunkSize, window-c.wqBytes)
			c.wq = append(c.wq, chunk{b: append([]byte(nil), p[:m]...), t: now, lost: lose(st)})
			c.wqBytes += m
			n += m
			p = p[m:]
		}
		if !c.wpump {
			c.wpump = true
			go c.writePump()
		}
		c.wmu.Unlock()
	}
}

// ReadFrom writes what r holds. On a folded connection whose writes go
// straight to the socket it hands the socket a bounded reader at a time,
// so that net/http's io.Copy of a file still reaches sendfile, and a cap
// set on the link meanwhile still applies to the rest; otherwise it is
// Write in a loop.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.raw.(io.ReaderFrom)
	lr, limited := r.(*io.LimitedReader)
	if !ok || !limited || !c.fold {
		return io.Copy(writerOnly{c}, r)
	}
	var total int64
	for lr.N > 0 {
		c.wserial.Lock()
		c.wmu.Lock()
		direct := c.werr == nil && c.wqBytes == 0 && c.writesDirect(c.out.load())
		c.wmu.Unlock()
		if !direct || c.closed.Load() {
			c.wserial.Unlock()
			n, err := io.Copy(writerOnly{c}, lr)
			return total + n, err
		}
		want := min(lr.N, sendPiece)
		n, err := rf.ReadFrom(&io.LimitedReader{R: lr.R, N: want})
		c.wserial.Unlock()
		lr.N -= n
		total += n
		if err != nil {
			return total, c.directErr("write", err)
		}
		if n < want {
			break // r ended
		}
	}
	return total, nil
}

// writerOnly hides a writer's ReadFrom, so io.Copy to it does not recurse.
type writerOnly struct{ io.Writer }

// writePump puts queued chunks on the socket when they are due, within the
// path's bandwidth, and closes the socket when Close left it to drain.
func (c *conn) writePump() {
	for {
		c.wmu.Lock()
		if c.werr != nil || len(c.wq) == 0 {
			c.wpump = false
			closing := c.closing
			c.wmu.Unlock()
			if closing {
				c.shutdown()
			}
			return
		}
		ch := c.wq[0]
		c.wq[0] = chunk{}
		c.wq = c.wq[1:]
		c.wmu.Unlock()

		err := c.send(ch)

		c.wmu.Lock()
		if c.werr == nil {
			c.wqBytes -= len(ch.b)
			if err != nil {
				if _, ok := err.(*net.OpError); !ok {
					err = c.opError("write", err)
				}
				c.werr = err
				c.wq, c.wqBytes = nil, 0
			}
		}
		c.wmu.Unlock()
		c.wspace.broadcast()
	}
}

// send waits until ch is due and within bandwidth, then writes it.
func (c *conn) send(ch chunk) error {
	st := c.out.load()
	for {
		d := time.Until(ch.due(st.delay, st.rto))
		if d <= 0 {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-st.changed:
			st = c.out.load()
		case <-c.ctx.Done():
			t.Stop()
			return net.ErrClosed
		}
		t.Stop()
	}
	if err := c.waitBandwidth(c.out, len(ch.b)); err != nil {
		return err
	}
	b := ch.b
	for len(b) > 0 {
		changed := c.wdChange.wait()
		m, err := c.raw.Write(b)
		b = b[m:]
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		c.wmu.Lock()
		drained := c.closing && !time.Now().Before(c.drainBy)
		c.wmu.Unlock()
		if drained {
			return err
		}
		// The caller's write deadline passed with data in flight: wait
		// until it moves (Close moves it too), as a kernel would keep
		// sending its send buffer.
		select {
		case <-changed:
		case <-c.ctx.Done():
			return net.ErrClosed
		}
	}
	return nil
}

// waitBandwidth waits until path p's bandwidth lets n bytes through. A
// change of the link's settings wakes it to reserve again under the new
// ones, so that data waiting when a cap is lifted or raised does not sleep
// out a wait reserved under the old cap. It fails with net.ErrClosed at
// shutdown.
func (c *conn) waitBandwidth(p *path, n int) error {
	for {
		st := p.load()
		if st.bandwidth == 0 {
			return nil
		}
		r := p.limiter.ReserveN(time.Now(), n)
		if !r.OK() {
			return net.ErrClosed // more than the burst: never sent
		}
		d := r.Delay()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return nil
		case <-st.changed:
			t.Stop()
			r.Cancel()
		case <-c.ctx.Done():
			t.Stop()
			r.Cancel()
			return net.ErrClosed
		}
	}
}

// Read returns data that has arrived and is due, waiting for it if needed.
func (c *conn) Read(p []byte) (int, error) {
	c.rserial.Lock()
	defer c.rserial.Unlock()
	for {
		if c.closed.Load() {
			return 0, c.opError("read", net.ErrClosed)
		}
		select {
		case <-c.rdl.wait():
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		default:
		}
		c.rmu.Lock()
		if c.rcut != nil {
			err := c.rcut
			c.rmu.Unlock()
			return 0, err
		}
		st := c.in.load()
		var wake <-chan struct{}
		var due time.Time
		if len(c.rq) == 0 {
			if c.rerr != nil {
				err := c.rerr
				c.rmu.Unlock()
				return 0, err
			}
			if !c.rpump {
				if !c.readsDelayed(st) {
					c.rmu.Unlock()
					n, err := c.raw.Read(p)
					if err != nil {
						err = c.directErr("read", err)
					}
					return n, err
				}
				c.rpump = true
				go c.readPump()
			}
			wake = c.rdata.wait()
		} else if due = c.rq[0].due(c.readDelay(st), st.rto); !due.After(time.Now()) {
			n := c.take(p, st)
			c.rmu.Unlock()
			c.rspace.broadcast()
			return n, nil
		}
		c.rmu.Unlock()
		var t *time.Timer
		var timer <-chan time.Time
		if !due.IsZero() {
			t = time.NewTimer(time.Until(due))
			timer = t.C
		}
		select {
		case <-wake:
		case <-timer:
		case <-st.changed:
		case <-c.done:
		case <-c.ctx.Done():
		case <-c.rdl.wait():
		}
		if t != nil {
			t.Stop()
		}
	}
}

// take copies due data from the head of the read queue into p. It is called
// with rmu held and the head due.
func (c *conn) take(p []byte, st *linkState) int {
	n := 0
	now := time.Now()
	delay := c.readDelay(st)
	for n < len(p) && len(c.rq) > 0 {
		h := &c.rq[0]
		if n > 0 && h.due(delay, st.rto).After(now) {
			break
		}
		m := copy(p[n:], h.b)
		n += m
		h.b = h.b[m:]
		if len(h.b) == 0 {
			c.rq[0] = chunk{}
			c.rq = c.rq[1:]
		}
	}
	c.rqBytes -= n
	return n
}

// readPump takes data off the socket as it arrives, within the path's
// bandwidth, and queues it for Read. It stops once the link adds nothing,
// handing the socket back to Read, and at an error or shutdown.
func (c *conn) readPump() {
	buf := make([]byte, chunkSize)
	for {
		changed := c.rdChange.wait()
		n, err := c.raw.Read(buf)
		st := c.in.load()
		if n > 0 && st.bandwidth > 0 {
			if c.waitBandwidth(c.in, n) != nil {
				err = net.ErrClosed // shutdown
			}
			st = c.in.load()
		}
		if n > 0 {
			c.enqueue(buf[:n], st)
		}
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.closed.Load() {
			// The caller's read deadline passed: Read reports it,
			// and the pump resumes once the deadline moves.
			select {
			case <-changed:
				continue
			case <-c.done:
			case <-c.ctx.Done():
			}
		}
		c.rmu.Lock()
		if err != nil || !c.readsDelayed(st) {
			if err != nil {
				c.rerr = err
			}
			c.rpump = false
			c.rmu.Unlock()
			c.rdata.broadcast()
			return
		}
		for c.rqBytes >= window {
			space := c.rspace.wait()
			c.rmu.Unlock()
			select {
			case <-space:
			case <-c.done:
			case <-c.ctx.Done():
			}
			c.rmu.Lock()
			if c.closed.Load() || c.ctx.Err() != nil {
				c.rpump = false
				c.rmu.Unlock()
				return
			}
		}
		c.rmu.Unlock()
	}
}

// enqueue queues a copy of b for Read.
func (c *conn) enqueue(b []byte, st *linkState) {
	ch := chunk{b: append([]byte(nil), b...), t: time.Now(), lost: lose(st)}
	c.rmu.Lock()
	c.rq = append(c.rq, ch)
	c.rqBytes += len(b)
	c.rmu.Unlock()
	c.rdata.broadcast()
}

// directErr is the error to report for err from a direct read or write of
// the socket, which a Close or a cut may have caused.
func (c *conn) directErr(op string, err error) error {
	c.rmu.Lock()
	cut := c.rcut
	c.rmu.Unlock()
	switch {
	case cut != nil && op == "read":
		return cut
	case cut != nil:
		return c.opError(op, errors.Unwrap(cut))
	case c.closed.Load():
		return c.opError(op, net.ErrClosed)
	}
	return err
}

// Close makes Read and Write fail at once; data already written is still
// delivered (for up to drainLimit) before the socket closes.
func (c *conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closed.Store(true)
		close(c.done)
	})
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	drainBy := time.Now().Add(drainLimit)
	c.wmu.Lock()
	pending := c.werr == nil && c.wqBytes > 0
	c.closing, c.drainBy = pending, drainBy
	c.wmu.Unlock()
	if !pending {
		c.shutdown()
		return nil
	}
	// Wake a Read blocked on the socket; the read pump sees c.done.
	c.raw.SetReadDeadline(aLongTimeAgo)
	c.rdChange.broadcast()
	// Bound the drain: a peer that stops reading or a slow link must not
	// keep the socket (and the pump) forever.
	c.raw.SetWriteDeadline(drainBy)
	c.wdChange.broadcast()
	t := time.AfterFunc(drainLimit, c.shutdown)
	context.AfterFunc(c.ctx, func() { t.Stop() })
	return nil
}

// shutdown closes the socket and ends both pumps.
func (c *conn) shutdown() {
	c.shutOnce.Do(func() {
		c.cancel()
		c.raw.Close()
		c.out.remove(c)
	})
}

// cut breaks the connection because its link was cut: pending data is
// dropped, and Read and Write fail with an error wrapping ErrCut.
func (c *conn) cut(err error) {
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = c.opError("write", err)
	}
	c.wq, c.wqBytes = nil, 0
	c.wmu.Unlock()
	c.wspace.broadcast()
	c.rmu.Lock()
	c.rcut = c.opError("read", err)
	c.rmu.Unlock()
	c.rdata.broadcast()
	c.shutdown()
}

func (c *conn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets both deadlines, see SetReadDeadline and SetWriteDeadline.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline bounds Read, whether it waits on the queue or reads the
// socket directly. The read pump pauses while the socket's deadline has
// passed and resumes when it moves.
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.rdl.set(t)
	err := c.raw.SetReadDeadline(t)
	c.rdChange.broadcast()
	return err
}

// SetWriteDeadline bounds Write: its wait for queue space, or its direct
// write to the socket. Data already queued is delivered regardless, as a
// kernel delivers its send buffer.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.wdl.set(t)
	err := c.raw.SetWriteDeadline(t)
	c.wdChange.broadcast()
	return err
}

var (
	_ net.Conn      = (*conn)(nil)
	_ io.ReaderFrom = (*conn)(nil)
)

// signal is a broadcast: wait returns a channel that the next broadcast
// closes. Take the channel before checking the condition it announces, and
// no broadcast is missed.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) broadcast() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// deadline is a settable point in time whose channel is closed once it
// passes (the scheme of net.Pipe).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func (d *deadline) init() { d.cancel = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
