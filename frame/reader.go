package frame

import (
	"bufio"
	"errors"
	"io"
)

// readBufferSize is the buffered reader's size. Bodies that fit are
// returned without a copy; larger ones are read into a growable buffer.
const readBufferSize = 32 << 10

// Reader reads length-prefixed frames from a stream. It is not safe for
// concurrent use.
type Reader struct {
	br      *bufio.Reader
	max     int
	buf     []byte
	discard int // bytes of the previous body still in br
}

// NewReader returns a Reader of r that refuses data frames whose body is
// longer than maxSize (DefaultMaxSize when maxSize <= 0) and control frames
// longer than MaxControlSize.
func NewReader(r io.Reader, maxSize int) *Reader {
	return NewReaderSize(r, maxSize, readBufferSize)
}

// ControlBufferSize is a read buffer size suited to control streams,
// whose frames are small and rare: a connection then holds little memory
// while idle. Larger frames are still read, into a buffer grown for them.
const ControlBufferSize = 1 << 10

// NewReaderSize is NewReader with a read buffer of bufSize bytes (at
// least 16). Bodies that fit in it are returned without a copy.
func NewReaderSize(r io.Reader, maxSize, bufSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	return &Reader{br: bufio.NewReaderSize(r, bufSize), max: maxSize}
}

// Next reads the next frame and returns its type and body. The body is
// valid until the next call to Next. Errors: io.EOF at a clean end of
// stream (between frames), io.ErrUnexpectedEOF for a truncated frame,
// *TypeError and *SizeError for a bad header, or the underlying reader's
// error. After any error other than io.EOF the stream is out of step and
// should be abandoned (after a bad header, Next returns the same error
// again). The length is checked before anything is allocated for
// the body. A body that fits in the read buffer (32 KiB) is returned
// without a copy or an allocation; a longer one is read into a buffer that
// grows as the bytes arrive (to at most twice the bytes received plus
// 256 KiB), so a peer that declares a large body and sends little of it
// costs little memory.
func (r *Reader) Next() (Type, []byte, error) {
	if r.discard > 0 {
		if _, err := r.br.Discard(r.discard); err != nil {
			return 0, nil, err
		}
		r.discard = 0
	}
	h, err := r.br.Peek(HeaderSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	t, n, err := ParseHeader(h, r.max)
	if err != nil {
		return t, nil, err
	}
	if _, err := r.br.Discard(HeaderSize); err != nil {
		return 0, nil, err
	}
	if n <= r.br.Size() {
		body, err := r.br.Peek(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		r.discard = n
		return t, body, nil
	}
	// Grow the buffer as the body arrives, so a peer that declares a large
	// frame and sends nothing costs at most one chunk.
	body := r.buf[:0]
	for len(body) < n {
		chunk := min(n-len(body), growChunk)
		if cap(body)-len(body) < chunk {
			// Double the capacity, but never past the declared length.
			nb := make([]byte, len(body), min(max(len(body)+chunk, 2*cap(body)), n))
			copy(nb, body)
			body = nb
		}
		if _, err := io.ReadFull(r.br, body[len(body):len(body)+chunk]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		body = body[:len(body)+chunk]
	}
	if cap(body) <= keepBuffer {
		r.buf = body
	} else {
		r.buf = nil // do not pin a rare huge buffer for the stream's lifetime
	}
	return t, body, nil
}

const (
	growChunk  = 256 << 10 // how far a large body's buffer grows ahead of the data
	keepBuffer = 1 << 20   // largest body buffer kept for reuse by the next frame
)
