package yomo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/yomo-dev/yomo/frame"
)

// Source writes tagged data to a zipper and receives the results that
// functions write back for its writes (backflow) on the tags it observes.
//
// Configure it (SetObserveDataTags, SetReceiveHandler, SetErrorHandler)
// before Connect. After Connect it reconnects by itself when the
// connection is lost; Close stops it. Write is safe for concurrent use.
type Source struct {
	c       *client
	tid     atomic.Uint64
	receive atomic.Pointer[func(tag Tag, data []byte)]

	reqMu   sync.Mutex
	pending map[uint64]chan reply // requests waiting for their first reply, by tid
	late    atomic.Uint64         // replies that came after their request ended
}

// reply is the answer to a request: the result's payload, or why none
// will come.
type reply struct {
	data []byte
	err  error
}

// NewSource returns a Source named name for the zipper at zipperAddr
// (host:port). zipperAddr may list several zippers separated by commas:
// Connect takes the first that accepts, and after a GOAWAY or a failed
// reconnection the Source moves on to the next. It does no I/O; invalid
// options are reported by Connect.
func NewSource(name, zipperAddr string, opts ...ClientOption) *Source {
	s := &Source{c: newClient(frame.KindSource, name, zipperAddr, opts), pending: make(map[uint64]chan reply)}
	s.c.onData = s.onData
	return s
}

// Connect connects to the zipper and returns once the zipper accepted the
// handshake, or with the error: a *RejectedError when the zipper refused
// (final), otherwise the dial or handshake error. Afterwards the Source
// reconnects by itself, with backoff and jitter, until Close.
func (s *Source) Connect(ctx context.Context) error { return s.c.connect(ctx) }

// Write sends data with tag. The data is copied before Write returns.
// Frames are queued (bounded by WithWriteBuffer) and sent in order, also
// across reconnects; when the queue stays full for the write timeout,
// Write returns ErrWriteTimeout. A payload over the frame size limit
// returns an error matching ErrFrameTooLarge and sends nothing.
func (s *Source) Write(tag Tag, data []byte) error {
	return s.WriteMessage(Message{Tag: tag, Data: data})
}

// WriteWithTarget is Write for the functions whose wanted target is target.
func (s *Source) WriteWithTarget(tag Tag, data []byte, target string) error {
	return s.WriteMessage(Message{Tag: tag, Data: data, Target: target})
}

// WriteWithMetadata is Write with metadata (see Message.Metadata).
func (s *Source) WriteWithMetadata(tag Tag, data []byte, md map[string]string) error {
	return s.WriteMessage(Message{Tag: tag, Data: data, Metadata: md})
}

// WriteMessage writes m: Write with every field of a Message. It is safe
// for concurrent use; see Write for queueing and errors.
func (s *Source) WriteMessage(m Message) error {
	return s.writeMessage(&m, s.tid.Add(1))
}

// Request writes data with tag and returns the first result a function
// writes while handling it: whatever its tag (the Source need not observe
// it), through any chain of functions and mesh hops. The result is a copy
// the caller owns. Many requests may be in flight at once; it is safe for
// concurrent use.
//
// It returns ErrNoResponders at once when no function observes tag,
// locally or anywhere in the mesh; a *HandlerError when the handler
// panicked on the request; ctx's error when ctx ends first (a handler that
// returns without writing leaves the request to its deadline); and the
// errors of Write. Later results of the same request go to the receive
// handler when the Source observes their tag, and are otherwise discarded
// (Source.LateReplies counts them).
func (s *Source) Request(ctx context.Context, tag Tag, data []byte) ([]byte, error) {
	return s.RequestMessage(ctx, Message{Tag: tag, Data: data})
}

// RequestMessage is Request with every field of a Message.
func (s *Source) RequestMessage(ctx context.Context, m Message) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tid := s.tid.Add(1)
	ch := make(chan reply, 1)
	s.reqMu.Lock()
	s.pending[tid] = ch
	s.reqMu.Unlock()
	defer func() {
		s.reqMu.Lock()
		delete(s.pending, tid)
		s.reqMu.Unlock()
	}()
	if err := s.writeMessage(&m, tid|frame.TIDRequest); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.data, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.c.ctx.Done():
		return nil, ErrClosed
	}
}

// LateReplies counts results of requests that arrived after their Request
// returned (a later result of a chain, or one after the deadline) and that
// no receive handler took.
func (s *Source) LateReplies() uint64 { return s.late.Load() }

func (s *Source) writeMessage(m *Message, tid uint64) error {
	if err := s.c.checkWritable(); err != nil {
		return err
	}
	md, err := encodeMetadata(nil, m.Metadata)
	if err != nil {
		return err
	}
	d := frame.Data{
		Tag:      m.Tag,
		Target:   bytesOf(m.Target), // read only
		TID:      tid,
		Metadata: md,
		Payload:  m.Data,
		Key:      bytesOf(m.Key),
		Datagram: s.c.isDatagramTag(m.Tag),
	}
	// The zipper sets Origin from the handshake on every frame a source
	// writes (frame/spec.md), so a frame on the data stream goes without:
	// 8 bytes a frame saved, a quarter of a 16 B write's frame. A
	// datagram carries it, so that what fits in a datagram here still
	// fits when the zipper passes it on.
	if d.Datagram {
		d.Origin = s.c.id
	}
	return s.c.write(&d)
}

// encodeMetadata returns base with md's entries set, in key order (so
// equal maps encode equally). With no entries it returns base.
func encodeMetadata(base frame.Metadata, md map[string]string) (frame.Metadata, error) {
	if len(md) == 0 {
		return base, nil
	}
	if len(md) > frame.MaxMetadataEntries {
		return nil, fmt.Errorf("yomo: %d metadata entries, limit %d", len(md), frame.MaxMetadataEntries)
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(base) == 0 {
		kv := make([]string, 0, 2*len(md))
		for _, k := range keys {
			kv = append(kv, k, md[k])
		}
		return frame.MetadataOf(kv...), nil
	}
	out := base
	for _, k := range keys {
		out = out.With(k, md[k])
	}
	if out.Len() > frame.MaxMetadataEntries {
		return nil, fmt.Errorf("yomo: %d metadata entries, limit %d", out.Len(), frame.MaxMetadataEntries)
	}
	return out, nil
}

// bytesOf returns s's bytes without copying; they must not be modified.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// SetObserveDataTags sets the tags this Source wants back from functions
// (backflow) for its own writes. It may be called at any time: after
// Connect it returns once the zipper applies the new tags to every frame
// it routes from then on, without reconnecting (a refusal, or no answer
// within the handshake timeout, goes to the error handler; the zipper
// then keeps the previous tags, and the next reconnection sends these).
func (s *Source) SetObserveDataTags(tags ...Tag) {
	s.c.setTags(tags)
	if err := s.c.resubscribe(); err != nil {
		s.c.report(err)
	}
}

// Migrate moves the Source's connection to the local socket pc, for a
// Source whose address changes (a phone or vehicle on another network, a
// gateway on another interface): through QUIC connection migration the
// connection goes on from the new address without reconnecting, and what
// is in flight is not lost; the zipper sees the same connection. It
// returns once the zipper answered on the new path (bounded by ctx), or
// with the error, the connection then staying on its current path. The
// Source owns pc from then on and closes it with the connection; a later
// reconnection dials from the sockets the process's connections share
// (as a first connection does). ErrMigrationUnsupported for
// an in-memory Source (WithInMemory), ErrNotConnected when not connected.
func (s *Source) Migrate(ctx context.Context, pc net.PacketConn) error { return s.c.migrate(ctx, pc) }

// State returns the Source's connection state.
func (s *Source) State() State { return s.c.state() }

// SetStateHandler sets a function told of every change of the connection
// state, with the reason: connected, lost (Reconnecting, with the error),
// GOAWAY (Reconnecting, ErrGoAway), rejected, closed. Calls come one at a
// time, in order, from the Source's goroutines; fn may call the Source.
func (s *Source) SetStateHandler(fn func(StateChange)) { s.c.setStateHandler(fn) }

// Flush returns once the zipper has read every frame written before the
// call, or with ctx's error (ErrNotConnected, ErrClosed: see Write). When
// the connection is replaced meanwhile, Flush waits for the rest on the
// next one; frames that were on the wire of the lost connection are not
// covered.
func (s *Source) Flush(ctx context.Context) error { return s.c.flush(ctx) }

// Shutdown is Close with a drain bounded by ctx rather than Close's 2 s:
// it flushes what is queued (Flush), then closes. It returns Flush's error
// (ctx's, when it ended first); the Source is closed either way.
func (s *Source) Shutdown(ctx context.Context) error {
	err := s.c.flush(ctx)
	if errors.Is(err, ErrNotConnected) || errors.Is(err, ErrClosed) {
		err = nil
	}
	_ = s.c.close() // never fails
	return err
}

// SetReceiveHandler sets the function that receives backflow frames. It
// is called on one goroutine, in arrival order; data is valid only until it
// returns. Call it before Connect.
func (s *Source) SetReceiveHandler(fn func(tag Tag, data []byte)) {
	if fn == nil {
		s.receive.Store(nil)
		return
	}
	s.receive.Store(&fn)
}

// SetErrorHandler sets the function that receives asynchronous errors:
// lost connections, a final rejection, a receive handler's panic. It is
// called from the Source's goroutines and should return quickly. Without
// one, errors are logged.
func (s *Source) SetErrorHandler(fn func(err error)) { s.c.setErrorHandler(fn) }

// Close sends the frames still queued (waiting at most 2 s for them and
// for the zipper to confirm), closes the connection, stops reconnecting,
// and waits for the Source's goroutines (and a receive handler call in
// progress). Frames that could not be sent in that time are discarded, as
// are backflow frames not yet handed to the receive handler. Idempotent.
func (s *Source) Close() error { return s.c.close() }

func (s *Source) onData(d *frame.Data) {
	if d.TID&frame.TIDRequest != 0 && s.answer(d) {
		return
	}
	if d.TID&(frame.TIDRequest|frame.TIDReplyOnly) == frame.TIDReplyOnly {
		if e := lostError(d); e != nil {
			s.c.report(e)
		}
		return
	}
	fn := s.receive.Load()
	if fn == nil || d.TID&frame.TIDReplyOnly != 0 || !s.c.observes(d.Tag) {
		if d.TID&frame.TIDRequest != 0 {
			s.late.Add(1)
		}
		return
	}
	defer func() {
		if v := recover(); v != nil {
			s.c.recovered(v)
		}
	}()
	(*fn)(d.Tag, d.Payload)
}

// answer completes the request d answers, if it still waits.
func (s *Source) answer(d *frame.Data) bool {
	tid := d.TID &^ (frame.TIDRequest | frame.TIDReplyOnly)
	s.reqMu.Lock()
	ch, ok := s.pending[tid]
	delete(s.pending, tid)
	s.reqMu.Unlock()
	if !ok {
		return false
	}
	var r reply
	if d.TID&frame.TIDReplyOnly != 0 {
		r.err = statusError(d)
	} else {
		r.data = append([]byte{}, d.Payload...)
	}
	ch <- r // buffered, and only the first answer gets here
	return true
}

// statusError turns a status reply into Request's error.
func statusError(d *frame.Data) error {
	status, _ := d.Metadata.Get(frame.StatusKey)
	if status == frame.StatusNoResponders {
		return ErrNoResponders
	}
	msg, _ := d.Metadata.Get(frame.ErrorKey)
	return &HandlerError{Status: status, Message: msg}
}

// DatagramStats returns the counters of the frames of datagram tags this
// Source sent (WithDatagramTags) and received as backflow, over all its
// connections.
func (s *Source) DatagramStats() DatagramStats { return s.c.dgram.snapshot() }
