package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// transports lists the implementations that the shared tests run against.
// Each makePair returns two connected Conns, closed when the test ends.
var transports = []struct {
	name     string
	makePair func(t *testing.T) (client, server Conn)
}{
	{"mem", func(t *testing.T) (Conn, Conn) {
		c, s := Pipe("test-pipe")
		t.Cleanup(func() { c.CloseWithError(0, "") })
		return c, s
	}},
	{"quic", func(t *testing.T) (Conn, Conn) {
		return newQUICEnv(t, QUICConfig{}).connect(t, QUICConfig{})
	}},
}

var sharedTests = []struct {
	name string
	fn   func(t *testing.T, c, s Conn)
}{
	{"BidiRoundTrip", testBidiRoundTrip},
	{"UniStream", testUniStream},
	{"LargeTransfer", testLargeTransfer},
	{"FINThenEOF", testFINThenEOF},
	{"WriteAfterClose", testWriteAfterClose},
	{"WriteCopiesBuffer", testWriteCopiesBuffer},
	{"ConcurrentStreams", testConcurrentStreams},
	{"CloseWithErrorByClient", func(t *testing.T, c, s Conn) { testCloseWithError(t, c, s) }},
	{"CloseWithErrorByServer", func(t *testing.T, c, s Conn) { testCloseWithError(t, s, c) }},
	{"ReadDeadline", testReadDeadline},
	{"WriteDeadline", testWriteDeadline},
	{"CancelWrite", testCancelWrite},
	{"CancelRead", testCancelRead},
	{"AcceptContext", testAcceptContext},
	{"CodeAndReasonLimits", testCodeAndReasonLimits},
	{"Datagrams", testDatagrams},
}

func TestTransport(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			for _, tc := range sharedTests {
				t.Run(tc.name, func(t *testing.T) {
					c, s := tr.makePair(t)
					tc.fn(t, c, s)
				})
			}
		})
	}
}

// openPair opens a bidirectional stream from c and accepts it on s. (QUIC
// only announces a stream with its first byte, so one byte is exchanged.)
func openPair(t *testing.T, c, s Conn) (cs, ss Stream) {
	t.Helper()
	ctx := testCtx(t)
	cs, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal("OpenStream:", err)
	}
	if _, err := cs.Write([]byte{'!'}); err != nil {
		t.Fatal("Write:", err)
	}
	ss, err = s.AcceptStream(ctx)
	if err != nil {
		t.Fatal("AcceptStream:", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(ss, b[:]); err != nil || b[0] != '!' {
		t.Fatalf("first byte: %q %v", b[:], err)
	}
	return cs, ss
}

func mustWrite(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func mustRead(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("reading %q: %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func testBidiRoundTrip(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	mustWrite(t, cs, "ping")
	mustRead(t, ss, "ping")
	mustWrite(t, ss, "pong")
	mustRead(t, cs, "pong")

	// And a stream opened by the server.
	ss2, cs2 := openPair(t, s, c)
	mustWrite(t, ss2, "hello")
	mustRead(t, cs2, "hello")
	mustWrite(t, cs2, "world")
	mustRead(t, ss2, "world")
}

func testUniStream(t *testing.T, c, s Conn) {
	ctx := testCtx(t)
	for _, dir := range []struct {
		name     string
		from, to Conn
	}{{"client->server", c, s}, {"server->client", s, c}} {
		msg := []byte("one-way message from " + dir.name)
		out, err := dir.from.OpenUniStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		in, err := dir.to.AcceptUniStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := readExactlyThenEOF(in, msg); err != nil {
			t.Fatalf("%s: %v", dir.name, err)
		}
	}
}

func testLargeTransfer(t *testing.T, c, s Conn) {
	const size = 8 << 20
	cs, ss := openPair(t, c, s)
	up, down := randBytes(size, 1), randBytes(size, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(w Stream, b []byte, name string) {
		if err := writeChunks(w, b, 64<<10); err != nil {
			errs <- fmt.Errorf("%s write: %w", name, err)
			return
		}
		if err := w.Close(); err != nil {
			errs <- fmt.Errorf("%s close: %w", name, err)
		}
	}
	recv := func(r Stream, want []byte, name string) {
		if err := readExactlyThenEOF(r, want); err != nil {
			errs <- fmt.Errorf("%s read: %w", name, err)
		}
	}
	wg.Go(func() { send(cs, up, "client") })
	wg.Go(func() { send(ss, down, "server") })
	wg.Go(func() { recv(ss, up, "server") })
	wg.Go(func() { recv(cs, down, "client") })
	await(t, async(func() struct{} { wg.Wait(); return struct{}{} }), "8 MiB transfers")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testFINThenEOF(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	mustWrite(t, cs, "last words")
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := readExactlyThenEOF(ss, []byte("last words")); err != nil {
		t.Fatal(err)
	}
	// EOF is sticky.
	if n, err := ss.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("second Read after FIN = %d, %v; want 0, io.EOF", n, err)
	}
	// Close only closed the client's sending half.
	mustWrite(t, ss, "reply")
	if err := ss.Close(); err != nil {
		t.Fatal(err)
	}
	if err := readExactlyThenEOF(cs, []byte("reply")); err != nil {
		t.Fatal(err)
	}
}

func testWriteAfterClose(t *testing.T, c, s Conn) {
	cs, _ := openPair(t, c, s)
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Write([]byte("x")); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Write after Close: %v; want ErrStreamClosed", err)
	}
}

func testWriteCopiesBuffer(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	buf := []byte("original")
	mustWrite(t, cs, string(buf))
	n, err := cs.Write(buf)
	if err != nil || n != len(buf) {
		t.Fatal(n, err)
	}
	copy(buf, "XXXXXXXX")
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := readExactlyThenEOF(ss, []byte("originaloriginal")); err != nil {
		t.Fatal(err)
	}
}

func testConcurrentStreams(t *testing.T, c, s Conn) {
	const streams = 32
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3*streams)

	// Server: echo every stream.
	wg.Go(func() {
		var echoes sync.WaitGroup
		defer echoes.Wait()
		for range streams {
			ss, err := s.AcceptStream(ctx)
			if err != nil {
				errs <- fmt.Errorf("accept: %w", err)
				return
			}
			echoes.Go(func() {
				if _, err := io.Copy(ss, ss); err != nil {
					errs <- fmt.Errorf("echo: %w", err)
					return
				}
				if err := ss.Close(); err != nil {
					errs <- fmt.Errorf("echo close: %w", err)
				}
			})
		}
	})
	for i := range streams {
		wg.Go(func() {
			payload := randBytes(1+i*4099, uint64(100+i))
			cs, err := c.OpenStream(ctx)
			if err != nil {
				errs <- fmt.Errorf("open %d: %w", i, err)
				return
			}
			writeErr := async(func() error {
				if err := writeChunks(cs, payload, 1500); err != nil {
					return err
				}
				return cs.Close()
			})
			if err := readExactlyThenEOF(cs, payload); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
			if err := <-writeErr; err != nil {
				errs <- fmt.Errorf("stream %d write: %w", i, err)
			}
		})
	}
	await(t, async(func() struct{} { wg.Wait(); return struct{}{} }), "concurrent streams")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkCloseError checks that err reports the connection closed with code
// and reason, by the peer if remote.
func checkCloseError(t *testing.T, what string, err error, remote bool) {
	t.Helper()
	var ce *CloseError
	if !errors.As(err, &ce) {
		t.Errorf("%s: %v (%T); want *CloseError", what, err, err)
		return
	}
	if ce.Code != 42 || ce.Reason != "bye" || ce.Remote != remote {
		t.Errorf("%s: %+v; want Code 42, Reason \"bye\", Remote %v", what, *ce, remote)
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("%s: %v does not match net.ErrClosed", what, err)
	}
}

func testCloseWithError(t *testing.T, closer, peer Conn) {
	ctx := testCtx(t)
	closerStream, peerStream := openPair(t, closer, peer)

	peerRead := async(func() error { _, err := blockRead(peerStream, make([]byte, 8)); return err })
	waitBlocked(t, "blockRead")
	peerAccept := async(func() error { _, err := blockAccept(peer, ctx); return err })
	waitBlocked(t, "blockAccept")
	peerAcceptUni := async(func() error { _, err := blockAcceptUni(peer, ctx); return err })
	waitBlocked(t, "blockAcceptUni")

	if err := closer.CloseWithError(42, "bye"); err != nil {
		t.Fatal("CloseWithError:", err)
	}
	checkCloseError(t, "peer's blocked Read", await(t, peerRead, "peer Read"), true)
	checkCloseError(t, "peer's blocked AcceptStream", await(t, peerAccept, "peer AcceptStream"), true)
	checkCloseError(t, "peer's blocked AcceptUniStream", await(t, peerAcceptUni, "peer AcceptUniStream"), true)
	waitDone(t, closer.Context(), "closer's Context")
	waitDone(t, peer.Context(), "peer's Context")

	// Later operations, on both sides.
	_, err := closerStream.Read(make([]byte, 8))
	checkCloseError(t, "closer's Read", err, false)
	_, err = closerStream.Write([]byte("x"))
	checkCloseError(t, "closer's Write", err, false)
	_, err = closer.OpenStream(ctx)
	checkCloseError(t, "closer's OpenStream", err, false)
	_, err = closer.AcceptStream(ctx)
	checkCloseError(t, "closer's AcceptStream", err, false)
	_, err = peerStream.Write([]byte("x"))
	checkCloseError(t, "peer's Write", err, true)
	_, err = peer.OpenUniStream(ctx)
	checkCloseError(t, "peer's OpenUniStream", err, true)

	// Idempotent: a second close, by either side, changes nothing.
	if err := closer.CloseWithError(1, "again"); err != nil {
		t.Errorf("second CloseWithError: %v", err)
	}
	if err := peer.CloseWithError(2, "too late"); err != nil {
		t.Errorf("peer's CloseWithError after close: %v", err)
	}
	_, err = closer.AcceptUniStream(ctx)
	checkCloseError(t, "closer's AcceptUniStream after second close", err, false)
	_, err = peer.AcceptStream(ctx)
	checkCloseError(t, "peer's AcceptStream after second close", err, true)
}

func checkDeadlineError(t *testing.T, what string, n int, err error) {
	t.Helper()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: n=%d err=%v (%T); want os.ErrDeadlineExceeded", what, n, err, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: %v is not a net.Error with Timeout()", what, err)
	}
}

func testReadDeadline(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	buf := make([]byte, 16)

	// A deadline in the near future.
	start := time.Now()
	if err := cs.SetReadDeadline(start.Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := cs.Read(buf)
	checkDeadlineError(t, "Read with deadline", n, err)
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("Read returned after %v, before its deadline", d)
	}

	// A deadline set while Read is blocked.
	if err := cs.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	blocked := async(func() result[int] { n, err := blockRead(cs, buf); return result[int]{n, err} })
	waitBlocked(t, "blockRead")
	if err := cs.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	r := await(t, blocked, "Read after shortening its deadline")
	checkDeadlineError(t, "Read blocked when deadline set", r.v, r.err)

	// A deadline in the past.
	if err := cs.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err = cs.Read(buf)
	checkDeadlineError(t, "Read with past deadline", n, err)

	// Clearing the deadline makes the stream usable again.
	if err := cs.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	blocked = async(func() result[int] { n, err := blockRead(cs, buf); return result[int]{n, err} })
	waitBlocked(t, "blockRead")
	mustWrite(t, ss, "late")
	r = await(t, blocked, "Read after clearing the deadline")
	if r.err != nil || r.v == 0 || string(buf[:r.v]) != "late"[:r.v] {
		t.Fatalf("Read after clearing the deadline = %q, %v", buf[:r.v], r.err)
	}
	mustRead(t, cs, "late"[r.v:])
}

func testWriteDeadline(t *testing.T, c, s Conn) {
	cs, _ := openPair(t, c, s)
	// Far more than any flow-control window; the peer never reads.
	big := make([]byte, 8<<20)

	if err := cs.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := cs.Write(big)
	checkDeadlineError(t, "Write with deadline", n, err)
	if n >= len(big) {
		t.Fatalf("Write wrote %d bytes, more than the flow-control window", n)
	}

	// A deadline set while Write is blocked.
	if err := cs.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	blocked := async(func() result[int] { n, err := blockWrite(cs, big); return result[int]{n, err} })
	waitBlocked(t, "blockWrite")
	if err := cs.SetWriteDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	r := await(t, blocked, "Write after setting its deadline")
	checkDeadlineError(t, "Write blocked when deadline set", r.v, r.err)
}

func checkStreamError(t *testing.T, what string, err error, code uint64, remote bool) {
	t.Helper()
	var se *StreamError
	if !errors.As(err, &se) {
		t.Fatalf("%s: %v (%T); want *StreamError", what, err, err)
	}
	if se.Code != code || se.Remote != remote {
		t.Fatalf("%s: %+v; want Code %d Remote %v", what, *se, code, remote)
	}
	if errors.Is(err, net.ErrClosed) {
		t.Fatalf("%s: a stream error must not match net.ErrClosed", what)
	}
}

func testCancelWrite(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	mustWrite(t, cs, "doomed")
	cs.CancelWrite(7)

	// The reader gets the reset, possibly after some of the data.
	if err := ss.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = ss.Read(make([]byte, 64))
	}
	checkStreamError(t, "peer's Read after CancelWrite", err, 7, true)

	_, err = cs.Write([]byte("more"))
	checkStreamError(t, "Write after CancelWrite", err, 7, false)

	// The other direction and the connection still work.
	mustWrite(t, ss, "still here")
	mustRead(t, cs, "still here")
	cs2, ss2 := openPair(t, c, s)
	mustWrite(t, cs2, "new stream")
	mustRead(t, ss2, "new stream")
}

func testCancelRead(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	ss.CancelRead(9)

	_, err := ss.Read(make([]byte, 8))
	checkStreamError(t, "Read after CancelRead", err, 9, false)

	// The writer learns about it asynchronously.
	if err := cs.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1024)
	for err = nil; err == nil; {
		_, err = cs.Write(chunk)
	}
	checkStreamError(t, "peer's Write after CancelRead", err, 9, true)

	// The other direction still works.
	mustWrite(t, ss, "still here")
	mustRead(t, cs, "still here")
}

func testAcceptContext(t *testing.T, c, s Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.AcceptStream(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("AcceptStream with cancelled context: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.AcceptUniStream(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AcceptUniStream with expiring context: %v", err)
	}
	// The connection is unaffected.
	cs, ss := openPair(t, c, s)
	mustWrite(t, cs, "ok")
	mustRead(t, ss, "ok")
}

// Codes beyond QUIC's 62-bit varints and overlong reasons are clamped, not
// fatal (quic-go panics on such codes).
func testCodeAndReasonLimits(t *testing.T, c, s Conn) {
	cs, ss := openPair(t, c, s)
	cs.CancelWrite(math.MaxUint64)
	if err := ss.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = ss.Read(make([]byte, 64))
	}
	checkStreamError(t, "Read after CancelWrite(MaxUint64)", err, MaxErrorCode, true)

	reason := strings.Repeat("é", MaxReasonLength) // 2 bytes each
	if err := c.CloseWithError(math.MaxUint64, reason); err != nil {
		t.Fatal(err)
	}
	_, err = s.AcceptStream(testCtx(t))
	var ce *CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("AcceptStream after close: %v", err)
	}
	if ce.Code != MaxErrorCode || !ce.Remote {
		t.Errorf("code %d remote %v; want %d true", ce.Code, ce.Remote, uint64(MaxErrorCode))
	}
	if len(ce.Reason) > MaxReasonLength || len(ce.Reason) < MaxReasonLength-1 ||
		!utf8.ValidString(ce.Reason) || !strings.HasPrefix(reason, ce.Reason) {
		t.Errorf("reason of %d bytes, valid UTF-8 %v", len(ce.Reason), utf8.ValidString(ce.Reason))
	}
}

// testDatagrams: datagrams of up to MaxDatagramSize cross both ways whole
// (on loopback, without loss), a larger one fails with
// ErrDatagramTooLarge, ReceiveDatagram honours its context, and both
// calls fail with net.ErrClosed once the connection is closed.
func testDatagrams(t *testing.T, c, s Conn) {
	ctx := testCtx(t)
	for _, dir := range []struct {
		name     string
		from, to Conn
	}{{"client to server", c, s}, {"server to client", s, c}} {
		for _, n := range []int{0, 1, 100, MaxDatagramSize} {
			p := randBytes(n, uint64(n))
			if err := dir.from.SendDatagram(p); err != nil {
				t.Fatalf("%s: SendDatagram(%d bytes): %v", dir.name, n, err)
			}
			got, err := dir.to.ReceiveDatagram(ctx)
			if err != nil {
				t.Fatalf("%s: ReceiveDatagram: %v", dir.name, err)
			}
			if string(got) != string(p) {
				t.Fatalf("%s: got %d bytes, want the %d sent", dir.name, len(got), n)
			}
		}
		if err := dir.from.SendDatagram(make([]byte, MaxDatagramSize+1)); !errors.Is(err, ErrDatagramTooLarge) {
			t.Fatalf("%s: SendDatagram(MaxDatagramSize+1) = %v, want ErrDatagramTooLarge", dir.name, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.ReceiveDatagram(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReceiveDatagram with nothing sent = %v, want the context's deadline", err)
	}
	recv := async(func() error { _, err := s.ReceiveDatagram(ctx); return err })
	c.CloseWithError(0, "done")
	if err := await(t, recv, "ReceiveDatagram after close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReceiveDatagram on a closed connection = %v, want net.ErrClosed", err)
	}
	if err := c.SendDatagram([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SendDatagram on a closed connection = %v, want net.ErrClosed", err)
	}
}
