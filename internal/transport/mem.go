package transport

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// MemStreamWindow is the flow-control window of the in-memory transport: a
// Write blocks while the peer has this many bytes of the stream unread.
const MemStreamWindow = 1 << 20 // 1 MiB

// memMinBuffer is the smallest ring buffer a stream direction allocates.
const memMinBuffer = 4 << 10

// Pipe returns the two ends of an in-memory connection named name.
//
// It behaves like a QUIC connection (same interfaces, same errors), except
// that an opened stream is delivered to the peer's Accept(Uni)Stream at once
// rather than on its first byte, and that the number of concurrently open
// streams is not limited. There is no TLS: PeerCertificates returns nil.
//
// The implementation has no goroutines; deadlines use timers that only
// signal. Nothing has to be released beyond what CloseWithError does, and an
// abandoned Pipe is simply garbage collected.
func Pipe(name string) (client, server Conn) {
	sh := &memShared{done: make(chan struct{})}
	c := &memConn{sh: sh, side: 0, addr: memAddr(name)}
	s := &memConn{sh: sh, side: 1, addr: memAddr(name)}
	c.peer, s.peer = s, c
	for _, mc := range []*memConn{c, s} {
		mc.ctx, sh.cancel[mc.side] = context.WithCancelCause(context.Background())
		mc.bidi.sig = make(chan struct{}, 1)
		mc.uni.sig = make(chan struct{}, 1)
		mc.dgrams.sig = make(chan struct{}, 1)
		mc.dgrams.limit, mc.dgrams.room = memDatagramQueue, make(chan struct{}, 1)
	}
	return c, s
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// memShared is the state common to both ends of a Pipe: whether and how the
// connection was closed.
type memShared struct {
	once   sync.Once
	done   chan struct{} // closed by CloseWithError
	errs   [2]error      // per side; written before done is closed
	cancel [2]context.CancelCauseFunc
}

// err returns the error that side sees after the connection was closed, nil
// while it is open.
func (sh *memShared) err(side int) error {
	select {
	case <-sh.done:
		return sh.errs[side]
	default:
		return nil
	}
}

func (sh *memShared) close(closer int, code uint64, reason string) {
	sh.once.Do(func() {
		sh.errs[closer] = &CloseError{Code: code, Reason: reason, Remote: false}
		sh.errs[1-closer] = &CloseError{Code: code, Reason: reason, Remote: true}
		close(sh.done)
		sh.cancel[0](sh.errs[0])
		sh.cancel[1](sh.errs[1])
	})
}

type memConn struct {
	sh   *memShared
	side int // 0 client, 1 server
	peer *memConn
	ctx  context.Context
	addr memAddr
	bidi acceptQueue[*memStream]
	uni  acceptQueue[*memReceiveStream]
	// dgrams holds the datagrams the peer sent and this side has not
	// received yet.
	dgrams acceptQueue[[]byte]
}

// memDatagramQueue is how many datagrams one side of a Pipe holds for
// ReceiveDatagram; the peer's SendDatagram waits while it is full (the
// in-memory transport loses nothing).
const memDatagramQueue = 128

func (c *memConn) SendDatagram(p []byte) error {
	if len(p) > MaxDatagramSize {
		return ErrDatagramTooLarge
	}
	return c.peer.dgrams.pushWait(append([]byte(nil), p...), c.sh, c.side)
}

func (c *memConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return c.dgrams.pop(ctx, c.sh, c.side)
}

func (c *memConn) OpenStream(ctx context.Context) (Stream, error) {
	if err := c.sh.err(c.side); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := newPipe(c.sh, c.side)
	in := newPipe(c.sh, c.peer.side)
	c.peer.bidi.push(&memStream{rx: out, tx: in})
	return &memStream{rx: in, tx: out}, nil
}

func (c *memConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := c.bidi.pop(ctx, c.sh, c.side)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (c *memConn) OpenUniStream(ctx context.Context) (SendStream, error) {
	if err := c.sh.err(c.side); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := newPipe(c.sh, c.side)
	c.peer.uni.push(&memReceiveStream{p: p})
	return &memSendStream{p: p}, nil
}

func (c *memConn) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	s, err := c.uni.pop(ctx, c.sh, c.side)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (c *memConn) Context() context.Context { return c.ctx }

func (c *memConn) CloseWithError(code uint64, reason string) error {
	c.sh.close(c.side, clampCode(code), truncateReason(reason))
	return nil
}

func (c *memConn) LocalAddr() net.Addr                   { return c.addr }
func (c *memConn) RemoteAddr() net.Addr                  { return c.addr }
func (c *memConn) PeerCertificates() []*x509.Certificate { return nil }
func (c *memConn) RTT() time.Duration                    { return 0 }

// acceptQueue holds what the peer sent and this side has not taken yet:
// streams opened and not accepted, datagrams not received.
type acceptQueue[T any] struct {
	mu    sync.Mutex
	items []T
	sig   chan struct{} // capacity 1: "items may be non-empty"
	// limit, when set, bounds items: pushWait waits on room (capacity 1:
	// "items may have room") while it is full.
	limit int
	room  chan struct{}
}

func (q *acceptQueue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	signal(q.sig)
}

// pushWait appends v once there is room, or fails when the connection
// is closed.
func (q *acceptQueue[T]) pushWait(v T, sh *memShared, side int) error {
	for {
		if err := sh.err(side); err != nil {
			return err
		}
		q.mu.Lock()
		if len(q.items) < q.limit {
			q.items = append(q.items, v)
			room := len(q.items) < q.limit
			q.mu.Unlock()
			signal(q.sig)
			if room {
				signal(q.room) // hand over to another waiting sender
			}
			return nil
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-sh.done:
		}
	}
}

func (q *acceptQueue[T]) pop(ctx context.Context, sh *memShared, side int) (T, error) {
	var zero T
	for {
		if err := sh.err(side); err != nil {
			return zero, err
		}
		q.mu.Lock()
		if len(q.items) > 0 {
			v := q.items[0]
			q.items[0] = zero
			q.items = q.items[1:]
			more := len(q.items) > 0
			q.mu.Unlock()
			if q.room != nil {
				signal(q.room)
			}
			if more {
				signal(q.sig) // hand over to another waiting taker
			}
			return v, nil
		}
		q.mu.Unlock()
		select {
		case <-q.sig:
		case <-sh.done:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// signal wakes the (single) waiter of ch, or leaves a token for the next one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deadline is the state of one read or write deadline of a pipe. Its fields
// are guarded by the pipe's mutex.
type deadline struct {
	gen     uint64 // incremented on every set, so a stale timer is ignored
	expired bool
	timer   *time.Timer
}

// pipe is one direction of a stream: a bounded ring buffer written by side
// wside and read by the other side. Waiters block on a capacity-1 channel
// (readable or writable) together with the connection's done channel.
type pipe struct {
	sh    *memShared
	wside int

	mu        sync.Mutex
	buf       []byte // ring buffer, len(buf) is its capacity
	r, n      int    // read offset and number of buffered bytes
	fin       bool   // the writer closed (FIN after the buffered bytes)
	reset     bool   // the writer cancelled; buffered bytes discarded
	resetCode uint64
	stop      bool // the reader cancelled; buffered bytes discarded
	stopCode  uint64
	rdl, wdl  deadline

	readable chan struct{}
	writable chan struct{}
}

func newPipe(sh *memShared, wside int) *pipe {
	return &pipe{
		sh:       sh,
		wside:    wside,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
	}
}

func (p *pipe) read(b []byte) (int, error) {
	for {
		if err := p.sh.err(1 - p.wside); err != nil {
			return 0, err
		}
		p.mu.Lock()
		switch {
		case p.stop:
			code := p.stopCode
			p.mu.Unlock()
			return 0, &StreamError{Code: code, Remote: false}
		case p.reset:
			code := p.resetCode
			p.mu.Unlock()
			return 0, &StreamError{Code: code, Remote: true}
		case p.n == 0 && p.fin:
			p.buf = nil // all delivered
			p.mu.Unlock()
			return 0, io.EOF
		case p.rdl.expired: // like net.Conn and quic-go: even if data is buffered
			p.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		case len(b) == 0:
			p.mu.Unlock()
			return 0, nil
		case p.n > 0:
			k := p.readLocked(b)
			p.mu.Unlock()
			signal(p.writable)
			return k, nil
		}
		p.mu.Unlock()
		select {
		case <-p.readable:
		case <-p.sh.done:
		}
	}
}

func (p *pipe) write(b []byte) (int, error) {
	total := 0
	for {
		if err := p.sh.err(p.wside); err != nil {
			return total, err
		}
		p.mu.Lock()
		switch {
		case p.reset:
			code := p.resetCode
			p.mu.Unlock()
			return total, &StreamError{Code: code, Remote: false}
		case p.fin:
			p.mu.Unlock()
			return total, ErrStreamClosed
		case p.stop:
			code := p.stopCode
			p.mu.Unlock()
			return total, &StreamError{Code: code, Remote: true}
		case len(b) == 0:
			p.mu.Unlock()
			return total, nil
		case p.wdl.expired: // like net.Conn and quic-go: even if there is room
			p.mu.Unlock()
			return total, os.ErrDeadlineExceeded
		case p.n < MemStreamWindow:
			k := min(MemStreamWindow-p.n, len(b))
			p.writeLocked(b[:k])
			p.mu.Unlock()
			b = b[k:]
			total += k
			signal(p.readable)
			continue
		}
		p.mu.Unlock()
		select {
		case <-p.writable:
		case <-p.sh.done:
		}
	}
}

// writeLocked appends b (len(b) <= MemStreamWindow-p.n) to the ring.
func (p *pipe) writeLocked(b []byte) {
	if need := p.n + len(b); need > len(p.buf) {
		p.grow(need)
	}
	w := p.r + p.n
	if w >= len(p.buf) {
		w -= len(p.buf)
	}
	k := copy(p.buf[w:], b)
	copy(p.buf, b[k:])
	p.n += len(b)
}

// grow reallocates the ring with room for need bytes (need <= window).
func (p *pipe) grow(need int) {
	c := max(2*len(p.buf), memMinBuffer)
	for c < need {
		c *= 2
	}
	c = min(c, MemStreamWindow)
	nb := make([]byte, c)
	if p.n > 0 {
		k := copy(nb, p.buf[p.r:min(p.r+p.n, len(p.buf))])
		copy(nb[k:p.n], p.buf)
	}
	p.buf = nb
	p.r = 0
}

// readLocked moves up to len(b) buffered bytes (p.n > 0) into b.
func (p *pipe) readLocked(b []byte) int {
	k := min(len(b), p.n)
	first := min(k, len(p.buf)-p.r)
	copy(b, p.buf[p.r:p.r+first])
	copy(b[first:k], p.buf)
	p.r += k
	if p.r >= len(p.buf) {
		p.r -= len(p.buf)
	}
	p.n -= k
	if p.n == 0 {
		p.r = 0
	}
	return k
}

func (p *pipe) closeWrite() error {
	if err := p.sh.err(p.wside); err != nil {
		return err
	}
	p.mu.Lock()
	if p.reset {
		code := p.resetCode
		p.mu.Unlock()
		return &StreamError{Code: code, Remote: false}
	}
	p.fin = true
	p.mu.Unlock()
	signal(p.readable)
	signal(p.writable) // a concurrent Write must notice
	return nil
}

func (p *pipe) cancelWrite(code uint64) {
	p.mu.Lock()
	if p.reset || (p.fin && p.n == 0) || p.stop {
		// Already aborted, or everything including the FIN was delivered.
		p.mu.Unlock()
		return
	}
	p.reset, p.resetCode = true, clampCode(code)
	p.buf, p.r, p.n = nil, 0, 0
	p.mu.Unlock()
	signal(p.readable)
	signal(p.writable)
}

func (p *pipe) cancelRead(code uint64) {
	p.mu.Lock()
	if p.stop || p.reset || (p.fin && p.n == 0) {
		// Already aborted, or all data and the FIN were received.
		p.mu.Unlock()
		return
	}
	p.stop, p.stopCode = true, clampCode(code)
	p.buf, p.r, p.n = nil, 0, 0
	p.mu.Unlock()
	signal(p.readable)
	signal(p.writable)
}

// setDeadline arms d for t and wakes the waiter on ch so that it re-evaluates.
func (p *pipe) setDeadline(d *deadline, t time.Time, ch chan struct{}) {
	p.mu.Lock()
	d.gen++
	d.expired = false
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if !t.IsZero() {
		if dur := time.Until(t); dur <= 0 {
			d.expired = true
		} else {
			gen := d.gen
			d.timer = time.AfterFunc(dur, func() {
				p.mu.Lock()
				if d.gen == gen {
					d.expired = true
				}
				p.mu.Unlock()
				signal(ch)
			})
		}
	}
	p.mu.Unlock()
	signal(ch)
}

type memStream struct {
	rx *pipe // written by the peer
	tx *pipe // written by us
}

func (s *memStream) Read(b []byte) (int, error)  { return s.rx.read(b) }
func (s *memStream) Write(b []byte) (int, error) { return s.tx.write(b) }
func (s *memStream) Close() error                { return s.tx.closeWrite() }
func (s *memStream) CancelWrite(code uint64)     { s.tx.cancelWrite(code) }
func (s *memStream) CancelRead(code uint64)      { s.rx.cancelRead(code) }
func (s *memStream) SetReadDeadline(t time.Time) error {
	s.rx.setDeadline(&s.rx.rdl, t, s.rx.readable)
	return nil
}
func (s *memStream) SetWriteDeadline(t time.Time) error {
	s.tx.setDeadline(&s.tx.wdl, t, s.tx.writable)
	return nil
}

type memSendStream struct{ p *pipe }

func (s *memSendStream) Write(b []byte) (int, error) { return s.p.write(b) }
func (s *memSendStream) Close() error                { return s.p.closeWrite() }
func (s *memSendStream) CancelWrite(code uint64)     { s.p.cancelWrite(code) }
func (s *memSendStream) SetWriteDeadline(t time.Time) error {
	s.p.setDeadline(&s.p.wdl, t, s.p.writable)
	return nil
}

type memReceiveStream struct{ p *pipe }

func (s *memReceiveStream) Read(b []byte) (int, error) { return s.p.read(b) }
func (s *memReceiveStream) CancelRead(code uint64)     { s.p.cancelRead(code) }
func (s *memReceiveStream) SetReadDeadline(t time.Time) error {
	s.p.setDeadline(&s.p.rdl, t, s.p.readable)
	return nil
}
