package yomo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/knobs"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
	"github.com/yomo-dev/yomo/router"
)

// Mesh timing.
const (
	// pingInterval is how often a link measures its round trip time.
	pingInterval = 50 * time.Millisecond
	// minDeadAfter and deadRTTs: a link that answered no ping for
	// max(minDeadAfter, deadRTTs smoothed round trips) is closed, so a cut
	// link reroutes within half a second on a LAN (QUIC's idle timeout is
	// much longer). 8 pings go unanswered first: network loss alone (3 %)
	// does not take a link down, and time this process was starved of CPU
	// (its ping ticker ran late) does not count as silence. A link closed
	// wrongly costs a redial, not frames: custody sends what it held again
	// over another path, and the last zipper drops duplicates.
	minDeadAfter = 400 * time.Millisecond
	deadRTTs     = 8
	// linkDeadAfter bounds a control write on a link (a link that cannot
	// take one for this long is dead anyway).
	linkDeadAfter = 1500 * time.Millisecond
	// meshRedialMax caps the backoff between attempts to link to a
	// configured peer, and meshDialTimeout bounds one attempt (at least
	// deadRTTs round trips of the last link): a link restored after a cut
	// carries traffic again within about a second.
	meshRedialMax   = 500 * time.Millisecond
	meshDialTimeout = time.Second
	// hopCost (µs) is added to every link's measured latency: crossing a
	// zipper costs processing time, and when latencies are within noise of
	// each other (a LAN, loopback) fewer hops win.
	hopCost = 200
	// meshHoldWindow is how long, after a link failed, the frames it held
	// and new frames of the tags it carried wait for another path when
	// none is known: the mesh may need a few route advertisements (from
	// zippers whose best path went through the failed link) to find one.
	meshHoldWindow = 2 * time.Second
)

// linkState is what a mesh link adds to a connection: the peer, the route
// advertisements waiting for its control writer, and its measured round
// trip, which is the link's cost in the mesh table.
type linkState struct {
	peer   string
	dialed bool

	mu      sync.Mutex
	pending []frame.Route // advertisements waiting for the control writer
	kick    chan struct{} // cap 1: wakes the control writer

	up       atomic.Bool  // first pong received: routes flow over it
	rtt      atomic.Int64 // smoothed round trip, nanoseconds
	lastPong atomic.Int64 // nanotime of the last pong
	cost     uint32       // cost applied to the table; guarded by z.mu
}

// canonical reports whether l is the link to keep when both zippers
// dialed each other: the one dialed by the zipper with the smaller name.
func (l *linkState) canonical(self string) bool {
	if l.dialed {
		return self < l.peer
	}
	return l.peer < self
}

// startMesh starts the dialers for the configured peers, once.
func (z *Zipper) startMesh() {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.meshStarted || z.closed {
		return
	}
	z.meshStarted = true
	for _, p := range z.opts.peers {
		if p.Name == z.name {
			continue
		}
		z.wg.Add(1)
		go z.dialLoop(p) // owned by z: ends when Close cancels z.ctx
	}
}

// activateMeshLocked makes the zipper a mesh node: it advertises itself as
// the destination of backflow for its sources. z.mu is held.
func (z *Zipper) activateMeshLocked() {
	if z.meshOn.Load() {
		return
	}
	z.meshOn.Store(true)
	z.wg.Add(1)
	go z.runSeqSweeper() // owned by z: ends at Close; Close waits on z.wg
	z.applyChangesLocked(z.mesh.AddLocal(mesh.Key{Kind: frame.RouteZipper, Name: z.name}))
}

// dialLoop keeps a link to p up, reconnecting with backoff and jitter.
func (z *Zipper) dialLoop(p mesh.Peer) {
	defer z.wg.Done()
	log := z.log.With("peer", p.Name)
	for attempt := 0; ; {
		if existing := z.linkTo(p.Name); existing != nil {
			// The peer dialed us: keep that link while it lasts.
			select {
			case <-existing.done:
			case <-z.ctx.Done():
				return
			}
			continue
		}
		l, err := z.dialPeer(p)
		if err != nil {
			if z.ctx.Err() != nil {
				return
			}
			// A misconfigured link (untrusted certificate, wrong name, bad
			// credential) fails the same way at every attempt: WARN once
			// per new error, and Stats shows it.
			if z.notePeerError(p.Name, err) {
				log.Warn("mesh dial failed", "addr", p.Addr, "err", err)
			} else {
				log.Debug("mesh dial failed", "addr", p.Addr, "err", err)
			}
			if !sleepCtx(z.ctx, backoff(attempt, DefaultReconnectMin, meshRedialMax)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		err = z.runLink(l)
		close(l.done)
		if err != nil && z.ctx.Err() == nil {
			z.notePeerError(p.Name, err)
			log.Info("mesh link down", "err", err)
		}
		if !sleepCtx(z.ctx, backoff(0, DefaultReconnectMin, meshRedialMax)) {
			return
		}
	}
}

// dialPeer connects to a peer zipper and performs the handshake.
func (z *Zipper) dialPeer(p mesh.Peer) (*conn, error) {
	z.mu.Lock()
	timeout := max(meshDialTimeout, deadRTTs*z.peerLocked(p.Name).lastRTT)
	z.mu.Unlock()
	ctx, cancel := context.WithTimeout(z.ctx, min(timeout, z.opts.handshakeTimeout))
	defer cancel()
	tlsConf := z.tls.Clone()
	if z.roots != nil && tlsConf.RootCAs == nil {
		tlsConf.RootCAs = z.roots
	}
	tc, err := transport.Dial(ctx, p.Addr, tlsConf, transport.QUICConfig{})
	if err != nil {
		return nil, err
	}
	hs := &frame.Handshake{Version: frame.ProtocolVersion, Name: z.name, Kind: frame.KindZipper,
		ID: rand.Uint64() | 1, Credential: p.Credential}
	st, rd, ack, err := handshakeOn(ctx, tc, hs, z.opts.handshakeTimeout)
	if err != nil {
		return nil, err
	}
	if p.Name != "" && ack.Zipper != p.Name {
		err := fmt.Errorf("peer at %s is zipper %q, want %q", p.Addr, ack.Zipper, p.Name)
		tc.CloseWithError(uint64(frame.CloseNormal), err.Error())
		return nil, err
	}
	return z.newLink(ack.Zipper, z.newConn(tc, nil), st, rd, true), nil
}

// newLink makes a mesh link of an established connection to peer, whose
// control stream (ctrl, read by rd) carried the handshake.
func (z *Zipper) newLink(peer string, c *conn, ctrl transport.Stream, rd *frame.Reader, dialed bool) *conn {
	c.ctrl, c.ctrlRd = ctrl, rd
	c.link = &linkState{peer: peer, dialed: dialed, kick: make(chan struct{}, 1)}
	if c.hs == nil {
		c.hs = &frame.Handshake{Name: peer, Kind: frame.KindZipper}
	}
	c.policy = DropStalled // a link is never blocked by one slow peer
	o := newOutbox(z.opts.queueFrames, z.opts.queueBytes, c.tc.RTT)
	o.custody = !knobs.NoMeshCustody.Load()
	c.out.Store(o)
	c.acks.setLink(z.opts.queueFrames, z.opts.queueBytes)
	z.mu.Lock()
	c.cnt = &z.peerLocked(peer).cnt
	z.mu.Unlock()
	return c
}

func (z *Zipper) linkTo(peer string) *conn {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.links[peer]
}

// registerLink makes c the link to its peer, unless a link that should be
// kept exists already.
func (z *Zipper) registerLink(c *conn) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	l := c.link
	if z.closed || z.draining {
		return errors.New("zipper is shutting down")
	}
	if l.peer == z.name {
		return errors.New("a zipper cannot link to itself")
	}
	if old := z.links[l.peer]; old != nil {
		if !l.canonical(z.name) || old.link.canonical(z.name) {
			return errors.New("duplicate link")
		}
		old.tc.CloseWithError(uint64(frame.CloseNormal), "replaced by the canonical link")
		z.unlinkLocked(old)
	}
	if c.id == 0 {
		z.nextConnID++
		c.id = z.nextConnID
	}
	z.links[l.peer] = c
	z.conns[c.id] = c
	z.activateMeshLocked()
	return nil
}

// unlinkLocked forgets c and what was learned over it. z.mu is held.
func (z *Zipper) unlinkLocked(c *conn) {
	l := c.link
	if z.links[l.peer] != c {
		return
	}
	delete(z.links, l.peer)
	delete(z.conns, c.id)
	for name, via := range z.reverseVia {
		if via == c {
			delete(z.reverseVia, name)
		}
	}
	z.publishZipperViaLocked()
	z.holdTagsLocked(c)
	// Also when the link never came up: routes it advertised before our
	// first pong were learned, and only LinkDown forgets them.
	l.up.Store(false)
	z.applyChangesLocked(z.mesh.LinkDown(l.peer))
}

// runLink serves a link until it fails or the zipper closes. What is still
// queued for the peer then is dropped and counted.
func (z *Zipper) runLink(c *conn) error {
	if err := z.registerLink(c); err != nil {
		c.tc.CloseWithError(uint64(frame.CloseNormal), err.Error())
		return err
	}
	z.log.Info("mesh link up", "peer", c.link.peer, "dialed", c.link.dialed, "remote", c.tc.RemoteAddr().String())
	err := c.serve()
	z.mu.Lock()
	z.unlinkLocked(c)
	z.mu.Unlock()
	// The caller redials meanwhile: the held frames may wait for a path.
	z.wg.Add(1)
	go func() { // owned by z: ends within meshHoldWindow, or at Close
		defer z.wg.Done()
		z.rerouteHeld(c)
	}()
	return err
}

// holdTagsLocked starts the hold window of the tags routed over the
// failed link c (meshHold). z.mu is held.
func (z *Zipper) holdTagsLocked(c *conn) {
	now := nanotime()
	until := now + int64(meshHoldWindow)
	m := make(map[Tag]int64)
	if old := z.meshHold.Load(); old != nil {
		for tag, u := range *old {
			if u > now {
				m[tag] = u
			}
		}
	}
	for k, r := range z.remoteIDs {
		if r.via == c {
			m[k.Tag] = until
		}
	}
	z.meshHold.Store(&m)
}

// rerouteHeld routes again, over the paths known now, every frame the
// peer of the failed link c never took into its custody: those it did not
// acknowledge, then those still queued, in order. When a frame finds no
// path, it and those after it wait for a route change, up to
// meshHoldWindow after the failure; a frame with no path then is dropped
// and counted on the link.
func (z *Zipper) rerouteHeld(c *conn) {
	o := c.out.Load() // a link's is made with it
	if !o.custody {
		c.closeQueue()
		return
	}
	b, n := o.closeCustody()
	if n == 0 {
		return
	}
	until := nanotime() + int64(meshHoldWindow)
	z.meshHeld.Add(int64(n))
	defer func() { z.meshHeld.Add(-int64(n)) }() // those left, on an early return
	var sc scratch
	var d frame.Data
	for len(b) > 0 {
		_, size, err := frame.ParseHeader(b, math.MaxInt)
		if err != nil || len(b) < frame.HeaderSize+size {
			c.noteDropped(uint64(n), nil) // cannot happen: we encoded them
			return
		}
		body := b[frame.HeaderSize : frame.HeaderSize+size]
		b = b[frame.HeaderSize+size:]
		z.rerouteOne(c, body, until, &d, &sc)
		n--
		z.meshHeld.Add(-1)
	}
}

// rerouteOne routes again one frame (its encoded body) the failed link c
// held, waiting for a path until then; with none, it is dropped and
// counted.
func (z *Zipper) rerouteOne(c *conn, body []byte, until int64, d *frame.Data, sc *scratch) {
	for {
		gen := z.routeGen.Load()
		if d.Decode(body) == nil && z.rerouteFrom(c, d, sc) { // routing rewrites d: decode each time
			return
		}
		if !z.holdForRoute(until, gen, z.ctx.Done()) {
			c.noteDropped(1, nil)
			z.noteLinkLoss(c.link.peer, d)
			z.flowEpoch.Add(1) // mesh flows restart (seq.go)
			return
		}
	}
}

// noteLinkLoss counts d, held by the failed link to peer, as lost for
// want of a path: per tag on the peer, and for its origin Source.
func (z *Zipper) noteLinkLoss(peer string, d *frame.Data) {
	z.mu.Lock()
	p := z.peerLocked(peer)
	if p.lostByTag == nil {
		p.lostByTag = make(map[Tag]uint64)
	}
	p.lostByTag[d.Tag]++
	z.mu.Unlock()
	z.noteMeshLoss(d)
}

// advertise queues route advertisements for the peer.
func (l *linkState) advertise(routes ...frame.Route) {
	l.mu.Lock()
	l.pending = append(l.pending, routes...)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// routesThatFit returns how many of routes (at least one) fit in one
// Routes frame well under MaxControlSize.
func routesThatFit(routes []frame.Route) int {
	const budget = frame.MaxControlSize / 2
	size := 0
	for i, r := range routes {
		size += 64 + len(r.Name) + len(r.Target)
		for _, p := range r.Path {
			size += 2 + len(p)
		}
		if size > budget && i > 0 {
			return i
		}
	}
	return len(routes)
}

// runControl is a link's control writer: it sends pings and route
// advertisements until stop, and fails when the peer answered no ping for
// linkDeadAfter.
func (l *linkState) runControl(c *conn, stop <-chan struct{}) error {
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	l.lastPong.Store(nanotime())
	lastTick := nanotime()
	ping := func() error {
		// A tick that comes late means this process was starved (CPU, a
		// pause): the peer's pongs could not be read meanwhile either, so
		// that time does not count as the peer's silence.
		now := nanotime()
		if late := now - lastTick - 2*int64(pingInterval); late > 0 {
			l.lastPong.Add(late)
		}
		lastTick = now
		if silent, dead := time.Duration(nanotime()-l.lastPong.Load()), l.deadAfter(); silent > dead {
			return fmt.Errorf("mesh: peer %s answered no ping for %v (limit %v)", l.peer, silent.Round(time.Millisecond), dead)
		}
		return c.writeControl(frame.AppendPing(nil, uint64(nanotime()), false), linkDeadAfter)
	}
	if err := ping(); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
			if err := ping(); err != nil {
				return err
			}
			if err := l.sendCustody(c); err != nil {
				return err
			}
		case <-l.kick:
			if err := l.sendCustody(c); err != nil {
				return err
			}
			l.mu.Lock()
			routes := l.pending
			l.pending = nil
			l.mu.Unlock()
			for len(routes) > 0 {
				n := routesThatFit(routes)
				b, err := frame.AppendControl(nil, &frame.RouteUpdate{Routes: routes[:n]})
				if err != nil {
					return err
				}
				if err := c.writeControl(b, linkDeadAfter); err != nil {
					return err
				}
				routes = routes[n:]
			}
		}
	}
}

// kickControl wakes the control writer: a Custody is due.
func (l *linkState) kickControl() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// sendCustody tells the peer how many of its frames are routed here, when
// that changed (c.acks). A draining zipper sends none: its peers route
// again what they sent it since (its own links may close before it is
// forwarded), and the zipper delivering them drops the duplicates.
func (l *linkState) sendCustody(c *conn) error {
	if c.z.isDraining() {
		return nil
	}
	return c.acks.send(c, linkDeadAfter)
}

// heard records evidence that the peer is alive other than a pong: any
// frame read from it (data or control), or body bytes sent or taken on
// the link (its flow control let a write through). Frames or a body that
// fill the link delay the pings behind them, on a busy machine beyond
// deadAfter; the link is not dead while they move. A cut stops all of
// them alike.
func (l *linkState) heard() { l.lastPong.Store(nanotime()) }

// deadAfter is how long the link may answer no ping before it is closed.
func (l *linkState) deadAfter() time.Duration {
	return max(minDeadAfter, deadRTTs*time.Duration(l.rtt.Load()))
}

// onPong folds a round trip into the link's cost. The first brings the link
// up; later ones change the cost when it moved by more than a fifth.
func (l *linkState) onPong(c *conn, rtt time.Duration) {
	if rtt <= 0 {
		rtt = time.Microsecond
	}
	l.lastPong.Store(nanotime())
	old := time.Duration(l.rtt.Load())
	if old == 0 {
		l.rtt.Store(int64(rtt))
	} else {
		l.rtt.Store(int64(old + (rtt-old)/4)) // EWMA, weight 1/4
	}
	cost := uint32(time.Duration(l.rtt.Load())/time.Microsecond) + hopCost
	z := c.z
	z.mu.Lock()
	defer z.mu.Unlock()
	z.peerLocked(l.peer).lastRTT = time.Duration(l.rtt.Load())
	if z.links[l.peer] != c {
		return
	}
	if !l.up.Load() {
		l.up.Store(true)
		p := z.peerLocked(l.peer)
		p.everUp, p.lastErr = true, ""
		l.cost = cost
		z.applyChangesLocked(z.mesh.LinkUp(l.peer, cost))
		if !z.draining {
			l.advertise(z.mesh.Adverts()...)
		}
		return
	}
	diff := int64(cost) - int64(l.cost)
	if diff < 0 {
		diff = -diff
	}
	if diff*5 > int64(l.cost) && diff > 100 {
		l.cost = cost
		z.applyChangesLocked(z.mesh.SetCost(l.peer, cost))
	}
}

// learn applies a neighbour's advertisements.
func (z *Zipper) learn(c *conn, routes []frame.Route) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.links[c.link.peer] != c {
		return
	}
	z.applyChangesLocked(z.mesh.Learn(c.link.peer, routes))
}

// applyChangesLocked updates the routing table and the backflow routes
// with best-route changes, and advertises them to every up link. z.mu is
// held.
func (z *Zipper) applyChangesLocked(changes []mesh.Change) {
	if len(changes) == 0 {
		return
	}
	routes := make([]frame.Route, 0, len(changes))
	routerChanged, zippersChanged := false, false
	for _, c := range changes {
		routes = append(routes, z.mesh.Advert(c))
		switch c.Key.Kind {
		case frame.RouteFunction, frame.RouteInstance:
			rt, key := z.router, peerKey(c.Best.Via)
			if c.Key.Kind == frame.RouteInstance {
				rt, key = z.instRouter, instanceKey(c.Key.Name)
			}
			prev, had := z.remoteIDs[c.Key]
			var via *conn
			if !c.Removed && c.Best.Via != "" {
				via = z.links[c.Best.Via]
			}
			if had && via == prev.via {
				// Same next hop, another cost: the instance stays.
				rt.Update(prev.id, c.Best.Cost+1)
				routerChanged = true
				continue
			}
			if had {
				rt.Remove(prev.id)
				delete(z.remoteIDs, c.Key)
				routerChanged = true
			}
			if via == nil {
				continue
			}
			z.nextRemoteID++
			id := 1<<63 | z.nextRemoteID
			err := rt.Add(router.Instance[*dest]{ID: id, Name: c.Key.Name, Tags: []Tag{c.Key.Tag},
				Target: c.Key.Target, Cost: c.Best.Cost + 1, Dest: &dest{conn: via, name: c.Key.Name}, Key: key})
			if err == nil {
				z.remoteIDs[c.Key] = remoteRoute{id: id, via: via}
				routerChanged = true
			}
		case frame.RouteZipper:
			zippersChanged = true
		}
	}
	if routerChanged {
		z.storeTableLocked()
	}
	if zippersChanged {
		z.publishZipperViaLocked()
	}
	if z.draining {
		return // shutting down: the peers were told it reaches nothing
	}
	for _, l := range z.links {
		if l.link.up.Load() {
			l.link.advertise(routes...)
		}
	}
}

// publishZipperViaLocked publishes the next hop towards every zipper: the
// best advertised route, or, for a zipper no route is known to yet, the
// link its frames last came in on (a reverse hint). z.mu is held.
func (z *Zipper) publishZipperViaLocked() {
	m := make(map[string]*conn)
	for _, c := range z.allZipperRoutesLocked() {
		if l := z.links[c.Via]; l != nil {
			m[c.name] = l
		}
	}
	for name, l := range z.reverseVia {
		if _, ok := m[name]; ok || z.links[l.link.peer] != l {
			delete(z.reverseVia, name) // a route is known now, or the link is gone
			continue
		}
		m[name] = l
	}
	z.zipperVia.Store(&m)
}

// learnReverse records that frames from the zipper named origin came in
// on link from, while no route towards origin is known. A zipper learns
// a function's route before the function's zipper has learnt the route
// back (their adverts cross on different links, and data overtakes
// control), so without this the first replies and results of a new mesh
// path would be unroutable for one advert's trip.
func (z *Zipper) learnReverse(origin string, from *conn) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.links[from.link.peer] != from || origin == z.name {
		return
	}
	if l := (*z.zipperVia.Load())[origin]; l != nil {
		return // learnt meanwhile
	}
	z.reverseVia[origin] = from
	z.publishZipperViaLocked()
}

// withdrawLocked withdraws, on every link, everything this zipper
// advertised; z.mu is held.
func (z *Zipper) withdrawLocked() {
	routes := z.mesh.Adverts()
	for i := range routes {
		routes[i].Withdraw = true
	}
	for _, l := range z.links {
		if l.link.up.Load() && len(routes) > 0 {
			l.link.advertise(routes...)
		}
	}
}

// peerKey is the stable keyed-routing identity of the routes through a
// peer (FNV-1a of its name).
func peerKey(peer string) uint64 { return router.HashKey(bytesOf(peer)) }

// remoteRoute is the routing-table instance standing for a function
// reached through a mesh link.
type remoteRoute struct {
	id  uint64
	via *conn
}

type zipperRoute struct {
	name string
	mesh.Best
}

// allZipperRoutesLocked lists the best routes to every known zipper.
func (z *Zipper) allZipperRoutesLocked() []zipperRoute {
	var out []zipperRoute
	for _, r := range z.mesh.Adverts() {
		if r.Kind != frame.RouteZipper || r.Name == z.name {
			continue
		}
		if b, ok := z.mesh.Best(mesh.Key{Kind: frame.RouteZipper, Name: r.Name}); ok && b.Via != "" {
			out = append(out, zipperRoute{r.Name, b})
		}
	}
	return out
}

// backoff returns the delay before attempt n (from 0): exponential from
// lo to hi, jittered into [d/2, d].
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// LinkStats are the counters of one mesh link.
type LinkStats struct {
	Peer string `json:"peer"`
	// State is "connecting" (no link yet, or no round trip measured yet
	// on it), "up", or "down": the peer had a link that was up and has
	// none now.
	State  string `json:"state"`
	Dialed bool   `json:"dialed"` // this zipper dialed the link
	Remote string `json:"remote"` // the peer's address
	// RTT is the smoothed round trip time (in JSON: nanoseconds).
	RTT       time.Duration `json:"rtt"`
	FramesIn  uint64        `json:"frames_in"`
	FramesOut uint64        `json:"frames_out"`
	BytesIn   uint64        `json:"bytes_in"`
	BytesOut  uint64        `json:"bytes_out"`
	// Dropped counts frames for the peer dropped because the link was
	// stalled or broke with frames queued. The counters of a peer are kept
	// across its links: they count since the zipper started.
	Dropped uint64 `json:"dropped"`
	// LostByTag counts, per tag, the frames among Dropped that a failed
	// link held and that found no other path within 2 s (their origin
	// Sources got a *LostError).
	LostByTag map[Tag]uint64 `json:"lost_by_tag,omitempty"`
	// LastError is why the last attempt to link, or the last link, failed
	// ("" when none did): an untrusted certificate, a wrong name, a bad
	// credential, a lost link. A configured peer is listed from the
	// start, "connecting" until its first link is up.
	LastError string `json:"last_error,omitempty"`
}

// notePeerError records the last error of the link to peer and reports
// whether it differs from the one before.
func (z *Zipper) notePeerError(peer string, err error) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	p := z.peerLocked(peer)
	msg := err.Error()
	changed := p.lastErr != msg
	p.lastErr = msg
	return changed
}

// peerRecord is what the zipper keeps about a peer across its links: a
// configured peer has one from the start, any other from its first link.
type peerRecord struct {
	cnt     connCounters  // the counters of its links, added up
	lastErr string        // why the last attempt to link, or the last link, failed
	everUp  bool          // a link to it was up at least once
	lastRTT time.Duration // the last smoothed round trip to it
	// lostByTag counts, per tag, the frames a failed link to it held that
	// found no other path in time.
	lostByTag map[Tag]uint64
}

// peerLocked returns the record of peer, making it; z.mu is held.
func (z *Zipper) peerLocked(peer string) *peerRecord {
	p := z.peers[peer]
	if p == nil {
		p = new(peerRecord)
		z.peers[peer] = p
	}
	return p
}

// linkStatsLocked lists the configured peers and every peer that had a
// link, with its link's state when there is one; z.mu is held.
func (z *Zipper) linkStatsLocked() []LinkStats {
	out := make([]LinkStats, 0, len(z.peers))
	for peer, p := range z.peers {
		cnt := &p.cnt
		ls := LinkStats{Peer: peer, State: "down", LastError: p.lastErr,
			FramesIn: cnt.framesIn.Load(), FramesOut: cnt.framesOut.Load(),
			BytesIn: cnt.bytesIn.Load(), BytesOut: cnt.bytesOut.Load(), Dropped: cnt.dropped.Load()}
		if !p.everUp {
			ls.State = "connecting"
		}
		if len(p.lostByTag) > 0 {
			ls.LostByTag = maps.Clone(p.lostByTag)
		}
		if c := z.links[peer]; c != nil {
			l := c.link
			ls.State = "connecting"
			if l.up.Load() {
				ls.State = "up"
			}
			if a := c.tc.RemoteAddr(); a != nil {
				ls.Remote = a.String()
			}
			ls.Dialed, ls.RTT = l.dialed, time.Duration(l.rtt.Load())
		}
		out = append(out, ls)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}
