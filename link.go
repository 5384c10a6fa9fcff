package yomo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
	"github.com/yomo-dev/yomo/router"
)

// Mesh timing.
const (
	// pingInterval is how often a link measures its round trip time.
	pingInterval = 250 * time.Millisecond
	// linkDeadAfter closes a link that answered no ping for this long, so
	// a cut link reroutes quickly (QUIC's idle timeout is much longer).
	linkDeadAfter = 1500 * time.Millisecond
	// hopCost (µs) is added to every link's measured latency: crossing a
	// zipper costs processing time, and when latencies are within noise of
	// each other (a LAN, loopback) fewer hops win.
	hopCost = 200
)

// dest is where the routing table sends a frame: a local function
// instance, or a mesh link towards the nearest zipper that has one.
type dest struct {
	conn *zconn // local instance
	link *link  // next hop towards a remote instance
	name string // function name
}

// link is one connection to another zipper. It carries traffic both ways
// whichever side dialed, and route advertisements on its control stream.
type link struct {
	z      *Zipper
	peer   string
	tc     transport.Conn
	ctrl   transport.Stream
	rd     *frame.Reader
	dialed bool
	out    *outbox
	done   chan struct{}

	mu      sync.Mutex
	pending []frame.Route // advertisements waiting for the control writer
	kick    chan struct{} // cap 1: wakes the control writer
	ctrlMu  sync.Mutex    // serialises control writes (pongs from the reader, the rest from the writer)

	up       atomic.Bool  // first pong received: routes flow over it
	rtt      atomic.Int64 // smoothed round trip, nanoseconds
	lastPong atomic.Int64 // nanotime of the last pong
	cost     uint32       // cost applied to the table; guarded by z.mu

	framesIn, framesOut, bytesIn, bytesOut, dropped atomic.Uint64
}

// canonical reports whether l is the link to keep when both zippers
// dialed each other: the one dialed by the zipper with the smaller name.
func (l *link) canonical() bool {
	if l.dialed {
		return l.z.name < l.peer
	}
	return l.peer < l.z.name
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
			log.Debug("mesh dial failed", "addr", p.Addr, "err", err)
			if !sleepCtx(z.ctx, backoff(attempt, DefaultReconnectMin, DefaultReconnectMax)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		if err := z.runLink(l); err != nil && z.ctx.Err() == nil {
			log.Info("mesh link down", "err", err)
		}
		if !sleepCtx(z.ctx, backoff(0, DefaultReconnectMin, DefaultReconnectMax)) {
			return
		}
	}
}

// dialPeer connects to a peer zipper and performs the handshake.
func (z *Zipper) dialPeer(p mesh.Peer) (*link, error) {
	ctx, cancel := context.WithTimeout(z.ctx, z.opts.handshakeTimeout)
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
	return z.newLink(ack.Zipper, tc, st, rd, true), nil
}

func (z *Zipper) newLink(peer string, tc transport.Conn, ctrl transport.Stream, rd *frame.Reader, dialed bool) *link {
	return &link{
		z: z, peer: peer, tc: tc, ctrl: ctrl, rd: rd, dialed: dialed,
		out:  newOutbox(z.opts.queueFrames, z.opts.queueBytes, tc.RTT),
		done: make(chan struct{}),
		kick: make(chan struct{}, 1),
	}
}

func (z *Zipper) linkTo(peer string) *link {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.links[peer]
}

// registerLink makes l the link to its peer, unless a link that should be
// kept exists already.
func (z *Zipper) registerLink(l *link) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed || z.draining {
		return errors.New("zipper is shutting down")
	}
	if l.peer == z.name {
		return errors.New("a zipper cannot link to itself")
	}
	if old := z.links[l.peer]; old != nil {
		if !l.canonical() || old.canonical() {
			return errors.New("duplicate link")
		}
		old.tc.CloseWithError(uint64(frame.CloseNormal), "replaced by the canonical link")
		z.unlinkLocked(old)
	}
	z.links[l.peer] = l
	z.activateMeshLocked()
	return nil
}

// unlinkLocked forgets l and what was learned over it. z.mu is held.
func (z *Zipper) unlinkLocked(l *link) {
	if z.links[l.peer] != l {
		return
	}
	delete(z.links, l.peer)
	// Also when the link never came up: routes it advertised before our
	// first pong were learned, and only LinkDown forgets them.
	l.up.Store(false)
	z.applyChangesLocked(z.mesh.LinkDown(l.peer))
}

// runLink serves a link until it fails or the zipper closes.
func (z *Zipper) runLink(l *link) error {
	defer close(l.done)
	if err := z.registerLink(l); err != nil {
		l.tc.CloseWithError(uint64(frame.CloseNormal), err.Error())
		return err
	}
	z.log.Info("mesh link up", "peer", l.peer, "dialed", l.dialed, "remote", l.tc.RemoteAddr().String())
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	stop := make(chan struct{})
	wg.Add(4)
	go func() { // owned by runLink: ends when l.tc closes
		defer wg.Done()
		errc <- l.readData()
	}()
	go func() { // owned by runLink: ends on stop or a write error
		defer wg.Done()
		errc <- l.writeData(stop)
	}()
	go func() { // owned by runLink: ends when l.tc closes
		defer wg.Done()
		errc <- l.readControl()
	}()
	go func() { // owned by runLink: ends on stop or a write error
		defer wg.Done()
		errc <- l.writeControl(stop)
	}()
	var err error
	select {
	case err = <-errc:
	case <-l.tc.Context().Done():
		err = context.Cause(l.tc.Context())
	case <-z.ctx.Done():
		err = ErrClosed
	}
	close(stop)
	l.tc.CloseWithError(uint64(frame.CloseNormal), "")
	wg.Wait()
	z.mu.Lock()
	z.unlinkLocked(l)
	z.mu.Unlock()
	lost := l.out.close()
	l.dropped.Add(uint64(lost))
	return err
}

func (l *link) readData() error {
	rs, err := l.tc.AcceptUniStream(l.z.ctx)
	if err != nil {
		return err
	}
	rd := frame.NewReader(rs, l.z.opts.maxFrame)
	var d frame.Data
	var sc scratch
	for {
		t, body, err := rd.Next()
		if err != nil {
			return err
		}
		if t != frame.TypeData {
			return fmt.Errorf("mesh: unexpected %s frame on a data stream", t)
		}
		if err := d.Decode(body); err != nil {
			return err
		}
		l.framesIn.Add(1)
		l.bytesIn.Add(uint64(len(body)))
		l.z.routeFromLink(l, &d, &sc)
	}
}

func (l *link) writeData(stop <-chan struct{}) error {
	ss, err := l.tc.OpenUniStream(l.z.ctx)
	if err != nil {
		return err
	}
	lost, err := l.out.flush(ss, stop, nil, func(n int) { l.framesOut.Add(uint64(n)) })
	if lost > 0 {
		l.framesOut.Add(^uint64(lost - 1))
		l.dropped.Add(uint64(lost))
	}
	return err
}

// deliver queues d for the peer, dropping (and counting) when the link is
// stalled.
func (l *link) deliver(d *frame.Data, wait <-chan struct{}) {
	if l.out.put(d, DropStalled, wait, 0, l.z.opts.stallTimeout) {
		l.bytesOut.Add(uint64(frame.DataSize(d)))
		return
	}
	l.dropped.Add(1)
	l.z.droppedAll.Add(1)
}

// advertise queues route advertisements for the peer.
func (l *link) advertise(routes ...frame.Route) {
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

// writeControl sends pings and route advertisements.
func (l *link) writeControl(stop <-chan struct{}) error {
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	l.lastPong.Store(nanotime())
	ping := func() error {
		if time.Duration(nanotime()-l.lastPong.Load()) > linkDeadAfter {
			return fmt.Errorf("mesh: peer %s answered no ping for %v", l.peer, linkDeadAfter)
		}
		return l.writeCtrl(frame.AppendPing(nil, uint64(nanotime()), false))
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
		case <-l.kick:
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
				if err := l.writeCtrl(b); err != nil {
					return err
				}
				routes = routes[n:]
			}
		}
	}
}

// writeCtrl writes one control frame.
func (l *link) writeCtrl(b []byte) error {
	l.ctrlMu.Lock()
	defer l.ctrlMu.Unlock()
	l.ctrl.SetWriteDeadline(time.Now().Add(linkDeadAfter))
	_, err := l.ctrl.Write(b)
	return err
}

func (l *link) readControl() error {
	for {
		t, body, err := l.rd.Next()
		if err != nil {
			return err
		}
		v, err := frame.DecodeControl(t, body)
		if err != nil {
			return err
		}
		switch t {
		case frame.TypePing:
			if err := l.writeCtrl(frame.AppendPing(nil, v.(*frame.Ping).Value, true)); err != nil {
				return err
			}
		case frame.TypePong:
			l.onPong(time.Duration(nanotime() - int64(v.(*frame.Ping).Value)))
		case frame.TypeRoutes:
			l.z.learn(l, v.(*frame.RouteUpdate).Routes)
		case frame.TypeGoAway:
			return errGoAway
		default:
			return fmt.Errorf("mesh: unexpected %s frame on the control stream", t)
		}
	}
}

// onPong folds a round trip into the link's cost. The first brings the link
// up; later ones change the cost when it moved by more than a fifth.
func (l *link) onPong(rtt time.Duration) {
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
	z := l.z
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.links[l.peer] != l {
		return
	}
	if !l.up.Load() {
		l.up.Store(true)
		l.cost = cost
		z.applyChangesLocked(z.mesh.LinkUp(l.peer, cost))
		l.advertise(z.mesh.Adverts()...)
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
func (z *Zipper) learn(l *link, routes []frame.Route) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.links[l.peer] != l {
		return
	}
	z.applyChangesLocked(z.mesh.Learn(l.peer, routes))
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
		case frame.RouteFunction:
			id, had := z.remoteIDs[c.Key]
			if had {
				z.router.Remove(id)
				delete(z.remoteIDs, c.Key)
				routerChanged = true
			}
			if c.Removed || c.Best.Via == "" {
				continue
			}
			l := z.links[c.Best.Via]
			if l == nil {
				continue
			}
			z.nextRemoteID++
			id = 1<<63 | z.nextRemoteID
			err := z.router.Add(router.Instance[*dest]{ID: id, Name: c.Key.Name, Tags: []Tag{c.Key.Tag},
				Target: c.Key.Target, Cost: c.Best.Cost + 1, Dest: &dest{link: l, name: c.Key.Name}})
			if err == nil {
				z.remoteIDs[c.Key] = id
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
		m := make(map[string]*link)
		for _, c := range z.allZipperRoutesLocked() {
			if l := z.links[c.Via]; l != nil {
				m[c.name] = l
			}
		}
		z.zipperVia.Store(&m)
	}
	for _, l := range z.links {
		if l.up.Load() {
			l.advertise(routes...)
		}
	}
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

// scratch holds a reader goroutine's reusable buffers for forwarding.
type scratch struct {
	dsts   []*dest
	remote []*dest
	names  []string
	list   []byte
	path   []byte
}

// routeFromLink routes a frame that arrived from another zipper.
func (z *Zipper) routeFromLink(from *link, d *frame.Data, sc *scratch) {
	z.framesIn.Add(1)
	wait := from.tc.Context().Done()
	path := d.Path
	if path.Contains(z.name) {
		z.noteUnroutable(d.Tag)
		return
	}
	if d.Names.Len() == 0 {
		// Backflow towards the zipper of the origin Source.
		z.routeBackflow(d, path, wait, sc)
		return
	}
	names := d.Names
	target := unsafeString(d.Target)
	sc.remote = sc.remote[:0]
	delivered := false
	d.Path, d.Names = nil, nil // local clients see neither
	names.Range(func(name []byte) bool {
		dst, ok := z.table.Load().RouteName(d.Tag, target, unsafeString(name))
		switch {
		case !ok:
		case dst.conn != nil:
			dst.conn.deliver(d, wait)
			delivered = true
		case dst.link == from || path.Contains(dst.link.peer):
			// Never back towards where the frame has been.
		default:
			sc.remote = append(sc.remote, dst)
		}
		return true
	})
	if len(sc.remote) > 0 {
		z.forward(d, path, sc, wait)
		delivered = true
	}
	if !delivered {
		z.noteUnroutable(d.Tag)
	}
}

// routeBackflow delivers d to its origin Source, here or through the link
// towards the origin's zipper. path is where d has been (nil when it comes
// from a local function).
func (z *Zipper) routeBackflow(d *frame.Data, path frame.StrList, wait <-chan struct{}, sc *scratch) bool {
	oz := d.OriginZipper
	if len(oz) == 0 || string(oz) == z.name {
		if v, ok := z.sources.Load(d.Origin); ok && v.(*zconn).observes[d.Tag] != nil {
			src := v.(*zconn)
			d.Path, d.Names = nil, nil
			src.deliver(d, wait)
			return true
		}
		return false
	}
	l := (*z.zipperVia.Load())[unsafeString(oz)]
	if l == nil || path.Contains(l.peer) {
		return false
	}
	d.Names = nil
	sc.path = path.AppendWith(sc.path[:0], z.name)
	d.Path = sc.path
	l.deliver(d, wait)
	return true
}

// forward sends d once to each link among sc.remote, naming the functions
// it is for there, with this zipper appended to its path.
func (z *Zipper) forward(d *frame.Data, path frame.StrList, sc *scratch, wait <-chan struct{}) {
	sc.path = path.AppendWith(sc.path[:0], z.name)
	for i, r := range sc.remote {
		if r == nil {
			continue
		}
		sc.names = sc.names[:0]
		for j := i; j < len(sc.remote); j++ {
			if o := sc.remote[j]; o != nil && o.link == r.link {
				sc.names = append(sc.names, o.name)
				sc.remote[j] = nil
			}
		}
		sc.list = frame.AppendStrList(sc.list[:0], sc.names...)
		d.Path, d.Names = sc.path, sc.list
		r.link.deliver(d, wait)
	}
	d.Path, d.Names = nil, nil
}

func (z *Zipper) noteUnroutable(tag Tag) {
	z.unroutedN.Add(1)
	z.mu.Lock()
	z.unroutable[tag]++
	z.mu.Unlock()
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
	Peer   string `json:"peer"`
	State  string `json:"state"`  // "connecting" (no round trip measured yet) or "up"
	Dialed bool   `json:"dialed"` // this zipper dialed the link
	Remote string `json:"remote"` // the peer's address
	// RTT is the smoothed round trip time (in JSON: nanoseconds).
	RTT       time.Duration `json:"rtt"`
	FramesIn  uint64        `json:"frames_in"`
	FramesOut uint64        `json:"frames_out"`
	BytesIn   uint64        `json:"bytes_in"`
	BytesOut  uint64        `json:"bytes_out"`
	// Dropped counts frames for the peer dropped because the link was
	// stalled or broke with frames queued.
	Dropped uint64 `json:"dropped"`
}

// linkStatsLocked lists the links; z.mu is held.
func (z *Zipper) linkStatsLocked() []LinkStats {
	out := make([]LinkStats, 0, len(z.links))
	for _, l := range z.links {
		st := "connecting"
		if l.up.Load() {
			st = "up"
		}
		var remote string
		if a := l.tc.RemoteAddr(); a != nil {
			remote = a.String()
		}
		out = append(out, LinkStats{
			Peer: l.peer, State: st, Dialed: l.dialed, Remote: remote,
			RTT:      time.Duration(l.rtt.Load()),
			FramesIn: l.framesIn.Load(), FramesOut: l.framesOut.Load(),
			BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(), Dropped: l.dropped.Load(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}
