package yomo

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// This file is the one datagram mechanism of both ends of a connection
// (zipper connections to clients and mesh links, and the clients'
// sessions): a bounded queue in front of the transport with its sender,
// which numbers the datagrams of its direction, and the receiver, which
// counts the numbers that never arrived. RATIONALE.md, "Why are datagram
// tags declared by the writer, and what is counted?"

// MaxDatagramFrame is the largest encoded frame of a datagram tag
// (WithDatagramTags): its payload plus tag, origin, tid, target, key,
// metadata and the flags byte (frame.DataSize, about 12 bytes besides the
// payload for a plain Write) must fit in one QUIC datagram on any path.
// A larger write fails with a *DatagramTooLargeError. Zippers add to a
// frame as it crosses the mesh (the origin zipper's name, the path and
// the function names); a frame that no longer fits at a zipper is dropped
// there and counted (DatagramStats.TooLarge).
const MaxDatagramFrame = transport.MaxDatagramSize - frame.DatagramOverhead

// datagramQueue is how many datagrams one direction of a connection holds
// for its sender; more are dropped (DatagramStats.QueueFull). The
// transport holds another 32 (QUIC) until congestion control lets them
// out.
const datagramQueue = 256

// DatagramTooLargeError is returned by a write of a datagram tag whose
// frame does not fit in one datagram. It matches ErrFrameTooLarge.
type DatagramTooLargeError struct {
	Tag  Tag
	Size int // the encoded frame (frame.DataSize)
	Max  int // MaxDatagramFrame
}

func (e *DatagramTooLargeError) Error() string {
	return fmt.Sprintf("yomo: a frame of datagram tag %d takes %d bytes, more than a datagram carries (%d)", e.Tag, e.Size, e.Max)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *DatagramTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// DatagramStats counts the frames of datagram tags (WithDatagramTags) an
// end of a connection sent and received: the zipper's over all its
// connections (Stats.Datagrams), a client's over its connections
// (Source.DatagramStats, StreamFunction.DatagramStats). Counters only
// grow. A frame dropped by a sender is counted once, by that sender; a
// frame lost on the way is counted by the receiver of that hop in Lost,
// when a later frame arrives.
type DatagramStats struct {
	// In counts frames received in datagrams.
	In uint64 `json:"in"`
	// Out counts frames handed to the transport, which sends each once
	// (no retransmission).
	Out uint64 `json:"out"`
	// Lost counts frames the receiver knows it missed: sequence numbers
	// skipped on a hop into here (dropped by the network, or by the
	// receiving transport's full queue). Frames lost after the last one
	// that arrived on a connection are not counted: nothing shows them.
	Lost uint64 `json:"lost"`
	// Late counts frames that arrived after a later one of their
	// connection (reordered on the way): each was counted in Lost when
	// the later one arrived, so Lost − Late is the loss on the hops into
	// here.
	Late uint64 `json:"late"`
	// TooLarge counts frames a sender dropped because they did not fit
	// in a datagram: at a zipper, after it added the mesh fields, or
	// above the receiving function's WithMaxFrameSize. (A client's own
	// writes fail with a *DatagramTooLargeError instead.)
	TooLarge uint64 `json:"too_large"`
	// QueueFull counts frames a sender dropped because its datagram queue
	// was full: the network (congestion control) or the peer did not take
	// them as fast as they came.
	QueueFull uint64 `json:"queue_full"`
	// NoConnection counts frames a sender dropped because no connection
	// could carry them: a client's written between connections, and
	// frames still queued (or refused by the transport) when a connection
	// ended.
	NoConnection uint64 `json:"no_connection"`
}

// dgramCounters are the live counters behind a DatagramStats.
type dgramCounters struct {
	in, out, lost, late, tooLarge, queueFull, noConn atomic.Uint64
}

func (c *dgramCounters) snapshot() DatagramStats {
	return DatagramStats{In: c.in.Load(), Out: c.out.Load(), Lost: c.lost.Load(), Late: c.late.Load(),
		TooLarge: c.tooLarge.Load(), QueueFull: c.queueFull.Load(), NoConnection: c.noConn.Load()}
}

// dgramOut is one direction's datagrams waiting for the transport, and
// their sender. Any goroutine may put; one goroutine runs the sender.
type dgramOut struct {
	q    chan []byte // encoded data bodies
	done atomic.Bool // the sender ended: what is queued is dropped
	cnt  *dgramCounters
}

func newDgramOut(cnt *dgramCounters) *dgramOut {
	return &dgramOut{q: make(chan []byte, datagramQueue), cnt: cnt}
}

// put queues d's body, or drops and counts it: too large for a datagram
// (or for the receiver's payload limit max, when not 0), or the queue is
// full. It never waits.
func (o *dgramOut) put(d *frame.Data, max int) {
	n := frame.DataSize(d)
	if n > MaxDatagramFrame || max > 0 && len(d.Payload) > max {
		o.cnt.tooLarge.Add(1)
		return
	}
	if o.done.Load() {
		o.cnt.noConn.Add(1)
		return
	}
	// A copy: d aliases its reader's buffer, and the queue outlives it.
	b := frame.AppendDataBody(make([]byte, 0, n), d)
	select {
	case o.q <- b:
		if o.done.Load() {
			o.discard() // the sender ended meanwhile: count it with the rest
		}
	default:
		o.cnt.queueFull.Add(1)
	}
}

// run sends the queued datagrams on tc, numbering them from 1, until stop
// or until tc is closed; then it drops (and counts) what is left.
func (o *dgramOut) run(tc transport.Conn, stop <-chan struct{}) {
	defer o.discard()
	defer o.done.Store(true)
	closed := tc.Context().Done()
	buf := make([]byte, 0, transport.MaxDatagramSize)
	var seq uint64
	for {
		var b []byte
		select {
		case b = <-o.q:
		case <-stop:
			return
		case <-closed:
			return
		}
		seq++
		buf = frame.AppendDatagram(buf[:0], seq, b)
		// Counted first: the peer may have it before SendDatagram returns.
		o.cnt.out.Add(1)
		if err := tc.SendDatagram(buf); err != nil {
			// Closed, or a peer without datagrams: lost with the number
			// it was given, which the peer (if any) sees as a gap.
			o.cnt.out.Add(^uint64(0))
			o.cnt.noConn.Add(1)
		}
	}
}

// discard drops what is queued, counting it.
func (o *dgramOut) discard() {
	for {
		select {
		case <-o.q:
			o.cnt.noConn.Add(1)
		default:
			return
		}
	}
}

// readDatagrams receives the peer's datagrams on tc and calls fn with
// each frame (d.Datagram set; d is reused: fn must not retain it), in
// arrival order, counting in cnt the sequence numbers that were skipped.
// It returns nil when tc or ctx ends, a *protocolError for a datagram the
// peer got wrong, or fn's error.
func readDatagrams(ctx context.Context, tc transport.Conn, max int, cnt *dgramCounters, fn func(d *frame.Data) error) error {
	var d frame.Data
	var last uint64 // the highest sequence number received
	for {
		b, err := tc.ReceiveDatagram(ctx)
		if err != nil {
			return nil // the connection (or its owner) ended
		}
		seq, body, err := frame.ParseDatagram(b)
		if err == nil {
			err = d.Decode(body)
		}
		if err != nil {
			return &protocolError{msg: "datagram: " + err.Error(), err: err}
		}
		if len(d.Payload) > max {
			err := &frame.SizeError{Type: frame.TypeData, Size: len(d.Payload), Max: max}
			return &protocolError{msg: "datagram: " + err.Error(), err: err}
		}
		d.Datagram = true
		cnt.in.Add(1)
		if seq > last {
			cnt.lost.Add(seq - last - 1)
			last = seq
		} else {
			cnt.late.Add(1)
		}
		if err := fn(&d); err != nil {
			return err
		}
	}
}
