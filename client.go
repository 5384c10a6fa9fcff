package yomo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// client is the connection machinery shared by Source and StreamFunction:
// dial and handshake, a bounded write queue that survives reconnects, the
// read loop, and reconnection with backoff and jitter.
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

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the connection loop

	mu         sync.Mutex
	state      clientState
	tags       []Tag
	target     string
	errHandler func(error)
	onData     func(d *frame.Data) // called on the read goroutine, in order

	final  atomic.Pointer[RejectedError] // set when rejected: final
	connID atomic.Uint64
	ready  atomic.Bool // connected now

	pubState  atomic.Int32 // state, readable without c.mu
	zipperMax atomic.Int64 // the zipper's data frame limit (HandshakeAck); 0 before the first

	closing     chan struct{} // closed by Close: flush and finish
	flushed     chan struct{} // closed by the loop when the flush finished
	flushedOnce sync.Once
	loopDone    chan struct{} // closed when the connection loop returned
	reportMu    sync.Mutex    // serialises error handler calls
}

type clientState int

const (
	stateIdle clientState = iota
	stateConnecting
	stateConnected
	stateClosed
)

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
	c.flushed = make(chan struct{})
	c.loopDone = make(chan struct{})
	return c
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
var errGoAway = errors.New("yomo: zipper sent goaway")

func (c *client) setTags(tags []Tag) {
	c.mu.Lock()
	c.tags = append([]Tag(nil), tags...)
	c.mu.Unlock()
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
	switch c.state {
	case stateClosed:
		c.mu.Unlock()
		return ErrClosed
	case stateConnecting, stateConnected:
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
	c.setState(stateConnecting)
	hs := c.handshake()
	c.mu.Unlock()

	// Try each address in turn; a rejection is final.
	var cc *cconn
	var err error
	for i := range c.addrs {
		c.cur = i
		if cc, err = c.dial(ctx, hs); err == nil || ctx.Err() != nil {
			break
		}
		var rej *RejectedError
		if errors.As(err, &rej) {
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.state == stateConnecting {
			c.setState(stateIdle)
		}
		return err
	}
	if c.state == stateClosed {
		cc.tc.CloseWithError(uint64(frame.CloseNormal), "client closed")
		return ErrClosed
	}
	c.setState(stateConnected)
	c.wg.Add(1)
	go c.loop(cc, hs) // owned by c: ends when Close cancels c.ctx or on rejection
	return nil
}

func (c *client) handshake() *frame.Handshake {
	return &frame.Handshake{
		Version:      frame.ProtocolVersion,
		Name:         c.name,
		Kind:         c.kind,
		ID:           c.id,
		ObserveTags:  c.tags,
		WantedTarget: c.target,
		Credential:   c.opts.credential,
		MaxFrameSize: uint32(c.opts.maxFrame),
	}
}

func (c *client) tlsConfig() *tls.Config {
	var t *tls.Config
	if c.opts.tls != nil {
		t = c.opts.tls.Clone()
	} else {
		t = &tls.Config{}
	}
	if c.opts.insecure {
		t.InsecureSkipVerify = true
	}
	return t
}

// cconn is one live connection of a client.
type cconn struct {
	tc   transport.Conn
	ctrl transport.Stream
	rd   *frame.Reader
}

// dial connects and performs the handshake. A refusal is a *RejectedError.
func (c *client) dial(ctx context.Context, hs *frame.Handshake) (*cconn, error) {
	var tc transport.Conn
	var err error
	if c.opts.inMemory != nil {
		tc, err = c.opts.inMemory.dialMem(c.name)
	} else {
		if c.opts.insecure {
			c.log.Warn("INSECURE: the zipper's certificate is not verified")
		}
		tc, err = transport.Dial(ctx, c.addrs[c.cur], c.tlsConfig(), transport.QUICConfig{})
	}
	if err != nil {
		return nil, fmt.Errorf("yomo: connect %s: %w", c.addrs[c.cur], err)
	}
	st, rd, ack, err := handshakeOn(ctx, tc, hs, DefaultHandshakeTimeout)
	if err != nil {
		return nil, err
	}
	c.connID.Store(ack.ConnID)
	c.zipperMax.Store(int64(ack.MaxFrameSize))
	c.log.Debug("connected", "zipper", ack.Zipper, "conn", ack.ConnID)
	return &cconn{tc: tc, ctrl: st, rd: rd}, nil
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

// loop serves connections until Close, reconnecting with backoff.
func (c *client) loop(cc *cconn, hs *frame.Handshake) {
	defer c.wg.Done()
	defer close(c.loopDone)
	for {
		c.ready.Store(true)
		err := c.serve(cc)
		c.ready.Store(false)
		if c.ctx.Err() != nil || c.isClosing() {
			return
		}
		if rej, ok := rejectedFromClose(err); ok && rej.Code != frame.RejectShutdown {
			// The zipper ended the connection with a rejection (a write
			// its ACL denies): final, like a refused handshake.
			c.final.Store(rej)
			c.out.close()
			c.report(rej)
			return
		}
		if errors.Is(err, errGoAway) {
			c.log.Info("zipper asked to reconnect")
			c.cur = (c.cur + 1) % len(c.addrs) // to another zipper, if given several
		} else {
			c.report(fmt.Errorf("yomo: connection lost: %w", err))
		}
		hs.Resumed = true // only this goroutine uses hs from now on
		for attempt := 0; ; attempt++ {
			if !c.sleep(c.backoff(attempt)) {
				return
			}
			cc, err = c.dial(c.ctx, hs)
			if err == nil {
				break
			}
			c.cur = (c.cur + 1) % len(c.addrs)
			var rej *RejectedError
			if errors.As(err, &rej) && rej.Code != frame.RejectShutdown {
				c.final.Store(rej)
				c.out.close()
				c.report(rej)
				return
			}
			if c.ctx.Err() != nil {
				return
			}
			c.log.Debug("reconnect failed", "attempt", attempt+1, "err", err)
		}
	}
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

// serve runs one connection until it fails, the client is closed, or the
// zipper sent GOAWAY and finished sending (then it returns errGoAway).
//
// On GOAWAY the client stops sending on this connection: the frame batch
// being written completes, the data stream is finished, and everything
// queued afterwards stays queued for the next connection. It keeps
// receiving until the zipper finishes its own data stream, so frames the
// zipper still delivers are handled, then it closes the connection.
func (c *client) serve(cc *cconn) error {
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	stopFlush := make(chan struct{})
	drainFlush := make(chan struct{})
	flushDone := make(chan struct{})
	goaway := make(chan struct{})
	closing := c.closing
	closingNow := false
	var ss transport.SendStream
	wg.Add(3)
	go func() { // owned by serve: ends on stopFlush or a write error
		defer wg.Done()
		defer close(flushDone)
		var err error
		if ss, err = cc.tc.OpenUniStream(c.ctx); err != nil {
			errc <- err
			return
		}
		if _, err = c.out.flush(ss, stopFlush, drainFlush, nil); err != nil {
			errc <- err
		}
	}()
	go func() { // owned by serve: ends when the zipper's data stream or cc.tc ends
		defer wg.Done()
		errc <- c.readData(cc)
	}()
	go func() { // owned by serve: ends on GOAWAY or when cc.tc closes
		defer wg.Done()
		err := c.readControl(cc)
		if errors.Is(err, errGoAway) {
			close(goaway)
			return
		}
		errc <- err
	}()
	var err error
	sawGoAway := false
	flushStopped := false
wait:
	for {
		select {
		case err = <-errc:
			break wait
		case <-goaway:
			goaway = nil
			sawGoAway = true
			close(stopFlush)
			flushStopped = true
			<-flushDone
			if ss != nil {
				ss.Close() // FIN: the zipper has everything we sent
			}
		case <-closing:
			// Close: write out what is queued, finish our stream, and
			// wait (bounded by Close) for the zipper to finish its own.
			closing = nil
			closingNow = true
			close(drainFlush)
			<-flushDone
			flushStopped = true
			if ss != nil {
				ss.Close()
			}
		case <-c.ctx.Done():
			err = ErrClosed
			break wait
		}
	}
	if closingNow {
		c.flushedOnce.Do(func() { close(c.flushed) })
	}
	if !flushStopped {
		close(stopFlush)
	}
	cc.tc.CloseWithError(uint64(frame.CloseNormal), "")
	wg.Wait()
	if sawGoAway {
		return errGoAway
	}
	if err == nil {
		err = io.EOF
	}
	return err
}

func (c *client) readData(cc *cconn) error {
	rs, err := cc.tc.AcceptUniStream(c.ctx)
	if err != nil {
		return err
	}
	rd := frame.NewReader(rs, c.opts.maxFrame)
	var d frame.Data
	for {
		t, body, err := rd.Next()
		if err != nil {
			return err
		}
		if t != frame.TypeData {
			return fmt.Errorf("yomo: protocol: unexpected %s frame on the data stream", t)
		}
		if err := d.Decode(body); err != nil {
			return err
		}
		if err := c.ctx.Err(); err != nil {
			// Closed: frames still buffered here are not handed to the
			// handler, so Close waits for at most the call in progress
			// (it already gave queued frames a bounded chance to drain).
			return err
		}
		c.onData(&d)
	}
}

func (c *client) readControl(cc *cconn) error {
	for {
		t, body, err := cc.rd.Next()
		if err != nil {
			return err
		}
		switch t {
		case frame.TypeGoAway:
			return errGoAway
		case frame.TypePing:
			v, err := frame.DecodeControl(t, body)
			if err != nil {
				return err
			}
			if _, err := cc.ctrl.Write(frame.AppendPing(nil, v.(*frame.Ping).Value, true)); err != nil {
				return err
			}
		case frame.TypePong:
		case frame.TypeDropped:
			v, err := frame.DecodeControl(t, body)
			if err != nil {
				return err
			}
			d := v.(*frame.Dropped)
			c.report(&DroppedError{Count: d.Count, Total: d.Total})
		default:
			return fmt.Errorf("yomo: protocol: unexpected %s frame on the control stream", t)
		}
	}
}

// write queues a data frame, waiting up to the write timeout for room.
func (c *client) write(d *frame.Data) error {
	limit := c.opts.maxFrame
	if zm := int(c.zipperMax.Load()); zm > 0 && zm < limit {
		limit = zm // the zipper would close the connection over it
	}
	if n := frame.DataSize(d); n > limit {
		return &frame.SizeError{Type: frame.TypeData, Size: n, Max: limit}
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

// checkWritable returns ErrNotConnected before Connect succeeded and
// ErrClosed after Close. It takes no lock: it runs for every write.
func (c *client) checkWritable() error {
	switch clientState(c.pubState.Load()) {
	case stateConnected:
		return nil
	case stateClosed:
		return ErrClosed
	}
	return ErrNotConnected
}

// setState changes the state; c.mu is held.
func (c *client) setState(s clientState) {
	c.state = s
	c.pubState.Store(int32(s))
}

func (c *client) close() error {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return nil
	}
	connected := c.state == stateConnected
	c.setState(stateClosed)
	c.mu.Unlock()
	if connected {
		// Ask the connection loop to send what is queued, finish the data
		// stream and wait (bounded) for the zipper to finish its own.
		close(c.closing)
		t := time.NewTimer(closeFlushTimeout)
		select {
		case <-c.flushed:
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
func (c *client) recovered(v any) {
	c.report(&PanicError{Value: v})
}

// PanicError reports a handler that panicked: a StreamFunction's handler
// or a Source's receive handler. The client goes on with the next frames.
type PanicError struct {
	Value any // what the handler panicked with
}

func (e *PanicError) Error() string { return fmt.Sprintf("yomo: handler panicked: %v", e.Value) }
