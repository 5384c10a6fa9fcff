package yomo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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
	// instTable routes keyed frames: one group per function instance,
	// local or learned from the mesh (RouteInstance), named
	// function + MemberSep + instance id.
	instTable atomic.Pointer[router.Table[*dest]]
	// sources maps a client instance id to its live connection (a
	// sync.Map: read on every backflow frame without a lock, written once
	// per connect and disconnect, so N sources cost O(N), not O(N^2)).
	sources   sync.Map
	zipperVia atomic.Pointer[map[string]*conn] // mesh: next hop (a link) towards each zipper
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
	conns        map[uint64]*conn // clients and mesh links
	router       *router.Router[*dest]
	instRouter   *router.Router[*dest] // instTable's
	mesh         *mesh.Table
	links        map[string]*conn       // mesh links by peer name
	peers        map[string]*peerRecord // what outlives each peer's links
	remoteIDs    map[mesh.Key]remoteRoute
	reverseVia   map[string]*conn // zippers with no known route: the link their frames came in on
	meshStarted  bool
	nextRemoteID uint64
	nextConnID   uint64
	gone         map[string]*functionTotals // counters of instances that left
	unroutable   map[Tag]uint64
	live         int                // network connections held (limits.go)
	perIP        map[netip.Addr]int // network connections held, by remote IP
	pending      int                // network connections in their handshake
	pendingFree  chan struct{}      // capacity 1: pending went down (waitPendingSlot)

	tokens tokenSet // WithAuthToken, hashed

	accepted   atomic.Uint64
	rejected   atomic.Uint64
	framesIn   atomic.Uint64
	unroutedN  atomic.Uint64
	filtered   atomic.Uint64
	droppedAll atomic.Uint64
	seqStale   atomic.Uint64 // frames of an older generation of their flow, dropped (seq.go)
	meshHeld   atomic.Int64  // Stats.MeshHeld
	lost       losses        // loss notices not sent yet (loss.go)
	denied     atomic.Uint64 // ACL violations
	seq        sequencer     // mesh flows delivered here (seq.go)
	// meshHold maps each tag that was routed over a link that failed to
	// the nanotime until which its frames nothing can take are held for a
	// new path (meshHoldWindow after the failure). Replaced whole under mu.
	meshHold atomic.Pointer[map[Tag]int64]
	born     int64 // nanotime of NewZipper
	seqDups  atomic.Uint64
	seqGaps  atomic.Uint64
	seqLate  atomic.Uint64
	dgram    dgramCounters // datagram tags, over every connection (datagram.go)
	// flowEpoch moves when this zipper loses frames of mesh flows for want
	// of a path: every writer here starts new flows (seq.go).
	flowEpoch  atomic.Uint64
	rejectedBy rejectCounters

	writers    writers       // clients that keep their frames until acknowledged (firsthop.go)
	clientDups atomic.Uint64 // their frames dropped as routed already
	// holdCustody, set by tests only (HoldCustodyForTest), stops Custody
	// to clients: what they wrote stays unacknowledged.
	holdCustody atomic.Bool
	bodies      bodyCounters // body streams (body.go)
	readers     readerCounts // connections whose data stream and datagrams are read now
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
		born:        nanotime(),
		name:        name,
		nameBytes:   []byte(name),
		opts:        o,
		log:         o.logger.With("zipper", name),
		servers:     make(map[*server]struct{}),
		conns:       make(map[uint64]*conn),
		router:      router.New[*dest](),
		instRouter:  router.New[*dest](),
		mesh:        mesh.New(name),
		links:       make(map[string]*conn),
		peers:       make(map[string]*peerRecord),
		remoteIDs:   make(map[mesh.Key]remoteRoute),
		reverseVia:  make(map[string]*conn),
		gone:        make(map[string]*functionTotals),
		unroutable:  make(map[Tag]uint64),
		perIP:       make(map[netip.Addr]int),
		pendingFree: make(chan struct{}, 1),
		tokens:      newTokenSet(o.tokens),
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
	if len(o.extraRoots) > 0 {
		if z.tls, err = withRoots(z.tls, o.extraRoots); err != nil {
			return nil, err
		}
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
	z.instTable.Store(z.instRouter.Table())
	z.zipperVia.Store(&map[string]*conn{})
	if len(o.peers) > 0 {
		z.activateMeshLocked()
		for _, p := range o.peers {
			if p.Name != name {
				z.peerLocked(p.Name) // listed in Stats from the start
			}
		}
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

// acceptBacklog is the listener's backlog: the total connection limit
// (WithConnectionLimits), or DefaultMaxConnections when there is none.
func (z *Zipper) acceptBacklog() int {
	if z.opts.maxConns > 0 {
		return z.opts.maxConns
	}
	return DefaultMaxConnections
}

// Serve serves QUIC connections on conn, which it owns and closes when it
// returns. It blocks until ctx is done (it then closes the connections it
// accepted at once and returns ctx.Err()) or the zipper is shut down or
// closed (it returns ErrClosed). For a graceful stop, call Shutdown rather
// than cancelling ctx. Serve also starts the mesh links (WithMesh), once.
//
// Give it a *net.UDPConn (what net.ListenPacket("udp", …) returns): on
// Linux quic-go then sends in GSO batches and reads up to 8 datagrams per
// system call. A PacketConn that only wraps one runs without both
// (without GSO alone, the 1 KiB pipeline carried 0.57× the messages per
// second: RATIONALE.md, "What each quic-go setting does here").
func (z *Zipper) Serve(ctx context.Context, conn net.PacketConn) error {
	// A connection beyond the listener's accept backlog is closed as
	// over a limit: the client tries again later. The backlog holds as
	// many as the zipper may hold connections: a burst that the
	// connection limits admit waits there, however fast its handshakes
	// complete, rather than being closed (RATIONALE.md, "Why does the
	// listener accept on its own goroutines?").
	ln, err := transport.Listen(conn, z.tls, transport.QUICConfig{AcceptBacklog: z.acceptBacklog(),
		AcceptBacklogCode: uint64(frame.CloseLimit)})
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
		z.waitPendingSlot(ctx)
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

// waitPendingSlot returns when a connection taken from the listener now
// would be under the pending-handshake limit (WithMaxPendingHandshakes),
// or when ctx or the zipper ends or the routing table changes (Shutdown
// changes it), so that the caller's Accept notices. Meanwhile new
// connections wait in the listener's backlog (transport.QUICConfig
// AcceptBacklog), not in quic-go's queue of 32, which would refuse them.
func (z *Zipper) waitPendingSlot(ctx context.Context) {
	for {
		z.mu.Lock()
		free := z.opts.maxPending <= 0 || z.pending < z.opts.maxPending || z.closed || z.draining
		changed := z.tableChanged
		z.mu.Unlock()
		if free {
			return
		}
		select {
		case <-z.pendingFree:
		case <-changed:
		case <-ctx.Done():
			return
		case <-z.ctx.Done():
			return
		}
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
	var mine []*conn
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
// connection. Frames it holds are lost (those queued counted as dropped),
// and clients send again what it had not acknowledged, which another
// zipper may deliver a second time; Shutdown loses and duplicates none.
// It waits for the zipper's goroutines and is idempotent.
func (z *Zipper) Close() error {
	z.mu.Lock()
	already := z.closed
	z.closed = true
	servers := make([]*server, 0, len(z.servers))
	for s := range z.servers {
		servers = append(servers, s)
	}
	conns := make([]*conn, 0, len(z.conns))
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
	var conns, links []*conn
	for _, c := range z.conns {
		if c.isLink() {
			links = append(links, c)
		} else {
			conns = append(conns, c)
		}
	}
	for s := range z.servers {
		s.ln.Close() // stop accepting; the socket stays for existing connections
	}
	// Routes through this zipper are withdrawn from its peers: they stop
	// sending here and move to other paths where they have one. The links
	// stay up, so frames already on their way here still arrive and go on.
	z.withdrawLocked()
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
	//    closes the connection once it has read everything. Then the links
	//    likewise: what the clients' last frames queued for other zippers
	//    goes out before the link closes.
	for _, c := range conns {
		c.finish()
	}
	if err := waitDone(ctx, conns); err != nil {
		z.Close()
		return err
	}
	for _, l := range links {
		l.finish()
	}
	if err := waitDone(ctx, links); err != nil {
		z.Close()
		return err
	}
	return z.Close()
}

// waitDone waits until every connection of cs is done, or ctx ends.
func waitDone(ctx context.Context, cs []*conn) error {
	for _, c := range cs {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// dropReportInterval is how often functions are told of their drops, and
// clients that keep their frames of the Custody of those not yet covered.
const dropReportInterval = 200 * time.Millisecond

// report tells every function with new drops how many it missed, and
// every client that keeps its frames the Custody due to it.
func (z *Zipper) report() {
	defer z.wg.Done()
	t := time.NewTicker(dropReportInterval)
	defer t.Stop()
	var drops, acks []*conn
	for {
		select {
		case <-z.ctx.Done():
			return
		case <-t.C:
		}
		drops, acks = drops[:0], acks[:0]
		z.mu.Lock()
		for _, c := range z.conns {
			if c.hs.Kind == frame.KindFunction && c.cnt.dropped.Load() > c.reported {
				drops = append(drops, c)
			}
			if c.writer != nil && c.acks.took.Load() > c.acks.sent.Load() {
				acks = append(acks, c)
			}
		}
		z.mu.Unlock()
		for _, c := range drops {
			total := c.cnt.dropped.Load()
			b, _ := frame.AppendControl(nil, &frame.Dropped{Count: total - c.reported, Total: total})
			if c.writeControl(b, dropReportInterval) == nil {
				c.reported = total
			}
		}
		for _, c := range acks {
			if err := c.ackClient(dropReportInterval); err != nil {
				c.fail(err) // a control stream cut inside a frame is of no use
			}
		}
	}
}
