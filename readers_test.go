package yomo_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// A client that has not written has no data-stream reader at its zipper
// (frame.DataStream), and one without datagram tags no datagram reader
// (Handshake.NoDatagrams): an idle client costs its zipper one goroutine,
// its control reader. The first write starts the data reader and its
// frame arrives; a graceful shutdown still waits for every client to
// finish its data stream, also those that never wrote.
func TestClientReadersStartWhenNeeded(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var got recorder
		connectFn(t, tz, "sink", tz.clients, []yomo.Tag{0x20}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
		src := connectSource(t, tz, "src", tz.clients)
		connectSource(t, tz, "dgram-src", append(tz.clients[:len(tz.clients):len(tz.clients)], yomo.WithDatagramTags(0x21)))
		readers := func() string {
			c, d, g := yomo.ReadersForTest(tz.Zipper)
			return fmt.Sprintf("readers: control %d, data %d, datagrams %d", c, d, g)
		}
		// Once the three control readers run, every reader started at once
		// is counted: only the datagram source's datagram reader.
		eventually(t, 5*time.Second, func() bool { c, _, _ := yomo.ReadersForTest(tz.Zipper); return c == 3 }, readers)
		if _, d, g := yomo.ReadersForTest(tz.Zipper); d != 0 || g != 1 {
			t.Fatalf("three idle clients, one with datagram tags: %s; want no data reader and one datagram reader", readers())
		}
		if err := src.Write(0x20, []byte("first")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool { return got.len() == 1 }, func() string { return "the first frame did not arrive; " + readers() })
		if _, d, g := yomo.ReadersForTest(tz.Zipper); d != 1 || g != 1 {
			t.Fatalf("after the source's first write: %s; want one data reader and one datagram reader", readers())
		}
		if err := src.Write(0x20, []byte("second")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool { return got.len() == 2 }, func() string { return "the second frame did not arrive" })
		// The function and the datagram source never wrote: on GOAWAY they
		// announce their data stream and finish it, which Shutdown waits
		// for.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tz.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown with clients that never wrote: %v (%s)", err, readers())
		}
	})
}

// The DataStream capability on the wire: a client that does not announce
// its data stream (an older client) has it read from the start; one that
// does has the zipper wait for its DataStream frame, and frames it wrote
// before are routed once it comes; DataStream from a client that was not
// asked for it, or twice, closes the connection as a protocol error.
func TestDataStreamFrame(t *testing.T) {
	tz := newZipper(t, quicTransport)
	var got recorder
	connectFn(t, tz, "sink", tz.clients, []yomo.Tag{0x30}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
	src := func(announce bool) *frame.Handshake {
		return &frame.Handshake{Version: frame.ProtocolVersion, Name: "raw", Kind: frame.KindSource, ID: 7, AnnouncesData: announce}
	}
	announce, _ := frame.AppendControl(nil, &frame.DataStream{})
	dataReaders := func() int { _, d, _ := yomo.ReadersForTest(tz.Zipper); return d }
	// connected waits until the zipper reads the control streams of the
	// function and of n more connections.
	connected := func(n int) {
		eventually(t, 5*time.Second, func() bool { c, _, _ := yomo.ReadersForTest(tz.Zipper); return c == 1+n },
			func() string { return "the raw client's connection is not served" })
	}

	t.Run("older client: read at once", func(t *testing.T) {
		tc, _, ack := handshakeAck(t, tz, src(false))
		defer tc.CloseWithError(0, "")
		if ack.AnnounceData {
			t.Fatal("HandshakeAck asks a client that does not announce for DataStream")
		}
		connected(1)
		if n := dataReaders(); n != 1 {
			t.Fatalf("%d data readers for a client that does not announce, want 1", n)
		}
		writeRawData(t, tc, 0x30, "older")
		eventually(t, 5*time.Second, func() bool { return got.len() == 1 }, func() string { return "its frame did not arrive" })
	})
	eventually(t, 5*time.Second, func() bool { return dataReaders() == 0 }, func() string { return "the older client's reader did not end" })

	t.Run("announcing client: read after DataStream", func(t *testing.T) {
		tc, ctrl, ack := handshakeAck(t, tz, src(true))
		defer tc.CloseWithError(0, "")
		if !ack.AnnounceData {
			t.Fatal("HandshakeAck does not ask an announcing client for DataStream")
		}
		connected(1)
		writeRawData(t, tc, 0x30, "early") // waits in QUIC: nothing reads it
		if n := dataReaders(); n != 0 {
			t.Fatalf("%d data readers before DataStream, want 0", n)
		}
		if _, err := ctrl.Write(announce); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool { return got.len() == 2 }, func() string { return "the frame written before DataStream was not routed after it" })
		if r := got.snapshot()[1]; r.data != "early" {
			t.Fatalf("routed %q, want \"early\"", r.data)
		}
		rejectsControl(t, tc, ctrl, announce, "data-stream") // a second DataStream
	})
	t.Run("client not asked", func(t *testing.T) {
		tc, ctrl, ack := handshakeAck(t, tz, src(false))
		if ack.AnnounceData {
			t.Fatal("HandshakeAck asks for DataStream")
		}
		rejectsControl(t, tc, ctrl, announce, "data-stream")
	})
}

// writeRawData opens a data stream on tc and writes one data frame of tag
// to it.
func writeRawData(t *testing.T, tc transport.Conn, tag yomo.Tag, payload string) {
	t.Helper()
	us, err := tc.OpenUniStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := us.Write(frame.AppendData(nil, &frame.Data{Tag: tag, Payload: []byte(payload)})); err != nil {
		t.Fatal(err)
	}
}

// A client's own goroutines start when needed too: its flusher, and
// with it its data stream, at the first frame it queues; its reader of the
// zipper's data stream when the zipper announces that stream (a
// DataStream frame, sent before the first frame routed to the client). A
// connected Source that has neither written nor been sent anything runs
// neither, and Flush returns at once for it; its writes start the flusher
// (and arrive), a reply to its request the data reader. A function that
// was sent nothing runs no data reader.
func TestClientGoroutinesStartWhenNeeded(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var got recorder
		connectFn(t, tz, "sink", tz.clients, []yomo.Tag{0x40}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
		connectFn(t, tz, "upper", tz.clients, []yomo.Tag{0x41}, func(ctx yomo.Context) {
			_ = ctx.Write(0x42, bytes.ToUpper(ctx.Data()))
		})
		idleFn := connectFn(t, tz, "idle", tz.clients, []yomo.Tag{0x43}, func(yomo.Context) {})
		src := connectSource(t, tz, "src", tz.clients)
		running := func(x any) func() string {
			return func() string {
				f, d := yomo.RunningForTest(x)
				return fmt.Sprintf("%d flushers and %d data readers", f, d)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Flush returns once the session started the goroutines it
		// starts at once.
		if err := src.Flush(ctx); err != nil {
			t.Fatalf("Flush with nothing written: %v", err)
		}
		if f, d := yomo.RunningForTest(src); f != 0 || d != 0 {
			t.Fatalf("a connected source that has not written nor been sent anything runs %s; want none", running(src)())
		}
		for i := range 3 {
			if err := src.Write(0x40, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := src.Flush(ctx); err != nil {
			t.Fatalf("Flush after three writes: %v", err)
		}
		eventually(t, 5*time.Second, func() bool { return got.len() == 3 }, func() string {
			return fmt.Sprintf("%d of 3 frames arrived; the source runs %s", got.len(), running(src)())
		})
		if f, d := yomo.RunningForTest(src); f != 1 || d != 0 {
			t.Fatalf("after the source wrote: %s; want one flusher and no data reader", running(src)())
		}
		reply, err := src.Request(ctx, 0x41, []byte("hi"))
		if err != nil || string(reply) != "HI" {
			t.Fatalf("Request = %q, %v; want HI", reply, err)
		}
		if f, d := yomo.RunningForTest(src); f != 1 || d != 1 {
			t.Fatalf("after a reply came: %s; want one flusher and one data reader", running(src)())
		}
		if f, d := yomo.RunningForTest(idleFn); f != 0 || d != 0 {
			t.Fatalf("a function that was sent nothing runs %s; want none", running(idleFn)())
		}
	})
}

// The zipper makes a client's queue when something is first routed to it
// (or its writer starts: a function's at once): a source that observes
// nothing and was sent nothing has none, which is most of what an idle
// source costs the zipper beyond quic-go's own. A reply is then queued and
// arrives.
func TestZipperQueueMadeOnFirstUse(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		connectFn(t, tz, "upper", tz.clients, []yomo.Tag{0x44}, func(ctx yomo.Context) {
			_ = ctx.Write(0x45, bytes.ToUpper(ctx.Data()))
		})
		src := connectSource(t, tz, "src", tz.clients)
		queues := func() string { return fmt.Sprint(yomo.QueuesForTest(tz.Zipper)) }
		eventually(t, 5*time.Second, func() bool { return yomo.QueuesForTest(tz.Zipper)["upper"] }, func() string {
			return "the function's queue was not made when its writer started: " + queues()
		})
		if q, ok := yomo.QueuesForTest(tz.Zipper)["src"]; !ok || q {
			t.Fatalf("a connected source that was sent nothing: queues %s; want src registered without one", queues())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		reply, err := src.Request(ctx, 0x44, []byte("hi"))
		if err != nil || string(reply) != "HI" {
			t.Fatalf("Request = %q, %v; want HI", reply, err)
		}
		if !yomo.QueuesForTest(tz.Zipper)["src"] {
			t.Fatalf("after a reply was routed to the source: queues %s; want src with one", queues())
		}
	})
}

// The zipper's side of DataStream on the wire: to a client that asks for
// it (Handshake.AnnounceData) the HandshakeAck promises it, and the
// client's first control frame after something was routed to it is one
// DataStream, sent once, the data following on the zipper's data stream;
// a client that does not ask (an older one) gets no DataStream, and its
// data all the same.
func TestZipperAnnouncesItsDataStream(t *testing.T) {
	tz := newZipper(t, quicTransport)
	feed := connectSource(t, tz, "feed", tz.clients)
	// A raw function: the zipper's writer to it runs from the start, and
	// writes (and announces) its stream at the first frame routed to it.
	observer := func(announce bool) *frame.Handshake {
		return &frame.Handshake{Version: frame.ProtocolVersion, Name: "raw", Kind: frame.KindFunction, ID: 8,
			ObserveTags: []yomo.Tag{0x50}, AnnounceData: announce}
	}
	for _, announce := range []bool{true, false} {
		t.Run(fmt.Sprintf("announce_data=%v", announce), func(t *testing.T) {
			tc, ctrl, ack := handshakeAck(t, tz, observer(announce))
			defer tc.CloseWithError(0, "")
			if ack.AnnouncesData != announce {
				t.Fatalf("HandshakeAck announces_data = %v for a client whose announce_data is %v", ack.AnnouncesData, announce)
			}
			ctrlRd := frame.NewReader(ctrl, frame.MaxControlSize)
			rs := make(chan transport.ReceiveStream, 1)
			go func() { // owned by the test: ends when the stream comes or tc closes
				if us, err := tc.AcceptUniStream(context.Background()); err == nil {
					rs <- us
				}
			}()
			// Routed to the raw function once it is registered.
			eventually(t, 5*time.Second, func() bool {
				return feed.Write(0x50, []byte("one")) == nil && len(rs) == 1
			}, func() string { return "nothing was routed to the raw function" })
			if announce {
				if ft, _, err := ctrlRd.Next(); err != nil || ft != frame.TypeDataStream {
					t.Fatalf("first control frame after data was routed: %v %v; want data-stream", ft, err)
				}
			}
			dr := frame.NewReader(<-rs, frame.DefaultMaxSize+frame.MaxEnvelope)
			if ft, _, err := dr.Next(); err != nil || ft != frame.TypeData {
				t.Fatalf("the zipper's data stream: %v %v; want a data frame", ft, err)
			}
			// No (second) DataStream: the answer to a Ping is the next
			// control frame.
			if _, err := ctrl.Write(frame.AppendPing(nil, 77, false)); err != nil {
				t.Fatal(err)
			}
			if ft, _, err := ctrlRd.Next(); err != nil || ft != frame.TypePong {
				t.Fatalf("control frame after the data: %v %v; want the pong (no DataStream)", ft, err)
			}
		})
	}
}

// The client's side of DataStream: from a zipper it did not ask, or whose
// HandshakeAck did not promise it, or a second time, it is a protocol
// error: the client closes the connection saying so.
func TestClientRejectsUnaskedDataStream(t *testing.T) {
	for _, tc := range []struct {
		name     string
		promised bool
		sent     int
	}{{"not promised", false, 1}, {"second", true, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			_, zc, ctrl, hs := sourceAtFake(t, tc.promised)
			if !hs.AnnounceData {
				t.Fatal("the source's handshake does not ask for DataStream")
			}
			announce, _ := frame.AppendControl(nil, &frame.DataStream{})
			for range tc.sent {
				if _, err := ctrl.Write(announce); err != nil {
					t.Fatal(err)
				}
			}
			if ce := closeErrorOf(t, zc, 5*time.Second); ce.Code != yomo.CloseProtocolForTest || !strings.Contains(ce.Reason, "data-stream") {
				t.Fatalf("the client closed with %#x %q, want a protocol error about data-stream", ce.Code, ce.Reason)
			}
		})
	}
}

// A Source's frames on its data stream carry no origin: the zipper sets
// it from the handshake (frame/spec.md §5), so the 8 bytes would be
// wasted, a quarter of the frame of a 16-byte write. The frame is flags,
// tag, tid and payload; a function still gets the source's id as origin
// (TestSourceOriginReachesFunctions).
func TestSourceFramesCarryNoOrigin(t *testing.T) {
	src, zc, _, hs := sourceAtFake(t, false)
	if hs.ID == 0 {
		t.Fatal("the source's handshake has no id")
	}
	payload := bytes.Repeat([]byte("p"), 16)
	if err := src.Write(33, payload); err != nil {
		t.Fatal(err)
	}
	ds, err := zc.AcceptUniStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	typ, body, err := frame.NewReader(ds, frame.DefaultMaxSize).Next()
	if err != nil || typ != frame.TypeData {
		t.Fatalf("first frame on the data stream: %v %v, want a data frame", typ, err)
	}
	var d frame.Data
	if err := d.Decode(body); err != nil {
		t.Fatal(err)
	}
	// flags 0x02 (tid), tag 33, tid 1, the payload.
	if d.Origin != 0 || d.Tag != 33 || d.TID != 1 || !bytes.Equal(d.Payload, payload) || len(body) != 1+1+1+16 {
		t.Fatalf("the source sent origin %#x, tag %d, tid %d, payload %q in a body of %d bytes; want no origin, 33, 1, %q in 19",
			d.Origin, d.Tag, d.TID, d.Payload, len(body), payload)
	}
}

// The zipper gives a Source's frames the Source's id as origin, which the
// function sees in Context.TID, also now that the Source does not send it.
func TestSourceOriginReachesFunctions(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		tids := make(chan string, 2)
		connectFn(t, tz, "fn", tz.clients, []yomo.Tag{1}, func(c yomo.Context) { tids <- c.(yomo.MessageContext).TID() })
		a := connectSource(t, tz, "a", tz.clients)
		b := connectSource(t, tz, "b", tz.clients)
		for _, s := range []*yomo.Source{a, b} {
			if err := s.Write(1, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]bool{}
		for range 2 {
			select {
			case tid := <-tids:
				origin, _, ok := strings.Cut(tid, "-")
				if !ok || origin == fmt.Sprintf("%016x", 0) {
					t.Fatalf("the function saw TID %q: no origin", tid)
				}
				seen[origin] = true
			case <-time.After(10 * time.Second):
				t.Fatal("the function did not get both writes")
			}
		}
		if len(seen) != 2 {
			t.Fatalf("the two sources' writes came with origins %v, want two different ones", seen)
		}
	})
}

// sourceAtFake connects a Source to a zipper the test plays (fakeZipper),
// which accepts its handshake, promising DataStream when announces is
// set, and returns the Source, the zipper's end of the connection, its
// control stream and the Source's handshake. Cleanup closes both ends.
func sourceAtFake(t *testing.T, announces bool) (*yomo.Source, transport.Conn, transport.Stream, *frame.Handshake) {
	t.Helper()
	ln, addr, trust := fakeZipper(t)
	src := yomo.NewSource("src", addr, trust, yomo.WithReconnectBackoff(time.Hour, time.Hour))
	t.Cleanup(func() { _ = src.Close() })
	connected := make(chan error, 1)
	go func() { connected <- src.Connect(ctxT(t)) }() // owned by the test: ends with the handshake
	zc, err := ln.Accept(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = zc.CloseWithError(0, "") })
	ctrl, err := zc.AcceptStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	hs := nextControl(t, ctrl, frame.TypeHandshake).(*frame.Handshake)
	ack, _ := frame.AppendControl(nil, &frame.HandshakeAck{ConnID: 1, Zipper: "fake", MaxFrameSize: frame.DefaultMaxSize,
		AnnouncesData: announces})
	if _, err := ctrl.Write(ack); err != nil {
		t.Fatal(err)
	}
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
	return src, zc, ctrl, hs
}
