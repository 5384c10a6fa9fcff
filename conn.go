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

// conn is one connection at the zipper: a client (Source or
// StreamFunction) or a mesh link to another zipper. Both are served by the
// same machinery: a control stream (read on the serving goroutine, written
// under one lock with a deadline), one data stream in each direction (a
// reader goroutine that hands frames to the router, a writer goroutine
// that flushes the outbox), one drop accounting and one protocol-error
// close. What differs is small and explicit: a link has linkState (route
// exchange, round-trip measurement, its control writer goroutine), a
// client has its handshake-derived identity and per-tag counters.
type conn struct {
	z     *Zipper
	srv   *server // the Serve call that accepted it; nil for in-memory and dialed connections
	tc    transport.Conn
	id    uint64
	hs    *frame.Handshake // for a link, the peer's name and KindZipper
	ident string           // authenticated identity (Identity.Name); "" when anonymous
	acl   *ACL             // nil: unrestricted
	write *tagSet          // tags it may write; nil: any. Immutable after the handshake

	ctrl   transport.Stream
	ctrlRd *frame.Reader
	ctrlMu sync.Mutex // serialises writes to ctrl

	// out is the queue of frames for the peer: made on first use
	// (queue), so a source that nothing is routed to never has one; a
	// link's from the start. Once made it is never replaced.
	out    atomic.Pointer[outbox]
	policy OverflowPolicy // for frames queued to this connection
	// recvMax is the largest payload the peer accepts, when smaller than
	// the zipper's own limit (0: no smaller limit). Larger frames are
	// dropped for it rather than sent to break its connection.
	recvMax int

	done      chan struct{} // closed when serve returned
	readDone  chan struct{} // closed when the peer's data stream ended (never, when its reader never started)
	drain     chan struct{} // closed by finish: flush the queue, then FIN
	drainOnce sync.Once

	cnt *connCounters // a link's are its peer's, kept across reconnections

	// The goroutines of serve: it waits for them all.
	wg       sync.WaitGroup
	stop     chan struct{} // closed when serve winds down
	failOnce sync.Once
	first    error      // the first failure; set once through fail
	wmu      sync.Mutex // guards serving, served and the start of the writer
	serving  bool       // goroutines may start
	served   bool       // serve has ended: nothing starts any more
	writerOn atomic.Bool

	flushWant atomic.Uint64 // a Flush waits for handled to reach it; 0: none
	handled   atomic.Uint64 // frames of the data stream read and done with (routed, or failed): counted when their batch ends

	// acks counts the peer's frames taken into custody here, for the
	// Custody frames of links and of clients that keep their frames
	// (writer set).
	acks custodyIn
	// writer is, for a client that keeps its frames until acknowledged
	// (Handshake.Custody), what the zipper remembers of it across its
	// connections (firsthop.go); nil for other clients and links.
	// writerSeq is the client's number of the last frame read here: the
	// handshake's Acked, plus the frames read since. The reader's own.
	writer    *writerState
	writerSeq uint64

	// Clients only.
	info     *ConnInfo // for hooks: set at registration when the zipper has any; nil otherwise
	dst      *dest     // this instance in the routing table (functions)
	group    string    // its group in the routing table: its name, or its own when it broadcasts
	inst     string    // its name in the instance table (keyed routing); "" when it broadcasts
	instDst  *dest
	sub      atomic.Pointer[subscription] // what it observes now
	reported uint64                       // drops already reported; the drop reporter's own
	// graceUntil is the nanotime until which this client's frames that
	// nothing observes yet are held (holdForRoute): set at registration
	// for a client that is reconnecting (Handshake.Resumed); 0 otherwise.
	graceUntil int64

	link *linkState // mesh links only

	fseq flowSeqs // its frames' flows into the mesh; its reader goroutine's own

	dg     atomic.Pointer[dgramOut] // datagrams to the peer; started by the first (startDatagrams)
	credit bodyCredit               // body bytes in flight towards the peer (bodycredit.go)

	// lazyBodies: a source that announces its body streams (its
	// HandshakeAck said AnnounceBodies); its acceptor starts on its
	// Bodies frame. bodiesOn: the acceptor started. Both are serve's
	// goroutine's own once serving.
	lazyBodies, bodiesOn bool
	// lazyData: a client that announces its data stream (its
	// HandshakeAck said AnnounceData); its data reader starts on its
	// DataStream frame. dataOn: the reader started. Serve's goroutine's
	// own once serving, like lazyBodies. noDatagrams: the client sends no
	// datagrams (Handshake.NoDatagrams), so none are read.
	lazyData, dataOn, noDatagrams bool
	// announceData: the client asked for a DataStream frame before our
	// data stream (Handshake.AnnounceData); set before serving.
	announceData bool
}

// readerCounts counts the connections whose control stream, data stream
// and datagrams have a reader now (a client may have only the first:
// serve). A reader is counted before its goroutine starts.
type readerCounts struct{ control, data, datagrams atomic.Int64 }

// connCounters are the counters of a connection.
type connCounters struct {
	framesIn, framesOut, bytesIn, bytesOut, dropped atomic.Uint64
}

// subscription is what a client observes: its handshake's, then each
// Subscribe's. Replaced whole, read without a lock on every frame.
type subscription struct {
	tags   map[Tag]*tagCounters // observed tags and their counters
	target string
}

// observes returns the counters of tag when c observes it, else nil.
func (c *conn) observes(tag Tag) *tagCounters {
	if s := c.sub.Load(); s != nil {
		return s.tags[tag]
	}
	return nil
}

type tagCounters struct {
	queued  atomic.Uint64
	dropped atomic.Uint64
}

func (z *Zipper) newConn(tc transport.Conn, s *server) *conn {
	return &conn{z: z, srv: s, tc: tc, cnt: new(connCounters), policy: z.opts.policy,
		done: make(chan struct{}), readDone: make(chan struct{}), drain: make(chan struct{})}
}

// isLink reports whether c is a mesh link.
func (c *conn) isLink() bool { return c.link != nil }

// serve runs an established connection until it closes. The control stream
// is read on the calling goroutine (one goroutine fewer per idle
// connection); the peer's data stream and datagrams each have one (a
// client that announces its data stream gets its reader on its DataStream
// frame, one that sends no datagrams none), and a link has its control
// writer. The first failure closes the connection with its reason, which
// ends the others.
func (c *conn) serve() error {
	c.stop = make(chan struct{})
	c.wmu.Lock()
	c.serving = true
	if o := c.dg.Load(); o != nil {
		// Datagrams were routed to the peer between its registration
		// and now: they waited in the queue.
		c.goOwned(func() { o.run(c.tc, c.stop) }) // ends on stop or when tc closes
	}
	c.wmu.Unlock()
	if !c.lazyData {
		c.startReader()
	}
	if !c.noDatagrams {
		c.z.readers.datagrams.Add(1)
		c.goOwned(func() { // ends when tc ends, or on the peer's protocol error
			defer c.z.readers.datagrams.Add(-1)
			if err := c.readDatagrams(); err != nil {
				c.fail(err)
			}
		})
	}
	if !c.lazyBodies {
		c.bodiesOn = true
		c.goOwned(c.acceptBodies) // ends when tc closes
	}
	if c.hasWriter() {
		c.startWriter()
	}
	if c.isLink() {
		c.goOwned(func() { // ends on stop or a write error
			if err := c.link.runControl(c, c.stop); err != nil {
				c.fail(err)
			}
		})
	}
	c.z.readers.control.Add(1) // after the readers above are counted
	c.fail(c.readControl())    // returns once tc is closed, by anyone
	c.z.readers.control.Add(-1)
	c.wmu.Lock()
	c.serving, c.served = false, true // no goroutine starts from now on
	c.wmu.Unlock()
	close(c.stop)
	c.wg.Wait()
	return c.first
}

// startReader starts the reader of the peer's data stream, once: from
// serve, or on the client's DataStream frame (readControl, serve's own
// goroutine).
func (c *conn) startReader() {
	c.dataOn = true
	c.z.readers.data.Add(1)
	c.goOwned(func() { // ends when the peer's data stream or tc ends
		defer c.z.readers.data.Add(-1)
		defer close(c.readDone)
		if err := c.readData(); err != nil {
			c.fail(err)
		}
	})
}

// goOwned runs fn on a goroutine owned by serve, which waits for it.
// c.wmu is held, or serve has not started waiting, or the caller is one
// of serve's goroutines itself (acceptBodies).
func (c *conn) goOwned(fn func()) {
	c.wg.Add(1)
	go func() { // owned by serve (c.wg)
		defer c.wg.Done()
		fn()
	}()
}

// fail records the first failure of the connection and closes it with its
// reason, which ends every other goroutine of it.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.first = err
		c.closeFor(err)
	})
}

// startWriter starts the data writer, once, while the connection is
// served. Functions, links and sources that observe tags get it at once;
// a source that observes nothing only when something is first routed to
// it (a reply to a request), so idle sources cost no goroutine.
func (c *conn) startWriter() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.serving || c.writerOn.Load() {
		return c.writerOn.Load()
	}
	c.writerOn.Store(true)
	c.queueLocked()    // before its writer reads it
	c.goOwned(func() { // ends on stop, after a drain, or on a write error
		if err := c.writeData(c.stop); err != nil {
			c.fail(err)
		}
	})
	return true
}

// hasWriter reports whether the peer gets a data writer from the start:
// links, functions, and sources that observe tags (backflow).
func (c *conn) hasWriter() bool {
	if c.isLink() {
		return true
	}
	s := c.sub.Load()
	return s != nil && len(s.tags) > 0
}

// finish ends the zipper's side of the connection once nothing more will
// be routed to it: the writer writes what is queued and finishes its
// stream. A connection without a writer has nothing to wait for and is
// closed, unless its client keeps its frames: it gets a writer that only
// finishes the stream, so that the client, reading to its end, waits for
// the last Custody rather than seeing the connection close first.
func (c *conn) finish() {
	c.drainOnce.Do(func() {
		close(c.drain)
		if !c.writerOn.Load() && (c.writer == nil || !c.startWriter()) {
			c.tc.CloseWithError(uint64(frame.CloseNormal), "")
		}
	})
}

// closeFor closes the connection with the code and reason err calls for.
func (c *conn) closeFor(err error) { closeFor(c.tc, err) }

// closeFor closes tc with the code and reason err calls for: a protocol
// error tells the peer what it got wrong, a rejection is final for a
// client, anything else is a normal close. Both ends use it.
func closeFor(tc transport.Conn, err error) {
	var pe *protocolError
	var rej *rejection
	switch {
	case errors.As(err, &pe):
		tc.CloseWithError(uint64(frame.CloseProtocol), pe.Error())
	case errors.As(err, &rej):
		tc.CloseWithError(uint64(frame.CloseCodeForReject(frame.RejectCode(rej.code))), rej.reason) // final for the client
	default:
		tc.CloseWithError(uint64(frame.CloseNormal), "")
	}
}

// writeControl writes a control frame, giving up after timeout.
func (c *conn) writeControl(b []byte, timeout time.Duration) error {
	return writeControlOn(&c.ctrlMu, c.ctrl, b, timeout)
}

// writeControlOn writes b to a control stream under mu, with a deadline.
func writeControlOn(mu *sync.Mutex, st transport.Stream, b []byte, timeout time.Duration) error {
	mu.Lock()
	defer mu.Unlock()
	st.SetWriteDeadline(time.Now().Add(timeout))
	_, err := st.Write(b)
	return err
}

// announcingStream is a data stream whose peer asked for a DataStream
// frame before it (a client's when the zipper's HandshakeAck said
// AnnounceData; the zipper's to a client whose handshake said
// AnnounceData): the first Write, or Close when nothing was written,
// writes that frame on the control stream first, so that the peer starts
// reading the stream only once there is something to read. Its writer's
// own; Close may come from another goroutine once the writer is done.
type announcingStream struct {
	transport.SendStream
	mu      *sync.Mutex      // the control stream's write lock
	ctrl    transport.Stream // the control stream
	timeout time.Duration    // for the control frame's write
	sent    bool
}

func (a *announcingStream) announce() error {
	if a.sent {
		return nil
	}
	b, _ := frame.AppendControl(nil, &frame.DataStream{})
	if err := writeControlOn(a.mu, a.ctrl, b, a.timeout); err != nil {
		return err
	}
	a.sent = true
	return nil
}

func (a *announcingStream) Write(p []byte) (int, error) {
	if err := a.announce(); err != nil {
		return 0, err
	}
	return a.SendStream.Write(p)
}

func (a *announcingStream) Close() error {
	if err := a.announce(); err != nil {
		return err
	}
	return a.SendStream.Close()
}

// readControl reads the peer's control frames until the stream fails.
func (c *conn) readControl() error {
	return readControlStream(c.ctrlRd, func(t frame.Type, body []byte) error {
		if c.isLink() {
			c.link.heard() // any frame from the peer shows it is alive
		}
		switch t {
		case frame.TypePing:
			v, err := decodeControl(t, body)
			if err != nil {
				return err
			}
			return c.writeControl(frame.AppendPing(nil, v.(*frame.Ping).Value, true), c.ctrlTimeout())
		case frame.TypePong:
			if c.isLink() {
				v, err := decodeControl(t, body)
				if err != nil {
					return err
				}
				c.link.onPong(c, time.Duration(nanotime()-int64(v.(*frame.Ping).Value)))
			}
			return nil
		case frame.TypeRoutes:
			if c.isLink() {
				v, err := decodeControl(t, body)
				if err != nil {
					return err
				}
				c.z.learn(c, v.(*frame.RouteUpdate).Routes)
				return nil
			}
		case frame.TypeGoAway:
			if c.isLink() {
				return errGoAway
			}
		case frame.TypeCustody:
			if c.isLink() {
				v, err := decodeControl(t, body)
				if err != nil {
					return err
				}
				c.out.Load().release(v.(*frame.Custody).Frames) // a link's is made with it
				return nil
			}
		case frame.TypeSubscribe:
			if !c.isLink() {
				v, err := decodeControl(t, body)
				if err != nil {
					return err
				}
				sub := v.(*frame.Subscribe)
				b, _ := frame.AppendControl(nil, &frame.Subscribed{Seq: sub.Seq, Error: c.z.resubscribe(c, sub)})
				return c.writeControl(b, c.ctrlTimeout())
			}
		case frame.TypeBodies:
			if !c.lazyBodies || c.bodiesOn {
				return &protocolError{msg: "unexpected bodies frame: not asked for, or a second time"}
			}
			if _, err := decodeControl(t, body); err != nil {
				return err
			}
			c.bodiesOn = true
			c.goOwned(c.acceptBodies) // ends when tc closes (readControl runs on serve's goroutine)
			return nil
		case frame.TypeDataStream:
			if !c.lazyData || c.dataOn {
				return &protocolError{msg: "unexpected data-stream frame: not asked for, or a second time"}
			}
			if _, err := decodeControl(t, body); err != nil {
				return err
			}
			c.startReader() // readControl runs on serve's goroutine
			return nil
		case frame.TypeFlush:
			if !c.isLink() {
				v, err := decodeControl(t, body)
				if err != nil {
					return err
				}
				c.flushWant.Store(v.(*frame.Flush).Frames)
				c.checkFlush()
				return nil
			}
		}
		return &protocolError{msg: "unexpected " + t.String() + " frame on the control stream"}
	})
}

// checkFlush answers the pending Flush once the data reader has read (and
// routed) as many frames as it asked for. Runs on the reader and on the
// control goroutine; the swap makes one of them answer. It compares with
// handled, counted after a batch is routed (the counters of Stats take a
// batch before its last frame is routed).
func (c *conn) checkFlush() {
	want := c.flushWant.Load()
	if want == 0 || c.handled.Load() < want || !c.flushWant.CompareAndSwap(want, 0) {
		return
	}
	b, _ := frame.AppendControl(nil, &frame.Flushed{Frames: want})
	if err := c.writeControl(b, c.ctrlTimeout()); err != nil {
		c.fail(err)
	}
}

// ctrlTimeout bounds a control write: a link that cannot take one within
// its dead-peer time is dead anyway.
func (c *conn) ctrlTimeout() time.Duration {
	if c.isLink() {
		return linkDeadAfter
	}
	return DefaultHandshakeTimeout
}

// readData reads the peer's data stream and routes every frame, on this
// goroutine, in order.
func (c *conn) readData() error {
	sc := scratch{batch: true}
	var b inBatch
	err := readDataStream(c.z.ctx, c.tc, c.z.opts.maxFrame+frame.MaxEnvelope,
		func(d *frame.Data, n int, last bool) error { return c.readFrame(d, n, last, &b, &sc) },
		func() error { return c.endBatch(&b, &sc) })
	if errors.Is(err, io.EOF) {
		if c.isLink() {
			// The peer finished its stream (it is shutting down): tell it
			// everything arrived before it sees the link close.
			_ = c.link.sendCustody(c)
			return err // a link's data stream ends only with the link
		}
		// The client finished sending: it learns that everything it sent
		// is here, also during a shutdown (every frame it sent is routed).
		if c.writer != nil {
			_ = c.ackClient(c.ctrlTimeout()) // failing, the client sends them again
		}
		// Outside a shutdown it is leaving: write out what is queued for
		// it and finish our stream, so it can close knowing it has
		// everything.
		if !c.z.isDraining() {
			c.finish()
		}
		return nil
	}
	return err
}

// inBatch is what the reader of a data stream keeps between two ends of
// a batch (readDataStream): the frames it read and their bytes, and the
// frames it routed, counted when the batch ends, and the writer's lock,
// held across the batch. Counters and the lock then cost a few atomic
// operations per batch rather than per frame (RATIONALE.md, "Why do
// readers work in batches?").
type inBatch struct {
	frames, bytes uint64       // read
	routed        uint64       // passed the checks and routed: taken into custody
	counted       uint64       // of frames, those already in c.cnt.framesIn
	countedRouted uint64       // of routed, those already in z.framesIn
	w             *writerState // c.writer, locked; nil: not locked
}

// readFrame checks and routes one frame of c's data stream, of n bytes
// encoded; endBatch follows at the latest after maxBatch frames. last
// says the batch ends after this frame: the counts of frames in (the
// zipper's and the connection's, in Stats) then take the batch's frames
// before this one is routed, so whoever sees the effect of a batch's last
// frame (a function got it, a source got its result) finds every frame
// of the batch counted.
func (c *conn) readFrame(d *frame.Data, n int, last bool, b *inBatch, sc *scratch) error {
	b.frames++
	b.bytes += uint64(n)
	if c.isLink() {
		if err := checkSeq(d); err != nil {
			return &protocolError{msg: "data frame: " + err.Error(), err: err}
		}
	} else if c.write != nil && !c.write.has(d.Tag) {
		return c.z.denyWrite(c, d.Tag)
	}
	b.routed++
	if last {
		c.cnt.framesIn.Add(b.frames - b.counted)
		c.z.framesIn.Add(b.routed - b.countedRouted)
		b.counted, b.countedRouted = b.frames, b.routed
	}
	if w := c.writer; w != nil {
		if b.w == nil {
			w.mu.Lock()
			b.w = w
		}
		c.writerSeq++
		c.z.routeOnce(c, d, c.writerSeq, sc)
		return nil
	}
	c.z.route(c, d, sc)
	return nil
}

// endBatch ends a batch of frames read from c: the queue held for the
// batch's frames and the writer's lock are released, the frames are
// counted (in Stats, and for the peer's Custody, which may be due now),
// and a Flush they complete is answered.
func (c *conn) endBatch(b *inBatch, sc *scratch) error {
	sc.release()
	if b.w != nil {
		b.w.mu.Unlock()
		b.w = nil
	}
	frames, bytes, routed := b.frames, b.bytes, b.routed
	if frames == 0 {
		return nil
	}
	if frames > b.counted {
		c.cnt.framesIn.Add(frames - b.counted)
	}
	if routed > b.countedRouted {
		c.z.framesIn.Add(routed - b.countedRouted)
	}
	b.frames, b.bytes, b.routed, b.counted, b.countedRouted = 0, 0, 0, 0, 0
	c.handled.Add(frames)
	if routed == 0 {
		return nil // the batch's only frame failed the checks: the connection closes
	}
	if c.isLink() {
		c.link.heard()
		c.cnt.bytesIn.Add(bytes)
		if c.acks.add(routed, bytes) {
			c.link.kickControl()
		}
		return nil
	}
	if c.writer != nil && c.acks.add(routed, bytes) {
		if err := c.ackClient(c.ctrlTimeout()); err != nil {
			return err
		}
	}
	if c.flushWant.Load() != 0 {
		c.checkFlush()
	}
	return nil
}

// How much of a client's data stream is read before a Custody frame is
// sent rather than at the next report: small against its write buffer
// (4 MiB by default), which counts what it holds for us.
const (
	custodyFrames = 256
	custodyBytes  = 256 << 10
)

// The same for a link, at most: an eighth of the queue limits, which
// count what the peer holds for us (and are the same on both sides of a
// link unless configured otherwise). Fewer Custody frames under load:
// at 256 frames instead of 1024 the 1 KiB cascade lost 2 points more
// throughput to custody (BENCHMARKS.md).
const (
	linkCustodyFrames = 1024
	linkCustodyBytes  = 1 << 20
)

// custodyIn is the receiving end of custody, one mechanism for links and
// clients: it counts the frames of the peer's data stream taken into
// custody here and writes the cumulative Custody frames that tell it so.
type custodyIn struct {
	took, tookBytes atomic.Uint64 // the reader's counts
	dueAt, dueBytes atomic.Uint64 // took and tookBytes when a Custody was last due
	sent            atomic.Uint64 // the count last sent
	// A Custody is due after every frames frames or bytes bytes (0:
	// custodyFrames, custodyBytes). Set before the reader starts.
	frames, bytes uint64
}

// setLink sets the Custody interval of a link whose zipper has the queue
// limits maxFrames and maxBytes.
func (k *custodyIn) setLink(maxFrames, maxBytes int) {
	k.frames = uint64(max(1, min(linkCustodyFrames, maxFrames/8)))
	k.bytes = uint64(max(1, min(linkCustodyBytes, maxBytes/8)))
}

// add counts frames of n bytes in all taken into custody (on the reader)
// and reports whether a Custody is due now.
func (k *custodyIn) add(frames, n uint64) bool {
	r, b := k.took.Add(frames), k.tookBytes.Add(n)
	every, everyBytes := k.frames, k.bytes
	if every == 0 {
		every, everyBytes = custodyFrames, custodyBytes
	}
	if r-k.dueAt.Load() < every && b-k.dueBytes.Load() < everyBytes {
		return false
	}
	k.dueAt.Store(r)
	k.dueBytes.Store(b)
	return true
}

// send writes a Custody for what was taken to c's peer, when that changed
// since the last, giving up after timeout. Two goroutines at most send the
// same count twice: cumulative, harmless.
func (k *custodyIn) send(c *conn, timeout time.Duration) error {
	r := k.took.Load()
	if r <= k.sent.Load() {
		return nil
	}
	k.sent.Store(r)
	b, _ := frame.AppendControl(nil, &frame.Custody{Frames: r})
	return c.writeControl(b, timeout)
}

// ackClient sends a client that keeps its frames (c.writer is set) the
// Custody due to it, giving up after timeout.
func (c *conn) ackClient(timeout time.Duration) error {
	if c.z.holdCustody.Load() {
		return nil
	}
	return c.acks.send(c, timeout)
}

// writeData opens our data stream to the peer and writes the outbox to it
// until stop, or until finish asked for a drain (then it finishes the
// stream).
func (c *conn) writeData(stop <-chan struct{}) error {
	ss, err := c.tc.OpenUniStream(c.z.ctx)
	if err != nil {
		return err
	}
	if c.announceData {
		ss = &announcingStream{SendStream: ss, mu: &c.ctrlMu, ctrl: c.ctrl, timeout: c.ctrlTimeout()}
	}
	o := c.out.Load() // made by startWriter
	lost, err := o.flush(ss, stop, c.drain, func(n int) { c.cnt.framesOut.Add(uint64(n)) })
	if lost > 0 && !o.custody { // a link's are held: routed again when it is gone
		// Counted as written; they died with the connection.
		c.cnt.framesOut.Add(^uint64(lost - 1))
		c.noteDropped(uint64(lost), nil)
	}
	if err != nil {
		return err
	}
	select {
	case <-c.drain:
		// Everything queued is written: tell the peer this direction is
		// complete. It closes the connection once it has read it all.
		return ss.Close()
	default:
		return nil
	}
}

// deliver queues d for the peer, as the connection's overflow policy says;
// what is not queued is dropped and counted. wait ends a waiting put (the
// writer's own connection closed). A datagram frame goes to the
// connection's datagram queue, which never waits.
func (c *conn) deliver(d *frame.Data, wait <-chan struct{}) {
	if d.Datagram {
		if o := c.startDatagrams(); o != nil {
			o.put(d, c.recvMax)
		} else {
			c.z.dgram.noConn.Add(1)
		}
		return
	}
	if !c.writerOn.Load() {
		c.startWriter()
	}
	tc := c.observes(d.Tag)
	o := c.queue()
	if (c.recvMax == 0 || len(d.Payload) <= c.recvMax) && o.put(d, c.policy, wait, 0, c.z.opts.stallTimeout) {
		if tc != nil {
			tc.queued.Add(1)
		}
		if c.isLink() {
			c.cnt.bytesOut.Add(uint64(frame.DataSize(d)))
		}
		return
	}
	if c.isLink() && o.isClosed() && c.z.rerouteFrom(c, d, nil) {
		return // the link failed after the route was chosen: another path took it
	}
	c.noteDropped(1, tc)
}

// heldQueue is the destination (a local function, or a mesh link) whose
// queue a data stream reader keeps locked between consecutive frames of
// a batch that it queues there (RATIONALE.md, "Why does a reader keep a
// queue locked across a batch?"): the lock, the flusher's wake-up and
// the counts are then paid once per run of frames rather than once per
// frame.
type heldQueue struct {
	c      *conn // nil: nothing held
	tag    Tag
	tc     *tagCounters // c's counters for tag (nil: c does not observe it)
	queued uint64       // frames of tag queued under the hold, not yet in tc
	bytes  uint64       // a link's: bytes queued under the hold, not yet in c.cnt.bytesOut
	wake   bool         // the hold queued the first waiting frame
}

// deliverBatched is deliver for a data stream reader (sc.batch): a frame
// that fits in a queue with room is appended under a lock the reader
// keeps until sc.release. Anything else goes to deliver, after release.
// Only a client's reader keeps a hold from one frame to the next (a
// link's reader releases at every frame, routeFromLink).
//
// While it holds a queue, the reader takes no other lock and does not
// wait: route and dispatch release it before anything else that may
// (hooks, backflow, a hold for a route), deliverBatched before another
// destination, and endBatch at the end of the batch, before the reader
// waits for the stream. A batch is at most maxBatch frames, so the
// flusher and other writers to the queue wait for the lock at most that
// long.
func (c *conn) deliverBatched(d *frame.Data, wait <-chan struct{}, sc *scratch) {
	if !sc.batch || d.Datagram || (c.recvMax != 0 && len(d.Payload) > c.recvMax) {
		sc.release()
		c.deliver(d, wait)
		return
	}
	h, o := &sc.held, c.out.Load()
	if h.c != c {
		sc.release()
		if !c.writerOn.Load() {
			c.startWriter()
		}
		o = c.queue() // takes c.wmu the first time: nothing may be held then
		o.mu.Lock()
		*h = heldQueue{c: c, tag: d.Tag, tc: c.observes(d.Tag)}
	}
	if o.closed || !o.hasRoom() {
		sc.release()
		c.deliver(d, wait) // waits for room as the policy says, or drops and counts
		return
	}
	if o.frames == 0 {
		h.wake = true
	}
	o.appendLocked(d)
	if c.isLink() {
		h.bytes += uint64(frame.DataSize(d))
	}
	if d.Tag != h.tag {
		if h.tc != nil {
			h.tc.queued.Add(h.queued)
		}
		h.tag, h.tc, h.queued = d.Tag, c.observes(d.Tag), 0
	}
	h.queued++
}

// release lets go of the queue the reader holds, if any: the frames
// queued under the hold are counted, and the flusher is woken when they
// were the first waiting.
func (sc *scratch) release() {
	h := &sc.held
	c := h.c
	if c == nil {
		return
	}
	if h.tc != nil && h.queued > 0 {
		h.tc.queued.Add(h.queued)
	}
	if h.bytes > 0 {
		c.cnt.bytesOut.Add(h.bytes)
	}
	wake := h.wake
	*h = heldQueue{}
	o := c.out.Load() // held: made
	o.mu.Unlock()
	if wake {
		o.wake()
	}
}

// neverServed ends a connection that was registered and will not be
// served: what was routed to it meanwhile is dropped and counted.
func (c *conn) neverServed() {
	c.wmu.Lock()
	c.served = true
	c.wmu.Unlock()
	if o := c.dg.Load(); o != nil {
		o.done.Store(true)
		o.discard()
	}
}

// startDatagrams returns the connection's datagram queue, starting its
// sender on first use (or, for a peer registered and not yet served,
// when serve starts); nil once the connection is no longer served.
func (c *conn) startDatagrams() *dgramOut {
	if o := c.dg.Load(); o != nil {
		return o
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if o := c.dg.Load(); o != nil || c.served {
		return o
	}
	o := newDgramOut(&c.z.dgram)
	c.dg.Store(o)
	if c.serving {
		stop := c.stop
		c.goOwned(func() { o.run(c.tc, stop) }) // ends on stop or when tc closes
	}
	return o
}

// readDatagrams routes the peer's datagrams, each on arrival, on this
// goroutine (frames of a stream are routed on readData's).
func (c *conn) readDatagrams() error {
	var sc scratch
	return readDatagrams(c.z.ctx, c.tc, c.z.opts.maxFrame, &c.z.dgram, func(d *frame.Data) error {
		if c.isLink() {
			d.Seq = nil // datagrams are not sequenced (frame/spec.md, section 8)
		} else if c.write != nil && !c.write.has(d.Tag) {
			return c.z.denyWrite(c, d.Tag)
		}
		c.z.framesIn.Add(1)
		c.z.route(c, d, &sc)
		return nil
	})
}

// noteDropped counts n frames for c that will never be sent: in the
// connection's counters (per tag when known) and the zipper's total, so
// every drop reaches Stats.
func (c *conn) noteDropped(n uint64, tc *tagCounters) {
	if tc != nil {
		tc.dropped.Add(n)
	}
	c.cnt.dropped.Add(n)
	c.z.droppedAll.Add(n)
}

// closeQueue discards what is still queued for c, counting it as dropped.
// A connection that never had a queue gets a closed one, so that a frame
// routed to it from now on is dropped and counted like any other.
func (c *conn) closeQueue() {
	c.wmu.Lock()
	o := c.queueLocked()
	c.wmu.Unlock()
	if lost := o.close(); lost > 0 {
		c.noteDropped(uint64(lost), nil)
	}
}

// queue returns c's outbox, making it on first use.
func (c *conn) queue() *outbox {
	if o := c.out.Load(); o != nil {
		return o
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.queueLocked()
}

// queueLocked is queue with c.wmu held.
func (c *conn) queueLocked() *outbox {
	o := c.out.Load()
	if o == nil {
		o = newOutbox(c.z.opts.queueFrames, c.z.opts.queueBytes, c.tc.RTT)
		c.out.Store(o)
	}
	return o
}

// queueDepth is the frames and bytes queued for c (none when it has no
// queue yet).
func (c *conn) queueDepth() (frames, bytes int) {
	if o := c.out.Load(); o != nil {
		return o.depth()
	}
	return 0, 0
}

// protocolError is a violation by the peer; its text goes to the peer.
// err, when set, is the cause (ErrFrameTooLarge, ErrUnknownType).
type protocolError struct {
	msg string
	err error
}

func (e *protocolError) Error() string { return e.msg }
func (e *protocolError) Unwrap() error { return e.err }

// frameError turns a reader error caused by what the peer sent (a bad
// header, a truncated frame) into a protocolError, so the connection is
// closed with the reason.
func frameError(err error) error {
	switch {
	case errors.Is(err, frame.ErrFrameTooLarge), errors.Is(err, frame.ErrUnknownType):
		return &protocolError{msg: err.Error(), err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &protocolError{msg: "truncated frame: the stream ended inside a frame", err: err}
	}
	return err
}

// The two stream loops below are the whole of reading, for both ends of a
// connection (zipper and client): the frame checks and the protocol errors
// are made in one place.

// maxBatch bounds a batch of frames read from a data stream: what a reader
// holds or has not counted yet across a batch (a lock, counters) waits
// for at most this many frames.
const maxBatch = 64

// readDataStream accepts the peer's data stream and decodes its frames,
// calling fn with each (its encoded body size, and whether it is the last
// of its batch) in order, and end after the last frame of each batch:
// before it would wait for the stream (no whole frame buffered), after
// maxBatch frames, and when it returns (unless the last batch ended
// already; then no frame was told it was the last). d is reused: fn must
// not retain it. It returns io.EOF when the peer finished the stream, a
// *protocolError for what the peer got wrong, or fn's or end's error.
func readDataStream(ctx context.Context, tc transport.Conn, max int, fn func(d *frame.Data, n int, last bool) error, end func() error) error {
	rs, err := tc.AcceptUniStream(ctx)
	if err != nil {
		return err
	}
	rd := frame.NewReader(rs, max)
	var d frame.Data
	k := 0 // frames of the batch
	defer func() {
		if k > 0 {
			_ = end() // the stream failed: its error is the one returned
		}
	}()
	for {
		t, body, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return frameError(err)
		}
		if t != frame.TypeData {
			return &protocolError{msg: "unexpected " + t.String() + " frame on a data stream"}
		}
		if err := d.Decode(body); err != nil {
			return &protocolError{msg: err.Error(), err: err}
		}
		k++
		last := k == maxBatch || !rd.Ready()
		if err := fn(&d, len(body), last); err != nil {
			return err
		}
		if last {
			k = 0
			if err := end(); err != nil {
				return err
			}
		}
	}
}

// readControlStream reads control frames and hands each to fn, which
// decodes what it needs with decodeControl.
func readControlStream(rd *frame.Reader, fn func(t frame.Type, body []byte) error) error {
	for {
		t, body, err := rd.Next()
		if err != nil {
			return frameError(err)
		}
		if err := fn(t, body); err != nil {
			return err
		}
	}
}

// decodeControl decodes a control body; a malformed one is a protocol
// error.
func decodeControl(t frame.Type, body []byte) (any, error) {
	v, err := frame.DecodeControl(t, body)
	if err != nil {
		return nil, &protocolError{msg: err.Error(), err: err}
	}
	return v, nil
}
