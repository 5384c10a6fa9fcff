package yomo_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
)

// TestBrokenLinkQueueIsCounted: frames a mesh link holds when it breaks
// (queued, or written and never acknowledged by the peer's Custody) and
// that no other path can take are dropped, and every one of them is
// counted: in the link's stats (kept after the link is gone) and in
// Stats.Dropped. The peer is a fake zipper that advertises a function,
// answers pings and never reads its data stream, so it takes custody of
// nothing and the link's queue fills; then it disconnects.
func TestBrokenLinkQueueIsCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := transport.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}}, transport.QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	disconnect := make(chan struct{})
	peerDone := make(chan error, 1)
	go func() { peerDone <- fakeSilentPeer(ctx, ln, disconnect) }() // owned by the test: ends at disconnect or ctx
	defer func() {
		ln.Close()
		pc.Close()
	}()

	const stall = 10 * time.Second // the link must not be judged stalled: its queue is what breaks
	z, err := yomo.NewZipper("a", yomo.WithTLSConfig(&tls.Config{RootCAs: pool}),
		yomo.WithMesh(mesh.Peer{Name: "fake", Addr: pc.LocalAddr().String()}), yomo.WithStallTimeout(stall))
	if err != nil {
		t.Fatal(err)
	}
	zpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- z.Serve(ctx, zpc) }() // owned by the test: ends at z.Close
	defer func() {
		z.Close()
		<-served
	}()
	src := yomo.NewSource("src", "", yomo.WithInMemory(z))
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	eventually(t, 10*time.Second, func() bool {
		for _, r := range z.Stats().Routes {
			if r.Function == "sink" && r.Via == "fake" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no route to sink via fake: %+v", z.Stats()) })

	const n = 4000
	payload := make([]byte, 1024)
	for i := 0; i < n; i++ {
		if err := src.Write(1, payload); err != nil {
			t.Fatal(err)
		}
	}
	// Every frame reached the zipper and went to the link: some onto the
	// wire (until the peer's flow-control window, which it never opens
	// further, is full), the rest in a blocked write or queued.
	eventually(t, 10*time.Second, func() bool { return z.Stats().FramesIn == n }, func() string { return fmt.Sprintf("%+v", z.Stats()) })
	close(disconnect)
	if err := <-peerDone; err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return linkTo(z, "fake").State == "down" },
		func() string { return fmt.Sprintf("link %+v", linkTo(z, "fake")) })
	// The link's frames are routed again once it is down, and dropped:
	// every one, written or not, since the peer took none.
	eventually(t, 10*time.Second, func() bool { return linkTo(z, "fake").Dropped >= n },
		func() string { return fmt.Sprintf("link %+v", linkTo(z, "fake")) })
	l, st := linkTo(z, "fake"), z.Stats()
	if l.Dropped != n || l.FramesOut == 0 {
		t.Fatalf("link: %d written, %d dropped; want some written and all %d dropped (%+v)", l.FramesOut, l.Dropped, n, l)
	}
	if st.Dropped != n || st.Unroutable != 0 {
		t.Fatalf("Stats.Dropped %d, unroutable %d; want the link's %d drops, none unroutable", st.Dropped, st.Unroutable, n)
	}
}

func linkTo(z *yomo.Zipper, peer string) yomo.LinkStats {
	for _, l := range z.Stats().Links {
		if l.Peer == peer {
			return l
		}
	}
	return yomo.LinkStats{}
}

// fakeSilentPeer accepts one mesh link, acknowledges its handshake,
// advertises the function "sink" on tag 1, answers pings, and never reads
// the data stream. It closes the link when disconnect closes.
func fakeSilentPeer(ctx context.Context, ln transport.Listener, disconnect <-chan struct{}) error {
	tc, err := ln.Accept(ctx)
	if err != nil {
		return err
	}
	defer tc.CloseWithError(0, "")
	st, err := tc.AcceptStream(ctx)
	if err != nil {
		return err
	}
	rd := frame.NewReader(st, frame.MaxControlSize)
	if _, _, err := rd.Next(); err != nil {
		return err
	}
	ack, _ := frame.AppendControl(nil, &frame.HandshakeAck{ConnID: 1, Zipper: "fake", MaxFrameSize: frame.DefaultMaxSize})
	routes, _ := frame.AppendControl(nil, &frame.RouteUpdate{Routes: []frame.Route{
		{Kind: frame.RouteFunction, Tag: 1, Name: "sink", Cost: 0, Path: []string{"fake"}},
		{Kind: frame.RouteZipper, Name: "fake", Cost: 0, Path: []string{"fake"}},
	}})
	if _, err := st.Write(append(ack, routes...)); err != nil {
		return err
	}
	pings := make(chan error, 1)
	go func() { // owned by fakeSilentPeer: ends when tc closes
		for {
			typ, body, err := rd.Next()
			if err != nil {
				pings <- nil
				return
			}
			if typ != frame.TypePing {
				continue
			}
			v, err := frame.DecodeControl(typ, body)
			if err != nil {
				pings <- err
				return
			}
			if _, err := st.Write(frame.AppendPing(nil, v.(*frame.Ping).Value, true)); err != nil {
				pings <- nil
				return
			}
		}
	}()
	select {
	case <-disconnect:
	case <-ctx.Done():
	}
	tc.CloseWithError(0, "fake peer leaves")
	return <-pings
}

// TestReplyBeforeRouteBack: a zipper that receives a request from a mesh
// peer before it has learnt any route back to the request's origin zipper
// (adverts and data travel on different streams, so this happens on every
// new mesh path) sends the reply back on the link the request came in on.
// The peer is a fake zipper "x" that dials, answers pings, sends one
// request for the function "upper" and never advertises itself.
func TestReplyBeforeRouteBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	z, err := yomo.NewZipper("b", yomo.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- z.Serve(ctx, pc) }() // owned by the test: ends at z.Close
	defer func() {
		z.Close()
		<-served
	}()
	fn := upperFn(t, z, "upper", 1)
	defer fn.Close()

	tc, err := transport.Dial(ctx, pc.LocalAddr().String(), &tls.Config{RootCAs: pool}, transport.QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.CloseWithError(0, "")
	ctrl, err := tc.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := frame.AppendControl(nil, &frame.Handshake{Version: frame.ProtocolVersion, Name: "x", Kind: frame.KindZipper, ID: 3})
	if _, err := ctrl.Write(hs); err != nil {
		t.Fatal(err)
	}
	rd := frame.NewReader(ctrl, frame.MaxControlSize)
	if typ, _, err := rd.Next(); err != nil || typ != frame.TypeHandshakeAck {
		t.Fatalf("handshake: %v %v", typ, err)
	}
	pings := make(chan struct{})
	go func() { // owned by the test: ends when tc closes
		defer close(pings)
		for {
			typ, body, err := rd.Next()
			if err != nil {
				return
			}
			if typ != frame.TypePing {
				continue
			}
			if v, err := frame.DecodeControl(typ, body); err == nil {
				_, _ = ctrl.Write(frame.AppendPing(nil, v.(*frame.Ping).Value, true))
			}
		}
	}()
	defer func() {
		tc.CloseWithError(0, "")
		<-pings
	}()

	out, err := tc.OpenUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const origin, tid = 7, frame.TIDRequest | 5
	req := frame.AppendData(nil, &frame.Data{Tag: 1, Origin: origin, TID: tid, Payload: []byte("far"),
		OriginZipper: []byte("x"), Path: frame.AppendStrList(nil, "x"), Names: frame.AppendStrList(nil, "upper")})
	if _, err := out.Write(req); err != nil {
		t.Fatal(err)
	}
	in, err := tc.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.SetReadDeadline(time.Now().Add(10 * time.Second))
	drd := frame.NewReader(in, frame.DefaultMaxSize)
	typ, body, err := drd.Next()
	if err != nil {
		t.Fatalf("no reply came back on the link: %v (stats %+v)", err, z.Stats())
	}
	var d frame.Data
	if err := d.Decode(body); typ != frame.TypeData || err != nil {
		t.Fatalf("got %v frame, %v", typ, err)
	}
	if d.Tag != 101 || d.Origin != origin || d.TID&^frame.TIDReplyOnly != tid || string(d.Payload) != "FAR" || string(d.OriginZipper) != "x" {
		t.Fatalf("reply %+v", d)
	}
	if st := z.Stats(); st.Unroutable != 0 {
		t.Fatalf("unroutable %d, want 0", st.Unroutable)
	}
}
