package frame

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"
)

// readBufferSize is the buffered reader's size. Bodies that fit are
// returned without a copy; larger ones are read into a growable buffer.
const readBufferSize = 32 << 10

// Reader reads length-prefixed frames from a stream. It is not safe for
// concurrent use.
//
// A Reader with ControlBufferSize holds its read buffer only while it has
// buffered bytes: when Next finds the buffer drained, it returns it to a
// pool shared by all such Readers and waits for the stream's next bytes
// with a 64-byte array of its own. An idle control stream (nearly all of
// them, with many connections) then costs about 100 bytes instead of
// 1 KiB; the next frame gets a buffer from the pool, at the cost of one more
// small Read.
//
// A data stream's Reader (NewReader, 32 KiB) does the same unless its
// stream is busy: when its last wait for the stream, not the first, took
// less than keepWait (2 ms), it keeps its buffer and waits in it. Giving
// it back at every drain cost up to 18% of the 1 KiB pipeline's
// throughput in a measurement, since a reader that keeps up with its
// stream drains its buffer at every frame. So a stream idle after a single
// write, or written to less often than every 2 ms, holds no buffer while
// idle; one that was busy and went quiet keeps its buffer through the
// quiet wait, and gives it back after the next wait if that was long.
type Reader struct {
	br      *bufio.Reader // nil while a pooled Reader is idle
	src     io.Reader
	pool    *sync.Pool // where br comes from and goes back while idle; nil: br is its own
	keep    bool       // with pool, a data stream's: the last wait was short, so wait in br
	timed   bool       // a data stream's pooled Reader: waits are timed to set keep
	waited  bool       // timed: a wait was timed already
	pre     prefixReader
	first   [64]byte // what the idle wait read
	max     int
	buf     []byte
	discard int // bytes of the previous body still in br
}

// controlBufPool and dataBufPool hold the read buffers of idle control
// and data streams.
var (
	controlBufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ControlBufferSize) }}
	dataBufPool    = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
)

// keepWait is the longest wait for a data stream after which its Reader
// still keeps its buffer for the next wait (Reader).
const keepWait = 2 * time.Millisecond

// sinceWait measures a wait; tests replace it.
var sinceWait = time.Since

// prefixReader reads pre, then r: the bytes the idle wait read ahead of
// the buffer, then the stream.
type prefixReader struct {
	pre []byte
	r   io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.r.Read(b)
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
// least 16). Bodies that fit in it are returned without a copy. With
// ControlBufferSize, or NewReader's 32 KiB, the buffer comes from a pool
// shared by all such Readers and goes back to it while the stream is idle
// (Reader); with any other size it is the Reader's own.
func NewReaderSize(r io.Reader, maxSize, bufSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	rd := &Reader{src: r, max: maxSize}
	switch bufSize {
	case ControlBufferSize:
		rd.pool = &controlBufPool
	case readBufferSize:
		rd.pool, rd.timed = &dataBufPool, true
	default:
		rd.br = bufio.NewReaderSize(r, bufSize)
	}
	return rd
}

// fill makes sure a pooled Reader has a buffer: when the previous one was
// drained it goes back to the pool, and the Reader waits for the stream's
// next bytes without one, unless it keeps it (a busy data stream). It
// returns the stream's error when no byte came.
func (r *Reader) fill() error {
	if r.pool == nil {
		return nil
	}
	if r.br != nil {
		if r.br.Buffered() > 0 {
			return nil
		}
		if r.keep {
			start := time.Now()
			_, err := r.br.Peek(1) // waits for the stream, reading into the buffer
			r.keep = sinceWait(start) < keepWait
			if r.br.Buffered() > 0 {
				return nil // an error that came with bytes comes again after them
			}
			r.release()
			return err
		}
		r.release()
	}
	var start time.Time
	if r.timed {
		start = time.Now()
	}
	n, err := r.src.Read(r.first[:])
	for n == 0 && err == nil {
		n, err = r.src.Read(r.first[:])
	}
	if r.timed {
		// The first wait says nothing about the stream's pace: its first
		// bytes may have waited for the Reader.
		short := sinceWait(start) < keepWait
		r.keep, r.waited = short && r.waited, true
	}
	if n == 0 {
		return err
	}
	// An error that came with bytes is the stream's and comes again on
	// the next Read (end of stream, deadline, reset), after these bytes.
	r.pre = prefixReader{pre: r.first[:n], r: r.src}
	r.br = r.pool.Get().(*bufio.Reader)
	r.br.Reset(&r.pre)
	return nil
}

// release gives a pooled Reader's drained buffer back.
func (r *Reader) release() {
	r.br.Reset(nil)
	r.pool.Put(r.br)
	r.br = nil
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
	if err := r.fill(); err != nil {
		return 0, nil, err
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

// Ready reports whether a whole frame is buffered after the one Next
// returned last, so that the next call of Next returns it without reading
// the stream. A reader of many small frames uses it to do per batch what
// need not be done per frame (publish counters, release a lock) before it
// would wait for the stream. A frame longer than the read buffer (32 KiB)
// is never ready; a bad header is (Next returns its error).
func (r *Reader) Ready() bool {
	if r.br == nil {
		return false
	}
	b := r.br.Buffered() - r.discard
	if b < HeaderSize {
		return false
	}
	h, err := r.br.Peek(r.discard + HeaderSize) // buffered already: no read
	if err != nil {
		return false
	}
	n := binary.BigEndian.Uint32(h[r.discard+1:])
	return uint64(b) >= HeaderSize+uint64(n)
}

const (
	growChunk  = 256 << 10 // how far a large body's buffer grows ahead of the data
	keepBuffer = 1 << 20   // largest body buffer kept for reuse by the next frame
)
