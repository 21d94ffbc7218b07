package region

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/georeg/georeg/base/tlsconf"
	"github.com/georeg/georeg/proto"
	"github.com/georeg/georeg/storage"
)

// The blob stream protocol copies a blob's bytes from one zone node to
// another. It shares the zone port with gRPC (Serve tells them apart by
// their first bytes) and exists because the copies are the bulk of a
// region's write traffic: gRPC's framing, flow control and message copies
// cost several times the CPU of the bytes themselves, and on a machine
// whose zones share the cores that halves the region's push throughput.
//
// A connection opens with BlobStreamMagic. Then, any number of times:
//
//	request:  uint16 length, digest; int64 size (-1: unknown)
//	          frames of uint32 length, uint32 CRC-32C (Castagnoli) of the
//	          data, that many bytes of data; a 0 length (no CRC) ends
//	response: uint8 status; uint16 length, message
//
// The frame that ends a blob is the sender's word that the bytes it sent
// hash to the digest: it sends it only once it has checked that, either
// because the bytes come from an upload whose own store write hashed and
// checked them (the copies streamed while a client pushes) or because it
// hashed them while sending (a copy of a stored blob). The receiver checks
// every frame's CRC, so that what it stores is what the sender checked.
// It takes the sender's word only from a peer that proved it is a node of
// the registry (a mutual TLS connection with a node certificate of the
// cluster, see base/tlsconf): then it stores the blob durably without
// hashing it again (storage.VouchedPutter) before it answers statusOK, one
// SHA-256 pass per blob and region instead of one per zone, as HDFS checks
// its pipelines with a CRC per chunk. From any other connection (a node
// running without TLS) it hashes what arrives and refuses a mismatch, so a
// caller who can reach the port can never have bytes served under a digest
// they do not hash to. (SHA-256 runs at about 2 GB/s a core here, with the
// CPU's SHA instructions; docs/security.md has the figures.) A frame whose
// CRC does not match fails the copy with statusDataLoss. Integers are
// big-endian.
const BlobStreamMagic = "GEOREG-BLOB/2\n"

// Response statuses.
const (
	statusOK       = 0
	statusDataLoss = 1 // the bytes did not match the digest or size
	statusNoSpace  = 2 // the receiver's store is full
	statusError    = 3
)

const (
	// streamIdle bounds the wait for the peer's next bytes, or for its
	// room to take them, within a copy.
	streamIdle = 30 * time.Second
	// serverKeepIdle is how long a receiver keeps an idle connection for
	// the next copy; senders drop theirs sooner (senderKeepIdle), so that a
	// pooled connection is never one the receiver is closing.
	serverKeepIdle = 2 * time.Minute
	senderKeepIdle = 30 * time.Second
	maxIdlePerPeer = 4
	frameBytes     = 1 << 20
)

// errCopyRefused is wrapped by the error of a copy the receiving zone
// refused (as opposed to one that could not reach it).
var errCopyRefused = errors.New("zone: copy refused")

// blobStreams sends blobs to other zones over the blob stream protocol,
// keeping a few idle connections per peer.
type blobStreams struct {
	dialer net.Dialer
	tls    *tls.Config // nil: plaintext
	mu     sync.Mutex
	idle   map[string][]idleConn
	closed bool
}

type idleConn struct {
	conn  *streamConn
	since time.Time
}

type streamConn struct {
	net.Conn
	r *bufio.Reader
}

// newBlobStreams returns a sender; with tlsConfig (a mutual TLS client
// configuration) its connections are TLS.
func newBlobStreams(tlsConfig *tls.Config) *blobStreams {
	s := &blobStreams{idle: map[string][]idleConn{}}
	if tlsConfig != nil {
		s.tls = tlsConfig.Clone()
		s.tls.NextProtos = []string{proto.ALPNBlobStream}
	}
	return s
}

// get returns a pooled connection to addr or a new one.
func (s *blobStreams) get(ctx context.Context, addr string) (*streamConn, error) {
	s.mu.Lock()
	for list := s.idle[addr]; len(list) > 0; list = s.idle[addr] {
		ic := list[len(list)-1]
		s.idle[addr] = list[:len(list)-1]
		if time.Since(ic.since) < senderKeepIdle && alive(ic.conn.Conn) {
			s.mu.Unlock()
			return ic.conn, nil
		}
		ic.conn.Close()
	}
	s.mu.Unlock()
	var c net.Conn
	var err error
	if s.tls != nil {
		d := tls.Dialer{NetDialer: &s.dialer, Config: s.tls}
		c, err = d.DialContext(ctx, "tcp", addr)
	} else {
		c, err = s.dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, BlobStreamMagic); err != nil {
		c.Close()
		return nil, err
	}
	return &streamConn{Conn: c, r: bufio.NewReaderSize(c, 4<<10)}, nil
}

func (s *blobStreams) put(addr string, c *streamConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.idle[addr]) >= maxIdlePerPeer {
		c.Close()
		return
	}
	s.idle[addr] = append(s.idle[addr], idleConn{c, time.Now()})
}

func (s *blobStreams) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, list := range s.idle {
		for _, ic := range list {
			ic.conn.Close()
		}
	}
	s.idle = map[string][]idleConn{}
}

// send copies the blob dgst of size bytes (-1: unknown) read from r to the
// zone node at addr and returns once that node holds it durably.
func (s *blobStreams) send(ctx context.Context, addr string, dgst digest.Digest, size int64, r io.Reader) error {
	c, err := s.get(ctx, addr)
	if err != nil {
		return err
	}
	// Cancelling ctx fails the connection's pending and future I/O.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = sendOn(ctx, c, dgst, size, r)
	if !stop() || err != nil {
		// The connection's deadline may have been poisoned, or it is
		// midway through a blob: it cannot carry another copy.
		c.Close()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	c.SetDeadline(time.Time{})
	s.put(addr, c)
	return nil
}

func sendOn(ctx context.Context, c *streamConn, dgst digest.Digest, size int64, r io.Reader) error {
	d := dgst.String()
	hdr := make([]byte, 0, 2+len(d)+8)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(d)))
	hdr = append(hdr, d...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(size))
	c.SetWriteDeadline(time.Now().Add(streamIdle))
	if _, err := c.Write(hdr); err != nil {
		return err
	}
	fw := &frameWriter{ctx: ctx, c: c}
	var err error
	if q, ok := r.(*chunkQueue); ok {
		// The queue ends without an error only once the upload's own
		// store write has checked the digest.
		_, err = q.writeChunksTo(fw)
	} else {
		// Bytes read back from a file are checked here: the end frame
		// must never vouch for a copy that went bad on this node's disk.
		// (VerifyingReader also hides other WriterTos, such as an
		// *os.File's, which copies 32 KiB at a time to anything but a
		// socket.)
		_, err = io.CopyBuffer(fw, storage.VerifyingReader(r, dgst, size), make([]byte, frameBytes))
	}
	if err != nil {
		return err
	}
	if err := fw.Write0(); err != nil {
		return err
	}
	return readResponse(c)
}

// frameWriter writes each Write as one frame, header and data in one
// system call, until its context ends.
type frameWriter struct {
	ctx context.Context
	c   *streamConn
	hdr [8]byte
}

// castagnoli is the CRC-32C table; the hash/crc32 package computes it with
// the CPU's CRC32 instruction where there is one (SSE 4.2, ARMv8).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (w *frameWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		if err := w.ctx.Err(); err != nil {
			return written, err
		}
		n := min(len(p)-written, frameBytes)
		data := p[written : written+n]
		binary.BigEndian.PutUint32(w.hdr[:4], uint32(n))
		binary.BigEndian.PutUint32(w.hdr[4:], crc32.Checksum(data, castagnoli))
		w.c.SetWriteDeadline(time.Now().Add(streamIdle))
		bufs := net.Buffers{w.hdr[:], data}
		if _, err := bufs.WriteTo(w.c.Conn); err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// Write0 writes the frame that ends a blob.
func (w *frameWriter) Write0() error {
	binary.BigEndian.PutUint32(w.hdr[:4], 0)
	w.c.SetWriteDeadline(time.Now().Add(streamIdle))
	_, err := w.c.Conn.Write(w.hdr[:4])
	return err
}

func readResponse(c *streamConn) error {
	c.SetReadDeadline(time.Now().Add(streamIdle))
	var hdr [3]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[1:]))
	if _, err := io.ReadFull(c.r, msg); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	switch hdr[0] {
	case statusOK:
		return nil
	case statusDataLoss:
		return fmt.Errorf("%w: %w: %s", errCopyRefused, storage.ErrDigestMismatch, msg)
	case statusNoSpace:
		return fmt.Errorf("%w: %w: %s", errCopyRefused, storage.ErrNoSpace, msg)
	default:
		return fmt.Errorf("%w: %s", errCopyRefused, msg)
	}
}

// serveBlobStream receives blobs on c, which has sent BlobStreamMagic,
// until the sender closes it or stays idle for serverKeepIdle.
func (s *Server) serveBlobStream(c net.Conn, log *slog.Logger) {
	defer c.Close()
	magic := make([]byte, len(BlobStreamMagic))
	c.SetReadDeadline(time.Now().Add(streamIdle))
	if _, err := io.ReadFull(c, magic); err != nil || string(magic) != BlobStreamMagic {
		return
	}
	vouched := authenticatedNode(c)
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(serverKeepIdle))
		if _, err := r.Peek(1); err != nil {
			return // closed or idle: the sender opens another when it needs one
		}
		c.SetReadDeadline(time.Now().Add(streamIdle))
		dgst, size, err := readRequest(r)
		if err != nil {
			log.Warn("blob stream: bad request", "from", c.RemoteAddr(), "err", err)
			return
		}
		fr := &frameReader{c: c, r: r}
		_, perr := s.putCopy(context.Background(), dgst, size, fr, vouched)
		if fr.err != nil {
			// The connection failed (or sent garbage): nobody to answer.
			return
		}
		if perr != nil {
			// Take the rest of the blob so the sender can read the answer.
			if err := fr.discard(); err != nil {
				return
			}
		}
		if err := writeResponse(c, perr); err != nil {
			return
		}
	}
}

// authenticatedNode reports whether c is a mutual TLS connection from a
// holder of a node certificate of the cluster: the only peer whose word
// that its bytes match their digest is taken.
func authenticatedNode(c net.Conn) bool {
	tc := tlsConn(c)
	if tc == nil {
		return false
	}
	cs := tc.ConnectionState()
	return cs.HandshakeComplete && tlsconf.Role(cs) == tlsconf.RoleNode
}

func readRequest(r *bufio.Reader) (digest.Digest, int64, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", 0, err
	}
	d := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, d); err != nil {
		return "", 0, err
	}
	dgst, err := digest.Parse(string(d))
	if err != nil {
		return "", 0, err
	}
	var sz [8]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return "", 0, err
	}
	size := int64(binary.BigEndian.Uint64(sz[:]))
	if size < -1 {
		return "", 0, fmt.Errorf("invalid size %d", size)
	}
	return dgst, size, nil
}

func writeResponse(c net.Conn, err error) error {
	status, msg := byte(statusOK), ""
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrDigestMismatch) || errors.Is(err, storage.ErrSizeMismatch):
		status, msg = statusDataLoss, err.Error()
	case errors.Is(err, storage.ErrNoSpace):
		status, msg = statusNoSpace, err.Error()
	default:
		status, msg = statusError, err.Error()
	}
	if len(msg) > 1<<15 {
		msg = msg[:1<<15]
	}
	out := []byte{status}
	out = binary.BigEndian.AppendUint16(out, uint16(len(msg)))
	out = append(out, msg...)
	c.SetWriteDeadline(time.Now().Add(streamIdle))
	_, werr := c.Write(out)
	return werr
}

// errFrameCRC is wrapped by the error of a frame whose data does not match
// its CRC.
var errFrameCRC = errors.New("blob stream: frame CRC mismatch")

// frameReader reads the data of one blob's frames, checking each frame's
// CRC, and returns io.EOF at the frame that ends it. err records a failure
// of the connection itself. A frame whose CRC does not match fails the
// Read that completes it (the stream stays in step, so the rest can be
// read and the sender answered), and so does every later Read.
type frameReader struct {
	c       net.Conn
	r       *bufio.Reader
	left    int    // bytes left in the current frame
	want    uint32 // the current frame's CRC
	crc     uint32 // CRC of the current frame's data read so far
	corrupt error  // set once a frame failed its CRC
	done    bool
	err     error
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.done {
		return 0, io.EOF
	}
	for f.left == 0 {
		var hdr [4]byte
		f.c.SetReadDeadline(time.Now().Add(streamIdle))
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			f.err = fmt.Errorf("blob stream: %w", noEOF(err))
			return 0, f.err
		}
		f.left = int(binary.BigEndian.Uint32(hdr[:]))
		if f.left == 0 {
			f.done = true
			if f.corrupt != nil {
				return 0, f.corrupt
			}
			return 0, io.EOF
		}
		if f.left > frameBytes {
			f.err = fmt.Errorf("blob stream: frame of %d bytes, at most %d allowed", f.left, frameBytes)
			return 0, f.err
		}
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			f.err = fmt.Errorf("blob stream: %w", noEOF(err))
			return 0, f.err
		}
		f.want, f.crc = binary.BigEndian.Uint32(hdr[:]), 0
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	f.crc = crc32.Update(f.crc, castagnoli, p[:n])
	if err != nil {
		f.err = fmt.Errorf("blob stream: %w", noEOF(err))
		return n, f.err
	}
	if f.left == 0 && f.crc != f.want && f.corrupt == nil {
		f.corrupt = fmt.Errorf("%w: %w: a frame's CRC-32C is %08x, the sender's %08x", storage.ErrDigestMismatch, errFrameCRC, f.crc, f.want)
	}
	if f.corrupt != nil {
		return n, f.corrupt
	}
	return n, nil
}

// discard reads the rest of the blob's frames, whatever their CRCs, and
// returns the connection's error if it failed.
func (f *frameReader) discard() error {
	buf := make([]byte, 32<<10)
	for !f.done && f.err == nil {
		f.Read(buf)
	}
	return f.err
}

// noEOF turns an end of the connection inside a blob into the error it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
