package yomo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// This file is the clients' side of body streams (frame/spec.md §9): a
// Source writes a body of any size through a StreamWriter, a
// StreamFunction's stream handler reads it through a StreamReader. The
// zipper's side is body.go.

// Errors of body streams. A StreamWriter's Write and Close, and a
// StreamReader's Read, return errors that match one of these (errors.Is),
// or ErrNoResponders.
var (
	// ErrStreamRefused: a receiver stopped reading before the end of the
	// body (its handler returned early or closed its reader), or a
	// function that observes the tag has no stream handler.
	ErrStreamRefused = errors.New("yomo: stream refused: a receiver stopped reading the body")
	// ErrStreamFailed: a receiver read the body and its handler returned
	// an error.
	ErrStreamFailed = errors.New("yomo: stream failed: a receiver's handler returned an error")
	// ErrStreamAborted: the writer abandoned the body (CloseWithError,
	// or the context given to OpenStream ended). A reader gets it instead
	// of io.EOF, so a cut body never looks complete.
	ErrStreamAborted = errors.New("yomo: stream aborted by the writer")
	// ErrStreamLost: a connection on the body's path closed.
	ErrStreamLost = errors.New("yomo: stream lost: a connection on its path closed")
	// ErrStreamLimit: a connection on the body's path already carries the
	// most bodies it takes at once (64).
	ErrStreamLimit = errors.New("yomo: stream refused: too many bodies at once")
	// ErrStreamClosed is returned by Read after the StreamReader's Close.
	ErrStreamClosed = errors.New("yomo: read on a closed StreamReader")
)

// streamError returns the error for a stream code received from the peer.
func streamError(code frame.StreamCode) error {
	switch code {
	case frame.StreamNoResponders:
		return ErrNoResponders
	case frame.StreamFailed:
		return ErrStreamFailed
	case frame.StreamAborted:
		return ErrStreamAborted
	case frame.StreamLost:
		return ErrStreamLost
	case frame.StreamLimit:
		return ErrStreamLimit
	}
	return ErrStreamRefused
}

// bodyErr turns the error of an operation on a body stream into one of
// the stream errors: the peer's code, or ErrStreamLost (wrapping the
// connection's error) when the connection failed.
func bodyErr(err error) error {
	var se *transport.StreamError
	if errors.As(err, &se) {
		return streamError(frame.StreamCode(se.Code))
	}
	return fmt.Errorf("%w: %w", ErrStreamLost, err)
}

// OpenStream opens a body stream for tag and returns once the zipper has
// routed it: to one instance of each function name observing the tag (as
// a frame of the tag would go), here or across the mesh. The body is then
// written to the StreamWriter, of any size, and ends with its Close; the
// functions' stream handlers (StreamFunction.SetStreamHandler) read it as
// it is written. When nothing observes the tag, OpenStream returns
// ErrNoResponders.
//
// ctx bounds the whole body, not only the opening: when it ends before
// Close returned, the body is aborted (the readers get ErrStreamAborted)
// and Write and Close return an error matching ErrStreamAborted and
// ctx's error. A body is not buffered across reconnections: OpenStream
// returns ErrNotConnected while the Source is reconnecting, and a lost
// connection fails the body with ErrStreamLost.
func (s *Source) OpenStream(ctx context.Context, tag Tag) (*StreamWriter, error) {
	return s.OpenStreamMessage(ctx, Message{Tag: tag})
}

// OpenStreamMessage is OpenStream for a body with the target, key and
// metadata of m, which route it and reach its readers as a frame's would.
// m.Data must be empty: the body is what is written to the StreamWriter.
func (s *Source) OpenStreamMessage(ctx context.Context, m Message) (*StreamWriter, error) {
	if len(m.Data) > 0 {
		return nil, errors.New("yomo: OpenStreamMessage with Message.Data: write the body to the StreamWriter")
	}
	if err := s.c.checkWritable(); err != nil {
		return nil, err
	}
	md, err := encodeMetadata(nil, m.Metadata)
	if err != nil {
		return nil, err
	}
	d := frame.Data{Tag: m.Tag, Target: bytesOf(m.Target), Key: bytesOf(m.Key), Metadata: md}
	if n := frame.EnvelopeSize(&d); n > frame.MaxEnvelope {
		return nil, fmt.Errorf("yomo: target, key and metadata of %d bytes: %w", n,
			&frame.SizeError{Type: frame.TypeBody, Size: n, Max: frame.MaxEnvelope})
	}
	sess := s.c.sess.Load()
	if sess == nil {
		return nil, ErrNotConnected
	}
	if err := sess.announceBodies(); err != nil {
		return nil, bodyErr(err)
	}
	st, err := sess.tc.OpenStream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, bodyErr(err)
	}
	w := &StreamWriter{st: st, sb: newSentBody(&sess.credit, st), replied: make(chan struct{})}
	w.stop = context.AfterFunc(ctx, func() { w.abort(context.Cause(ctx)) })
	fail := func(err error) (*StreamWriter, error) {
		err = w.errOf(err)
		w.stop()
		resetBody(st, frame.StreamAborted)
		return nil, err
	}
	if _, err := st.Write(frame.AppendBody(nil, &d)); err != nil {
		return fail(err)
	}
	var b [8]byte // the zipper's first count, 0: routed
	if _, err := io.ReadFull(st, b[:]); err != nil {
		return fail(err)
	}
	go func() { // owned by w: ends with the reply (FIN, reset, or the connection), which Close and CloseWithError bring about
		defer close(w.replied)
		w.reply = w.sb.readReply()
		w.sb.end()
	}()
	return w, nil
}

// StreamWriter writes one body (Source.OpenStream). Write and Close may
// be called from one goroutine at a time; CloseWithError from any.
//
// Flow control runs end to end: Write blocks while the slowest reader is
// behind by more than the buffers and windows on the path (the zipper
// holds at most 32 KiB of a body; each hop carries at most 2 MiB of the
// body bytes of one connection in flight).
type StreamWriter struct {
	st      transport.Stream
	sb      *sentBody
	stop    func() bool   // the OpenStream context's watch
	replied chan struct{} // closed when the reply ended
	reply   error         // how it ended (nil: FIN); read after replied

	mu      sync.Mutex
	aborted error // CloseWithError's or the context's reason; guarded by mu
	once    sync.Once
	closed  error // Close's result
	written atomic.Int64
}

// Write writes p to the body. It returns once the bytes are on their way
// (taken by the connection's stream window), and an error when the body
// cannot go on: ErrStreamRefused or ErrStreamFailed once every
// destination has stopped reading, ErrStreamLost, or ErrStreamAborted.
func (w *StreamWriter) Write(p []byte) (int, error) {
	n, err := w.sb.write(p)
	w.written.Add(int64(n))
	if errors.Is(err, errBodyEnded) {
		<-w.replied // the reply says why
		if err = w.reply; err == nil {
			err = errBodyEnded // a reply that ended with FIN before the body did
		}
	}
	if err != nil {
		return n, w.errOf(err)
	}
	return n, nil
}

// Written returns the number of body bytes written so far.
func (w *StreamWriter) Written() int64 { return w.written.Load() }

// Close ends the body and waits until every receiver has read it to its
// end and its handler returned: nil then. Otherwise it returns why not
// (an error matching ErrStreamRefused, ErrStreamFailed, ErrStreamLost,
// ErrStreamLimit or ErrStreamAborted); with several receivers, one that
// did not take the body makes Close fail even when others took it. The
// wait is bounded by the context given to OpenStream. Later calls return
// the same result.
func (w *StreamWriter) Close() error {
	w.once.Do(func() {
		defer w.stop()
		// After a refusal Close fails (the stream is reset); the reply
		// still says why, so it is read either way.
		_ = w.st.Close()
		<-w.replied
		if w.reply != nil {
			w.closed = w.errOf(w.reply)
		}
	})
	return w.closed
}

// CloseWithError abandons the body: its readers' Read returns an error
// matching ErrStreamAborted (never io.EOF), and so do the writer's later
// Write and Close (wrapping err). It returns nil.
func (w *StreamWriter) CloseWithError(err error) error {
	if err == nil {
		err = errors.New("closed with no reason")
	}
	w.abort(err)
	return nil
}

// abort records why the writer abandoned the body (the first reason) and
// resets the stream.
func (w *StreamWriter) abort(why error) {
	w.mu.Lock()
	if w.aborted == nil {
		w.aborted = why
	}
	w.mu.Unlock()
	resetBody(w.st, frame.StreamAborted)
}

// errOf returns the error of a failed stream operation: the writer's own
// abort, or what the stream says.
func (w *StreamWriter) errOf(err error) error {
	w.mu.Lock()
	why := w.aborted
	w.mu.Unlock()
	if why != nil {
		return fmt.Errorf("%w: %w", ErrStreamAborted, why)
	}
	return bodyErr(err)
}

// StreamHandler handles one body (StreamFunction.SetStreamHandler). It
// reads the body from r, as it is written; r is valid until the handler
// returns. Returning nil after Read returned io.EOF accepts the body: the
// writer's Close returns nil once every receiver has. Returning an error
// fails it (ErrStreamFailed at the writer); returning before io.EOF, or
// closing r, refuses the rest (ErrStreamRefused at the writer, whose
// Write stops). A panic is recovered, reported as a *PanicError, and
// fails the body.
type StreamHandler func(r *StreamReader) error

// StreamReader is a body as a StreamHandler reads it: an io.ReadCloser
// with the body's tag, key and metadata.
type StreamReader struct {
	st     transport.Stream
	ack    bodyAcker
	d      frame.Data
	eof    bool
	closed atomic.Bool
	read   int64
}

// Tag is the body's tag.
func (r *StreamReader) Tag() Tag { return r.d.Tag }

// Key is the body's affinity key; "" when it has none.
func (r *StreamReader) Key() string { return string(r.d.Key) }

// Metadata returns the value of a metadata key of the body.
func (r *StreamReader) Metadata(key string) (string, bool) { return r.d.Metadata.Get(key) }

// Read reads the body's next bytes. It returns io.EOF after the last byte
// of a complete body; a body that did not complete fails with an error
// matching ErrStreamAborted (the writer abandoned it) or ErrStreamLost
// instead; after Close, ErrStreamClosed.
func (r *StreamReader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, ErrStreamClosed
	}
	n, err := r.st.Read(p)
	r.read += int64(n)
	if n > 0 {
		_ = r.ack.add(n) // a reply that cannot be written fails the next Read
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		r.eof = true
		return n, io.EOF
	case r.closed.Load():
		return n, ErrStreamClosed
	}
	return n, bodyErr(err)
}

// Close stops reading the body before its end: the rest is refused, and
// the writer's Write fails with ErrStreamRefused (unless another receiver
// still reads it). After io.EOF it does nothing. It returns nil.
func (r *StreamReader) Close() error {
	if !r.eof && !r.closed.Swap(true) {
		r.st.CancelRead(uint64(frame.StreamRefused))
	}
	return nil
}

// SetStreamHandler sets the handler of the bodies (Source.OpenStream)
// of the tags the function observes. Each body is handled on a goroutine
// of its own, as it arrives, at most 64 at once per connection (more
// are refused with ErrStreamLimit at their writers). It may be called at
// any time; a body that arrives while no stream handler is set is
// refused (ErrStreamRefused at its writer). nil removes the handler.
func (f *StreamFunction) SetStreamHandler(fn StreamHandler) {
	if fn == nil {
		f.shandler.Store(nil)
		return
	}
	f.shandler.Store(&fn)
}

// acceptBodies accepts the body streams the zipper opens and hands each
// to handle on a goroutine of its own, until the connection ends. It is
// one of the session's goroutines.
func (s *session) acceptBodies(handle func(st transport.Stream)) {
	defer s.wg.Done()
	acceptBodyStreams(s.c.ctx, s.tc, nil, func(st transport.Stream, done func()) {
		s.wg.Add(1)
		go func() { // owned by the session's serve (s.wg): ends when the handler returns
			defer s.wg.Done()
			defer done()
			handle(st)
		}()
	})
}

// handleBody reads the Body frame of a body stream and runs the stream
// handler on it, then tells the zipper how it ended (FIN: taken; a reset
// with the reason otherwise).
func (f *StreamFunction) handleBody(st transport.Stream) {
	var d frame.Data
	st.SetReadDeadline(time.Now().Add(DefaultHandshakeTimeout))
	if err := frame.ReadBody(st, &d); err != nil {
		resetBody(st, frame.StreamRefused)
		if pe := bodyHeaderError(err); pe != nil {
			f.c.report(fmt.Errorf("yomo: a bad body stream from the zipper: %w", pe))
		}
		return
	}
	st.SetReadDeadline(time.Time{})
	h := f.shandler.Load()
	if h == nil {
		resetBody(st, frame.StreamRefused)
		return
	}
	r := &StreamReader{st: st, ack: bodyAcker{st: st}, d: d}
	var err error
	panicked := true
	func() {
		defer func() {
			if v := recover(); v != nil {
				f.c.recovered(v)
			}
		}()
		err = (*h)(r)
		panicked = false
	}()
	switch {
	case panicked || err != nil:
		resetBody(st, frame.StreamFailed)
	case !r.eof:
		resetBody(st, frame.StreamRefused)
	default:
		st.Close() // taken: FIN on the reply
	}
}
