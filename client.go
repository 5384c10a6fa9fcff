package yomo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// client is the connection machinery shared by Source and StreamFunction:
// dial and handshake, a bounded write queue that survives reconnects, the
// read loops, and reconnection with backoff and jitter.
//
// Its lifecycle is one state machine (State), held in st:
//
//	idle ──Connect──▶ connecting ──accepted──▶ connected ◀──▶ reconnecting
//	  ▲                   │                        │               │
//	  └──────failed───────┘                        └── rejected ◀──┘ (final)
//	every state ──Close──▶ closed
//
// Transitions happen under mu; st is also read without it on every write.
// While connected or reconnecting, one goroutine (loop) owns the
// connection: it serves a session until the session ends, then dials again.
type client struct {
	kind frame.ClientKind
	name string
	addr string
	opts clientOptions
	log  *slog.Logger
	id   uint64 // instance id, stable across reconnects

	addrs []string // the zipper addresses, tried in turn
	cur   int      // the address in use; only the connecting goroutine touches it

	out *outbox
	// running counts the flusher and data-reader goroutines of this
	// client's sessions that run now (RunningForTest).
	running struct{ flushers, dataReaders atomic.Int32 }

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the connection loop

	mu         sync.Mutex
	st         atomic.Int32 // State; written under mu
	tags       []Tag
	tagSet     atomic.Pointer[map[Tag]struct{}] // tags, for lock-free reads
	target     string
	errHandler func(error)
	onData     func(d *frame.Data)       // called on the read goroutine, in order
	onBody     func(st transport.Stream) // a StreamFunction's: handles a body stream; nil for a Source

	subVer    uint64                  // counts changes of tags and target; guarded by mu
	hsVer     uint64                  // subVer of the last handshake built; guarded by mu
	subSeq    uint64                  // numbers Subscribe frames; guarded by mu
	subWait   map[uint64]chan string  // Subscribes waiting for their answer; guarded by mu
	sess      atomic.Pointer[session] // the live session, nil between sessions
	onState   atomic.Pointer[func(StateChange)]
	events    []StateChange                 // state changes for the handler; guarded by mu
	notifyMu  sync.Mutex                    // held while the handler is called
	final     atomic.Pointer[RejectedError] // why the client is rejected
	connID    atomic.Uint64
	zipperMax atomic.Int64 // the zipper's data frame limit (HandshakeAck); 0 before the first

	dgram    dgramCounters // datagram tags (datagram.go)
	handleMu sync.Mutex    // onData runs for one frame at a time: from the data stream or a datagram; SetHandler waits for it

	closing  chan struct{} // closed by Close: flush and finish
	loopDone chan struct{} // closed when the connection loop returned
	reportMu sync.Mutex    // serialises error handler calls
}

// State is where a Source or StreamFunction is in its lifecycle:
//
//	Idle ──Connect──▶ Connecting ──accepted──▶ Connected ◀──▶ Reconnecting
//	  ▲                   │                        │               │
//	  └──────failed───────┘                        └── Rejected ◀──┘ (final)
//	every state ──Close──▶ Closed (final)
type State int32

// States.
const (
	StateIdle         State = iota // configured, not connected
	StateConnecting                // Connect is dialing
	StateConnected                 // connected to a zipper
	StateReconnecting              // the connection was lost or the zipper sent GOAWAY; dialing again
	StateRejected                  // the zipper refused the client: final (RejectedError)
	StateClosed                    // Close was called: final
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateRejected:
		return "rejected"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// StateChange is what a state handler (SetStateHandler) learns: the
// states before and after, and why. Reason is nil for Connect's success
// and for Close; ErrGoAway when the zipper asked to reconnect; the
// *RejectedError for Rejected; otherwise the error that ended the
// connection or failed the dial.
type StateChange struct {
	From, To State
	Reason   error
}

func newClient(kind frame.ClientKind, name, addr string, opts []ClientOption) *client {
	o := newClientOptions(opts)
	c := &client{
		kind:  kind,
		name:  name,
		addr:  addr,
		opts:  o,
		log:   o.logger.With(kind.String(), name),
		id:    rand.Uint64() | 1, // never 0: 0 means "no origin"
		addrs: splitAddrs(addr),
		out:   newOutbox(1<<62, o.writeBuffer, nil), // Block: no stall decision
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.closing = make(chan struct{})
	c.loopDone = make(chan struct{})
	return c
}

func (c *client) state() State { return State(c.st.Load()) }

// setStateHandler sets the function told of every state change.
func (c *client) setStateHandler(fn func(StateChange)) {
	if fn == nil {
		c.onState.Store(nil)
		return
	}
	c.onState.Store(&fn)
}

// notify hands the queued state changes to the state handler, in order,
// on one goroutine at a time, never under c.mu (the handler may call the
// client, even Close).
func (c *client) notify() {
	for {
		if !c.notifyMu.TryLock() {
			return // the goroutine delivering takes ours too
		}
		for {
			c.mu.Lock()
			if len(c.events) == 0 {
				c.mu.Unlock()
				break
			}
			ev := c.events[0]
			c.events = c.events[1:]
			c.mu.Unlock()
			if fn := c.onState.Load(); fn != nil {
				(*fn)(ev)
			}
		}
		c.notifyMu.Unlock()
		c.mu.Lock()
		more := len(c.events) > 0
		c.mu.Unlock()
		if !more {
			return
		}
	}
}

// setState moves to s; c.mu is held. The final states are never left.
// The state handler learns of the change, with why.
func (c *client) setState(s State, why error) bool {
	cur := c.state()
	if cur == StateClosed || cur == StateRejected && s != StateClosed {
		return false
	}
	c.st.Store(int32(s))
	if cur != s && c.onState.Load() != nil {
		c.events = append(c.events, StateChange{From: cur, To: s, Reason: why})
	}
	return true
}

// transition is setState under c.mu, then notify.
func (c *client) transition(s State, why error) bool {
	c.mu.Lock()
	ok := c.setState(s, why)
	c.mu.Unlock()
	c.notify()
	return ok
}

// splitAddrs parses "host:port" or a comma-separated list of them.
func splitAddrs(addr string) []string {
	var out []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{addr}
	}
	return out
}

// errGoAway ends a connection the zipper asked us to leave.
var errGoAway = errors.New("yomo: the zipper asked to reconnect (goaway)")

func (c *client) setTags(tags []Tag) {
	c.mu.Lock()
	c.tags = append([]Tag(nil), tags...)
	set := make(map[Tag]struct{}, len(tags))
	for _, t := range tags {
		set[t] = struct{}{}
	}
	c.tagSet.Store(&set)
	c.subVer++
	c.mu.Unlock()
}

// observes reports whether the client observes tag now. It takes no lock.
func (c *client) observes(tag Tag) bool {
	set := c.tagSet.Load()
	if set == nil {
		return false
	}
	_, ok := (*set)[tag]
	return ok
}

func (c *client) setErrorHandler(fn func(error)) {
	c.mu.Lock()
	c.errHandler = fn
	c.mu.Unlock()
}

// report hands an error to the error handler (or the log).
func (c *client) report(err error) {
	c.mu.Lock()
	fn := c.errHandler
	c.mu.Unlock()
	if fn != nil {
		c.reportMu.Lock()
		defer c.reportMu.Unlock()
		fn(err)
		return
	}
	c.log.Warn("yomo client error", "err", err)
}

func (c *client) connect(ctx context.Context) error {
	c.mu.Lock()
	switch c.state() {
	case StateClosed:
		c.mu.Unlock()
		return ErrClosed
	case StateIdle:
	default:
		c.mu.Unlock()
		return ErrAlreadyConnected
	}
	if err := errors.Join(c.opts.errs...); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.name == "" {
		c.mu.Unlock()
		return errors.New("yomo: client name is empty")
	}
	c.setState(StateConnecting, nil)
	hs := c.handshake()
	c.mu.Unlock()
	c.notify()

	ss, err := c.dialAll(ctx, hs)
	c.mu.Lock()
	defer c.notify()
	defer c.mu.Unlock()
	if err != nil {
		c.setState(StateIdle, err) // unless Close came meanwhile
		return err
	}
	if !c.setState(StateConnected, nil) {
		ss.tc.CloseWithError(uint64(frame.CloseNormal), "client closed")
		return ErrClosed
	}
	c.sess.Store(ss) // live from now: runtime changes and Flush use it
	c.wg.Add(1)
	go c.loop(ss) // owned by c: ends when Close cancels c.ctx or on rejection
	return nil
}

// dialAll tries each address in turn, once, or with WithConnectRetry again
// and again (with backoff) until ctx ends. A rejection is final. The
// error names the last address tried and its error.
func (c *client) dialAll(ctx context.Context, hs *frame.Handshake) (*session, error) {
	var last error
	for attempt := 0; ; attempt++ {
		for i := range c.addrs {
			c.cur = i
			ss, err := c.dial(ctx, hs)
			if err == nil {
				return ss, nil
			}
			var rej *RejectedError
			if errors.As(err, &rej) {
				return nil, err
			}
			last = err
			if ctx.Err() != nil {
				return nil, last
			}
		}
		if !c.opts.connectRetry {
			return nil, last
		}
		c.log.Debug("connect failed, retrying", "attempt", attempt+1, "err", last)
		t := time.NewTimer(c.backoff(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, last
		case <-c.closing:
			t.Stop()
			return nil, ErrClosed
		}
	}
}

// handshake returns the handshake for the next connection, with the
// subscription as it is now and its version; c.mu is held.
func (c *client) handshake() *frame.Handshake {
	c.hsVer = c.subVer
	return &frame.Handshake{
		Version:      frame.ProtocolVersion,
		Name:         c.name,
		Kind:         c.kind,
		ID:           c.id,
		ObserveTags:  c.tags,
		WantedTarget: c.target,
		Credential:   c.opts.credential,
		MaxFrameSize: uint32(c.opts.maxFrame),
		Broadcast:    c.opts.broadcast && c.kind == frame.KindFunction,
		Custody:      true,
		Acked:        c.out.releasedCount(), // nothing is released between sessions
		// A source opens body streams only if OpenStream is called: it
		// tells the zipper first (session.announceBodies), so that the
		// zipper waits for none until then.
		AnnouncesBodies: c.kind == frame.KindSource,
		// Likewise its data stream (session.flush), and it says whether
		// it sends datagrams at all: the zipper reads neither until it
		// needs to.
		AnnouncesData: c.kind == frame.KindSource || c.kind == frame.KindFunction,
		NoDatagrams:   (c.kind == frame.KindSource || c.kind == frame.KindFunction) && len(c.opts.datagramTags) == 0,
		// And it reads the zipper's data stream only once the zipper
		// announced it (session.readControl): until something is routed
		// to it, it runs no reader.
		AnnounceData: c.kind == frame.KindSource || c.kind == frame.KindFunction,
	}
}

func (c *client) tlsConfig() *tls.Config {
	t, err := withRoots(c.opts.tls, c.opts.extraRoots)
	if err != nil { // checked by WithRootCAPEM already
		t = &tls.Config{}
	}
	if c.opts.insecure {
		t.InsecureSkipVerify = true
	}
	return t
}

// dial connects and performs the handshake. A refusal is a *RejectedError.
func (c *client) dial(ctx context.Context, hs *frame.Handshake) (*session, error) {
	var tc transport.Conn
	var err error
	if c.opts.inMemory != nil {
		tc, err = c.opts.inMemory.dialMem(c.name)
	} else {
		if c.opts.insecure {
			c.log.Warn("INSECURE: the zipper's certificate is not verified")
		}
		tc, err = dialRetryRefused(ctx, func() (transport.Conn, error) {
			return transport.Dial(ctx, c.addrs[c.cur], c.tlsConfig(), transport.QUICConfig{})
		})
	}
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("yomo: connect %s: no answer from a zipper there (is one serving at that address?): %w", c.addrs[c.cur], err)
		}
		return nil, fmt.Errorf("yomo: connect %s: %w", c.addrs[c.cur], err)
	}
	st, rd, ack, err := handshakeOn(ctx, tc, hs, DefaultHandshakeTimeout)
	if err != nil {
		var rej *RejectedError
		if errors.As(err, &rej) {
			return nil, err
		}
		return nil, fmt.Errorf("yomo: connect %s: %w", c.addrs[c.cur], err)
	}
	c.connID.Store(ack.ConnID)
	c.zipperMax.Store(int64(ack.MaxFrameSize))
	// First-hop custody: what the flusher writes stays in the write buffer
	// until the zipper's Custody covers it (session.readControl), and goes
	// again on the next connection when it does not (loop). A zipper that
	// does not acknowledge (an older one) would leave every frame held:
	// the client then keeps nothing it has written.
	c.out.setCustody(ack.Custody)
	c.log.Debug("connected", "zipper", ack.Zipper, "conn", ack.ConnID)
	s := newSession(c, tc, st, rd, hs.Acked)
	s.announce, s.announceData, s.lazyData = ack.AnnounceBodies, ack.AnnounceData, ack.AnnouncesData
	return s, nil
}

// newSession returns the session of a connection that completed its
// handshake; serve runs it.
func newSession(c *client, tc transport.Conn, ctrl transport.Stream, rd *frame.Reader, acked uint64) *session {
	s := &session{c: c, tc: tc, ctrl: ctrl, ctrlRd: rd, acked: acked,
		errc: make(chan error, 4), goaway: make(chan struct{}), stopFlush: make(chan struct{}),
		drain: make(chan struct{}), flushDone: make(chan struct{}), started: make(chan struct{}),
		flushCh: make(chan struct{}), ended: make(chan struct{})}
	if len(c.opts.datagramTags) > 0 {
		// Only a client that writes datagrams has their queue and sender.
		s.dg = newDgramOut(&c.dgram)
	}
	return s
}

// handshakeOn performs the dialing side of the handshake on a new
// connection: it opens the control stream, sends hs and reads the answer.
// A refusal is a *RejectedError; on any error tc is closed.
func handshakeOn(ctx context.Context, tc transport.Conn, hs *frame.Handshake, timeout time.Duration) (transport.Stream, *frame.Reader, *frame.HandshakeAck, error) {
	// Abort the handshake when ctx ends.
	stop := context.AfterFunc(ctx, func() { tc.CloseWithError(uint64(frame.CloseNormal), "handshake cancelled") })
	defer stop()
	fail := func(err error) (transport.Stream, *frame.Reader, *frame.HandshakeAck, error) {
		tc.CloseWithError(uint64(frame.CloseNormal), "handshake failed")
		if rej, ok := rejectedFromClose(err); ok {
			return nil, nil, nil, rej
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, nil, nil, fmt.Errorf("yomo: handshake: %w", err)
	}
	st, err := tc.OpenStream(ctx)
	if err != nil {
		return fail(err)
	}
	b, err := frame.AppendControl(nil, hs)
	if err != nil {
		return fail(err)
	}
	if _, err := st.Write(b); err != nil {
		return fail(err)
	}
	st.SetReadDeadline(time.Now().Add(timeout))
	rd := frame.NewReaderSize(st, frame.MaxControlSize, frame.ControlBufferSize)
	t, body, err := rd.Next()
	if err != nil {
		return fail(err)
	}
	v, err := frame.DecodeControl(t, body)
	if err != nil {
		return fail(err)
	}
	switch v := v.(type) {
	case *frame.HandshakeAck:
		st.SetReadDeadline(time.Time{})
		return st, rd, v, nil
	case *frame.Rejected:
		tc.CloseWithError(uint64(frame.CloseNormal), "rejected")
		return nil, nil, nil, &RejectedError{Code: int(v.Code), Reason: v.Reason}
	}
	return fail(fmt.Errorf("unexpected %s frame", t))
}

// loop serves sessions until Close, reconnecting with backoff.
func (c *client) loop(ss *session) {
	defer c.wg.Done()
	defer close(c.loopDone)
	for {
		err := ss.serve()
		if c.ctx.Err() != nil || c.isClosing() {
			return
		}
		if rej, ok := rejectedFromClose(err); ok && rej.Code != frame.RejectShutdown {
			// The zipper ended the connection with a rejection (a write
			// its ACL denies): final, like a refused handshake.
			c.reject(rej)
			return
		}
		c.transition(StateReconnecting, err)
		// What the zipper did not acknowledge goes first on the next
		// connection; a zipper that routed it already drops it.
		c.out.requeue()
		if errors.Is(err, errGoAway) || goAwayClose(err) {
			c.log.Info("zipper asked to reconnect")
			c.cur = (c.cur + 1) % len(c.addrs) // to another zipper, if given several
		} else {
			c.report(fmt.Errorf("yomo: connection lost: %w", err))
		}
		for attempt := 0; ; attempt++ {
			if !c.sleep(c.backoff(attempt)) {
				return
			}
			c.mu.Lock()
			hs := c.handshake() // what it observes now
			c.mu.Unlock()
			hs.Resumed = true
			ss, err = c.dial(c.ctx, hs)
			if err == nil {
				break
			}
			c.cur = (c.cur + 1) % len(c.addrs)
			var rej *RejectedError
			if errors.As(err, &rej) && rej.Code != frame.RejectShutdown {
				c.reject(rej)
				return
			}
			if c.ctx.Err() != nil {
				return
			}
			c.log.Debug("reconnect failed", "attempt", attempt+1, "err", err)
		}
		c.sess.Store(ss)
		if !c.transition(StateConnected, nil) {
			ss.tc.CloseWithError(uint64(frame.CloseNormal), "client closed")
			return
		}
	}
}

// reject makes a rejection final: writes fail with it from now on, and
// the error handler learns of it.
func (c *client) reject(rej *RejectedError) {
	c.final.Store(rej)
	c.transition(StateRejected, rej)
	c.out.close()
	c.report(rej)
}

// isClosing reports whether Close has started.
func (c *client) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// backoff returns the delay before reconnection attempt n (from 0).
func (c *client) backoff(n int) time.Duration {
	return backoff(n, c.opts.reconnectMin, c.opts.reconnectMax)
}

func (c *client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	case <-c.closing:
		return false
	}
}

// session is one live connection of a client. Its goroutines (the
// flusher of the client's outbox, the data reader, the control reader) are
// owned by serve.
type session struct {
	c      *client
	tc     transport.Conn
	ctrl   transport.Stream
	ctrlRd *frame.Reader
	ctrlMu sync.Mutex // serialises writes to ctrl
	dg     *dgramOut  // datagrams of datagram tags, sent by serve's sender goroutine; nil without datagram tags
	acked  uint64     // the handshake's Acked: the client's frame number before this connection's first

	goawayOnce sync.Once // closes goaway

	wg        sync.WaitGroup
	errc      chan error    // failures of the goroutines (one each at most)
	goaway    chan struct{} // closed by the control reader on GOAWAY
	stopFlush chan struct{} // closed to stop the flusher: the rest stays queued
	drain     chan struct{} // closed to have the flusher write out the queue
	flushDone chan struct{} // closed when the flusher returned
	flushing  bool          // the flusher was started (serve's own)
	ss        transport.SendStream
	finished  bool // our data stream is finished (serve's own)

	started  chan struct{} // closed when serve set base
	base     uint64        // the outbox's taken count when this session started
	flushMu  sync.Mutex
	flushedN uint64        // the largest Flushed the zipper sent; guarded by flushMu
	flushCh  chan struct{} // closed (and replaced) at each Flushed; guarded by flushMu
	ended    chan struct{} // closed when serve returns

	credit bodyCredit // body bytes in flight towards the zipper (bodycredit.go)

	// announce is the HandshakeAck's AnnounceBodies: a Bodies frame goes
	// before the first body stream (announceBodies).
	announce   bool
	bodiesOnce sync.Once
	bodiesErr  error // the Bodies frame's write; set in bodiesOnce
	// announceData is the HandshakeAck's AnnounceData: a DataStream frame
	// goes before the data stream's first byte or FIN (announcingStream).
	announceData bool
	// lazyData is the HandshakeAck's AnnouncesData: the zipper's data
	// stream is read once its DataStream frame came (readControl).
	// dataOn: the reader started; readControl's own.
	lazyData, dataOn bool
}

// announceBodies tells the zipper, once per connection and when it asked,
// that body streams follow (frame.Bodies); every OpenStream calls it
// before it opens its stream, so none opens before the frame is written.
func (s *session) announceBodies() error {
	if !s.announce {
		return nil
	}
	s.bodiesOnce.Do(func() {
		b, _ := frame.AppendControl(nil, &frame.Bodies{})
		s.bodiesErr = writeControlOn(&s.ctrlMu, s.ctrl, b, DefaultHandshakeTimeout)
	})
	return s.bodiesErr
}

// serve runs the session through its phases and returns why it ended:
//
//  1. sending: frames flow both ways (the flusher, and with it our data
//     stream, starts at the first frame queued: an idle client runs one
//     goroutine fewer);
//  2. finishing, after GOAWAY (the rest of the queue waits for the next
//     session) or Close (the queue is written out first): our data stream
//     is finished, and we go on receiving until the zipper finishes its
//     own, so nothing it still delivers is lost;
//  3. closed: the connection is closed and the goroutines are waited for.
//
// It returns errGoAway after a GOAWAY, io.EOF when the zipper finished,
// otherwise the first failure.
func (s *session) serve() error {
	c := s.c
	defer close(s.ended)
	defer c.sess.CompareAndSwap(s, nil)
	// Nothing takes from the outbox between the last session's flusher,
	// which ended with it, and this one's.
	s.base = c.out.takenCount()
	if !s.lazyData { // an older zipper: its data stream is read from the start
		s.startDataReader()
	}
	s.wg.Add(2)
	go s.readControl()   // owned by serve: ends on GOAWAY or when tc closes
	go s.readDatagrams() // owned by serve: ends when tc closes
	close(s.started)     // after the goroutines started at once: Flush waits for it
	if s.dg != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.dg.run(s.tc, nil) }() // owned by serve: ends when tc closes
	}
	if c.onBody != nil {
		s.wg.Add(1)
		go s.acceptBodies(c.onBody) // owned by serve: ends when tc closes
	}

	c.mu.Lock()
	stale := c.hsVer != c.subVer
	c.mu.Unlock()
	if stale {
		// The subscription changed while this connection was being made:
		// bring the zipper up to date (the answer needs no waiter).
		_ = c.sendSubscribe(s, nil) // failing, the session ends; the next handshake carries it
	}

	// The outbox's wake-up token says a frame is queued (or, after a
	// reconnection, still queued): it starts the flusher, and is put
	// back for it. From then on only the flusher takes it.
	ready := c.out.ready
	closing, goaway := c.closing, s.goaway
	sawGoAway := false
	var err error
	for err == nil {
		select {
		case err = <-s.errc:
		case <-ready:
			ready = nil
			s.startFlusher()
			c.out.wake()
		case <-goaway:
			goaway, ready, sawGoAway = nil, nil, true
			s.finishSending(s.stopFlush)
		case <-closing:
			closing, ready = nil, nil
			s.finishSending(s.drain)
		case <-c.ctx.Done():
			err = ErrClosed
		}
	}
	if !s.finished {
		close(s.stopFlush)
	}
	if errors.Is(err, io.EOF) && s.finished {
		// The zipper finished: its Custody for the last frames we sent
		// travels on the control stream; wait for it (bounded) before
		// closing, so they are not sent again.
		s.awaitCustody()
	}
	closeFor(s.tc, err)
	s.wg.Wait()
	if sawGoAway {
		return errGoAway
	}
	return err
}

// awaitCustody waits until the zipper's Custody covered every frame this
// session wrote, the connection fails, or closeFlushTimeout passes.
func (s *session) awaitCustody() {
	t := time.NewTimer(closeFlushTimeout)
	defer t.Stop()
	for {
		all, wake := s.c.out.releasedAll()
		if all {
			return
		}
		select {
		case <-wake:
		case err := <-s.errc:
			s.c.log.Debug("connection ended before the last custody", "err", err)
			return
		case <-t.C:
			return
		case <-s.c.ctx.Done():
			return
		}
	}
}

// fail hands a goroutine's end to serve; nil means the zipper finished.
func (s *session) fail(err error) {
	if err == nil {
		err = io.EOF
	}
	s.errc <- err
}

// finishSending ends our data stream: how (stop: now; drain: after the
// queue) is the channel to close.
func (s *session) finishSending(how chan struct{}) {
	if s.finished {
		return
	}
	s.finished = true
	s.startFlusher() // if no frame came yet: a drain still finishes the stream
	close(how)
	<-s.flushDone
	if s.ss != nil {
		s.ss.Close() // FIN: the zipper has everything we sent
	}
}

// startDataReader starts the reader of the zipper's data stream: at once,
// or on the zipper's DataStream frame (readControl).
func (s *session) startDataReader() {
	s.wg.Add(1)
	s.c.running.dataReaders.Add(1)
	go func() { // owned by serve: ends with the zipper's data stream or tc
		defer s.wg.Done()
		defer s.c.running.dataReaders.Add(-1)
		s.fail(s.readData())
	}()
}

// startFlusher starts the flusher, once; serve's own.
func (s *session) startFlusher() {
	if s.flushing {
		return
	}
	s.flushing = true
	s.wg.Add(1)
	s.c.running.flushers.Add(1)
	go s.flush() // owned by serve: ends on stopFlush or a write error
}

func (s *session) flush() {
	defer s.wg.Done()
	defer s.c.running.flushers.Add(-1)
	defer close(s.flushDone)
	ss, err := s.tc.OpenUniStream(s.c.ctx)
	if err != nil {
		s.fail(err)
		return
	}
	if s.announceData {
		ss = &announcingStream{SendStream: ss, mu: &s.ctrlMu, ctrl: s.ctrl, timeout: DefaultHandshakeTimeout}
	}
	s.ss = ss // read by serve after flushDone
	if _, err := s.c.out.flush(ss, s.stopFlush, s.drain, nil); err != nil {
		s.fail(err)
	}
}

func (s *session) readData() error {
	c := s.c
	locked := false // c.handleMu, held across a batch of frames
	return readDataStream(c.ctx, s.tc, c.opts.maxFrame+frame.MaxEnvelope, func(d *frame.Data, _ int, _ bool) error {
		if err := c.ctx.Err(); err != nil {
			// Closed: frames still buffered here are not handed to the
			// handler, so Close waits for at most the call in progress
			// (it already gave queued frames a bounded chance to drain).
			return err
		}
		if !locked {
			c.handleMu.Lock()
			locked = true
		}
		c.onData(d)
		return nil
	}, func() error {
		if locked {
			c.handleMu.Unlock()
			locked = false
		}
		return nil
	})
}

// readDatagrams hands the zipper's datagrams to the client as they come;
// only a malformed one ends the session.
func (s *session) readDatagrams() {
	defer s.wg.Done()
	c := s.c
	err := readDatagrams(c.ctx, s.tc, c.opts.maxFrame, &c.dgram, func(d *frame.Data) error {
		if err := c.ctx.Err(); err != nil {
			return nil // closed: see readData
		}
		c.handle(d)
		return nil
	})
	if err != nil {
		s.fail(err)
	}
}

// handle hands a frame to onData, one frame at a time: the handler's
// calls do not overlap whether frames come on the stream or in datagrams.
// (The data stream's reader holds handleMu across a batch of frames:
// readData.)
func (c *client) handle(d *frame.Data) {
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	c.onData(d)
}

func (s *session) readControl() {
	defer s.wg.Done()
	err := readControlStream(s.ctrlRd, func(t frame.Type, body []byte) error {
		switch t {
		case frame.TypeGoAway:
			// Go on reading: the zipper's last Custody comes after it.
			s.goawayOnce.Do(func() { close(s.goaway) })
			return nil
		case frame.TypeCustody:
			v, err := decodeControl(t, body)
			if err != nil {
				return err
			}
			s.c.out.release(s.acked + v.(*frame.Custody).Frames)
			return nil
		case frame.TypePing:
			v, err := decodeControl(t, body)
			if err != nil {
				return err
			}
			return writeControlOn(&s.ctrlMu, s.ctrl, frame.AppendPing(nil, v.(*frame.Ping).Value, true), DefaultHandshakeTimeout)
		case frame.TypePong:
			return nil
		case frame.TypeDataStream:
			if !s.lazyData || s.dataOn {
				return &protocolError{msg: "unexpected data-stream frame: the zipper's data stream was not to be announced, or was already"}
			}
			s.dataOn = true
			s.startDataReader() // this goroutine is counted in s.wg: the Add is safe while serve waits
			return nil
		case frame.TypeDropped:
			v, err := decodeControl(t, body)
			if err != nil {
				return err
			}
			d := v.(*frame.Dropped)
			s.c.report(&DroppedError{Count: d.Count, Total: d.Total})
			return nil
		case frame.TypeSubscribed:
			v, err := decodeControl(t, body)
			if err != nil {
				return err
			}
			a := v.(*frame.Subscribed)
			s.c.mu.Lock()
			ch := s.c.subWait[a.Seq]
			delete(s.c.subWait, a.Seq)
			s.c.mu.Unlock()
			if ch != nil {
				ch <- a.Error
			} else if a.Error != "" {
				s.c.report(fmt.Errorf("yomo: the zipper refused the subscription: %s", a.Error))
			}
			return nil
		case frame.TypeFlushed:
			v, err := decodeControl(t, body)
			if err != nil {
				return err
			}
			s.flushMu.Lock()
			s.flushedN = max(s.flushedN, v.(*frame.Flushed).Frames)
			close(s.flushCh)
			s.flushCh = make(chan struct{})
			s.flushMu.Unlock()
			return nil
		}
		return &protocolError{msg: "unexpected " + t.String() + " frame on the control stream"}
	})
	s.fail(err)
}

// migrate moves the live connection to the local socket pc.
func (c *client) migrate(ctx context.Context, pc net.PacketConn) error {
	s := c.sess.Load()
	if s == nil {
		pc.Close()
		if err := c.checkWritable(); err != nil {
			return err
		}
		return ErrNotConnected
	}
	m, ok := s.tc.(transport.Migrator)
	if !ok {
		pc.Close()
		return ErrMigrationUnsupported
	}
	return m.Migrate(ctx, pc)
}

// resubscribe tells the zipper the tags and target as they are now and
// waits for its answer, when connected; otherwise the next handshake
// carries them. A refusal is returned (the previous subscription holds at
// the zipper).
func (c *client) resubscribe() error {
	s := c.sess.Load()
	if s == nil {
		return nil
	}
	ch := make(chan string, 1)
	if err := c.sendSubscribe(s, ch); err != nil {
		return err
	}
	t := time.NewTimer(DefaultHandshakeTimeout)
	defer t.Stop()
	select {
	case reason := <-ch:
		if reason != "" {
			return fmt.Errorf("yomo: the zipper refused the subscription: %s", reason)
		}
		return nil
	case <-s.ended:
		return nil // the next connection's handshake carries it
	case <-t.C:
		return fmt.Errorf("yomo: no answer to a subscription within %v", DefaultHandshakeTimeout)
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// sendSubscribe writes a Subscribe with the current tags and target on s;
// ch, when not nil, gets the zipper's answer.
func (c *client) sendSubscribe(s *session, ch chan string) error {
	c.mu.Lock()
	c.subSeq++
	seq := c.subSeq
	sub := &frame.Subscribe{Seq: seq, ObserveTags: c.tags, WantedTarget: c.target}
	if ch != nil {
		if c.subWait == nil {
			c.subWait = make(map[uint64]chan string)
		}
		c.subWait[seq] = ch
	}
	c.hsVer = c.subVer
	c.mu.Unlock()
	b, err := frame.AppendControl(nil, sub)
	if err == nil {
		err = writeControlOn(&s.ctrlMu, s.ctrl, b, DefaultHandshakeTimeout)
	}
	if err != nil {
		c.mu.Lock()
		delete(c.subWait, seq)
		c.mu.Unlock()
	}
	return err
}

// flush returns once the zipper has read every frame queued before the
// call, or with ctx's error. When the connection is replaced meanwhile it
// goes on with the next one, where the rest of the queue is sent; frames
// that were on the wire of the lost connection may have been lost.
func (c *client) flush(ctx context.Context) error {
	for {
		if err := c.checkWritable(); err != nil {
			return err
		}
		s := c.sess.Load()
		if s == nil {
			// Between connections: wait for the next one.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue
		}
		select {
		case <-s.started:
		case <-s.ended:
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		want := c.out.mark() - s.base
		if want == 0 {
			return nil
		}
		b, _ := frame.AppendControl(nil, &frame.Flush{Frames: want})
		if err := writeControlOn(&s.ctrlMu, s.ctrl, b, DefaultHandshakeTimeout); err != nil {
			continue // the session is ending; try the next
		}
		for {
			s.flushMu.Lock()
			done, wake := s.flushedN >= want, s.flushCh
			s.flushMu.Unlock()
			if done {
				return nil
			}
			select {
			case <-wake:
			case <-s.ended:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-s.ended:
			default:
				continue
			}
			break
		}
	}
}

// write queues a data frame, waiting up to the write timeout for room.
// A frame of a datagram tag goes to the live connection's datagram queue
// instead, which never waits.
func (c *client) write(d *frame.Data) error {
	limit := c.opts.maxFrame
	if zm := int(c.zipperMax.Load()); zm > 0 && zm < limit {
		limit = zm // the zipper would close the connection over it
	}
	if n := len(d.Payload); n > limit {
		return &frame.SizeError{Type: frame.TypeData, Size: n, Max: limit}
	}
	if d.Datagram {
		return c.writeDatagram(d)
	}
	if n := frame.EnvelopeSize(d); n > frame.MaxEnvelope {
		return fmt.Errorf("yomo: target, key and metadata of %d bytes: %w", n,
			&frame.SizeError{Type: frame.TypeData, Size: n, Max: frame.MaxEnvelope})
	}
	if rej := c.final.Load(); rej != nil {
		return rej
	}
	if c.out.put(d, Block, c.ctx.Done(), c.opts.writeTimeout, 0) {
		return nil
	}
	if rej := c.final.Load(); rej != nil {
		return rej
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	return ErrWriteTimeout
}

// writeDatagram queues d to be sent in a datagram, or drops and counts
// it when there is no connection (it would not be sent before the frames
// written after it) or the queue is full.
func (c *client) writeDatagram(d *frame.Data) error {
	if n := frame.DataSize(d); n > MaxDatagramFrame {
		return &DatagramTooLargeError{Tag: d.Tag, Size: n, Max: MaxDatagramFrame}
	}
	if rej := c.final.Load(); rej != nil {
		return rej
	}
	s := c.sess.Load()
	if s == nil || s.dg == nil {
		c.dgram.noConn.Add(1)
		return nil
	}
	s.dg.put(d, 0)
	return nil
}

// isDatagramTag reports whether the client writes tag in datagrams
// (WithDatagramTags).
func (c *client) isDatagramTag(tag Tag) bool {
	_, ok := c.opts.datagramTags[tag]
	return ok
}

// checkWritable returns ErrNotConnected before Connect succeeded,
// ErrClosed after Close, and the rejection after a final one. It takes no
// lock: it runs for every write.
func (c *client) checkWritable() error {
	switch c.state() {
	case StateConnected, StateReconnecting:
		return nil
	case StateClosed:
		return ErrClosed
	case StateRejected:
		return c.final.Load()
	}
	return ErrNotConnected
}

func (c *client) close() error {
	c.mu.Lock()
	prev := c.state()
	if prev == StateClosed {
		c.mu.Unlock()
		return nil
	}
	c.setState(StateClosed, nil)
	c.mu.Unlock()
	c.notify()
	if prev == StateConnected && c.sess.Load() != nil {
		// (Reconnecting, there is no connection to flush to: Close does
		// not wait for one.)
		// Ask the connection loop to send what is queued, finish the data
		// stream and wait (bounded) for the zipper to finish its own.
		close(c.closing)
		t := time.NewTimer(closeFlushTimeout)
		select {
		case <-c.loopDone:
		case <-t.C:
		}
		t.Stop()
	}
	c.cancel()
	c.out.close()
	c.wg.Wait()
	return nil
}

// closeFlushTimeout bounds how long Close waits for queued frames to be
// sent and the zipper to confirm.
const closeFlushTimeout = 2 * time.Second

// recovered turns a handler panic into an error for the error handler.
// It runs in the deferred function that recovered, so the stack is the
// panicking goroutine's.
func (c *client) recovered(v any) {
	c.report(&PanicError{Value: v, Stack: debug.Stack()})
}

// PanicError reports a handler that panicked: a StreamFunction's handler
// or a Source's receive handler. The client goes on with the next frames.
type PanicError struct {
	Value any    // what the handler panicked with
	Stack []byte // the goroutine's stack at the panic (runtime/debug.Stack)
}

func (e *PanicError) Error() string { return fmt.Sprintf("yomo: handler panicked: %v", e.Value) }
