package yomo_test

import (
	"context"
	"fmt"
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

// A client's flusher, and with it its data stream, starts at the first
// frame it queues: a connected Source that has not written runs no
// flusher, Flush returns at once for it, and its first Write starts one
// (one per session) whose frames arrive.
func TestClientFlusherStartsAtFirstFrame(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var got recorder
		connectFn(t, tz, "sink", tz.clients, []yomo.Tag{0x40}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
		src := connectSource(t, tz, "src", tz.clients)
		running := func() string {
			f, d := yomo.SourceRunningForTest(src)
			return fmt.Sprintf("the source runs %d flushers and %d data readers", f, d)
		}
		// The data reader starts with the session, where the flusher
		// used to start too.
		eventually(t, 5*time.Second, func() bool { _, d := yomo.SourceRunningForTest(src); return d == 1 }, running)
		if f, _ := yomo.SourceRunningForTest(src); f != 0 {
			t.Fatalf("a connected source that has not written: %s; want no flusher", running())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := src.Flush(ctx); err != nil {
			t.Fatalf("Flush with nothing written: %v", err)
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
			return fmt.Sprintf("%d of 3 frames arrived; %s", got.len(), running())
		})
		if f, _ := yomo.SourceRunningForTest(src); f != 1 {
			t.Fatalf("after the first writes: %s; want one flusher", running())
		}
	})
}
