package yomo_test

import (
	"errors"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// A source has no body-stream acceptor at its zipper until its first
// OpenStream (frame.Bodies): a connected source that writes frames costs
// one goroutine fewer, and its first body still arrives. A function keeps
// its acceptor from the start (it must never open one: the zipper closes
// it when it does).
func TestSourceBodyAcceptorStartsWithItsFirstBody(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		got := make(chan bodyResult, 1)
		var frames recorder
		f := connectStreamFn(t, tz.addr, tz.clients, "store", 0x20, hashingHandler("store", got))
		f.SetHandler(func(ctx yomo.Context) { frames.add(ctx.Tag(), ctx.Data()) })
		eventually(t, 5*time.Second, func() bool { return yomo.BodyAcceptorsForTest(tz.Zipper) == 1 }, func() string {
			return "the function's acceptor did not start"
		})
		src := connectSource(t, tz, "src", tz.clients)
		// The source's connection is served once its frame arrives; an
		// acceptor would have started before its data reader.
		if err := src.Write(0x20, []byte("frame")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool { return frames.len() == 1 }, func() string { return "the frame did not arrive" })
		if n := yomo.BodyAcceptorsForTest(tz.Zipper); n != 1 {
			t.Fatalf("%d body acceptors with a function and an idle source, want 1 (the function's)", n)
		}
		w, err := src.OpenStream(ctxT(t), 0x20)
		if err != nil {
			t.Fatal(err)
		}
		want, err := writeBody(w, 1<<20, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r.err != nil || r.n != 1<<20 || r.sum != want {
			t.Fatalf("handler read %d bytes (err %v), checksum equal: %v", r.n, r.err, r.sum == want)
		}
		if n := yomo.BodyAcceptorsForTest(tz.Zipper); n != 2 {
			t.Fatalf("%d body acceptors after the source's first body, want 2", n)
		}
		// A second body on the same connection: no second Bodies frame
		// (the zipper would close the connection for it).
		w, err = src.OpenStream(ctxT(t), 0x20)
		if err != nil {
			t.Fatal(err)
		}
		if want, err = writeBody(w, 4096, 4); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r.err != nil || r.n != 4096 || r.sum != want {
			t.Fatalf("second body: handler read %d bytes (err %v)", r.n, r.err)
		}
		if st := src.State(); st != yomo.StateConnected {
			t.Fatalf("source %v after two bodies, want connected", st)
		}
	})
}

// handshakeAck dials tz, sends the handshake hs and returns the
// connection, its control stream and the HandshakeAck.
func handshakeAck(t *testing.T, tz *testZipper, hs *frame.Handshake) (transport.Conn, transport.Stream, *frame.HandshakeAck) {
	t.Helper()
	return handshakenAck(t, tz, handshakeBytes(t, hs))
}

// openRawBody opens a body stream on tc for tag (which nothing observes)
// and returns it.
func openRawBody(t *testing.T, tc transport.Conn, tag yomo.Tag) transport.Stream {
	t.Helper()
	st, err := tc.OpenStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(frame.AppendBody(nil, &frame.Data{Tag: tag})); err != nil {
		t.Fatal(err)
	}
	return st
}

// answeredNoResponders reports whether the zipper read st's Body frame
// and refused it (nothing observes the tag) within d.
func answeredNoResponders(st transport.Stream, d time.Duration) bool {
	st.SetReadDeadline(time.Now().Add(d))
	var b [8]byte
	_, err := st.Read(b[:])
	var se *transport.StreamError
	return errors.As(err, &se) && se.Code == uint64(frame.StreamNoResponders)
}

// The Bodies capability on the wire: a source that does not announce its
// body streams (an older client) has them read from the start; one that
// does has the zipper wait for its Bodies frame, and a stream it opened
// before it is read once it comes; Bodies from a client that was not
// asked for it, or twice, closes the connection as a protocol error.
func TestBodiesFrame(t *testing.T) {
	tz := newZipper(t, quicTransport)
	src := func(announce bool) *frame.Handshake {
		return &frame.Handshake{Version: frame.ProtocolVersion, Name: "raw", Kind: frame.KindSource, ID: 5, AnnouncesBodies: announce}
	}
	bodies, _ := frame.AppendControl(nil, &frame.Bodies{})

	t.Run("older source: read at once", func(t *testing.T) {
		tc, _, ack := handshakeAck(t, tz, src(false))
		if ack.AnnounceBodies {
			t.Fatal("HandshakeAck asks a source that does not announce for Bodies")
		}
		if st := openRawBody(t, tc, 0x77); !answeredNoResponders(st, 5*time.Second) {
			t.Fatal("the zipper did not read the body stream of a source that does not announce")
		}
	})
	t.Run("announcing source: read after Bodies", func(t *testing.T) {
		tc, ctrl, ack := handshakeAck(t, tz, src(true))
		if !ack.AnnounceBodies {
			t.Fatal("HandshakeAck does not ask an announcing source for Bodies")
		}
		st := openRawBody(t, tc, 0x77)
		if answeredNoResponders(st, 200*time.Millisecond) {
			t.Fatal("the zipper read a body stream before the Bodies frame")
		}
		if _, err := ctrl.Write(bodies); err != nil {
			t.Fatal(err)
		}
		if !answeredNoResponders(st, 5*time.Second) {
			t.Fatal("the body stream opened before Bodies was not read after it")
		}
		rejectsControl(t, tc, ctrl, bodies, "bodies") // a second Bodies
	})
	for _, tc := range []struct {
		name string
		hs   *frame.Handshake
	}{
		{"source not asked", src(false)},
		{"function", &frame.Handshake{Version: frame.ProtocolVersion, Name: "fn", Kind: frame.KindFunction, ID: 6,
			ObserveTags: []yomo.Tag{1}, AnnouncesBodies: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, ctrl, ack := handshakeAck(t, tz, tc.hs)
			if ack.AnnounceBodies {
				t.Fatal("HandshakeAck asks for Bodies")
			}
			rejectsControl(t, conn, ctrl, bodies, "bodies")
		})
	}
}
