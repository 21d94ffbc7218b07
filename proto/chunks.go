package proto

import "io"

// ChunkSize is the data size of one message of a blob stream.
const ChunkSize = 1 << 20

// SendChunks reads r to its end and calls send with each chunk of at most
// ChunkSize bytes; first is true for the first call, which is made even when
// r is empty (it carries the stream's header). It stops at the first error:
// sendErr when send failed, readErr when reading r failed.
func SendChunks(r io.Reader, send func(data []byte, first bool) error) (readErr, sendErr error) {
	buf := make([]byte, ChunkSize)
	first := true
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || first {
			if serr := send(buf[:n], first); serr != nil {
				return nil, serr
			}
			first = false
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}
