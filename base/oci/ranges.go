package oci

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrRangeInvalid means a Range or Content-Range header could not be parsed.
var ErrRangeInvalid = errors.New("invalid range")

// ErrRangeUnsatisfiable means a Range header asks for bytes outside the blob.
var ErrRangeUnsatisfiable = errors.New("range not satisfiable")

// ErrRangeIgnored means a Range header is one a server may ignore and
// answer with the whole blob (RFC 9110, section 14.2): a unit other than
// bytes, or several ranges.
var ErrRangeIgnored = errors.New("range ignored")

// ParseContentRange parses the Content-Range of an upload chunk: "<start>-<end>"
// as the distribution spec writes it, also accepting the RFC 9110 forms
// "bytes <start>-<end>" and "bytes <start>-<end>/<size>" that some clients send.
// end is inclusive, so the chunk holds end-start+1 bytes.
func ParseContentRange(s string) (start, end int64, err error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "bytes")
	s = strings.TrimLeft(s, " =")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: %q", ErrRangeInvalid, s)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("%w: %q", ErrRangeInvalid, s)
	}
	return start, end, nil
}

// ByteRange is a resolved, inclusive byte range of a blob.
type ByteRange struct {
	Start, End int64
}

// Length is the number of bytes in the range.
func (r ByteRange) Length() int64 { return r.End - r.Start + 1 }

// ParseRange parses a single-range HTTP Range header ("bytes=a-b", "bytes=a-",
// "bytes=-n") against a blob of size bytes. A unit other than bytes, or
// several ranges, return ErrRangeIgnored: the caller serves the whole blob,
// as RFC 9110 lets it (a registry serves one range at a time; clients that
// resume ask for one). A malformed bytes range (last before first, not
// numbers) returns ErrRangeInvalid and one entirely outside the blob
// ErrRangeUnsatisfiable; both are answered 416.
func ParseRange(h string, size int64) (ByteRange, error) {
	unit, spec, ok := strings.Cut(strings.TrimSpace(h), "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return ByteRange{}, fmt.Errorf("%w: unit of %q", ErrRangeIgnored, h)
	}
	if strings.Contains(spec, ",") {
		return ByteRange{}, fmt.Errorf("%w: several ranges in %q", ErrRangeIgnored, h)
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return ByteRange{}, fmt.Errorf("%w: %q", ErrRangeInvalid, h)
	}
	if a == "" { // suffix range: the last n bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return ByteRange{}, fmt.Errorf("%w: %q", ErrRangeInvalid, h)
		}
		if n == 0 || size == 0 {
			return ByteRange{}, fmt.Errorf("%w: %q of %d bytes", ErrRangeUnsatisfiable, h, size)
		}
		n = min(n, size)
		return ByteRange{Start: size - n, End: size - 1}, nil
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return ByteRange{}, fmt.Errorf("%w: %q", ErrRangeInvalid, h)
	}
	end := size - 1
	if b != "" {
		end, err = strconv.ParseInt(b, 10, 64)
		if err != nil || end < start {
			return ByteRange{}, fmt.Errorf("%w: %q", ErrRangeInvalid, h)
		}
		end = min(end, size-1)
	}
	if start >= size {
		return ByteRange{}, fmt.Errorf("%w: %q of %d bytes", ErrRangeUnsatisfiable, h, size)
	}
	return ByteRange{Start: start, End: end}, nil
}
