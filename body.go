package yomo

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// This file is the zipper's side of body streams (frame/spec.md §9): a
// Source, or the zipper at the other end of a mesh link, opens a stream
// per body; the zipper routes it like a data frame of its tag and copies
// it, through one bounded buffer, to a stream it opens towards each
// destination. QUIC's flow control does the rest: the zipper reads from
// the writer only as fast as the slowest destination takes the bytes.

// bodyBuffer is the buffer a zipper copies one body through: all of a
// body it holds in its own memory, besides the streams' receive windows.
const bodyBuffer = 32 << 10

// maxBodies bounds the bodies a zipper relays at once from one
// connection, and those a StreamFunction handles at once; more are
// refused with frame.StreamLimit.
const maxBodies = 64

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, bodyBuffer); return &b }}

// bodyCounters are the zipper's counters of bodies (Stats.Streams).
type bodyCounters struct {
	open, buffered                                                atomic.Int64
	acceptors                                                     atomic.Int64 // connections whose body streams are accepted now
	bytes, delivered, unroutable, refused, aborted, lost, limited atomic.Uint64
}

// count records how a body ended, by the code its writer was told (0:
// every receiver took it).
func (b *bodyCounters) count(code frame.StreamCode) {
	switch code {
	case 0:
		b.delivered.Add(1)
	case frame.StreamNoResponders:
		b.unroutable.Add(1)
	case frame.StreamAborted:
		b.aborted.Add(1)
	case frame.StreamLost:
		b.lost.Add(1)
	case frame.StreamLimit:
		b.limited.Add(1)
	default:
		b.refused.Add(1)
	}
}

// resetBody ends both directions of a body stream with code.
func resetBody(st transport.Stream, code frame.StreamCode) {
	st.CancelRead(uint64(code))
	st.CancelWrite(uint64(code))
}

// streamCodeOf returns the stream code an error of a body stream's
// operation carries: the peer's code, or StreamLost when the connection
// failed. ok is false for a reset this side made itself.
func streamCodeOf(err error) (code frame.StreamCode, ok bool) {
	var se *transport.StreamError
	if errors.As(err, &se) {
		c := frame.StreamCode(se.Code)
		if !c.Known() {
			c = frame.StreamRefused
		}
		return c, se.Remote
	}
	return frame.StreamLost, true
}

// acceptBodies accepts the body streams the peer opens and relays each on
// a goroutine of its own, until the connection ends.
func (c *conn) acceptBodies() {
	c.z.bodies.acceptors.Add(1)
	defer c.z.bodies.acceptors.Add(-1)
	acceptBodyStreams(c.z.ctx, c.tc, func() { c.z.bodies.count(frame.StreamLimit) },
		func(st transport.Stream, done func()) {
			c.goOwned(func() { // ends when the body ended, or with either connection
				defer done()
				c.z.relayBody(c, st)
			})
		})
}

// acceptBodyStreams accepts the body streams the peer of tc opens until
// tc ends, zipper and client side alike: at most maxBodies at once, one
// more is reset with StreamLimit (and refused, when set, is called). run
// starts serving an accepted stream on a goroutine its caller owns and
// calls done when that ends.
func acceptBodyStreams(ctx context.Context, tc transport.Conn, refused func(), run func(st transport.Stream, done func())) {
	sem := make(chan struct{}, maxBodies)
	done := func() { <-sem }
	for {
		st, err := tc.AcceptStream(ctx)
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			if refused != nil {
				refused()
			}
			resetBody(st, frame.StreamLimit)
			continue
		}
		run(st, done)
	}
}

// bodyHeaderError turns what ReadBody returned into a protocol error when
// the peer sent something wrong; a reset, a deadline or a closed
// connection stay what they are.
func bodyHeaderError(err error) error {
	var te *frame.TypeError
	var se *frame.SizeError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &protocolError{msg: "truncated body frame: the stream ended inside it", err: err}
	case errors.Is(err, frame.ErrMalformed), errors.As(err, &te), errors.As(err, &se):
		return &protocolError{msg: "body stream: " + err.Error(), err: err}
	}
	return nil
}

// relayBody routes the body on up, opened by from, and copies it to its
// destinations until it ends.
func (z *Zipper) relayBody(from *conn, up transport.Stream) {
	var d frame.Data
	up.SetReadDeadline(time.Now().Add(z.opts.handshakeTimeout))
	if err := frame.ReadBody(up, &d); err != nil {
		resetBody(up, frame.StreamRefused)
		if pe := bodyHeaderError(err); pe != nil {
			from.fail(pe)
		}
		return
	}
	up.SetReadDeadline(time.Time{})
	if !from.isLink() {
		if from.hs.Kind != frame.KindSource {
			resetBody(up, frame.StreamRefused)
			from.fail(&protocolError{msg: "a stream function opened a body stream"})
			return
		}
		if from.write != nil && !from.write.has(d.Tag) {
			resetBody(up, frame.StreamRefused)
			from.fail(z.denyWrite(from, d.Tag))
			return
		}
		d.Origin, d.TID, d.OriginZipper = from.hs.ID, 0, nil
		if z.meshOn.Load() {
			d.OriginZipper = z.nameBytes
		}
		d.Path, d.Names = nil, nil
	}
	d.Seq = nil
	z.bodies.open.Add(1)
	defer z.bodies.open.Add(-1)

	r := &relay{z: z, up: up}
	if code := r.open(from, &d); code != 0 {
		z.bodies.count(code)
		resetBody(up, code)
		return
	}
	// The writer's connection closing ends the body at every destination.
	stop := context.AfterFunc(from.tc.Context(), func() { r.abort(frame.StreamLost) })
	defer stop()
	var wg sync.WaitGroup
	for _, o := range r.outs {
		wg.Add(1)
		go func() { // owned by relayBody (wg): ends when o's reply ends
			defer wg.Done()
			r.watch(o)
		}()
	}
	ack := &bodyAcker{st: up}
	err := ack.send() // count 0: routed, the writer may write
	if err == nil {
		err = r.copy(from, ack)
	}
	code := frame.StreamCode(0)
	switch {
	case errors.Is(err, io.EOF):
		r.finish()
	default:
		// The writer aborted (its code), its connection failed (lost), or
		// every destination stopped (the first one's code).
		var remote bool
		code, remote = streamCodeOf(err)
		if errors.Is(err, errNoDestination) || !remote {
			if code = r.firstCode(); code == 0 {
				code = frame.StreamLost
			}
		}
		r.abort(code)
		up.CancelRead(uint64(code))
	}
	wg.Wait()
	if code == 0 {
		code = r.firstCode()
	}
	z.bodies.count(code)
	if code == 0 {
		up.Close() // every destination took it all: FIN on the reply
		return
	}
	up.CancelWrite(uint64(code))
}

// relay is one body on its way through the zipper: the stream from its
// writer and a stream to each destination.
type relay struct {
	z    *Zipper
	up   transport.Stream
	outs []*bodyOut // set by open, then fixed

	mu   sync.Mutex
	live int // destinations still taking the body
}

// bodyOut is one destination of a relayed body.
type bodyOut struct {
	conn *conn
	st   transport.Stream
	sb   *sentBody        // its bytes against conn's body credit
	code frame.StreamCode // why it stopped taking the body; 0: it has not; guarded by relay.mu
}

// open routes d and opens a stream to each destination with the Body
// frame it gets there. It returns the code to refuse the body with when
// it goes nowhere.
func (r *relay) open(from *conn, d *frame.Data) frame.StreamCode {
	z := r.z
	dsts := z.bodyDests(from, d)
	if len(dsts) == 0 {
		return frame.StreamNoResponders
	}
	ctx, cancel := context.WithTimeout(from.tc.Context(), z.opts.handshakeTimeout)
	defer cancel()
	path := d.Path.AppendWith(nil, z.name) // for the links among dsts
	for _, dst := range dsts {
		e := *d
		e.Path, e.Names = nil, nil
		if dst.conn.isLink() {
			e.Path, e.Names = path, frame.AppendStrList(nil, dst.names...)
		}
		st, err := dst.conn.tc.OpenStream(ctx)
		if err != nil {
			continue
		}
		if _, err := st.Write(frame.AppendBody(nil, &e)); err != nil {
			resetBody(st, frame.StreamLost)
			continue
		}
		r.outs = append(r.outs, &bodyOut{conn: dst.conn, st: st, sb: newSentBody(&dst.conn.credit, st)})
	}
	if len(r.outs) == 0 {
		return frame.StreamLost
	}
	r.live = len(r.outs)
	return 0
}

// copy copies the writer's bytes to every destination still taking them,
// through one buffer, until the writer's stream ends (io.EOF) or fails,
// or no destination is left. ack counts what it read for the writer.
func (r *relay) copy(from *conn, ack *bodyAcker) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	c := &r.z.bodies
	for {
		n, err := r.up.Read(buf)
		if n > 0 {
			if from.isLink() {
				from.link.heard()
			}
			if aerr := ack.add(n); aerr != nil {
				return aerr
			}
			c.bytes.Add(uint64(n))
			c.buffered.Add(int64(n))
			left := 0
			for _, o := range r.outs {
				if r.codeOf(o) != 0 {
					continue
				}
				if _, werr := o.sb.write(buf[:n]); werr != nil {
					if !errors.Is(werr, errBodyEnded) { // else dropped already
						code, _ := streamCodeOf(werr)
						r.drop(o, code)
					}
					continue
				}
				if o.conn.isLink() {
					o.conn.link.heard()
				}
				left++
			}
			c.buffered.Add(-int64(n))
			if left == 0 {
				return errNoDestination
			}
		}
		if err != nil {
			return err
		}
	}
}

var errNoDestination = errors.New("yomo: no destination takes the body any more")

// finish ends the body at every destination still taking it (FIN).
func (r *relay) finish() {
	for _, o := range r.outs {
		if r.codeOf(o) == 0 {
			o.st.Close()
		}
	}
}

// abort ends the body with code at every destination still taking it.
func (r *relay) abort(code frame.StreamCode) {
	for _, o := range r.outs {
		r.drop(o, code)
	}
}

// watch reads o's reply until it ends: the destination's counts of what
// it read (which give back credit), then FIN when it took the whole body,
// a reset with its code when it did not.
func (r *relay) watch(o *bodyOut) {
	err := o.sb.readReply()
	if err != nil {
		if code, remote := streamCodeOf(err); remote {
			r.drop(o, code)
		}
	}
	o.sb.end()
}

// drop records that o stopped taking the body, and why, and ends its
// stream. When it was the last one, the writer is stopped with its code.
func (r *relay) drop(o *bodyOut, code frame.StreamCode) {
	r.mu.Lock()
	if o.code != 0 {
		r.mu.Unlock()
		return
	}
	o.code = code
	r.live--
	last := r.live == 0
	r.mu.Unlock()
	resetBody(o.st, code)
	o.sb.end() // a write waiting for credit gives up
	if last {
		r.up.CancelRead(uint64(code)) // the writer's Write fails with code
	}
}

func (r *relay) codeOf(o *bodyOut) frame.StreamCode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return o.code
}

// firstCode returns the code of the first destination, in order, that
// stopped taking the body; 0 when none did.
func (r *relay) firstCode() frame.StreamCode {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.outs {
		if o.code != 0 {
			return o.code
		}
	}
	return 0
}
