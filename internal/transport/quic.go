package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN is the TLS application protocol of yomo over QUIC. Listen and Dial
// always negotiate exactly this protocol; a peer offering anything else fails
// the handshake.
const ALPN = "yomo/1"

// Defaults used for the zero value of the QUICConfig fields.
const (
	defaultHandshakeTimeout               = 5 * time.Second
	defaultIdleTimeout                    = 15 * time.Second
	defaultKeepAlivePeriod                = 5 * time.Second
	defaultStreamReceiveWindow            = 16 << 20 // 16 MiB
	defaultConnectionReceiveWindow        = 32 << 20 // 32 MiB
	defaultInitialStreamReceiveWindow     = 2 << 20  // 2 MiB
	defaultInitialConnectionReceiveWindow = 4 << 20  // 4 MiB
	defaultMaxIncomingStreams             = 100
	defaultMaxIncomingUniStreams          = 100
	defaultAcceptBacklog                  = 1024
)

// QUICConfig tunes the QUIC transport. The zero value of every field selects
// the documented default, so QUICConfig{} is a good configuration for a
// message router on loopback as well as over a WAN.
type QUICConfig struct {
	// HandshakeTimeout bounds connection establishment. Dial gives up after
	// this long. On both sides the handshake is also aborted when no packet
	// arrives from the peer for this long (QUIC's handshake idle timeout; in
	// that mode the whole handshake may take up to twice this value on the
	// listening side). Default 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes the connection after this long without any packet
	// from the peer. The effective value is the smaller of the two peers'
	// values. Default 15s.
	IdleTimeout time.Duration
	// KeepAlivePeriod is how often a PING is sent on an otherwise silent
	// connection, so that it does not hit the idle timeout (QUIC caps it at
	// half the effective idle timeout). Default 5s; a negative value disables
	// keep-alives.
	KeepAlivePeriod time.Duration
	// StreamReceiveWindow is the maximum per-stream receive window, in bytes:
	// how much a peer may send on one stream ahead of our reads. The window
	// starts at min(2 MiB, StreamReceiveWindow) and is auto-tuned up to this
	// value while the application keeps reading. Default 16 MiB.
	StreamReceiveWindow uint64
	// ConnectionReceiveWindow is the same limit summed over all streams of a
	// connection. It starts at min(4 MiB, ConnectionReceiveWindow).
	// Default 32 MiB.
	ConnectionReceiveWindow uint64
	// MaxIncomingStreams is how many bidirectional streams the peer may have
	// open at the same time; OpenStream blocks beyond that. A bidirectional
	// stream counts until both directions are finished (FIN or cancelled and
	// fully read). Default 100; a negative value forbids the peer to open any.
	MaxIncomingStreams int64
	// MaxIncomingUniStreams is the same for unidirectional streams.
	// Default 100; a negative value forbids the peer to open any.
	MaxIncomingUniStreams int64
	// AcceptBacklog bounds the connections a Listener holds that completed
	// the QUIC handshake and wait for Accept. quic-go itself queues at most
	// 32 and refuses more with CONNECTION_REFUSED; the Listener takes them
	// from that queue as soon as they arrive, so a burst of clients is only
	// refused when more than AcceptBacklog wait for a slow Accept loop
	// (those are closed with AcceptBacklogCode and a reason that says so).
	// Default 1024. Dial ignores it.
	AcceptBacklog int
	// AcceptBacklogCode is the code a Listener closes a connection with
	// when AcceptBacklog connections already wait for Accept (the code
	// space is the application's). Default 0.
	AcceptBacklogCode uint64
}

func (c QUICConfig) acceptBacklog() int {
	if c.AcceptBacklog > 0 {
		return c.AcceptBacklog
	}
	return defaultAcceptBacklog
}

func (c QUICConfig) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return defaultHandshakeTimeout
}

func (c QUICConfig) quicConfig() *quic.Config {
	qc := &quic.Config{
		HandshakeIdleTimeout:           c.handshakeTimeout(),
		MaxIdleTimeout:                 defaultIdleTimeout,
		KeepAlivePeriod:                defaultKeepAlivePeriod,
		MaxStreamReceiveWindow:         defaultStreamReceiveWindow,
		MaxConnectionReceiveWindow:     defaultConnectionReceiveWindow,
		MaxIncomingStreams:             defaultMaxIncomingStreams,
		MaxIncomingUniStreams:          defaultMaxIncomingUniStreams,
		InitialStreamReceiveWindow:     defaultInitialStreamReceiveWindow,
		InitialConnectionReceiveWindow: defaultInitialConnectionReceiveWindow,
		EnableDatagrams:                true,
	}
	if c.IdleTimeout > 0 {
		qc.MaxIdleTimeout = c.IdleTimeout
	}
	switch {
	case c.KeepAlivePeriod > 0:
		qc.KeepAlivePeriod = c.KeepAlivePeriod
	case c.KeepAlivePeriod < 0:
		qc.KeepAlivePeriod = 0 // disabled
	}
	if c.StreamReceiveWindow > 0 {
		qc.MaxStreamReceiveWindow = c.StreamReceiveWindow
	}
	if c.ConnectionReceiveWindow > 0 {
		qc.MaxConnectionReceiveWindow = c.ConnectionReceiveWindow
	}
	qc.InitialStreamReceiveWindow = min(qc.InitialStreamReceiveWindow, qc.MaxStreamReceiveWindow)
	qc.InitialConnectionReceiveWindow = min(qc.InitialConnectionReceiveWindow, qc.MaxConnectionReceiveWindow)
	if c.MaxIncomingStreams != 0 {
		qc.MaxIncomingStreams = c.MaxIncomingStreams
	}
	if c.MaxIncomingUniStreams != 0 {
		qc.MaxIncomingUniStreams = c.MaxIncomingUniStreams
	}
	return qc
}

// serverTLS returns a copy of conf restricted to our protocol.
func serverTLS(conf *tls.Config) *tls.Config {
	c := conf.Clone()
	c.NextProtos = []string{ALPN}
	c.MinVersion = tls.VersionTLS13
	if gcfc := c.GetConfigForClient; gcfc != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			nc, err := gcfc(hello)
			if err != nil || nc == nil {
				return nc, err
			}
			return serverTLS(nc), nil
		}
	}
	return c
}

// Listen accepts QUIC connections on pc, which the caller keeps owning:
// closing the Listener neither closes pc nor the connections already
// accepted. QUIC stops reading pc once the Listener is closed and all its
// accepted connections are done (immediately when the last one is closed
// with CloseWithError on this side, shortly after its Context is done when
// the peer closed it); pc can then be reused, for example by another Listen.
// quic-go may have tuned pc's socket options (buffer sizes, ECN, DF bit).
// The caller must close pc itself; that ends every connection of the
// listener.
//
// tlsConf must provide a certificate (Certificates or GetCertificate); it is
// cloned, never modified. The clone is restricted to TLS 1.3 and ALPN.
//
// The Listener runs acceptPumps goroutines until it is closed (or pc
// fails): they take every connection from quic-go's accept queue as soon as
// its handshake completes and hold it, up to cfg.AcceptBacklog, until
// Accept returns it. quic-go's own queue holds 32 and refuses more with
// CONNECTION_REFUSED, which a burst of clients would otherwise hit whenever
// the caller's Accept loop is slower than the handshakes (RATIONALE.md,
// "Why does the listener accept on its own goroutines?").
func Listen(pc net.PacketConn, tlsConf *tls.Config, cfg QUICConfig) (Listener, error) {
	if pc == nil {
		return nil, errors.New("transport: Listen: nil PacketConn")
	}
	if tlsConf == nil {
		return nil, errors.New("transport: Listen: nil tls.Config")
	}
	if len(tlsConf.Certificates) == 0 && tlsConf.GetCertificate == nil {
		return nil, errors.New("transport: Listen: tls.Config has no certificate")
	}
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(serverTLS(tlsConf), cfg.quicConfig())
	if err != nil {
		tr.Close()
		return nil, fmt.Errorf("transport: Listen: %w", err)
	}
	l := &quicListener{tr: tr, ln: ln, queue: make(chan *quic.Conn, cfg.acceptBacklog()), pumpDone: make(chan struct{}),
		fullCode: quic.ApplicationErrorCode(clampCode(cfg.AcceptBacklogCode))}
	l.pumps.Store(acceptPumps)
	for range acceptPumps {
		go l.pump() // owned by l: ends when ln is closed (Close) or pc fails; Close waits on pumpDone
	}
	return l, nil
}

// quicListener owns a quic.Transport on the caller's PacketConn. The
// transport must outlive the listener as long as accepted connections are
// alive (they share the socket), so it is closed when the listener is closed
// and the last accepted connection is gone, whichever comes last.
type quicListener struct {
	tr *quic.Transport
	ln *quic.Listener

	// queue holds the connections the pumps took from quic-go that Accept
	// has not returned yet. The pumps are its only senders; the last one to
	// end (ln.Accept failed) closes it, after setting pumpErr.
	queue    chan *quic.Conn
	pumps    atomic.Int32 // pumps running
	errOnce  sync.Once
	pumpErr  error                     // set through errOnce; read only after queue is closed
	pumpDone chan struct{}             // closed with queue
	fullCode quic.ApplicationErrorCode // closes a connection that finds queue full

	mu       sync.Mutex
	closed   bool
	live     int // accepted connections not yet closed
	trClosed bool
}

// acceptPumps is how many goroutines of a Listener wait in quic-go's
// Accept. quic-go hands a connection whose handshake completed directly to
// a goroutine waiting there; only when none waits does the connection go to
// its queue of 32, and a full queue means CONNECTION_REFUSED. A woken pump
// is runnable at once but, on a CPU busy with thousands of handshakes, may
// wait long for its turn (the race detector's scheduler often puts it at
// the back of the run queue), and more than 32 handshakes can complete in
// that wait. In bursts of 2000 clients (500 with -race) on two busy CPUs,
// one pump let 67 to 690 be refused, 16 pumps none without -race but up to
// 12 with it, 64 pumps none in either (RATIONALE.md, "Why does the listener
// accept on its own goroutines?"). They cost a few KiB of stack each, per
// listener.
const acceptPumps = 64

// pump moves connections from quic-go's accept queue to l.queue, doing
// nothing else. A connection that finds l.queue full is closed with
// QUICConfig.AcceptBacklogCode.
func (l *quicListener) pump() {
	for {
		qc, err := l.ln.Accept(context.Background())
		if err != nil {
			l.errOnce.Do(func() { l.pumpErr = err })
			if l.pumps.Add(-1) == 0 {
				close(l.queue)
				close(l.pumpDone)
			}
			return
		}
		select {
		case l.queue <- qc:
		default:
			qc.CloseWithError(l.fullCode,
				fmt.Sprintf("transport: %d connections already wait to be accepted", cap(l.queue)))
		}
	}
}

func (l *quicListener) Accept(ctx context.Context) (Conn, error) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, errListenerClosed
	}
	var qc *quic.Conn
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case c, ok := <-l.queue:
		if !ok {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || errors.Is(l.pumpErr, quic.ErrServerClosed) {
				return nil, errListenerClosed
			}
			// The PacketConn failed (typically: the caller closed it).
			return nil, &goneError{msg: "transport: listener: " + l.pumpErr.Error()}
		}
		qc = c
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		qc.CloseWithError(0, "listener closed")
		return nil, errListenerClosed
	}
	l.live++
	l.mu.Unlock()
	return newQUICConn(qc, l.release), nil
}

func (l *quicListener) release() {
	l.mu.Lock()
	l.live--
	l.maybeCloseTransportLocked()
}

// maybeCloseTransportLocked is called with l.mu held and releases it.
func (l *quicListener) maybeCloseTransportLocked() {
	if !l.closed || l.live > 0 || l.trClosed {
		l.mu.Unlock()
		return
	}
	l.trClosed = true
	l.mu.Unlock()
	// With a PacketConn it did not create, quic.Transport.Close stops its
	// reading goroutine via a read deadline, then clears that deadline; it
	// does not close the PacketConn.
	l.tr.Close()
}

func (l *quicListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()

	// Rejects handshakes in flight; accepted connections are unaffected.
	// The pumps take what is left in quic-go's queue, then end.
	l.ln.Close()
	<-l.pumpDone
	// Connections that completed the handshake but were never accepted would
	// otherwise linger.
	for qc := range l.queue {
		qc.CloseWithError(0, "listener closed")
	}
	l.mu.Lock()
	l.maybeCloseTransportLocked()
	return nil
}

func (l *quicListener) Addr() net.Addr { return l.ln.Addr() }

// Dial opens a QUIC connection to addr ("host:port"). The connections a
// process dials share their local UDP sockets, up to 256 connections on
// one (a socket per connection would cost a file descriptor, two
// goroutines and a system call per packet each; RATIONALE.md, "Why do a
// process's clients share a UDP socket?"); a socket is closed with the
// last connection on it. QUIC keeps the connections apart by their
// connection IDs: closing one, or its failing, leaves the others as they
// are.
//
// tlsConf may be nil (system roots). It is cloned, never modified; the clone
// is restricted to TLS 1.3 and ALPN, and its ServerName defaults to the host
// part of addr. The server certificate is verified unless tlsConf explicitly
// sets InsecureSkipVerify. The handshake is bounded by ctx and by
// cfg.HandshakeTimeout.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg QUICConfig) (Conn, error) {
	return dial(ctx, addr, tlsConf, cfg, ALPN)
}

// dial is Dial with a configurable ALPN, so that tests can check that a
// mismatch is refused without importing quic-go themselves.
func dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg QUICConfig, alpn string) (Conn, error) {
	var conf *tls.Config
	if tlsConf != nil {
		conf = tlsConf.Clone()
	} else {
		conf = &tls.Config{}
	}
	conf.NextProtos = []string{alpn}
	conf.MinVersion = tls.VersionTLS13

	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if conf.ServerName == "" {
		conf.ServerName = host
	}
	raddr, err := resolveUDP(ctx, host, port)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	network := "udp6"
	if raddr.IP.To4() != nil {
		network = "udp4"
	}
	sock, err := acquireDialSocket(network)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	release := sock.release

	timeout := cfg.handshakeTimeout()
	dctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("transport: handshake did not complete within %v: %w", timeout, context.DeadlineExceeded))
	defer cancel()
	qc, err := sock.tr.Dial(dctx, raddr, conf, cfg.quicConfig())
	if err != nil {
		release()
		return nil, fmt.Errorf("transport: dial %s: %w", addr, mapErr(err))
	}
	return newQUICConn(qc, release), nil
}

func resolveUDP(ctx context.Context, host, port string) (*net.UDPAddr, error) {
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(p))), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(p))), nil
}

// mapErr translates quic-go errors into this package's error model.
func mapErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	if e, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return &CloseError{Code: uint64(e.ErrorCode), Reason: e.ErrorMessage, Remote: e.Remote}
	}
	if e, ok := errors.AsType[*quic.StreamError](err); ok {
		return &StreamError{Code: uint64(e.ErrorCode), Remote: e.Remote}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return os.ErrDeadlineExceeded
	}
	if errors.Is(err, quic.ErrStreamClosed) {
		return ErrStreamClosed
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if e, ok := errors.AsType[*quic.TransportError](err); ok && e.Remote && e.ErrorCode == quic.ConnectionRefused {
		return &refusedError{msg: err.Error()}
	}
	if isConnGone(err) {
		return &goneError{msg: err.Error()}
	}
	return err
}

func isConnGone(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	if _, ok := errors.AsType[*quic.IdleTimeoutError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.HandshakeTimeoutError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.StatelessResetError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.TransportError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*quic.VersionNegotiationError](err); ok {
		return true
	}
	return false
}

type quicConn struct {
	c       *quic.Conn
	release func() // idempotent; frees what the connection holds

	mu       sync.Mutex
	paths    []func() // sockets Migrate added: closed with the connection
	released bool
}

// newQUICConn wraps qc and arranges for release to run exactly once when the
// connection is gone, however it ends: synchronously in CloseWithError (so
// that its effects are visible when CloseWithError returns), otherwise from
// context.AfterFunc, which starts no goroutine until the connection is done.
func newQUICConn(qc *quic.Conn, release func()) *quicConn {
	c := &quicConn{c: qc}
	c.release = sync.OnceFunc(func() {
		release()
		c.mu.Lock()
		paths := c.paths
		c.paths, c.released = nil, true
		c.mu.Unlock()
		for _, close := range paths {
			close()
		}
	})
	context.AfterFunc(qc.Context(), c.release)
	return c
}

// Migrate moves a dialed connection to the local socket pc (QUIC
// connection migration, RFC 9000 section 9): it probes the new path, and
// once the peer answered, sends on it only. The connection owns pc from
// then on, and closes it when it ends; it stays counted on the socket it
// was dialed from (shared, Dial) until then too. On an error the
// connection goes on on its current path.
func (c *quicConn) Migrate(ctx context.Context, pc net.PacketConn) error {
	if _, ok := pc.(*net.UDPConn); !ok {
		// quic-go goes on marking packets for ECN after the switch, and
		// panics on a socket that cannot carry the marks.
		pc.Close()
		return fmt.Errorf("transport: migrate: the new socket is a %T, not a *net.UDPConn", pc)
	}
	tr := &quic.Transport{Conn: pc}
	closePath := func() {
		tr.Close()
		_ = pc.Close()
	}
	c.mu.Lock()
	if c.released {
		c.mu.Unlock()
		closePath()
		return fmt.Errorf("transport: migrate: %w", net.ErrClosed)
	}
	c.paths = append(c.paths, closePath)
	c.mu.Unlock()
	p, err := c.c.AddPath(tr)
	if err != nil {
		return fmt.Errorf("transport: migrate: %w", err)
	}
	if err := p.Probe(ctx); err != nil {
		_ = p.Close()
		return fmt.Errorf("transport: migrate: the new path did not answer: %w", err)
	}
	if err := p.Switch(); err != nil {
		_ = p.Close()
		return fmt.Errorf("transport: migrate: %w", err)
	}
	return nil
}

func (c *quicConn) OpenStream(ctx context.Context) (Stream, error) {
	s, err := c.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	return &quicStream{s: s}, nil
}

func (c *quicConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := c.c.AcceptStream(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	return &quicStream{s: s}, nil
}

func (c *quicConn) OpenUniStream(ctx context.Context) (SendStream, error) {
	s, err := c.c.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	return &quicSendStream{s: s}, nil
}

func (c *quicConn) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	s, err := c.c.AcceptUniStream(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	return &quicReceiveStream{s: s}, nil
}

func (c *quicConn) Context() context.Context { return c.c.Context() }

func (c *quicConn) CloseWithError(code uint64, reason string) error {
	// quic-go returns once the connection is done: CONNECTION_CLOSE sent and
	// Context cancelled.
	err := c.c.CloseWithError(quic.ApplicationErrorCode(clampCode(code)), truncateReason(reason))
	c.release()
	return mapErr(err)
}

func (c *quicConn) LocalAddr() net.Addr  { return c.c.LocalAddr() }
func (c *quicConn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

func (c *quicConn) RTT() time.Duration { return c.c.ConnectionStats().SmoothedRTT }

func (c *quicConn) SendDatagram(p []byte) error {
	if len(p) > MaxDatagramSize {
		return ErrDatagramTooLarge
	}
	err := c.c.SendDatagram(p)
	if _, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
		return ErrDatagramTooLarge // cannot happen below MaxDatagramSize; mapped all the same
	}
	return mapErr(err)
}

func (c *quicConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	b, err := c.c.ReceiveDatagram(ctx)
	return b, mapErr(err)
}

func (c *quicConn) PeerCertificates() []*x509.Certificate {
	return c.c.ConnectionState().TLS.PeerCertificates
}

type quicStream struct{ s *quic.Stream }

func (s *quicStream) Read(p []byte) (int, error) {
	n, err := s.s.Read(p)
	return n, mapErr(err)
}

func (s *quicStream) Write(p []byte) (int, error) {
	n, err := s.s.Write(p)
	return n, mapErr(err)
}

func (s *quicStream) Close() error                       { return mapErr(s.s.Close()) }
func (s *quicStream) CancelWrite(code uint64)            { s.s.CancelWrite(quic.StreamErrorCode(clampCode(code))) }
func (s *quicStream) CancelRead(code uint64)             { s.s.CancelRead(quic.StreamErrorCode(clampCode(code))) }
func (s *quicStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s *quicStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

type quicSendStream struct{ s *quic.SendStream }

func (s *quicSendStream) Write(p []byte) (int, error) {
	n, err := s.s.Write(p)
	return n, mapErr(err)
}

func (s *quicSendStream) Close() error { return mapErr(s.s.Close()) }
func (s *quicSendStream) CancelWrite(code uint64) {
	s.s.CancelWrite(quic.StreamErrorCode(clampCode(code)))
}
func (s *quicSendStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

type quicReceiveStream struct{ s *quic.ReceiveStream }

func (s *quicReceiveStream) Read(p []byte) (int, error) {
	n, err := s.s.Read(p)
	return n, mapErr(err)
}

func (s *quicReceiveStream) CancelRead(code uint64) {
	s.s.CancelRead(quic.StreamErrorCode(clampCode(code)))
}
func (s *quicReceiveStream) SetReadDeadline(t time.Time) error { return s.s.SetReadDeadline(t) }

// SelfSigned returns a fresh ECDSA P-256 certificate that is its own root,
// valid from an hour ago for one year, for server and client authentication,
// and a pool containing it (use it as RootCAs or ClientCAs). Each host
// becomes an IP SAN if it parses as an IP address, a DNS SAN otherwise; with
// no hosts, "localhost", "127.0.0.1" and "::1" are used.
func SelfSigned(hosts ...string) (tls.Certificate, *x509.CertPool, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"yomo self-signed"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(-time.Hour).AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
