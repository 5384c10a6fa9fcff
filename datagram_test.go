package yomo_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/chaosnet"
	"github.com/yomo-dev/yomo/mesh"
)

// TestDatagramTags: frames of a Source's datagram tag reach the function
// in datagrams, and what the function writes on its own datagram tag
// comes back to the Source in datagrams (backflow); frames of the other
// tags, written by the same clients, still go on the streams. The
// counters of the zipper and of both clients tell the two apart.
func TestDatagramTags(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var dgramIn, streamIn recorder
		connectFn(t, tz, "echo", append(tz.clients, yomo.WithDatagramTags(3)), []yomo.Tag{1, 2}, func(c yomo.Context) {
			if c.Tag() == 1 {
				dgramIn.add(c.Tag(), c.Data())
				c.Write(3, append([]byte("d:"), c.Data()...))
			} else {
				streamIn.add(c.Tag(), c.Data())
				c.Write(4, append([]byte("s:"), c.Data()...))
			}
		})
		var back recorder
		src := newSource(t, tz, "src", append(tz.clients, yomo.WithDatagramTags(1)), 3, 4)
		src.SetReceiveHandler(back.add)
		if err := src.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		const n = 20
		for i := range n {
			// One at a time: a datagram lost on loopback would stall the
			// test, not pass it.
			for _, tag := range []yomo.Tag{1, 2} {
				if err := src.Write(tag, []byte(fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 5*time.Second, func() bool { return back.len() == 2*(i+1) },
				func() string { return fmt.Sprintf("frame %d: %d results back, want %d", i, back.len(), 2*(i+1)) })
		}
		if dgramIn.len() != n || streamIn.len() != n {
			t.Fatalf("function got %d datagram and %d stream frames, want %d each", dgramIn.len(), streamIn.len(), n)
		}
		for i, r := range back.snapshot() {
			want := fmt.Sprint(i / 2)
			if r.tag == 3 && r.data != "d:"+want || r.tag == 4 && r.data != "s:"+want {
				t.Errorf("result %d = %+v", i, r)
			}
		}
		// The zipper read n from the source and n from the function in
		// datagrams, and sent n to each; stream frames are not counted.
		want := yomo.DatagramStats{In: 2 * n, Out: 2 * n}
		if got := tz.Stats().Datagrams; got != want {
			t.Errorf("zipper datagram stats %+v, want %+v", got, want)
		}
		if got, want := src.DatagramStats(), (yomo.DatagramStats{In: n, Out: n}); got != want {
			t.Errorf("source datagram stats %+v, want %+v", got, want)
		}
		if st := tz.Stats(); st.Dropped != 0 || st.Unroutable != 0 {
			t.Errorf("zipper dropped %d, unroutable %d", st.Dropped, st.Unroutable)
		}
	})
}

// TestDatagramTooLarge: a write of a datagram tag whose frame does not fit
// in a datagram fails with a *DatagramTooLargeError (ErrFrameTooLarge) and
// sends nothing; one of exactly MaxDatagramFrame goes through. A zipper
// drops (and counts) a datagram above a function's WithMaxFrameSize.
func TestDatagramTooLarge(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var big, small recorder
		connectFn(t, tz, "big", tz.clients, []yomo.Tag{1}, func(c yomo.Context) { big.add(c.Tag(), c.Data()) })
		connectFn(t, tz, "small", append(tz.clients, yomo.WithMaxFrameSize(100)), []yomo.Tag{1},
			func(c yomo.Context) { small.add(c.Tag(), c.Data()) })
		src := connectSource(t, tz, "src", append(tz.clients, yomo.WithDatagramTags(1)))
		// A Source's frame: flags, tag 1, its 8-byte origin and a tid
		// below 128 (one byte each) before the payload.
		const envelope = 1 + 1 + 8 + 1
		err := src.Write(1, make([]byte, yomo.MaxDatagramFrame-envelope+1))
		var tl *yomo.DatagramTooLargeError
		if !errors.As(err, &tl) || !errors.Is(err, yomo.ErrFrameTooLarge) || tl.Size != yomo.MaxDatagramFrame+1 || tl.Max != yomo.MaxDatagramFrame {
			t.Fatalf("Write of a frame one byte too large = %v, want a *DatagramTooLargeError of %d > %d",
				err, yomo.MaxDatagramFrame+1, yomo.MaxDatagramFrame)
		}
		fits := bytes.Repeat([]byte("x"), yomo.MaxDatagramFrame-envelope)
		if err := src.Write(1, fits); err != nil {
			t.Fatalf("Write of exactly MaxDatagramFrame: %v", err)
		}
		if err := src.Write(1, []byte("tiny")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool { return big.len() == 2 && small.len() == 1 },
			func() string { return fmt.Sprintf("big got %d of 2, small %d of 1", big.len(), small.len()) })
		if got := big.snapshot(); got[0].data != string(fits) && got[1].data != string(fits) {
			t.Errorf("the largest frame did not arrive whole")
		}
		if got := small.snapshot(); got[0].data != "tiny" {
			t.Errorf("small got %q, want only \"tiny\"", got[0].data)
		}
		st := tz.Stats().Datagrams
		if st.In != 2 || st.Out != 3 || st.TooLarge != 1 {
			t.Errorf("zipper datagram stats %+v, want In 2, Out 3, TooLarge 1", st)
		}
	})
}

// TestDatagramMesh: frames of a datagram tag cross a mesh link in
// datagrams to the function behind it, and its results come back to the
// Source across the link (backflow), next to a stream tag; neither
// zipper holds, numbers or counts them as mesh frames.
func TestDatagramMesh(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b")
	n.start("a", []mesh.Peer{n.peer("b")})
	n.start("b", nil)
	n.client = append(n.client, yomo.WithDatagramTags(1, 2))
	n.function("b", "echo", []yomo.Tag{1, 5}, func(c yomo.Context) {
		if c.Tag() == 1 {
			c.Write(2, append([]byte("b:"), c.Data()...))
		} else {
			c.Write(6, append([]byte("b:"), c.Data()...))
		}
	})
	n.waitRoute("a", 1, "echo")
	n.waitRoute("a", 5, "echo")
	var back recorder
	src := n.source("a", "src", 2, 6)
	src.SetReceiveHandler(back.add)
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	const count = 20
	for i := range count {
		for _, tag := range []yomo.Tag{1, 5} {
			if err := src.Write(tag, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 5*time.Second, func() bool { return back.len() == 2*(i+1) },
			func() string { return fmt.Sprintf("frame %d: %d results back, want %d", i, back.len(), 2*(i+1)) })
	}
	tags := map[yomo.Tag]int{}
	for _, r := range back.snapshot() {
		tags[r.tag]++
	}
	if tags[2] != count || tags[6] != count {
		t.Fatalf("results by tag %v, want %d of 2 and of 6", tags, count)
	}
	// a: count from the source and count back over the link; b: count
	// over the link and count from the function. Each sent as many.
	for _, name := range []string{"a", "b"} {
		st := n.zippers[name].Stats()
		if d := st.Datagrams; d.In != 2*count || d.Out != 2*count || d.Lost != 0 {
			t.Errorf("zipper %s: datagram stats %+v, want In and Out %d", name, d, 2*count)
		}
		if st.MeshGaps != 0 || st.MeshDuplicates != 0 || st.Unroutable != 0 || st.Dropped != 0 {
			t.Errorf("zipper %s: gaps %d, duplicates %d, unroutable %d, dropped %d", name,
				st.MeshGaps, st.MeshDuplicates, st.Unroutable, st.Dropped)
		}
	}
}

// TestDatagramLoss: between a Source and its zipper, a proxy drops 10 %
// of the packets. Frames of the datagram tag are lost, never
// retransmitted, and the zipper counts every one it missed from the gaps
// in their sequence numbers: once a last datagram arrived, what the
// zipper received plus what it counts lost (less those that came late) is
// exactly what the Source sent. Frames of a stream tag written meanwhile
// all arrive, and nothing else breaks.
func TestDatagramLoss(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	p, err := chaosnet.Listen(tz.addr, chaosnet.Config{Seed: 17})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var dgrams, stream atomic.Int64
	connectFn(t, tz, "sink", tz.clients, []yomo.Tag{1, 2}, func(c yomo.Context) {
		if c.Tag() == 1 {
			dgrams.Add(1)
		} else {
			stream.Add(1)
		}
	})
	src := yomo.NewSource("src", p.Addr(), append(tz.clients, yomo.WithDatagramTags(1))...)
	t.Cleanup(func() { src.Close() })
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.SetFaults(chaosnet.Faults{Loss: 0.1}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	payload := []byte(strings.Repeat("d", 100))
	for i := range n {
		if err := src.Write(1, payload); err != nil {
			t.Fatal(err)
		}
		if err := src.Write(2, payload); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 { // keep the datagram queue short: this test is about the network's losses
			eventually(t, 10*time.Second, func() bool { s := src.DatagramStats(); return s.Out+s.QueueFull >= uint64(i+1) },
				func() string { return fmt.Sprintf("the source sent %+v of %d", src.DatagramStats(), i+1) })
		}
	}
	eventually(t, 20*time.Second, func() bool { return stream.Load() == n },
		func() string { return fmt.Sprintf("stream frames: %d of %d arrived under loss", stream.Load(), n) })
	// A last datagram, until one arrives: every one before it is then
	// either received or counted lost.
	eventually(t, 20*time.Second, func() bool {
		before := tz.Stats().Datagrams.In
		if err := src.Write(1, []byte("last")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			if tz.Stats().Datagrams.In > before {
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return false
	}, func() string { return "no datagram gets through the proxy" })
	// The sink gets what the zipper read (no loss on that hop).
	eventually(t, 5*time.Second, func() bool { return uint64(dgrams.Load()) == tz.Stats().Datagrams.In },
		func() string {
			return fmt.Sprintf("sink got %d datagram frames, the zipper read %d", dgrams.Load(), tz.Stats().Datagrams.In)
		})
	z, s := tz.Stats().Datagrams, src.DatagramStats()
	t.Logf("source %+v; zipper %+v; proxy %+v", s, z, p.Stats())
	if z.Lost == 0 || z.In == 0 {
		t.Fatalf("zipper counted %d received and %d lost of %d sent, want some of each", z.In, z.Lost, s.Out)
	}
	if z.In+z.Lost-z.Late != s.Out {
		t.Errorf("zipper received %d + lost %d - late %d = %d, want the %d the source sent",
			z.In, z.Lost, z.Late, z.In+z.Lost-z.Late, s.Out)
	}
	if st := tz.Stats(); st.Dropped != 0 || st.Connections.Sources != 1 {
		t.Errorf("zipper dropped %d stream frames, has %d sources", st.Dropped, st.Connections.Sources)
	}
}

// TestHostileDatagrams: a client that sends a malformed datagram after
// its handshake is closed with a protocol error that says why, while the
// pipeline of well-behaved clients goes on.
func TestHostileDatagrams(t *testing.T) {
	tz, p := pipelineZipper(t)
	hs := handshakeBytes(t, &frame.Handshake{Version: frame.ProtocolVersion, Name: "rogue", Kind: frame.KindSource, ID: 78})
	body := frame.AppendDataBody(nil, &frame.Data{Tag: pipelineTag, Payload: []byte("x")})
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"unknown type", append([]byte{0x3c, 1}, body...), "unknown type 0x3c"},
		{"sequence 0", append([]byte{byte(frame.TypeData), 0}, body...), "datagram sequence 0"},
		{"no body", []byte{byte(frame.TypeData), 1}, "without a data body"},
		{"malformed body", []byte{byte(frame.TypeData), 1, 0x93, 1, 2}, "malformed"},
	}
	p.during(t, func() {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c, _ := handshaken(t, tz, hs)
				if err := c.SendDatagram(tc.in); err != nil {
					t.Fatal(err)
				}
				ce := closeErrorOf(t, c, 5*time.Second)
				if ce.Code != yomo.CloseProtocolForTest || !strings.Contains(ce.Reason, tc.want) {
					t.Fatalf("closed with %#x %q, want %#x and a reason containing %q", ce.Code, ce.Reason, yomo.CloseProtocolForTest, tc.want)
				}
			})
		}
	})
}

// TestDatagramRightAfterConnect: a datagram written as soon as both
// clients are connected reaches the function. The zipper registers a
// connection (its routes exist, the client is told it is connected) a
// moment before it starts serving it; a datagram routed to it in between
// waits in its queue. (It used to be dropped as NoConnection in about 1
// of 100 runs in memory.)
func TestDatagramRightAfterConnect(t *testing.T) {
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	const runs = 400
	for i := range runs {
		z, err := yomo.NewZipper("edge", quiet)
		if err != nil {
			t.Fatal(err)
		}
		local := yomo.WithInMemory(z)
		got := make(chan string, 1)
		fn := yomo.NewStreamFunction("track", "in-memory", local, quiet)
		fn.SetObserveDataTags(0x20)
		fn.SetHandler(func(c yomo.Context) { got <- string(c.Data()) })
		src := yomo.NewSource("gps", "in-memory", local, quiet, yomo.WithDatagramTags(0x20))
		if err := fn.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := src.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := src.Write(0x20, []byte("fix")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: the datagram never reached the function; zipper %+v, source %+v",
				i, z.Stats().Datagrams, src.DatagramStats())
		}
		_ = src.Close()
		_ = fn.Close()
		_ = z.Close()
	}
}
