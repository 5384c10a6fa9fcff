package yomo

import (
	"strings"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/knobs"
	"github.com/yomo-dev/yomo/router"
)

// This file owns the routing decision for every data frame the zipper
// reads, whoever sent it: a Source, a StreamFunction (its results, and
// their backflow to the origin Source) or another zipper over a mesh link.
// It runs on the reader goroutine of the connection the frame came from,
// and allocates nothing.

// dest is where the routing table sends a frame: a connection (a local
// function instance, or a mesh link towards the nearest zipper that has
// one) and the function name it is for.
type dest struct {
	conn *conn
	name string // function name
}

// scratch holds a reader goroutine's reusable buffers for routing.
type scratch struct {
	dsts   []*dest
	remote []*dest
	rseq   []frame.SeqNum // the sequence number of each of remote's frames (0: none)
	seqs   []frame.SeqNum
	seq    []byte
	names  []string
	list   []byte
	path   []byte

	// batch: this is a data stream reader's, which may keep a
	// destination's queue locked between the frames of a batch (held,
	// deliverBatched) and calls release at the end of every batch.
	batch bool
	held  heldQueue
}

// route delivers one data frame read from c.
// The caller counts it in z.framesIn.
func (z *Zipper) route(from *conn, d *frame.Data, sc *scratch) {
	// A waiting put gives up when the writer's own connection ends.
	wait := from.tc.Context().Done()
	if from.isLink() {
		sc.release()
		z.routeFromLink(from, d, sc, wait)
		return
	}
	if from.hs.Kind == frame.KindSource {
		d.Origin = from.hs.ID
		if z.meshOn.Load() {
			d.OriginZipper = z.nameBytes
		}
	}
	d.Path, d.Names, d.Seq = nil, nil, nil // only zippers set these
	if len(z.frameHooks) > 0 {
		sc.release() // a hook may do anything
		if !z.onFrame(from, d) {
			z.filtered.Add(1)
			return
		}
	}
	for {
		gen := z.routeGen.Load()
		if z.dispatch(from, d, z.table.Load(), sc, wait) {
			return
		}
		// What follows may wait: let go of a queue held for the batch.
		sc.release()
		meshUntil := z.meshHoldOf(d.Tag) // a link that carried the tag failed: wait for another path
		until := max(from.graceUntil, meshUntil)
		// A datagram is never held: it would block the datagrams behind it.
		if until == 0 || d.Datagram || !z.holdForRoute(until, gen, wait) {
			if until != 0 && !d.Datagram {
				z.flowEpoch.Add(1) // mesh flows restart (seq.go)
			}
			if meshUntil != 0 && !d.Datagram {
				z.noteMeshLoss(d) // it had a path through a link that failed
			}
			z.noteUnroutable(d.Tag)
			z.noResponders(d, sc, wait)
			return
		}
	}
}

// dispatch delivers d from a client along tbl and reports whether it went
// anywhere. When it did not, nothing was delivered, so it may be retried.
func (z *Zipper) dispatch(from *conn, d *frame.Data, tbl *router.Table[*dest], sc *scratch, wait <-chan struct{}) bool {
	fromFunction := from.hs.Kind == frame.KindFunction
	if fromFunction && d.TID&frame.TIDReplyOnly != 0 {
		// A status reply to a request: to the origin Source only. Loss
		// notices (no TIDRequest) come from zippers only.
		sc.release()
		return d.Origin != 0 && d.TID&frame.TIDRequest != 0 && z.routeBackflow(d, nil, from, wait, sc)
	}
	// The target aliases the frame buffer; Route does not retain it.
	sc.dsts = tbl.RouteKey(d.Tag, unsafeString(d.Target), d.Key, sc.dsts[:0])
	if len(d.Key) > 0 {
		it := z.instTable.Load()
		for i, dst := range sc.dsts {
			sc.dsts[i] = keyedDest(it, d, dst)
		}
	}
	sc.remote, sc.rseq = sc.remote[:0], sc.rseq[:0]
	for _, dst := range sc.dsts {
		if dst.conn.isLink() {
			sc.remote = append(sc.remote, dst)
			if dst.conn.out.Load().custody && !d.Datagram { // datagrams are not sequenced
				sc.rseq = append(sc.rseq, from.fseq.nextName(z.flowEpoch.Load(), dst.name, dst.conn.link.peer))
			} else {
				sc.rseq = append(sc.rseq, frame.SeqNum{})
			}
		} else {
			dst.conn.deliverBatched(d, wait, sc)
		}
	}
	routed := len(sc.dsts) > 0
	if len(sc.remote) > 0 {
		flow := uint64(0)
		if !knobs.NoMeshCustody.Load() && !d.Datagram {
			flow = from.fseq.flowID()
		}
		z.forward(d, nil, flow, sc, wait)
	}
	if fromFunction && d.Origin != 0 {
		sc.release()
		if z.routeBackflow(d, nil, from, wait, sc) {
			routed = true
		}
	}
	return routed
}

// routeFromLink routes a frame that arrived from another zipper: to the
// function names it carries (each reached here, or forwarded on), or, with
// no names, as backflow towards its origin Source.
func (z *Zipper) routeFromLink(from *conn, d *frame.Data, sc *scratch, wait <-chan struct{}) {
	path := d.Path
	if path.Contains(z.name) {
		z.noteUnroutable(d.Tag)
		return
	}
	if d.Names.Len() == 0 {
		z.routeBackflow(d, path, from, wait, sc)
		return
	}
	if oz := d.OriginZipper; len(oz) > 0 && (*z.zipperVia.Load())[unsafeString(oz)] == nil {
		z.learnReverse(string(oz), from)
	}
	names, seq := d.Names, d.Seq
	for {
		gen := z.routeGen.Load()
		if z.routeNames(from, d, path, sc, wait) {
			return
		}
		// The peer routed it here, so it expected a path from here: while
		// this zipper is new (its routes are still arriving) or a link
		// that carried the tag just failed, wait for one. The link's
		// later frames wait behind it, in order.
		until := z.linkHoldUntil(d.Tag)
		if d.Datagram || !z.holdForRoute(until, gen, wait) {
			if until != 0 && !d.Datagram {
				z.flowEpoch.Add(1) // mesh flows restart (seq.go)
				z.noteMeshLoss(d)
			}
			break
		}
		d.Names, d.Seq = names, seq // routeNames cleared them
	}
	z.noteUnroutable(d.Tag)
	z.noResponders(d, sc, wait) // a new frame from here: its path starts here
}

// linkHoldUntil returns the nanotime until which a frame from a link with
// this tag that nothing can take here waits for a route (0: it does not).
func (z *Zipper) linkHoldUntil(tag Tag) int64 {
	var until int64
	if young := z.born + int64(meshHoldWindow); nanotime() < young {
		until = young
	}
	return max(until, z.meshHoldOf(tag))
}

// meshHoldOf returns until when a link that carried tag failed (the
// frames of the tag wait for another path until then), or 0. A hold
// that ended more than meshHoldWindow ago is none: the frames queued
// behind a held one while it waited are still lost for want of a path
// (and reported to their Source); frames written long after are only
// unroutable.
func (z *Zipper) meshHoldOf(tag Tag) int64 {
	if hold := z.meshHold.Load(); hold != nil {
		if u := (*hold)[tag]; u+int64(meshHoldWindow) > nanotime() {
			return u
		}
	}
	return 0
}

// rerouteFrom routes again a frame that was written or queued on the link
// c, which failed: as if it had just come in from c's peer, over the
// paths known now (c is no longer among them). sc may be nil. It reports
// whether the frame went anywhere; the caller counts it when not.
func (z *Zipper) rerouteFrom(c *conn, d *frame.Data, sc *scratch) bool {
	if sc == nil {
		sc = new(scratch)
	}
	// The frame's path ends with this zipper, which sent it on c.
	var hops []string
	d.Path.Range(func(p []byte) bool {
		hops = append(hops, string(p))
		return true
	})
	if len(hops) == 0 || hops[len(hops)-1] != z.name {
		return false
	}
	path := frame.StrList(frame.AppendStrList(nil, hops[:len(hops)-1]...))
	if path.Len() == 0 {
		path = nil
	}
	wait := z.ctx.Done()
	if d.Names.Len() == 0 {
		return z.routeBackflow(d, path, c, wait, sc)
	}
	return z.routeNames(c, d, path, sc, wait)
}

// routeNames delivers a frame from a link (or rerouted from the failed
// link from) to each function name it carries, here or over another
// link, never back towards from or a zipper on path. It reports whether
// it went anywhere.
func (z *Zipper) routeNames(from *conn, d *frame.Data, path frame.StrList, sc *scratch, wait <-chan struct{}) bool {
	names := d.Names
	target := unsafeString(d.Target)
	var flow uint64
	var seqs []byte
	if d.Seq != nil {
		flow, seqs, _ = frame.ParseSeq(d.Seq) // checked by the reader
	}
	sc.remote, sc.rseq = sc.remote[:0], sc.rseq[:0]
	delivered := false
	d.Path, d.Names, d.Seq = nil, nil, nil // local clients see none of them
	tbl := z.table.Load()
	it := z.instTable.Load()
	names.Range(func(name []byte) bool {
		var seq frame.SeqNum
		if flow != 0 {
			seq, seqs, _ = frame.NextSeq(seqs)
		}
		var dst *dest
		var ok bool
		n := unsafeString(name)
		if strings.IndexByte(n, router.MemberSep) >= 0 {
			dst, ok = it.RouteName(d.Tag, target, n) // one instance, chosen upstream
		} else if dst, ok = tbl.RouteNameKey(d.Tag, target, n, d.Key); ok && len(d.Key) > 0 {
			dst = keyedDest(it, d, dst)
		}
		switch {
		case !ok:
		case !dst.conn.isLink():
			z.admit(flowKey{flow: flow, name: n}, seq, d, dst.conn, wait)
			delivered = true
		case dst.conn == from || path.Contains(dst.conn.link.peer):
			// Never back towards where the frame has been.
		default:
			if dst.name != n {
				seq = frame.SeqNum{} // numbered for n, not for the instance chosen here
			}
			sc.remote = append(sc.remote, dst)
			sc.rseq = append(sc.rseq, seq)
		}
		return true
	})
	if len(sc.remote) > 0 {
		z.forward(d, path, flow, sc, wait)
		delivered = true
	}
	return delivered
}

// keyedDest returns, for a frame with a key and the destination the
// routing table chose for one group, the instance of that group the key
// maps to among all the group's instances, here and across the mesh
// (router.Table.RouteMembersKey over the instance table): so a key goes to
// the same instance whichever zipper its frames are written at. It
// returns dst for a broadcast group, or when no instance is known (yet).
func keyedDest(it *router.Table[*dest], d *frame.Data, dst *dest) *dest {
	if strings.IndexByte(dst.name, broadcastSep) >= 0 {
		return dst
	}
	if inst, ok := it.RouteMembersKey(d.Tag, unsafeString(d.Target), dst.name, d.Key); ok {
		return inst
	}
	return dst
}

// routeBackflow delivers d to its origin Source, here or through the link
// towards the origin's zipper. path is where d has been (nil when it comes
// from a local function).
func (z *Zipper) routeBackflow(d *frame.Data, path frame.StrList, from *conn, wait <-chan struct{}, sc *scratch) bool {
	oz := d.OriginZipper
	if len(oz) == 0 || string(oz) == z.name {
		var flow uint64
		var seq frame.SeqNum
		if d.Seq != nil {
			var seqs []byte
			flow, seqs, _ = frame.ParseSeq(d.Seq) // checked by the reader
			seq, _, _ = frame.NextSeq(seqs)
		}
		d.Path, d.Names, d.Seq = nil, nil, nil
		v, ok := z.sources.Load(d.Origin)
		if ok && (d.TID&(frame.TIDRequest|frame.TIDReplyOnly) != 0 || v.(*conn).observes(d.Tag) != nil) {
			z.admit(flowKey{flow: flow, origin: d.Origin}, seq, d, v.(*conn), wait)
			return true
		}
		if seq.N != 0 {
			z.admit(flowKey{flow: flow, origin: d.Origin}, seq, d, nil, wait) // it arrived: the flow moves on
		}
		return false
	}
	l := (*z.zipperVia.Load())[unsafeString(oz)]
	if l == nil || l == from || path.Contains(l.link.peer) {
		return false
	}
	switch {
	case from == nil:
		d.Seq = nil // the zipper's own status reply: not sequenced
	case !from.isLink() && l.out.Load().custody && !d.Datagram:
		// A local function's frame enters the mesh here: number it.
		n := from.fseq.nextOrigin(z.flowEpoch.Load(), d.Origin, l.link.peer)
		sc.seq = frame.AppendSeq(sc.seq[:0], from.fseq.flowID(), n)
		d.Seq = sc.seq
	}
	d.Names = nil
	sc.path = path.AppendWith(sc.path[:0], z.name)
	d.Path = sc.path
	l.deliver(d, wait)
	d.Seq = nil
	return true
}

// forward sends d once to each link among sc.remote, naming the functions
// it is for there, with this zipper appended to its path.
func (z *Zipper) forward(d *frame.Data, path frame.StrList, flow uint64, sc *scratch, wait <-chan struct{}) {
	sc.path = path.AppendWith(sc.path[:0], z.name)
	for i, r := range sc.remote {
		if r == nil {
			continue
		}
		sc.names, sc.seqs = sc.names[:0], sc.seqs[:0]
		for j := i; j < len(sc.remote); j++ {
			if o := sc.remote[j]; o != nil && o.conn == r.conn {
				sc.names = append(sc.names, o.name)
				sc.seqs = append(sc.seqs, sc.rseq[j])
				sc.remote[j] = nil
			}
		}
		sc.list = frame.AppendStrList(sc.list[:0], sc.names...)
		d.Path, d.Names, d.Seq = sc.path, sc.list, nil
		if flow != 0 {
			sc.seq = frame.AppendSeq(sc.seq[:0], flow, sc.seqs...)
			d.Seq = sc.seq
		}
		r.conn.deliverBatched(d, wait, sc)
	}
	d.Path, d.Names, d.Seq = nil, nil, nil
}

// noResponders answers a request that reached no function with a status
// reply to its origin Source, so its Request returns ErrNoResponders at
// once rather than at its deadline. Other frames are left alone.
func (z *Zipper) noResponders(d *frame.Data, sc *scratch, wait <-chan struct{}) {
	if d.TID&frame.TIDRequest == 0 || d.TID&frame.TIDReplyOnly != 0 || d.Origin == 0 {
		return
	}
	r := frame.Data{Tag: d.Tag, Origin: d.Origin, TID: d.TID | frame.TIDReplyOnly,
		Metadata: noRespondersMetadata, OriginZipper: d.OriginZipper}
	z.routeBackflow(&r, nil, nil, wait, sc)
}

var noRespondersMetadata = frame.MetadataOf(frame.StatusKey, frame.StatusNoResponders)

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
	z.instTable.Store(z.instRouter.Table())
	z.signalTableLocked()
}

// signalTableLocked wakes frames held by a reconnect grace; z.mu is held.
func (z *Zipper) signalTableLocked() {
	z.routeGen.Add(1)
	close(z.tableChanged)
	z.tableChanged = make(chan struct{})
}

// noteUnroutable counts a frame nothing could take.
func (z *Zipper) noteUnroutable(tag Tag) {
	z.unroutedN.Add(1)
	z.mu.Lock()
	z.unroutable[tag]++
	z.mu.Unlock()
}

// bodyDest is where a body goes: a local function instance, or a mesh
// link and the function names it is for beyond it.
type bodyDest struct {
	conn  *conn
	names []string // a link's
}

// bodyDests routes a body (frame/spec.md §9) as dispatch and routeNames
// route a data frame of its tag, target and key, from a client or from
// the link from: one instance of each function name, near or over a
// link; never backflow. It returns nil when the body goes nowhere.
func (z *Zipper) bodyDests(from *conn, d *frame.Data) []bodyDest {
	var out []bodyDest
	add := func(dst *dest) {
		if dst.conn.isLink() {
			for i := range out {
				if out[i].conn == dst.conn {
					out[i].names = append(out[i].names, dst.name)
					return
				}
			}
		}
		out = append(out, bodyDest{conn: dst.conn, names: []string{dst.name}})
	}
	tbl, it := z.table.Load(), z.instTable.Load()
	target := unsafeString(d.Target)
	if !from.isLink() {
		for _, dst := range tbl.RouteKey(d.Tag, target, d.Key, nil) {
			if len(d.Key) > 0 {
				dst = keyedDest(it, d, dst)
			}
			add(dst)
		}
		return out
	}
	path := d.Path
	if path.Contains(z.name) {
		return nil
	}
	d.Names.Range(func(name []byte) bool {
		var dst *dest
		var ok bool
		n := unsafeString(name)
		if strings.IndexByte(n, router.MemberSep) >= 0 {
			dst, ok = it.RouteName(d.Tag, target, n)
		} else if dst, ok = tbl.RouteNameKey(d.Tag, target, n, d.Key); ok && len(d.Key) > 0 {
			dst = keyedDest(it, d, dst)
		}
		if ok && (!dst.conn.isLink() || dst.conn != from && !path.Contains(dst.conn.link.peer)) {
			add(dst)
		}
		return true
	})
	return out
}
