package yomo_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
)

// meshNet is a set of zippers in one process, linked over real QUIC.
type meshNet struct {
	t       testing.TB
	tls     *tls.Config // shared by every zipper: presents and verifies one certificate
	client  []yomo.ClientOption
	addrs   map[string]string
	pcs     map[string]net.PacketConn
	zippers map[string]*yomo.Zipper
	served  map[string]chan error
}

func newMeshNet(t testing.TB, names ...string) *meshNet {
	t.Helper()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	n := &meshNet{
		t:       t,
		tls:     &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
		addrs:   map[string]string{},
		pcs:     map[string]net.PacketConn{},
		zippers: map[string]*yomo.Zipper{},
		served:  map[string]chan error{},
	}
	n.client = []yomo.ClientOption{yomo.WithTLSConfig(&tls.Config{RootCAs: pool}), yomo.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond)}
	for _, name := range names {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.pcs[name] = pc
		n.addrs[name] = pc.LocalAddr().String()
	}
	t.Cleanup(n.closeAll)
	return n
}

// start creates and serves zipper name, linking to peers (by name or by
// an explicit address through addrOf).
func (n *meshNet) start(name string, peers []mesh.Peer, opts ...yomo.ZipperOption) *yomo.Zipper {
	n.t.Helper()
	z, err := yomo.NewZipper(name, append([]yomo.ZipperOption{yomo.WithTLSConfig(n.tls), yomo.WithMesh(peers...)}, opts...)...)
	if err != nil {
		n.t.Fatal(err)
	}
	pc := n.pcs[name]
	if pc == nil {
		if pc, err = net.ListenPacket("udp", n.addrs[name]); err != nil {
			n.t.Fatal(err)
		}
	}
	n.pcs[name] = nil
	n.zippers[name] = z
	done := make(chan error, 1)
	n.served[name] = done
	go func() { done <- z.Serve(context.Background(), pc) }() // owned by the test: ends on Close
	return z
}

// peer returns the mesh.Peer for zipper name at its own address.
func (n *meshNet) peer(name string) mesh.Peer { return mesh.Peer{Name: name, Addr: n.addrs[name]} }

func (n *meshNet) stop(name string) {
	if z := n.zippers[name]; z != nil {
		z.Close()
		<-n.served[name]
		delete(n.zippers, name)
	}
}

func (n *meshNet) closeAll() {
	for name := range n.zippers {
		n.stop(name)
	}
	for _, pc := range n.pcs {
		if pc != nil {
			pc.Close()
		}
	}
}

// converged waits until zipper at routes tag to a function named fn.
func (n *meshNet) waitRoute(at string, tag yomo.Tag, fn string) {
	n.t.Helper()
	z := n.zippers[at]
	eventually(n.t, 5*time.Second, func() bool {
		for _, g := range yomo.RouteGroupsForTest(z, tag) {
			if g == fn {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("zipper %s has no route for tag %d to %s", at, tag, fn) })
}

func (n *meshNet) source(at, name string, observe ...yomo.Tag) *yomo.Source {
	n.t.Helper()
	s := yomo.NewSource(name, n.addrs[at], n.client...)
	s.SetObserveDataTags(observe...)
	n.t.Cleanup(func() { s.Close() })
	return s
}

func (n *meshNet) function(at, name string, tags []yomo.Tag, h yomo.Handler) *yomo.StreamFunction {
	n.t.Helper()
	f := yomo.NewStreamFunction(name, n.addrs[at], n.client...)
	f.SetObserveDataTags(tags...)
	if err := f.SetHandler(h); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { f.Close() })
	if err := f.Connect(ctxT(n.t)); err != nil {
		n.t.Fatal(err)
	}
	return f
}

// counter counts frames per payload.
type counter struct {
	mu sync.Mutex
	m  map[string]int
	n  atomic.Int64
}

func (c *counter) add(data []byte) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[string(data)]++
	c.mu.Unlock()
	c.n.Add(1)
}

func (c *counter) dups() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, v := range c.m {
		if v > 1 {
			out = append(out, fmt.Sprintf("%s x%d", k, v))
		}
	}
	return out
}

func TestMeshChainTwoHopsWithBackflow(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b", "c")
	n.start("a", []mesh.Peer{n.peer("b")})
	n.start("b", []mesh.Peer{n.peer("c")})
	n.start("c", nil)
	n.function("c", "upper", []yomo.Tag{1}, func(ctx yomo.Context) {
		ctx.Write(2, append([]byte("C:"), ctx.Data()...))
	})
	n.waitRoute("a", 1, "upper")
	var got recorder
	src := n.source("a", "src", 2)
	src.SetReceiveHandler(got.add)
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	const count = 100
	for i := 0; i < count; i++ {
		if err := src.Write(1, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() bool { return got.len() == count }, func() string { return fmt.Sprintf("backflow got %d of %d", got.len(), count) })
	for i, r := range got.snapshot() {
		if r.tag != 2 || r.data != fmt.Sprintf("C:%d", i) {
			t.Fatalf("backflow frame %d = %+v", i, r)
		}
	}
	st := n.zippers["b"].Stats()
	if len(st.Links) != 2 {
		t.Fatalf("b has links %+v, want 2", st.Links)
	}
	for _, l := range st.Links {
		if l.State != "up" || l.RTT <= 0 || l.FramesIn == 0 || l.FramesOut == 0 {
			t.Errorf("link stats %+v", l)
		}
	}
	// What a wrote on its link to b is what b read from a: the data
	// frames only go that way. (a counts the bytes of a run of frames
	// queued under one hold of the link's queue when it lets go.)
	link := func(at, peer string) yomo.LinkStats {
		for _, l := range n.zippers[at].Stats().Links {
			if l.Peer == peer {
				return l
			}
		}
		t.Fatalf("%s has no link to %s", at, peer)
		return yomo.LinkStats{}
	}
	out, in := link("a", "b"), link("b", "a")
	if out.FramesOut != count || in.FramesIn != count || out.BytesOut == 0 || out.BytesOut != in.BytesIn {
		t.Errorf("a wrote %d frames (%d bytes) to b, b read %d (%d bytes); want %d frames and the same bytes",
			out.FramesOut, out.BytesOut, in.FramesIn, in.BytesIn, count)
	}
}

func TestMeshRingDeliversExactlyOnce(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b", "c", "d")
	n.start("a", []mesh.Peer{n.peer("b"), n.peer("d")})
	n.start("b", []mesh.Peer{n.peer("c")})
	n.start("c", []mesh.Peer{n.peer("d")})
	n.start("d", nil)
	var f, g counter
	n.function("b", "f", []yomo.Tag{1}, func(ctx yomo.Context) { f.add(ctx.Data()) })
	n.function("c", "f", []yomo.Tag{1}, func(ctx yomo.Context) { f.add(ctx.Data()) })
	n.function("c", "g", []yomo.Tag{1}, func(ctx yomo.Context) { g.add(ctx.Data()) })
	n.function("d", "g", []yomo.Tag{1}, func(ctx yomo.Context) { g.add(ctx.Data()) })
	n.waitRoute("a", 1, "f")
	n.waitRoute("a", 1, "g")
	src := n.source("a", "src")
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	const count = 500
	for i := 0; i < count; i++ {
		src.Write(1, []byte(fmt.Sprint(i)))
	}
	eventually(t, 5*time.Second, func() bool { return f.n.Load() >= count && g.n.Load() >= count },
		func() string { return fmt.Sprintf("f=%d g=%d of %d", f.n.Load(), g.n.Load(), count) })
	// Nothing more arrives: each name got each frame exactly once.
	src.Write(1, []byte("last"))
	eventually(t, 5*time.Second, func() bool { return f.n.Load() == count+1 && g.n.Load() == count+1 },
		func() string { return fmt.Sprintf("f=%d g=%d", f.n.Load(), g.n.Load()) })
	if d := append(f.dups(), g.dups()...); len(d) > 0 {
		t.Fatalf("duplicates: %v", d)
	}
}

func TestMeshFullMeshBackflowFromEveryZipper(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c", "d"}
	n := newMeshNet(t, names...)
	for i, name := range names {
		var peers []mesh.Peer
		for _, other := range names[i+1:] {
			peers = append(peers, n.peer(other))
		}
		n.start(name, peers)
	}
	// One function per zipper, each its own name; each answers back.
	for i, name := range names {
		fn := "fn-" + name
		tag := yomo.Tag(10 + i)
		n.function(name, fn, []yomo.Tag{tag}, func(ctx yomo.Context) { ctx.Write(99, append([]byte(fn+":"), ctx.Data()...)) })
		for _, at := range names {
			n.waitRoute(at, tag, fn)
		}
	}
	for _, at := range names {
		var got counter
		src := n.source(at, "src-"+at, 99)
		src.SetReceiveHandler(func(tag yomo.Tag, data []byte) { got.add(data) })
		if err := src.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		for i := range names {
			src.Write(yomo.Tag(10+i), []byte(at))
		}
		eventually(t, 5*time.Second, func() bool { return got.n.Load() == int64(len(names)) }, func() string { return fmt.Sprintf("source at %s got %d answers", at, got.n.Load()) })
		for _, fnZ := range names {
			if got.m["fn-"+fnZ+":"+at] != 1 {
				t.Fatalf("source at %s: answers %v", at, got.m)
			}
		}
	}
}

func TestMeshNearestMeansLowestLatency(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b", "c")
	n.start("b", nil)
	n.start("c", nil)
	// a reaches b through a relay adding 20 ms each way, c directly.
	slow := newUDPRelay(t, n.addrs["b"], 20*time.Millisecond)
	n.start("a", []mesh.Peer{{Name: "b", Addr: slow.addr()}, n.peer("c")})
	var atB, atC atomic.Int64
	n.function("b", "f", []yomo.Tag{1}, func(ctx yomo.Context) { atB.Add(1) })
	n.function("c", "f", []yomo.Tag{1}, func(ctx yomo.Context) { atC.Add(1) })
	za := n.zippers["a"]
	eventually(t, 5*time.Second, func() bool {
		st := za.Stats()
		return len(st.Links) == 2 && st.Links[0].State == "up" && st.Links[1].State == "up"
	}, func() string { return fmt.Sprintf("links %+v", za.Stats().Links) })
	n.waitRoute("a", 1, "f")
	src := n.source("a", "src")
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		src.Write(1, []byte("x"))
	}
	eventually(t, 5*time.Second, func() bool { return atB.Load()+atC.Load() == 100 }, func() string { return fmt.Sprintf("b=%d c=%d", atB.Load(), atC.Load()) })
	if atC.Load() != 100 {
		t.Fatalf("the far instance got %d of 100 frames: nearest is not the lowest latency", atB.Load())
	}
	for _, l := range za.Stats().Links {
		if l.Peer == "b" && l.RTT < 40*time.Millisecond {
			t.Errorf("link to b measured %v through a 2x20 ms relay", l.RTT)
		}
	}
	// Cut the fast path's only instance: the far one takes over.
	n.stop("c")
	start := time.Now()
	eventually(t, 5*time.Second, func() bool {
		src.Write(1, []byte("y"))
		return atB.Load() > 0
	}, func() string { return "no failover to b" })
	t.Logf("failover to the far instance after the near zipper stopped: %v", time.Since(start))
}

func TestMeshInstanceFailoverAndLinkCut(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b", "c")
	n.start("b", nil)
	n.start("c", nil)
	viaC := newUDPRelay(t, n.addrs["c"], time.Millisecond)
	n.start("a", []mesh.Peer{n.peer("b"), {Name: "c", Addr: viaC.addr()}})
	var atA, atB, atC atomic.Int64
	fa := n.function("a", "f", []yomo.Tag{1}, func(ctx yomo.Context) { atA.Add(1) })
	n.function("b", "f", []yomo.Tag{1}, func(ctx yomo.Context) { atB.Add(1) })
	n.function("c", "g", []yomo.Tag{1}, func(ctx yomo.Context) { atC.Add(1) })
	n.waitRoute("a", 1, "g")
	src := n.source("a", "src")
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	src.Write(1, []byte("1"))
	eventually(t, 5*time.Second, func() bool { return atA.Load() == 1 && atC.Load() == 1 }, func() string { return fmt.Sprintf("a=%d c=%d", atA.Load(), atC.Load()) })
	if atB.Load() != 0 {
		t.Fatal("remote instance used while a local one exists")
	}
	// The local instance leaves: the remote one takes over.
	fa.Close()
	start := time.Now()
	eventually(t, 3*time.Second, func() bool {
		src.Write(1, []byte("2"))
		return atB.Load() > 0
	}, func() string { return "no failover to the remote instance" })
	t.Logf("instance failover: %v", time.Since(start))
	// Cutting the link to c: g is unreachable, and that is counted.
	viaC.cut.Store(true)
	za := n.zippers["a"]
	start = time.Now()
	eventually(t, 5*time.Second, func() bool {
		for _, g := range yomo.RouteGroupsForTest(za, 1) {
			if g == "g" {
				return false
			}
		}
		return true
	}, func() string { return "route to g through the cut link not withdrawn" })
	t.Logf("cut link detected and withdrawn after %v", time.Since(start))
	before := za.Stats().Unroutable
	b0 := atB.Load()
	src.Write(1, []byte("3"))
	eventually(t, 5*time.Second, func() bool { return atB.Load() == b0+1 }, func() string { return "f stopped receiving" })
	if za.Stats().Unroutable != before {
		t.Fatalf("frame counted unroutable though f still had it")
	}
}

func TestMeshTargetsAcrossZippers(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b", "c")
	n.start("a", []mesh.Peer{n.peer("b"), n.peer("c")})
	n.start("b", nil)
	n.start("c", nil)
	var alice, bob atomic.Int64
	for _, w := range []struct {
		at, target string
		n          *atomic.Int64
	}{{"b", "alice", &alice}, {"c", "bob", &bob}} {
		cnt := w.n
		f := yomo.NewStreamFunction("user", n.addrs[w.at], n.client...)
		f.SetObserveDataTags(5)
		f.SetWantedTarget(w.target)
		f.SetHandler(func(ctx yomo.Context) { cnt.Add(1) })
		if err := f.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	}
	za := n.zippers["a"]
	eventually(t, 5*time.Second, func() bool {
		var ts []string
		for _, r := range za.Stats().Routes {
			ts = append(ts, r.Target)
		}
		return len(ts) == 2
	}, func() string { return fmt.Sprintf("routes %+v", za.Stats().Routes) })
	src := n.source("a", "src")
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		src.WriteWithTarget(5, []byte("a"), "alice")
	}
	for i := 0; i < 3; i++ {
		src.WriteWithTarget(5, []byte("b"), "bob")
	}
	src.WriteWithTarget(5, []byte("c"), "carol") // nobody: counted, not delivered
	eventually(t, 5*time.Second, func() bool { return alice.Load() == 10 && bob.Load() == 3 }, func() string { return fmt.Sprintf("alice=%d bob=%d", alice.Load(), bob.Load()) })
	eventually(t, 5*time.Second, func() bool { return za.Stats().Unroutable == 1 }, func() string { return fmt.Sprintf("unroutable %d", za.Stats().Unroutable) })
}
