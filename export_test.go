package yomo

// Hooks for the black-box tests (package yomo_test). This file is the only
// place where tests reach into the package's internals: keep it small, and
// adapt it, not the tests, when the internals change.

import (
	"fmt"
	"strings"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/router"
)

// Close codes of the wire protocol (the connection close codes a peer
// sees) and handshake limits.
const (
	CloseNormalForTest     = uint64(frame.CloseNormal)
	CloseProtocolForTest   = uint64(frame.CloseProtocol)
	CloseLimitForTest      = uint64(frame.CloseLimit)
	CloseRejectBaseForTest = uint64(frame.CloseRejectBase) // + a frame.Reject* code

	MaxNameLenForTest   = maxNameLen
	MaxTargetLenForTest = maxTargetLen
)

// DialMemForTest connects a raw in-memory peer to z: the zipper serves the
// server end as any connection; the test speaks (or does not speak) the
// protocol on the client end.
func DialMemForTest(z *Zipper, name string) (transport.Conn, error) { return z.dialMem(name) }

// RouteGroupsForTest returns the function groups z's routing table sends
// frames of tag to.
func RouteGroupsForTest(z *Zipper, tag Tag) []string { return z.table.Load().Groups(tag) }

// StoppedForTest reports whether f's client was stopped (by Close).
func StoppedForTest(f *StreamFunction) bool { return f.c.ctx.Err() != nil }

// BodyAcceptorsForTest returns how many of z's connections have a
// goroutine accepting their body streams now.
func BodyAcceptorsForTest(z *Zipper) int { return int(z.bodies.acceptors.Load()) }

// ReadersForTest returns how many of z's connections have a goroutine
// reading their peer's control stream, data stream and datagrams now. A
// connection is counted for its control stream only after the readers
// it starts at once are counted.
func ReadersForTest(z *Zipper) (control, data, datagrams int) {
	return int(z.readers.control.Load()), int(z.readers.data.Load()), int(z.readers.datagrams.Load())
}

// QueuesForTest returns, by client name, whether the zipper has made the
// client's outbox (its queue of frames to send it).
func QueuesForTest(z *Zipper) map[string]bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := make(map[string]bool)
	for _, c := range z.conns {
		m[c.hs.Name] = c.out.Load() != nil
	}
	return m
}

// RunningForTest returns how many flusher and data-reader goroutines the
// sessions of x, a *Source or a *StreamFunction, run now (at most one
// each).
func RunningForTest(x any) (flushers, dataReaders int) {
	var c *client
	switch x := x.(type) {
	case *Source:
		c = x.c
	case *StreamFunction:
		c = x.c
	default:
		panic(fmt.Sprintf("RunningForTest(%T)", x))
	}
	return int(c.running.flushers.Load()), int(c.running.dataReaders.Load())
}

// ConnectAsZipperForTest makes s announce itself as a zipper (a mesh
// link) in its handshake.
func ConnectAsZipperForTest(s *Source) { s.c.kind = frame.KindZipper }

// RouteForTest registers connections on z as the handshake would, on
// in-memory transport ends (no goroutines): a source (ID 42, observing
// tag 2) and fns functions (fn-0 ...) observing tag 1; with backflow, one
// more function ("fn"), whose results for the source go back to it. It
// returns route, which routes a decoded data frame from the source (with
// backflow: from "fn") as a connection's reader does, take, which swaps
// out the queued frames of the frame's destinations as their flushers do,
// and done, which unregisters the connections. With custody, the source
// keeps its frames until acknowledged (Handshake.Custody), and route adds
// what a reader does for such a client: the duplicate check and the
// custody count (the Custody frames themselves are held: no control
// stream here).
func RouteForTest(z *Zipper, fns int, backflow, custody bool) (route func(*frame.Data), take func(), done func(), err error) {
	var conns []*conn
	var from *conn
	var b inBatch
	sc := scratch{batch: true} // as readData's
	done = func() {
		if from != nil {
			_ = from.endBatch(&b, &sc)
		}
		for _, c := range conns {
			z.unregister(c)
		}
	}
	add := func(hs *frame.Handshake) *conn {
		if err != nil {
			return nil
		}
		_, srv := transport.Pipe("bench")
		c := z.newConn(srv, nil)
		if rej := z.register(c, hs); rej != nil {
			err = fmt.Errorf("register %s: %s", hs.Name, rej.reason)
			return nil
		}
		conns = append(conns, c)
		return c
	}
	src := add(&frame.Handshake{Kind: frame.KindSource, Name: "src", ID: 42, ObserveTags: []Tag{2}, Custody: custody})
	var sinks []*conn
	for i := range fns {
		sinks = append(sinks, add(&frame.Handshake{Kind: frame.KindFunction, Name: fmt.Sprintf("fn-%d", i), ObserveTags: []Tag{1}}))
	}
	from = src
	if backflow {
		from = add(&frame.Handshake{Kind: frame.KindFunction, Name: "fn", ObserveTags: []Tag{1}})
		sinks = []*conn{src}
	}
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	k := 0
	if from.writer != nil {
		z.holdCustody.Store(true)
	}
	// What readData does with each frame, ending a batch after maxBatch
	// frames (a reader under load: its buffer always holds another).
	route = func(d *frame.Data) {
		k++
		if err := from.readFrame(d, frame.DataSize(d)-frame.HeaderSize, k == maxBatch, &b, &sc); err != nil {
			panic(err)
		}
		if k == maxBatch {
			k = 0
			if err := from.endBatch(&b, &sc); err != nil {
				panic(err)
			}
		}
	}
	take = func() {
		sc.release() // mid-batch, the flusher waits for the reader's hold
		for _, c := range sinks {
			c.queue().take()
		}
	}
	return route, take, done, nil
}

// RemoteAddrsForTest lists the remote addresses of z's client connections,
// as the transport sees them now.
func RemoteAddrsForTest(z *Zipper) []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []string
	for _, c := range z.conns {
		if !c.isLink() {
			out = append(out, c.tc.RemoteAddr().String())
		}
	}
	return out
}

// InstancesForTest counts the instances of function fn observing tag
// that z's instance table knows (its own and those learned from the mesh).
func InstancesForTest(z *Zipper, tag Tag, fn string) int {
	n := 0
	for _, g := range z.instTable.Load().Groups(tag) {
		if strings.HasPrefix(g, fn+string(router.MemberSep)) {
			n++
		}
	}
	return n
}

// HoldCustodyForTest stops (hold) or resumes z's Custody frames to
// clients: meanwhile what they write stays unacknowledged, and is sent
// again after a reconnect.
func HoldCustodyForTest(z *Zipper, hold bool) { z.holdCustody.Store(hold) }

// BreakConnForTest closes the client's live connection at once, as a
// network failure would; the client reconnects.
func BreakConnForTest(s *Source) {
	if ss := s.c.sess.Load(); ss != nil {
		ss.tc.CloseWithError(uint64(frame.CloseNormal), "broken by the test")
	}
}
