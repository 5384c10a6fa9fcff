package yomo_test

// Helpers shared by the package's black-box tests: zippers served for one
// test (over QUIC on 127.0.0.1 or in memory), clients, waiting on
// conditions, recording what handlers see, and the pipeline that hostile
// tests attack.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// eventually polls cond until it holds or the deadline passes. In a
// synctest bubble the deadline is in the bubble's simulated time.
func eventually(t testing.TB, d time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			// describe runs now, so the message shows the state at the
			// deadline, not the state when the wait began.
			t.Fatalf("condition not met within %v: %s", d, describe())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// transportKind is the way clients reach a test zipper.
type transportKind int

const (
	quicTransport transportKind = iota // QUIC on 127.0.0.1, TLS verified
	memTransport                       // in memory (yomo.WithInMemory), no socket
)

func (k transportKind) String() string {
	if k == memTransport {
		return "mem"
	}
	return "quic"
}

// run runs body once per transport, as parallel subtests named "quic" and
// "mem". The in-memory run is inside a synctest bubble: no network, and
// time is simulated, so timers (handshake timeouts, stall timeouts, drop
// reports, backoffs) fire as soon as every goroutine of the test waits.
func run(t *testing.T, body func(t *testing.T, tr transportKind)) {
	t.Helper()
	runOn(t, true, body)
}

// runQUICAlone is run for a body that asserts no function that keeps up is
// taken for stalled: a QUIC run starved of CPU by parallel tests can make
// one look stalled for the stall timeout (250 ms), so the QUIC run is not
// parallel (its test must not be either). The in-memory run, in simulated
// time, cannot be starved into a stall.
func runQUICAlone(t *testing.T, body func(t *testing.T, tr transportKind)) {
	t.Helper()
	runOn(t, false, body)
}

func runOn(t *testing.T, parallelQUIC bool, body func(t *testing.T, tr transportKind)) {
	t.Helper()
	for _, tr := range []transportKind{quicTransport, memTransport} {
		t.Run(tr.String(), func(t *testing.T) {
			if tr == memTransport {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) { body(t, tr) })
				return
			}
			if parallelQUIC {
				t.Parallel()
			}
			body(t, tr)
		})
	}
}

// testZipper is a zipper serving one test.
type testZipper struct {
	*yomo.Zipper
	addr    string              // what clients dial
	clients []yomo.ClientOption // what clients need to reach it
	served  chan error          // Serve's result; nil in memory
	stopped bool
}

// newZipper returns a zipper for a test over transport tr: served on
// 127.0.0.1 (startZipper), or, in memory, not serving at all (its clients
// connect WithInMemory). It is closed when the test ends.
func newZipper(t testing.TB, tr transportKind, opts ...yomo.ZipperOption) *testZipper {
	t.Helper()
	if tr == quicTransport {
		return startZipper(t, "", opts...)
	}
	z, err := yomo.NewZipper("test-zipper", opts...)
	if err != nil {
		t.Fatal(err)
	}
	tz := &testZipper{Zipper: z, addr: "mem", clients: []yomo.ClientOption{yomo.WithInMemory(z)}}
	t.Cleanup(func() { tz.stop(t) })
	return tz
}

// startZipper serves a zipper on 127.0.0.1:0 (or addr) until the test ends.
func startZipper(t testing.TB, addr string, opts ...yomo.ZipperOption) *testZipper {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	z, err := yomo.NewZipper("test-zipper", opts...)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tz := &testZipper{Zipper: z, addr: pc.LocalAddr().String(), served: make(chan error, 1)}
	tz.clients = []yomo.ClientOption{yomo.WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()})}
	go func() { tz.served <- z.Serve(context.Background(), pc) }() // owned by the test: ends on Close
	t.Cleanup(func() { tz.stop(t) })
	return tz
}

// stop closes the zipper and checks that Serve returned ErrClosed. It may
// be called again (by the test's cleanup).
func (tz *testZipper) stop(t testing.TB) {
	t.Helper()
	if tz.stopped {
		return
	}
	tz.stopped = true
	tz.Close()
	if tz.served == nil {
		return
	}
	select {
	case err := <-tz.served:
		if !errors.Is(err, yomo.ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return after Close")
	}
}

// sharedCert returns a self-signed certificate as the option for zippers
// that present it and the option for clients that trust it.
func sharedCert(t testing.TB) (server yomo.ZipperOption, client yomo.ClientOption) {
	t.Helper()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	return yomo.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}), yomo.WithTLSConfig(&tls.Config{RootCAs: pool})
}

// restartableZipper serves a zipper on 127.0.0.1 with a certificate of the
// test's own, which clients trust with the option trust. restart serves a
// new zipper (with opts) on the same address and certificate, once the
// test has stopped or shut down the first; clients reconnect to it.
func restartableZipper(t testing.TB) (tz *testZipper, trust yomo.ClientOption, restart func(opts ...yomo.ZipperOption) *testZipper) {
	t.Helper()
	cert, trust := sharedCert(t)
	tz = startZipper(t, "", cert)
	return tz, trust, func(opts ...yomo.ZipperOption) *testZipper {
		t.Helper()
		z2 := startZipper(t, tz.addr, append([]yomo.ZipperOption{cert}, opts...)...)
		z2.clients = []yomo.ClientOption{trust}
		return z2
	}
}

func mustPacketConn(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// fakeZipper listens on 127.0.0.1 with a new self-signed certificate, for
// a test that plays the zipper itself; it returns the listener, its
// address and the client option that trusts it. Cleanup closes both.
func fakeZipper(t *testing.T) (ln transport.Listener, addr string, trust yomo.ClientOption) {
	t.Helper()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pc := mustPacketConn(t)
	ln, err = transport.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}}, transport.QUICConfig{})
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		pc.Close()
	})
	return ln, pc.LocalAddr().String(), yomo.WithTLSConfig(&tls.Config{RootCAs: pool})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newFn returns a function with handler h, closed when the test ends.
func newFn(t testing.TB, tz *testZipper, name string, opts []yomo.ClientOption, tags []yomo.Tag, h yomo.Handler) *yomo.StreamFunction {
	t.Helper()
	f := yomo.NewStreamFunction(name, tz.addr, opts...)
	f.SetObserveDataTags(tags...)
	if err := f.SetHandler(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// connectFn is newFn, connected.
func connectFn(t testing.TB, tz *testZipper, name string, opts []yomo.ClientOption, tags []yomo.Tag, h yomo.Handler) *yomo.StreamFunction {
	t.Helper()
	f := newFn(t, tz, name, opts, tags, h)
	if err := f.Connect(ctxT(t)); err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return f
}

// newSource returns a source observing observe (backflow), closed when the
// test ends; it is not connected yet.
func newSource(t testing.TB, tz *testZipper, name string, opts []yomo.ClientOption, observe ...yomo.Tag) *yomo.Source {
	t.Helper()
	s := yomo.NewSource(name, tz.addr, opts...)
	s.SetObserveDataTags(observe...)
	t.Cleanup(func() { s.Close() })
	return s
}

// connectSource is newSource, connected.
func connectSource(t testing.TB, tz *testZipper, name string, opts []yomo.ClientOption, observe ...yomo.Tag) *yomo.Source {
	t.Helper()
	s := newSource(t, tz, name, opts, observe...)
	if err := s.Connect(ctxT(t)); err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return s
}

// recorder collects frames a handler sees.
type recorder struct {
	mu     sync.Mutex
	frames []rec
}

type rec struct {
	tag  yomo.Tag
	data string
}

func (r *recorder) add(tag yomo.Tag, data []byte) {
	r.mu.Lock()
	r.frames = append(r.frames, rec{tag, string(data)})
	r.mu.Unlock()
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

func (r *recorder) snapshot() []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rec(nil), r.frames...)
}

// errs collects errors reported to an error handler.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) find(match func(error) bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.list {
		if match(err) {
			return true
		}
	}
	return false
}

// String lists the errors, for failure messages.
func (e *errs) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprint(e.list)
}

// syncBuffer is a buffer a logger writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const pipelineTag yomo.Tag = 0x70

// pipeline is a source writing pipelineTag continuously to a function.
type pipeline struct {
	got, wrote atomic.Int64
	werr       atomic.Pointer[error] // first write error
	errs       errs                  // errors reported to the pipeline's clients
	stop       chan struct{}
	done       chan struct{}
}

// startPipeline connects the pipeline with opts and starts writing; it
// stops when the test ends.
func startPipeline(t *testing.T, tz *testZipper, opts []yomo.ClientOption) *pipeline {
	t.Helper()
	p := &pipeline{stop: make(chan struct{}), done: make(chan struct{})}
	f := newFn(t, tz, "pipeline-sink", opts, []yomo.Tag{pipelineTag}, func(ctx yomo.Context) { p.got.Add(1) })
	f.SetErrorHandler(p.errs.add)
	if err := f.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	src := newSource(t, tz, "pipeline-src", opts)
	src.SetErrorHandler(p.errs.add)
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	go func() { // owned by the test: ends at cleanup, before the clients close
		defer close(p.done)
		payload := []byte("pipeline payload")
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			if err := src.Write(pipelineTag, payload); err != nil {
				p.werr.CompareAndSwap(nil, &err)
			}
			p.wrote.Add(1)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	t.Cleanup(func() {
		close(p.stop)
		<-p.done
	})
	eventually(t, 5*time.Second, func() bool { return p.got.Load() > 10 }, func() string { return "pipeline does not deliver" })
	return p
}

// pipelineZipper serves a zipper on 127.0.0.1 with a pipeline running
// over QUIC: what hostile tests attack.
func pipelineZipper(t *testing.T, opts ...yomo.ZipperOption) (*testZipper, *pipeline) {
	t.Helper()
	tz := startZipper(t, "", opts...)
	return tz, startPipeline(t, tz, tz.clients)
}

// check asserts the pipeline delivers now and saw no error.
func (p *pipeline) check(t *testing.T) {
	t.Helper()
	n := p.got.Load()
	eventually(t, 5*time.Second, func() bool { return p.got.Load() >= n+50 }, func() string { return fmt.Sprintf("pipeline stopped delivering at %d", n) })
	if e := p.werr.Load(); e != nil {
		t.Fatalf("pipeline write failed: %v", *e)
	}
	p.errs.mu.Lock()
	defer p.errs.mu.Unlock()
	if len(p.errs.list) > 0 {
		t.Fatalf("pipeline clients reported errors: %v", p.errs.list)
	}
}

// during runs attack while checking that the pipeline keeps delivering
// meanwhile, then checks it afterwards.
func (p *pipeline) during(t *testing.T, attack func()) {
	t.Helper()
	before := p.got.Load()
	attack()
	if p.got.Load() == before {
		// The attack may have been quick; make sure nothing is stuck.
		eventually(t, 5*time.Second, func() bool { return p.got.Load() > before }, func() string { return "no delivery during the attack" })
	}
	p.check(t)
}

// rawConn opens a QUIC connection to tz that speaks yomo's ALPN but not
// the protocol: the test writes what it wants.
func rawConn(t *testing.T, tz *testZipper) transport.Conn {
	t.Helper()
	tc, err := transport.Dial(ctxT(t), tz.addr, &tls.Config{RootCAs: tz.RootCAs()}, transport.QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.CloseWithError(0, "") })
	return tc
}

// handshaken dials tz over QUIC, sends the handshake frame hs on a
// control stream and waits for HandshakeAck; it returns the connection
// and its control stream.
func handshaken(t *testing.T, tz *testZipper, hs []byte) (transport.Conn, transport.Stream) {
	t.Helper()
	c, st, _ := handshakenAck(t, tz, hs)
	return c, st
}

// handshakenAck is handshaken, returning the HandshakeAck too.
func handshakenAck(t *testing.T, tz *testZipper, hs []byte) (transport.Conn, transport.Stream, *frame.HandshakeAck) {
	t.Helper()
	c := rawConn(t, tz)
	st, err := c.OpenStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(hs); err != nil {
		t.Fatal(err)
	}
	return c, st, nextControl(t, st, frame.TypeHandshakeAck).(*frame.HandshakeAck)
}

// nextControl reads the next frame on the control stream st, which must
// be of type want, and returns its decoded value.
func nextControl(t *testing.T, st io.Reader, want frame.Type) any {
	t.Helper()
	ft, body, err := frame.NewReader(st, frame.MaxControlSize).Next()
	if err != nil || ft != want {
		t.Fatalf("control stream: %v %v; want %v", ft, err, want)
	}
	v, err := frame.DecodeControl(ft, body)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rejectsControl writes the control frame b on ctrl, tc's control stream,
// and fails unless the zipper then closes tc as a protocol error whose
// reason contains word, within 5 s.
func rejectsControl(t *testing.T, tc transport.Conn, ctrl transport.Stream, b []byte, word string) {
	t.Helper()
	if _, err := ctrl.Write(b); err != nil {
		t.Fatal(err)
	}
	if ce := closeErrorOf(t, tc, 5*time.Second); ce.Code != yomo.CloseProtocolForTest || !strings.Contains(ce.Reason, word) {
		t.Fatalf("closed with %#x %q, want a protocol error about %s", ce.Code, ce.Reason, word)
	}
}

// closeErrorOf waits until tc is closed and returns how.
func closeErrorOf(t *testing.T, tc transport.Conn, within time.Duration) *transport.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, err := tc.AcceptStream(ctx)
	var ce *transport.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("connection not closed with a reason within %v: %v", within, err)
	}
	return ce
}
