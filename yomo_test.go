package yomo_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

func TestPipelineInOrder(t *testing.T) {
	t.Parallel()
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var got recorder
		connectFn(t, tz, "sink", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
		src := connectSource(t, tz, "src", tz.clients)
		const n = 5000
		for i := 0; i < n; i++ {
			if err := src.Write(1, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 10*time.Second, func() bool { return got.len() >= n }, func() string { return fmt.Sprintf("received %d of %d", got.len(), n) })
		for i, f := range got.snapshot() {
			if f.tag != 1 || f.data != fmt.Sprint(i) {
				t.Fatalf("frame %d = %v, want tag 1 data %d (order broken)", i, f, i)
			}
		}
		st := tz.Stats()
		fs, ok := st.Function("sink")
		if !ok || fs.FramesOut != n || fs.Dropped != 0 {
			t.Fatalf("stats for sink = %+v (found %v), want %d out, 0 dropped", fs, ok, n)
		}
	})
}

func TestFanOutAndLoadBalance(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	opts := tz.clients
	var a, b1, b2 recorder
	connectFn(t, tz, "a", opts, []yomo.Tag{7}, func(ctx yomo.Context) { a.add(ctx.Tag(), ctx.Data()) })
	connectFn(t, tz, "b", opts, []yomo.Tag{7}, func(ctx yomo.Context) { b1.add(ctx.Tag(), ctx.Data()) })
	connectFn(t, tz, "b", opts, []yomo.Tag{7}, func(ctx yomo.Context) { b2.add(ctx.Tag(), ctx.Data()) })
	src := connectSource(t, tz, "src", opts)
	const n = 1000
	for i := 0; i < n; i++ {
		if err := src.Write(7, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return a.len() == n && b1.len()+b2.len() == n },
		func() string { return fmt.Sprintf("a=%d b1=%d b2=%d", a.len(), b1.len(), b2.len()) })
	if b1.len() != n/2 || b2.len() != n/2 {
		t.Errorf("group b split %d/%d, want round robin %d/%d", b1.len(), b2.len(), n/2, n/2)
	}
	seen := map[string]bool{}
	for _, r := range append(b1.snapshot(), b2.snapshot()...) {
		if seen[r.data] {
			t.Fatalf("frame %s delivered twice to group b", r.data)
		}
		seen[r.data] = true
	}
	// Nothing more arrives later (exactly once).
	src.Write(7, []byte("last"))
	eventually(t, 5*time.Second, func() bool { return a.len() == n+1 }, func() string { return fmt.Sprintf("a got %d", a.len()) })
	eventually(t, 5*time.Second, func() bool { return b1.len()+b2.len() == n+1 }, func() string { return fmt.Sprintf("b got %d", b1.len()+b2.len()) })
}

func TestTargets(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	opts := tz.clients
	var alice, bob, any recorder
	fa := newFn(t, tz, "user", opts, []yomo.Tag{3}, func(ctx yomo.Context) { alice.add(ctx.Tag(), ctx.Data()) })
	fa.SetWantedTarget("alice")
	fb := newFn(t, tz, "user", opts, []yomo.Tag{3}, func(ctx yomo.Context) { bob.add(ctx.Tag(), ctx.Data()) })
	fb.SetWantedTarget("bob")
	for _, f := range []*yomo.StreamFunction{fa, fb} {
		if err := f.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	connectFn(t, tz, "audit", opts, []yomo.Tag{3}, func(ctx yomo.Context) { any.add(ctx.Tag(), ctx.Data()) })
	src := connectSource(t, tz, "src", opts)
	for i := 0; i < 10; i++ {
		src.WriteWithTarget(3, []byte("a"), "alice")
		src.WriteWithTarget(3, []byte("b"), "bob")
		src.WriteWithTarget(3, []byte("c"), "carol")
	}
	eventually(t, 5*time.Second, func() bool { return alice.len() == 10 && bob.len() == 10 }, func() string { return fmt.Sprintf("alice=%d bob=%d", alice.len(), bob.len()) })
	for _, r := range alice.snapshot() {
		if r.data != "a" {
			t.Fatalf("alice got %q", r.data)
		}
	}
	for _, r := range bob.snapshot() {
		if r.data != "b" {
			t.Fatalf("bob got %q", r.data)
		}
	}
	// The audit function wants no target: targeted frames are not for it.
	src.Write(3, []byte("untargeted"))
	eventually(t, 5*time.Second, func() bool { return any.len() == 1 && alice.len()+bob.len() == 21 },
		func() string { return fmt.Sprintf("audit=%d alice+bob=%d", any.len(), alice.len()+bob.len()) })
	if got := any.snapshot()[0].data; got != "untargeted" {
		t.Fatalf("audit got %q", got)
	}
}

func TestBackflowChain(t *testing.T) {
	t.Parallel()
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		opts := tz.clients
		connectFn(t, tz, "upper", opts, []yomo.Tag{1}, func(ctx yomo.Context) {
			ctx.Write(2, []byte(strings.ToUpper(string(ctx.Data()))))
		})
		connectFn(t, tz, "exclaim", opts, []yomo.Tag{2}, func(ctx yomo.Context) {
			ctx.Write(3, append(ctx.Data(), '!'))
		})
		var got1, got2 recorder
		s1 := newSource(t, tz, "s1", opts, 3)
		s1.SetReceiveHandler(got1.add)
		s2 := newSource(t, tz, "s2", opts, 3)
		s2.SetReceiveHandler(got2.add)
		for _, s := range []*yomo.Source{s1, s2} {
			if err := s.Connect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
		s1.Write(1, []byte("hello"))
		s2.Write(1, []byte("world"))
		eventually(t, 5*time.Second, func() bool { return got1.len() == 1 && got2.len() == 1 }, func() string { return fmt.Sprintf("s1=%d s2=%d", got1.len(), got2.len()) })
		if r := got1.snapshot()[0]; r.tag != 3 || r.data != "HELLO!" {
			t.Errorf("s1 got %+v, want tag 3 HELLO!", r)
		}
		if r := got2.snapshot()[0]; r.tag != 3 || r.data != "WORLD!" {
			t.Errorf("s2 got %+v, want tag 3 WORLD!", r)
		}
	})
}

func TestUnobservedTagIsCountedNotAnError(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	src := connectSource(t, tz, "src", tz.clients)
	for i := 0; i < 5; i++ {
		if err := src.Write(99, []byte("nobody")); err != nil {
			t.Fatalf("write to an unobserved tag: %v", err)
		}
	}
	eventually(t, 5*time.Second, func() bool { return tz.Stats().UnroutableByTag[99] == 5 }, func() string { return fmt.Sprintf("stats %+v", tz.Stats()) })
}

func TestBadCredentialIsFinal(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-token"
	tz := startZipper(t, "", yomo.WithAuthToken(secret))
	good := newSource(t, tz, "good", append(tz.clients, yomo.WithCredential("token:"+secret)))
	if err := good.Connect(ctxT(t)); err != nil {
		t.Fatalf("good credential: %v", err)
	}
	for _, cred := range []string{"token:wrong", "", secret, "token:" + secret + "x"} {
		bad := yomo.NewSource("bad", tz.addr, append(tz.clients, yomo.WithCredential(cred))...)
		err := bad.Connect(ctxT(t))
		var rej *yomo.RejectedError
		if !errors.As(err, &rej) {
			t.Fatalf("credential %q: err = %v, want *RejectedError", cred, err)
		}
		if !strings.Contains(rej.Reason, "authentication") || strings.Contains(err.Error(), secret) || (cred != "" && strings.Contains(err.Error(), cred)) {
			t.Errorf("rejection %q should explain and must not echo secrets", err)
		}
		if werr := bad.Write(1, nil); !errors.Is(werr, yomo.ErrNotConnected) {
			t.Errorf("write after a rejected connect = %v, want ErrNotConnected", werr)
		}
		bad.Close()
	}
	if got := tz.Stats().Connections.Rejected; got != 4 {
		t.Errorf("rejected = %d, want 4", got)
	}
}

func TestVerificationOnByDefault(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	s := yomo.NewSource("src", tz.addr) // no roots: the self-signed certificate must not verify
	defer s.Close()
	err := s.Connect(ctxT(t))
	if err == nil {
		t.Fatal("connected to a zipper with an unverifiable certificate")
	}
	var rej *yomo.RejectedError
	if errors.As(err, &rej) {
		t.Fatalf("got a rejection %v, want a TLS failure", err)
	}
	ok := yomo.NewSource("src", tz.addr, yomo.WithInsecureSkipVerify())
	defer ok.Close()
	if err := ok.Connect(ctxT(t)); err != nil {
		t.Fatalf("insecure option: %v", err)
	}
}

func TestHandlerPanicIsReportedAndServingGoesOn(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	var got recorder
	var reported errs
	f := newFn(t, tz, "fragile", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) {
		if string(ctx.Data()) == "boom" {
			panic("boom")
		}
		got.add(ctx.Tag(), ctx.Data())
	})
	f.SetErrorHandler(reported.add)
	if err := f.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	src := connectSource(t, tz, "src", tz.clients)
	src.Write(1, []byte("boom"))
	src.Write(1, []byte("after"))
	eventually(t, 5*time.Second, func() bool { return got.len() == 1 }, func() string { return fmt.Sprintf("got %d", got.len()) })
	var pe *yomo.PanicError
	if !reported.find(func(err error) bool { return errors.As(err, &pe) }) {
		t.Fatal("panic not reported to the error handler")
	}
}

func TestZipperRestartResumes(t *testing.T) {
	t.Parallel()
	tz, trust, restart := restartableZipper(t)
	var got recorder
	// The restarted zipper reuses the certificate, so the clients trust it.
	copts := []yomo.ClientOption{trust, yomo.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond)}
	connectFn(t, tz, "sink", copts, []yomo.Tag{1}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
	src := connectSource(t, tz, "src", copts)
	src.Write(1, []byte("before"))
	eventually(t, 5*time.Second, func() bool { return got.len() == 1 }, func() string { return "before restart" })
	tz.stop(t)

	// Restart on the same address with the same certificate.
	z2 := restart()
	eventually(t, 10*time.Second, func() bool {
		st := z2.Stats()
		return st.Connections.Functions == 1 && st.Connections.Sources == 1
	}, func() string { return fmt.Sprintf("clients did not reconnect: %+v", z2.Stats().Connections) })
	// The crash (stop is Close) may come before the zipper acknowledged
	// "before": the source then sends it again, and the new zipper, which
	// cannot know it was delivered, delivers it once more.
	eventually(t, 10*time.Second, func() bool {
		src.Write(1, []byte("after"))
		snap := got.snapshot()
		return len(snap) >= 2 && snap[len(snap)-1].data == "after"
	}, func() string { return "no delivery after restart" })
	snap := got.snapshot()
	i := 1
	if snap[i].data == "before" {
		i++ // the one duplicate the crash may cause
	}
	if snap[i].data != "after" {
		t.Fatalf("after restart got %q", snap[i].data)
	}
}

func TestHandshakeTimeoutDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "", yomo.WithHandshakeTimeout(2*time.Second))
	// A peer that completes the transport handshake but never says hello.
	silent, err := yomo.DialMemForTest(tz.Zipper, "silent")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.CloseWithError(0, "")
	src := newSource(t, tz, "src", tz.clients)
	start := time.Now()
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second { // a blocked accept path would take the 2 s timeout
		t.Errorf("connect took %v while a silent peer was pending", d)
	}
	select {
	case <-silent.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer was not disconnected after the handshake timeout")
	}
}

func TestWriteTooLarge(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	src := connectSource(t, tz, "src", append(tz.clients, yomo.WithMaxFrameSize(1024)))
	if err := src.Write(1, make([]byte, 2048)); !errors.Is(err, yomo.ErrFrameTooLarge) {
		t.Fatalf("write of 2 KiB with a 1 KiB limit = %v, want ErrFrameTooLarge", err)
	}
}

func TestCloseIsIdempotentAndErrClosed(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	src := connectSource(t, tz, "src", tz.clients)
	src.Close()
	src.Close()
	if err := src.Write(1, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close = %v, want net.ErrClosed", err)
	}
	tz.Close()
	if err := tz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tz.Serve(context.Background(), mustPacketConn(t)); !errors.Is(err, yomo.ErrClosed) {
		t.Fatalf("Serve after Close = %v, want ErrClosed", err)
	}
}

func TestSourceCloseFlushesQueuedFrames(t *testing.T) {
	t.Parallel()
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		var got atomic.Int64
		connectFn(t, tz, "sink", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) { got.Add(1) })
		src := connectSource(t, tz, "src", tz.clients)
		const n = 10000 // 1 MB: far more than is sent before Close
		for i := 0; i < n; i++ {
			if err := src.Write(1, make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
		}
		src.Close() // must send everything queued first
		eventually(t, 10*time.Second, func() bool { return got.Load() == n }, func() string { return fmt.Sprintf("sink got %d of %d after Close", got.Load(), n) })
	})
}
