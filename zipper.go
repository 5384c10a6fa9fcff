package yomo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
	"github.com/yomo-dev/yomo/router"
)

// Zipper routes frames from Sources and StreamFunctions to the functions
// observing their tags, and function results back to their origin Source.
//
// Create one with NewZipper, serve with ListenAndServe or Serve (several
// may run at once, on different sockets), and stop with Shutdown or Close.
// All methods are safe for concurrent use.
type Zipper struct {
	name      string
	nameBytes []byte
	opts      zipperOptions
	log       *slog.Logger
	tls       *tls.Config
	roots     *x509.CertPool // set when the zipper generated its certificate

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every connection handler

	frameHooks []func(*FrameInfo) bool

	table atomic.Pointer[router.Table[*dest]]
	// sources maps a client instance id to its live connection (a
	// sync.Map: read on every backflow frame without a lock, written once
	// per connect and disconnect, so N sources cost O(N), not O(N^2)).
	sources   sync.Map
	zipperVia atomic.Pointer[map[string]*link] // mesh: next hop towards each zipper
	meshOn    atomic.Bool                      // linked (or configured to link) to other zippers

	routeGen atomic.Uint64 // counts changes of routes (holdForRoute); written under mu

	mu sync.Mutex
	// tableChanged is closed (and replaced) whenever the routing table
	// changes or Shutdown starts: it wakes frames held by a reconnect grace.
	tableChanged chan struct{}
	closed       bool
	draining     bool // Shutdown started: new clients are turned away
	reporting    bool // the drop reporter runs
	servers      map[*server]struct{}
	conns        map[uint64]*zconn
	router       *router.Router[*dest]
	mesh         *mesh.Table
	links        map[string]*link // by peer name
	remoteIDs    map[mesh.Key]uint64
	meshStarted  bool
	nextRemoteID uint64
	nextConnID   uint64
	gone         map[string]*functionTotals // counters of instances that left
	unroutable   map[Tag]uint64
	live         int                // network connections held (limits.go)
	perIP        map[netip.Addr]int // network connections held, by remote IP
	pending      int                // network connections in their handshake

	tokens tokenSet // WithAuthToken, hashed

	accepted   atomic.Uint64
	rejected   atomic.Uint64
	framesIn   atomic.Uint64
	unroutedN  atomic.Uint64
	filtered   atomic.Uint64
	droppedAll atomic.Uint64
	denied     atomic.Uint64 // ACL violations
	rejectedBy rejectCounters
}

// server is one running Serve call.
type server struct {
	ln   transport.Listener
	pc   net.PacketConn
	once sync.Once // stop runs once; concurrent callers wait for it
}

// NewZipper validates its options and returns a zipper. It does no I/O.
// Without WithTLSConfig certificates the zipper generates a self-signed
// certificate for localhost; clients must then be given RootCAs() (or the
// insecure option) to connect.
func NewZipper(name string, opts ...ZipperOption) (*Zipper, error) {
	if name == "" {
		return nil, errors.New("yomo: zipper name is empty")
	}
	o, err := newZipperOptions(opts)
	if err != nil {
		return nil, err
	}
	z := &Zipper{
		name:       name,
		nameBytes:  []byte(name),
		opts:       o,
		log:        o.logger.With("zipper", name),
		servers:    make(map[*server]struct{}),
		conns:      make(map[uint64]*zconn),
		router:     router.New[*dest](),
		mesh:       mesh.New(name),
		links:      make(map[string]*link),
		remoteIDs:  make(map[mesh.Key]uint64),
		gone:       make(map[string]*functionTotals),
		unroutable: make(map[Tag]uint64),
		perIP:      make(map[netip.Addr]int),
		tokens:     newTokenSet(o.tokens),
	}
	if o.tls != nil && (len(o.tls.Certificates) > 0 || o.tls.GetCertificate != nil || o.tls.GetConfigForClient != nil) {
		z.tls = o.tls.Clone()
	} else {
		cert, pool, err := transport.SelfSigned()
		if err != nil {
			return nil, fmt.Errorf("yomo: generate certificate: %w", err)
		}
		if o.tls != nil {
			z.tls = o.tls.Clone()
		} else {
			z.tls = &tls.Config{}
		}
		z.tls.Certificates = []tls.Certificate{cert}
		z.roots = pool
	}
	verifyClientCerts(z.tls)
	for _, h := range o.hooks {
		if h.OnFrame != nil {
			z.frameHooks = append(z.frameHooks, h.OnFrame)
		}
	}
	z.ctx, z.cancel = context.WithCancel(context.Background())
	z.tableChanged = make(chan struct{})
	z.table.Store(z.router.Table())
	z.zipperVia.Store(&map[string]*link{})
	if len(o.peers) > 0 {
		z.activateMeshLocked()
	}
	return z, nil
}

// Name returns the zipper's name.
func (z *Zipper) Name() string { return z.name }

// RootCAs returns a pool holding the zipper's self-generated certificate,
// for clients in the same process (WithTLSConfig(&tls.Config{RootCAs:
// z.RootCAs()})). It is nil when the zipper was given certificates.
func (z *Zipper) RootCAs() *x509.CertPool { return z.roots }

// ListenAndServe listens on the UDP address addr and serves QUIC
// connections until ctx is done or the zipper is closed. See Serve.
func (z *Zipper) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	return z.Serve(ctx, pc)
}

// Serve serves QUIC connections on conn, which it owns and closes when it
// returns. It blocks until ctx is done (it then closes the connections it
// accepted at once and returns ctx.Err()) or the zipper is shut down or
// closed (it returns ErrClosed). For a graceful stop, call Shutdown rather
// than cancelling ctx. Serve also starts the mesh links (WithMesh), once.
func (z *Zipper) Serve(ctx context.Context, conn net.PacketConn) error {
	ln, err := transport.Listen(conn, z.tls, transport.QUICConfig{})
	if err != nil {
		conn.Close()
		return err
	}
	s := &server{ln: ln, pc: conn}
	z.mu.Lock()
	if z.closed {
		z.mu.Unlock()
		ln.Close()
		conn.Close()
		return ErrClosed
	}
	z.servers[s] = struct{}{}
	z.mu.Unlock()
	z.log.Info("zipper serving", "addr", ln.Addr().String())
	z.startMesh()

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		tc, err := ln.Accept(z.ctx)
		if err != nil {
			if ctx.Err() == nil && z.isDraining() {
				// Shutdown closed the listener; the socket still carries
				// the draining connections until the zipper closes.
				select {
				case <-z.ctx.Done():
				case <-ctx.Done():
				}
			}
			z.stopServer(s)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if z.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return ErrClosed
			}
			return err
		}
		z.startConn(tc, s)
	}
}

func (z *Zipper) isDraining() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.draining
}

// stopServer closes a server's connections and socket and waits for them.
// Every caller returns only once the socket is closed.
func (z *Zipper) stopServer(s *server) {
	s.once.Do(func() { z.stopServerOnce(s) })
}

func (z *Zipper) stopServerOnce(s *server) {
	z.mu.Lock()
	delete(z.servers, s)
	var mine []*zconn
	for _, c := range z.conns {
		if c.srv == s {
			mine = append(mine, c)
		}
	}
	z.mu.Unlock()
	s.ln.Close()
	for _, c := range mine {
		c.tc.CloseWithError(uint64(frame.CloseNormal), "zipper stopped serving")
	}
	for _, c := range mine {
		<-c.done
	}
	s.pc.Close()
}

// startConn runs the handler of a new connection, or refuses it at once
// when the zipper is closed or at a connection limit (network connections
// only). It never waits for the peer.
func (z *Zipper) startConn(tc transport.Conn, s *server) bool {
	z.mu.Lock()
	if z.closed {
		z.mu.Unlock()
		tc.CloseWithError(uint64(frame.CloseCodeForReject(frame.RejectShutdown)), "zipper is shutting down")
		return false
	}
	var adm admission
	if s != nil {
		var refused string
		if adm, refused = z.admitLocked(remoteIP(tc.RemoteAddr())); refused != "" {
			z.mu.Unlock()
			z.countReject(rejectLimit)
			z.log.Warn("connection refused", "remote", tc.RemoteAddr().String(), "reason", refused)
			tc.CloseWithError(uint64(frame.CloseLimit), refused)
			return false
		}
	}
	z.wg.Add(1)
	go z.serveConn(tc, s, adm) // owned by z: ends when tc closes; Close waits on z.wg
	z.mu.Unlock()
	return true
}

// dialMem connects an in-process client.
func (z *Zipper) dialMem(name string) (transport.Conn, error) {
	cli, srv := transport.Pipe("mem:" + name)
	if !z.startConn(srv, nil) {
		return nil, ErrClosed
	}
	return cli, nil
}

// Close closes the zipper immediately: listeners, sockets and every
// connection. Frames in flight may be lost (Shutdown does not lose them).
// It waits for the zipper's goroutines and is idempotent.
func (z *Zipper) Close() error {
	z.mu.Lock()
	already := z.closed
	z.closed = true
	servers := make([]*server, 0, len(z.servers))
	for s := range z.servers {
		servers = append(servers, s)
	}
	conns := make([]*zconn, 0, len(z.conns))
	for _, c := range z.conns {
		conns = append(conns, c)
	}
	z.mu.Unlock()
	if !already {
		z.log.Info("zipper closing")
	}
	z.cancel()
	for _, s := range servers {
		s.ln.Close()
	}
	for _, c := range conns {
		c.tc.CloseWithError(uint64(frame.CloseNormal), "zipper closed")
	}
	z.wg.Wait()
	for _, s := range servers {
		z.stopServer(s)
	}
	return nil
}

// Shutdown stops the zipper gracefully: it stops accepting, sends GOAWAY
// to every client (they reconnect, elsewhere or to this address once a
// zipper is back), waits until every client has finished sending, delivers
// every queued frame, and closes. Clients that connect meanwhile are told
// to come back later. If ctx ends first, Shutdown closes at once (like
// Close) and returns ctx.Err(). No frame that reached the zipper is lost
// when every client completes the exchange in time.
func (z *Zipper) Shutdown(ctx context.Context) error {
	z.mu.Lock()
	if z.closed {
		z.mu.Unlock()
		return z.Close()
	}
	first := !z.draining
	z.draining = true
	z.signalTableLocked() // frames held by a reconnect grace stop waiting
	conns := make([]*zconn, 0, len(z.conns))
	for _, c := range z.conns {
		conns = append(conns, c)
	}
	for s := range z.servers {
		s.ln.Close() // stop accepting; the socket stays for existing connections
	}
	z.mu.Unlock()
	if first {
		z.log.Info("zipper shutting down", "clients", len(conns))
	}
	goaway, _ := frame.AppendControl(nil, &frame.GoAway{Reason: "zipper shutting down"})
	for _, c := range conns {
		if err := c.writeControl(goaway, time.Second); err != nil {
			c.tc.CloseWithError(uint64(frame.CloseGoAway), "zipper shutting down")
		}
	}
	// 1. Every client finishes sending (it FINs its data stream on GOAWAY),
	//    so every frame that reached the zipper has been routed.
	for _, c := range conns {
		select {
		case <-c.readDone:
		case <-c.done:
		case <-ctx.Done():
			z.Close()
			return ctx.Err()
		}
	}
	// 2. Every queue is written out and its stream finished; each client
	//    closes the connection once it has read everything.
	for _, c := range conns {
		c.finish()
	}
	for _, c := range conns {
		select {
		case <-c.done:
		case <-ctx.Done():
			z.Close()
			return ctx.Err()
		}
	}
	return z.Close()
}

// zconn is one client connection at the zipper.
type zconn struct {
	z        *Zipper
	srv      *server // nil for in-memory connections
	tc       transport.Conn
	id       uint64
	hs       *frame.Handshake
	ident    string  // authenticated identity (Identity.Name); "" when anonymous
	acl      *ACL    // nil: unrestricted
	write    *tagSet // tags it may write; nil: any. Immutable after the handshake
	out      *outbox
	ctrl     transport.Stream
	done     chan struct{} // closed when the handler returned
	readDone chan struct{} // closed when the client's data stream ended
	drain    chan struct{} // closed by Shutdown: flush the queue, then FIN
	ctrlMu   sync.Mutex    // serialises writes to ctrl

	drainOnce sync.Once

	info ConnInfo // for hooks, set at registration
	dst  *dest    // this instance in the routing table (functions)

	// observes holds a counter per observed tag; immutable after the
	// handshake, so the hot path reads it without a lock.
	observes map[Tag]*tagCounters

	reported uint64 // drops already reported; the drop reporter's own
	// graceUntil is the nanotime until which this client's frames that
	// nothing observes yet are held (holdForRoute): set at registration
	// for a client that is reconnecting (Handshake.Resumed); 0 otherwise.
	graceUntil int64
	// recvMax is the largest data body the client accepts, when smaller
	// than the zipper's own limit (0: no smaller limit). Larger frames are
	// dropped for it rather than sent to break its connection.
	recvMax int

	framesIn  atomic.Uint64 // data frames received from the client
	framesOut atomic.Uint64 // data frames written to the client
	dropped   atomic.Uint64 // frames for the client dropped
}

type tagCounters struct {
	queued  atomic.Uint64
	dropped atomic.Uint64
}

func (z *Zipper) serveConn(tc transport.Conn, s *server, adm admission) {
	defer z.wg.Done()
	defer z.release(&adm)
	c := &zconn{z: z, srv: s, tc: tc, done: make(chan struct{}),
		readDone: make(chan struct{}), drain: make(chan struct{})}
	defer close(c.done)
	rd, err := z.handshake(c)
	z.handshakeDone(&adm)
	if err != nil {
		z.log.Info("client rejected", "remote", tc.RemoteAddr().String(), "identity", c.ident, "reason", err.Error())
		return
	}
	if c.hs.Kind == frame.KindZipper {
		z.log.Info("mesh peer authenticated", "peer", c.hs.Name, "identity", c.ident, "remote", tc.RemoteAddr().String())
		l := z.newLink(c.hs.Name, tc, c.ctrl, rd, false)
		if err := z.runLink(l); err != nil && z.ctx.Err() == nil {
			z.log.Info("mesh link down", "peer", l.peer, "err", err)
		}
		return
	}
	z.log.Info("client connected", "kind", c.hs.Kind.String(), "name", c.hs.Name, "identity", c.ident, "conn", c.id,
		"remote", tc.RemoteAddr().String())
	err = c.run(rd)
	z.unregister(c)
	z.onDisconnect(c.info, err)
	z.log.Info("client disconnected", "kind", c.hs.Kind.String(), "name", c.hs.Name, "identity", c.ident, "conn", c.id, "reason", errString(err))
}

func errString(err error) string {
	if err == nil {
		return "done"
	}
	return err.Error()
}

// rejection is a handshake refusal with the reason sent to the client.
type rejection struct {
	code   uint16
	reason string
}

func (r *rejection) Error() string { return r.reason }

func (z *Zipper) handshake(c *zconn) (*frame.Reader, error) {
	timeout := z.opts.handshakeTimeout
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(z.ctx, deadline)
	defer cancel()
	st, err := c.tc.AcceptStream(ctx)
	if err != nil {
		kind, reason := rejectIncomplete, "no handshake: "+err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			kind, reason = rejectTimeout, fmt.Sprintf("no handshake within %v", timeout)
		}
		z.countReject(kind)
		c.tc.CloseWithError(uint64(frame.CloseProtocol), reason)
		return nil, errors.New(reason)
	}
	c.ctrl = st
	st.SetReadDeadline(deadline)
	rd := frame.NewReaderSize(st, frame.MaxControlSize, frame.ControlBufferSize)
	hs, rej := z.readHandshake(rd)
	if rej == nil {
		rej = z.authenticate(ctx, c, hs)
	}
	if rej == nil {
		rej = z.authorize(c, hs)
	}
	if rej == nil {
		rej = z.register(c, hs)
	}
	if rej != nil {
		if rej.code == 0 {
			// Not a verdict on the client: its handshake did not arrive
			// in time. Close without a rejection, so that it may retry.
			z.countReject(rejectTimeout)
			c.tc.CloseWithError(uint64(frame.CloseProtocol), rej.reason)
			return nil, rej
		}
		rej.reason = truncate(rej.reason, maxReasonLen) // e.g. an OnConnect error
		z.countReject(rejectKindOf(rej.code))           // before the client can learn of it
		b, _ := frame.AppendControl(nil, &frame.Rejected{Code: rej.code, Reason: rej.reason})
		st.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = st.Write(b) // best effort: the close carries the reason too
		st.Close()
		c.tc.CloseWithError(uint64(frame.CloseCodeForReject(frame.RejectCode(rej.code))), rej.reason)
		return nil, rej
	}
	st.SetReadDeadline(time.Time{})
	ack, _ := frame.AppendControl(nil, &frame.HandshakeAck{ConnID: c.id, Zipper: z.name, MaxFrameSize: uint32(z.opts.maxFrame)})
	st.SetWriteDeadline(deadline)
	if _, err := st.Write(ack); err != nil {
		z.unregister(c)
		c.tc.CloseWithError(uint64(frame.CloseProtocol), "handshake write failed")
		return nil, err
	}
	st.SetWriteDeadline(time.Time{})
	return rd, nil
}

// readHandshake reads and validates the first frame of a control stream.
// A rejection with code 0 is not a verdict on the client (the handshake did
// not arrive in time); every other one is final.
func (z *Zipper) readHandshake(rd *frame.Reader) (*frame.Handshake, *rejection) {
	t, body, err := rd.Next()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &rejection{0, fmt.Sprintf("no complete handshake within %v", z.opts.handshakeTimeout)}
		}
		if errors.Is(err, io.EOF) {
			return nil, &rejection{frame.RejectBadHandshake, "bad handshake: control stream ended before a handshake"}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &rejection{frame.RejectBadHandshake, "bad handshake: truncated frame"}
		}
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: " + err.Error()}
	}
	if t != frame.TypeHandshake {
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: first frame is " + t.String()}
	}
	v, err := frame.DecodeControl(t, body)
	if err != nil {
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: " + err.Error()}
	}
	hs := v.(*frame.Handshake)
	switch {
	case hs.Version != frame.ProtocolVersion:
		return nil, &rejection{frame.RejectVersion, fmt.Sprintf("unsupported protocol version %d (zipper speaks %d)", hs.Version, frame.ProtocolVersion)}
	case hs.Name == "":
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: empty name"}
	case len(hs.Name) > maxNameLen:
		return nil, &rejection{frame.RejectBadHandshake, fmt.Sprintf("bad handshake: name of %d bytes (limit %d)", len(hs.Name), maxNameLen)}
	case len(hs.WantedTarget) > maxTargetLen:
		return nil, &rejection{frame.RejectBadHandshake, fmt.Sprintf("bad handshake: target of %d bytes (limit %d)", len(hs.WantedTarget), maxTargetLen)}
	case hs.Kind != frame.KindSource && hs.Kind != frame.KindFunction && hs.Kind != frame.KindZipper:
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: unsupported client kind " + hs.Kind.String()}
	case len(hs.ObserveTags) > z.opts.maxTags:
		return nil, &rejection{frame.RejectDenied, fmt.Sprintf("too many observed tags: %d (limit %d)", len(hs.ObserveTags), z.opts.maxTags)}
	case hs.Kind == frame.KindFunction && len(hs.ObserveTags) == 0:
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: a function must observe at least one tag"}
	}
	return hs, nil
}

func (z *Zipper) register(c *zconn, hs *frame.Handshake) *rejection {
	c.hs = hs
	if hs.Resumed && z.opts.reconnectGrace > 0 {
		c.graceUntil = nanotime() + int64(z.opts.reconnectGrace)
	}
	if hs.Kind == frame.KindZipper {
		z.mu.Lock()
		z.nextConnID++
		c.id = z.nextConnID
		z.mu.Unlock()
		return nil // a mesh link: registered by runLink
	}
	if m := int(hs.MaxFrameSize); m > 0 && m < z.opts.maxFrame {
		c.recvMax = m
	}
	c.observes = make(map[Tag]*tagCounters, len(hs.ObserveTags))
	for _, t := range hs.ObserveTags {
		c.observes[t] = new(tagCounters)
	}
	c.out = newOutbox(z.opts.queueFrames, z.opts.queueBytes, c.tc.RTT)
	z.mu.Lock()
	z.nextConnID++
	c.id = z.nextConnID
	z.mu.Unlock()
	c.info = z.connInfo(c)
	if err := z.onConnect(c.info); err != nil {
		return &rejection{frame.RejectDenied, err.Error()}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed || z.draining {
		return &rejection{frame.RejectShutdown, "zipper is shutting down"}
	}
	switch hs.Kind {
	case frame.KindFunction:
		if !z.reporting {
			z.reporting = true
			z.wg.Add(1)
			go z.reportDrops() // owned by z: ends when Close cancels z.ctx
		}
		c.dst = &dest{conn: c, name: hs.Name}
		err := z.router.Add(router.Instance[*dest]{ID: c.id, Name: hs.Name, Tags: hs.ObserveTags, Target: hs.WantedTarget, Dest: c.dst})
		if err != nil {
			return &rejection{frame.RejectBadHandshake, err.Error()}
		}
		z.storeTableLocked()
		for _, k := range c.meshKeys() {
			z.applyChangesLocked(z.mesh.AddLocal(k))
		}
	case frame.KindSource:
		z.sources.Store(hs.ID, c) // a reconnecting source replaces its stale connection
		z.signalTableLocked()     // backflow held for it may go now
	}
	z.conns[c.id] = c
	z.accepted.Add(1)
	return nil
}

func (z *Zipper) unregister(c *zconn) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.conns[c.id]; !ok {
		return
	}
	delete(z.conns, c.id)
	switch c.hs.Kind {
	case frame.KindFunction:
		z.router.Remove(c.id)
		z.storeTableLocked()
		for _, k := range c.meshKeys() {
			z.applyChangesLocked(z.mesh.RemoveLocal(k))
		}
	case frame.KindSource:
		z.sources.CompareAndDelete(c.hs.ID, c) // unless a newer connection replaced it
	}
	lost := c.out.close()
	c.dropped.Add(uint64(lost))
	z.droppedAll.Add(uint64(lost))
	if c.hs.Kind == frame.KindFunction {
		t := z.gone[c.hs.Name]
		if t == nil {
			t = &functionTotals{tags: make(map[Tag]*TagStats)}
			z.gone[c.hs.Name] = t
		}
		t.add(c)
	}
}

// meshKeys are the destinations a function instance offers the mesh.
func (c *zconn) meshKeys() []mesh.Key {
	keys := make([]mesh.Key, 0, len(c.observes))
	for tag := range c.observes {
		keys = append(keys, mesh.Key{Kind: frame.RouteFunction, Tag: tag, Name: c.hs.Name, Target: c.hs.WantedTarget})
	}
	return keys
}

// run serves an accepted connection until it closes. The control stream
// is read on the calling goroutine (one goroutine fewer per idle
// connection); the data streams each have one. The first failure closes
// the connection with its reason, which ends the others.
func (c *zconn) run(rd *frame.Reader) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	fail := func(err error) {
		once.Do(func() {
			first = err
			c.closeFor(err)
		})
	}
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // owned by run: ends when the client's data stream or tc ends
		defer wg.Done()
		defer close(c.readDone)
		if err := c.readData(); err != nil {
			fail(err)
		}
	}()
	if c.hasWriter() {
		wg.Add(1)
		go func() { // owned by run: ends on stop, after a drain, or on a write error
			defer wg.Done()
			if err := c.writeData(stop); err != nil {
				fail(err)
			}
		}()
	}
	fail(c.readControl(rd)) // returns once tc is closed, by anyone
	close(stop)
	wg.Wait()
	return first
}

// hasWriter reports whether the client can receive data: functions, and
// sources that observe tags (backflow). A source observing nothing gets no
// data stream and no writer goroutine, which matters with many idle
// sources.
func (c *zconn) hasWriter() bool { return len(c.observes) > 0 }

// finish ends the zipper's side of the connection once nothing more will
// be routed to it: the writer writes what is queued and finishes its
// stream; a client without a writer has nothing to wait for and is closed.
func (c *zconn) finish() {
	c.drainOnce.Do(func() {
		close(c.drain)
		if !c.hasWriter() {
			c.tc.CloseWithError(uint64(frame.CloseNormal), "")
		}
	})
}

// closeFor closes the connection with the code and reason err calls for.
func (c *zconn) closeFor(err error) {
	var pe *protocolError
	var rej *rejection
	switch {
	case errors.As(err, &pe):
		c.tc.CloseWithError(uint64(frame.CloseProtocol), pe.Error())
	case errors.As(err, &rej):
		c.tc.CloseWithError(uint64(frame.CloseCodeForReject(frame.RejectCode(rej.code))), rej.reason) // final for the client
	default:
		c.tc.CloseWithError(uint64(frame.CloseNormal), "")
	}
}

// writeControl writes a control frame to the client, giving up after
// timeout.
func (c *zconn) writeControl(b []byte, timeout time.Duration) error {
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	c.ctrl.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.ctrl.Write(b)
	return err
}

// dropReportInterval is how often functions are told of their drops.
const dropReportInterval = 200 * time.Millisecond

// reportDrops tells every function with new drops how many it missed.
func (z *Zipper) reportDrops() {
	defer z.wg.Done()
	t := time.NewTicker(dropReportInterval)
	defer t.Stop()
	var due []*zconn
	for {
		select {
		case <-z.ctx.Done():
			return
		case <-t.C:
		}
		due = due[:0]
		z.mu.Lock()
		for _, c := range z.conns {
			if c.hs.Kind == frame.KindFunction && c.dropped.Load() > c.reported {
				due = append(due, c)
			}
		}
		z.mu.Unlock()
		for _, c := range due {
			total := c.dropped.Load()
			b, _ := frame.AppendControl(nil, &frame.Dropped{Count: total - c.reported, Total: total})
			if c.writeControl(b, dropReportInterval) == nil {
				c.reported = total
			}
		}
	}
}

// protocolError is a violation by the peer; its text goes to the peer.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

// frameError turns a reader error caused by what the peer sent (a bad
// header, a truncated frame) into a protocolError, so the connection is
// closed with the reason.
func frameError(err error) error {
	switch {
	case errors.Is(err, frame.ErrFrameTooLarge), errors.Is(err, frame.ErrUnknownType):
		return &protocolError{err.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &protocolError{"truncated frame: the stream ended inside a frame"}
	}
	return err
}

func (c *zconn) readData() error {
	rs, err := c.tc.AcceptUniStream(c.z.ctx)
	if err != nil {
		return err
	}
	rd := frame.NewReader(rs, c.z.opts.maxFrame)
	var d frame.Data
	var sc scratch
	for {
		t, body, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The client finished sending. Outside a shutdown it is
				// leaving: write out what is queued for it and finish our
				// stream, so it can close knowing it has everything.
				if !c.z.isDraining() {
					c.finish()
				}
				return nil
			}
			return frameError(err)
		}
		if t != frame.TypeData {
			return &protocolError{"unexpected " + t.String() + " frame on a data stream"}
		}
		if err := d.Decode(body); err != nil {
			return &protocolError{err.Error()}
		}
		if c.write != nil && !c.write.has(d.Tag) {
			return c.z.denyWrite(c, d.Tag)
		}
		c.z.route(c, &d, &sc)
	}
}

func (c *zconn) readControl(rd *frame.Reader) error {
	for {
		t, body, err := rd.Next()
		if err != nil {
			return frameError(err)
		}
		switch t {
		case frame.TypePing:
			v, err := frame.DecodeControl(t, body)
			if err != nil {
				return &protocolError{err.Error()}
			}
			if err := c.writeControl(frame.AppendPing(nil, v.(*frame.Ping).Value, true), DefaultHandshakeTimeout); err != nil {
				return err
			}
		case frame.TypePong:
		default:
			return &protocolError{"unexpected " + t.String() + " frame on the control stream"}
		}
	}
}

func (c *zconn) writeData(stop <-chan struct{}) error {
	ss, err := c.tc.OpenUniStream(c.z.ctx)
	if err != nil {
		return err
	}
	lost, err := c.out.flush(ss, stop, c.drain, func(n int) { c.framesOut.Add(uint64(n)) })
	if lost > 0 {
		// Counted as written; they died with the connection.
		c.framesOut.Add(^uint64(lost - 1))
		c.dropped.Add(uint64(lost))
		c.z.droppedAll.Add(uint64(lost))
	}
	if err != nil {
		return err
	}
	select {
	case <-c.drain:
		// Everything queued is written: tell the client this direction is
		// complete. It closes the connection once it has read it all.
		return ss.Close()
	default:
		return nil
	}
}

// route delivers one data frame from c. It runs on c's reader goroutine
// and allocates nothing.
func (z *Zipper) route(from *zconn, d *frame.Data, sc *scratch) {
	from.framesIn.Add(1)
	z.framesIn.Add(1)
	if from.hs.Kind == frame.KindSource {
		d.Origin = from.hs.ID
		if z.meshOn.Load() {
			d.OriginZipper = z.nameBytes
		}
	}
	d.Path, d.Names = nil, nil // only zippers set these
	if len(z.frameHooks) > 0 && !z.onFrame(from, d) {
		z.filtered.Add(1)
		return
	}
	// A waiting put gives up when the writer's own connection ends.
	wait := from.tc.Context().Done()
	for {
		gen := z.routeGen.Load()
		if z.dispatch(from, d, z.table.Load(), sc, wait) {
			return
		}
		if from.graceUntil == 0 || !z.holdForRoute(from.graceUntil, gen, wait) {
			z.noteUnroutable(d.Tag)
			return
		}
	}
}

// dispatch delivers d from c along tbl and reports whether it went
// anywhere. When it did not, nothing was delivered, so it may be retried.
func (z *Zipper) dispatch(from *zconn, d *frame.Data, tbl *router.Table[*dest], sc *scratch, wait <-chan struct{}) bool {
	// The target aliases the frame buffer; Route does not retain it.
	sc.dsts = tbl.Route(d.Tag, unsafeString(d.Target), sc.dsts[:0])
	sc.remote = sc.remote[:0]
	for _, dst := range sc.dsts {
		if dst.conn != nil {
			dst.conn.deliver(d, wait)
		} else {
			sc.remote = append(sc.remote, dst)
		}
	}
	routed := len(sc.dsts) > 0
	if len(sc.remote) > 0 {
		z.forward(d, nil, sc, wait)
	}
	if from.hs.Kind == frame.KindFunction && d.Origin != 0 && z.routeBackflow(d, nil, wait, sc) {
		routed = true
	}
	return routed
}

// holdForRoute is called for a frame from a reconnecting client that
// nothing observed when the routes were at generation gen. Until the
// client's grace ends (until, a nanotime) it waits for the routing table
// (or the set of sources, for backflow) to change and returns true: the
// caller routes the frame again. It returns false, and the frame is
// unroutable, once the grace is over, when the writer's connection ends
// (wait) and when the zipper shuts down or closes. It runs on the
// writer's reader goroutine, so the writer's later frames wait behind it,
// in order.
func (z *Zipper) holdForRoute(until int64, gen uint64, wait <-chan struct{}) bool {
	left := time.Duration(until - nanotime())
	if left <= 0 {
		return false
	}
	z.mu.Lock()
	if z.draining || z.closed {
		z.mu.Unlock()
		return false
	}
	if z.routeGen.Load() != gen {
		z.mu.Unlock()
		return true // changed since the caller looked
	}
	changed := z.tableChanged
	z.mu.Unlock()
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-changed:
		return true
	case <-t.C:
	case <-wait:
	case <-z.ctx.Done():
	}
	return false
}

// storeTableLocked publishes the router's table; z.mu is held.
func (z *Zipper) storeTableLocked() {
	z.table.Store(z.router.Table())
	z.signalTableLocked()
}

// signalTableLocked wakes frames held by a reconnect grace; z.mu is held.
func (z *Zipper) signalTableLocked() {
	z.routeGen.Add(1)
	close(z.tableChanged)
	z.tableChanged = make(chan struct{})
}

func (c *zconn) deliver(d *frame.Data, wait <-chan struct{}) {
	tc := c.observes[d.Tag]
	if (c.recvMax == 0 || frame.DataSize(d) <= c.recvMax) && c.out.put(d, c.z.opts.policy, wait, 0, c.z.opts.stallTimeout) {
		if tc != nil {
			tc.queued.Add(1)
		}
		return
	}
	if tc != nil {
		tc.dropped.Add(1)
	}
	c.dropped.Add(1)
	c.z.droppedAll.Add(1)
}
