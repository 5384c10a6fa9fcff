package yomo_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// Not parallel: see runQUICAlone.
func TestStuckFunctionDoesNotSlowOthers(t *testing.T) {
	runQUICAlone(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr, yomo.WithQueueLimits(256, 1<<20))
		opts := tz.clients
		release := make(chan struct{})
		var stuckCalls atomic.Int32
		var reportedDrops atomic.Uint64
		stuckFn := newFn(t, tz, "stuck", opts, []yomo.Tag{1}, func(ctx yomo.Context) {
			stuckCalls.Add(1)
			<-release
		})
		stuckFn.SetErrorHandler(func(err error) {
			var de *yomo.DroppedError
			if errors.As(err, &de) {
				reportedDrops.Store(de.Total)
			}
		})
		if err := stuckFn.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { close(release) }) // runs before the function's Close
		var fast atomic.Int64
		connectFn(t, tz, "fast", opts, []yomo.Tag{1}, func(ctx yomo.Context) { fast.Add(1) })
		src := connectSource(t, tz, "src", opts)
		// Twice what the stuck function's queue (256 frames) and stream window
		// (2 MiB over QUIC, 1 MiB in memory) hold.
		const n = 8000
		payload := make([]byte, 512)
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := src.Write(1, payload); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		eventually(t, 20*time.Second, func() bool { return fast.Load() == n }, func() string { return fmt.Sprintf("fast got %d of %d; stats %+v", fast.Load(), n, tz.Stats()) })
		t.Logf("fast function got %d frames in %v while the other was stuck", n, time.Since(start))
		eventually(t, 5*time.Second, func() bool { return tz.Stats().FramesIn == n }, func() string { return fmt.Sprintf("zipper got %d", tz.Stats().FramesIn) })
		st := tz.Stats()
		stuck, _ := st.Function("stuck")
		if stuck.Dropped == 0 {
			t.Fatalf("stuck function dropped nothing: %+v", stuck)
		}
		t.Logf("the stuck function dropped %d of %d", stuck.Dropped, n)
		// Accounting: everything meant for it was written, dropped or is queued.
		if got := stuck.FramesOut + stuck.Dropped + uint64(stuck.QueuedFrames); got != n {
			t.Fatalf("stuck: out %d + dropped %d + queued %d = %d, want %d", stuck.FramesOut, stuck.Dropped, stuck.QueuedFrames, got, n)
		}
		if len(stuck.Tags) != 1 || stuck.Tags[0].Dropped != stuck.Dropped || stuck.Tags[0].Queued+stuck.Tags[0].Dropped != n {
			t.Fatalf("per-tag stats %+v do not add up to %d", stuck.Tags, n)
		}
		if f, _ := st.Function("fast"); f.Dropped != 0 || f.FramesOut != n {
			t.Fatalf("fast function stats %+v", f)
		}
		// The stuck function itself learns how many it missed.
		eventually(t, 5*time.Second, func() bool { return reportedDrops.Load() == stuck.Dropped },
			func() string {
				return fmt.Sprintf("stuck function was told of %d drops, zipper counted %d", reportedDrops.Load(), stuck.Dropped)
			})
	})
}

func TestBlockPolicyLosesNothing(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "", yomo.WithQueueLimits(64, 64<<10), yomo.WithOverflowPolicy(yomo.Block))
	var got atomic.Int64
	connectFn(t, tz, "slow", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) {
		if got.Add(1)%500 == 0 {
			time.Sleep(time.Millisecond) // slower than the source
		}
	})
	src := connectSource(t, tz, "src", tz.clients)
	const n = 10000
	for i := 0; i < n; i++ {
		if err := src.Write(1, make([]byte, 512)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, func() bool { return got.Load() == n }, func() string { return fmt.Sprintf("got %d of %d", got.Load(), n) })
	if d := tz.Stats().Dropped; d != 0 {
		t.Fatalf("block policy dropped %d frames", d)
	}
}

func TestSourceWriteTimesOutWhenQueueStaysFull(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	src := newSource(t, tz, "src", append(tz.clients, yomo.WithWriteBuffer(4096), yomo.WithWriteTimeout(50*time.Millisecond),
		yomo.WithReconnectBackoff(time.Hour, time.Hour)))
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	tz.Close() // the source cannot send any more; its queue fills
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = src.Write(1, make([]byte, 1024))
	}
	if !errors.Is(err, yomo.ErrWriteTimeout) {
		t.Fatalf("writes into a full queue = %v, want ErrWriteTimeout", err)
	}
}

func TestHandlerConcurrencyKeepsPerSourceOrder(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	var mu sync.Mutex
	last := map[string]int{}
	var inFlight, maxInFlight, total atomic.Int32
	var bad atomic.Value
	connectFn(t, tz, "par", append(tz.clients, yomo.WithHandlerConcurrency(8)), []yomo.Tag{1, 2}, func(ctx yomo.Context) {
		n := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		defer inFlight.Add(-1)
		var src string
		var seq int
		fmt.Sscanf(string(ctx.Data()), "%s %d", &src, &seq)
		key := src + "/" + strconv.Itoa(int(ctx.Tag()))
		time.Sleep(50 * time.Microsecond)
		mu.Lock()
		if prev, ok := last[key]; ok && seq != prev+1 {
			bad.Store(fmt.Sprintf("%s: %d after %d", key, seq, prev))
		}
		last[key] = seq
		mu.Unlock()
		total.Add(1)
	})
	const perStream = 300
	var srcs []*yomo.Source
	for i := 0; i < 4; i++ {
		s := connectSource(t, tz, fmt.Sprintf("s%d", i), tz.clients)
		srcs = append(srcs, s)
	}
	for seq := 0; seq < perStream; seq++ {
		for i, s := range srcs {
			for _, tag := range []yomo.Tag{1, 2} {
				s.Write(tag, []byte(fmt.Sprintf("s%d %d", i, seq)))
			}
		}
	}
	eventually(t, 20*time.Second, func() bool { return total.Load() == int32(perStream*len(srcs)*2) }, func() string { return fmt.Sprintf("handled %d", total.Load()) })
	if v := bad.Load(); v != nil {
		t.Fatalf("order broken within one source and tag: %v", v)
	}
	if maxInFlight.Load() < 2 {
		t.Fatalf("handler never ran concurrently (max in flight %d)", maxInFlight.Load())
	}
}

func TestHooksFireInOrderAndTraceparentFlows(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	add := func(s string) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	snapshot := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), events...)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hook := func(name string) yomo.Hooks {
		return yomo.Hooks{
			OnConnect: func(c yomo.ConnInfo) error {
				add(name + " connect " + c.Name)
				if c.Name == "intruder" {
					return errors.New("intruders are not welcome")
				}
				return nil
			},
			OnFrame: func(f *yomo.FrameInfo) bool {
				v, _ := f.Metadata("traceparent")
				add(fmt.Sprintf("%s frame %s tag=%d tp=%v", name, f.From.Name, f.Tag, v == tp))
				return f.Tag != 66 // tag 66 is filtered
			},
			OnDisconnect: func(c yomo.ConnInfo, err error) { add(name + " disconnect " + c.Name) },
		}
	}
	tz := startZipper(t, "", yomo.WithHooks(hook("h1")), yomo.WithHooks(hook("h2")))
	seen := make(chan string, 4)
	f1 := connectFn(t, tz, "f1", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) {
		v, _ := ctx.Metadata("traceparent")
		seen <- "f1 " + v
		ctx.Write(2, ctx.Data())
	})
	connectFn(t, tz, "f2", tz.clients, []yomo.Tag{2, 66}, func(ctx yomo.Context) {
		v, _ := ctx.Metadata("traceparent")
		seen <- fmt.Sprintf("f2 tag=%d %s", ctx.Tag(), v)
	})
	src := connectSource(t, tz, "src", tz.clients)
	if err := src.WriteWithMetadata(1, []byte("x"), map[string]string{"traceparent": tp}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"f1 " + tp, "f2 tag=2 " + tp} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for %q", want)
		}
	}
	src.Write(66, []byte("filtered"))
	eventually(t, 5*time.Second, func() bool { return tz.Stats().Filtered == 1 }, func() string { return fmt.Sprintf("filtered %d", tz.Stats().Filtered) })
	intruder := yomo.NewSource("intruder", tz.addr, tz.clients...)
	var rej *yomo.RejectedError
	if err := intruder.Connect(ctxT(t)); !errors.As(err, &rej) || rej.Reason != "intruders are not welcome" {
		t.Fatalf("hook rejection: %v", err)
	}
	f1.Close()
	want := []string{
		"h1 connect f1", "h2 connect f1",
		"h1 connect f2", "h2 connect f2",
		"h1 connect src", "h2 connect src",
		"h1 frame src tag=1 tp=true", "h2 frame src tag=1 tp=true",
		"h1 frame f1 tag=2 tp=true", "h2 frame f1 tag=2 tp=true",
		"h1 frame src tag=66 tp=false", // h1 filters it: h2 never sees it
		"h1 connect intruder",          // h1 rejects it: h2 never sees it
		"h1 disconnect f1", "h2 disconnect f1",
	}
	eventually(t, 5*time.Second, func() bool { return len(snapshot()) >= len(want) }, func() string { return fmt.Sprintf("events %q", snapshot()) })
	got := snapshot()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hook events\n got %q\nwant %q", got, want)
	}
}

func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	tz, trust, restart := restartableZipper(t)
	var got recorder
	// The function comes back after the source: what the source writes
	// meanwhile is held by the new zipper's reconnect grace, not lost.
	fopts := []yomo.ClientOption{trust, yomo.WithReconnectBackoff(400*time.Millisecond, 800*time.Millisecond)}
	sopts := []yomo.ClientOption{trust, yomo.WithReconnectBackoff(5*time.Millisecond, 20*time.Millisecond)}
	connectFn(t, tz, "sink", fopts, []yomo.Tag{1}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
	src := connectSource(t, tz, "src", sopts)
	const n = 20000
	writerDone := make(chan error, 1)
	go func() { // owned by the test: ends after n writes
		for i := 0; i < n; i++ {
			if err := src.Write(1, []byte(strconv.Itoa(i))); err != nil {
				writerDone <- fmt.Errorf("write %d: %w", i, err)
				return
			}
		}
		writerDone <- nil
	}()
	eventually(t, 10*time.Second, func() bool { return got.len() > 1000 }, func() string { return "load did not start" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tz.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	st := tz.Stats()
	if st.Dropped != 0 {
		t.Fatalf("shutdown dropped %d frames", st.Dropped)
	}
	if uint64(got.len()) != st.FramesIn {
		t.Fatalf("function got %d frames, zipper received %d: in-flight frames lost", got.len(), st.FramesIn)
	}
	// A new zipper on the same address: the clients come back and the
	// rest of the frames, queued at the source meanwhile, arrive.
	z2 := restart()
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() bool { return got.len() >= n }, func() string { return fmt.Sprintf("got %d of %d", got.len(), n) })
	for i, r := range got.snapshot() {
		if r.data != strconv.Itoa(i) {
			t.Fatalf("frame %d is %q: lost or reordered across the shutdown", i, r.data)
		}
	}
	// Both clients are back (and, when the test ends, close while
	// connected rather than in the middle of a reconnect).
	eventually(t, 10*time.Second, func() bool {
		c := z2.Stats().Connections
		return c.Sources == 1 && c.Functions == 1
	}, func() string { return fmt.Sprintf("clients did not come back: %+v", z2.Stats().Connections) })
}

func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	release := make(chan struct{})
	connectFn(t, tz, "stuck", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) { <-release })
	t.Cleanup(func() { close(release) })
	src := connectSource(t, tz, "src", tz.clients)
	for i := 0; i < 100; i++ {
		src.Write(1, make([]byte, 64<<10))
	}
	eventually(t, 5*time.Second, func() bool { return tz.Stats().FramesIn > 50 }, func() string { return "frames in" })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tz.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck function = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v past its deadline", d)
	}
}

// twoZippers serves two zippers with one certificate and returns them,
// both addresses as a client takes them, and the client option trusting
// the certificate.
func twoZippers(t *testing.T) (z1, z2 *testZipper, addrs string, trust yomo.ClientOption) {
	t.Helper()
	cert, trust := sharedCert(t)
	z1 = startZipper(t, "", cert)
	z2 = startZipper(t, "", cert)
	return z1, z2, z1.addr + ", " + z2.addr, trust
}

func TestGoAwayMovesClientsToTheNextZipper(t *testing.T) {
	t.Parallel()
	z1, z2, addrs, roots := twoZippers(t)
	copts := []yomo.ClientOption{roots, yomo.WithReconnectBackoff(5*time.Millisecond, 20*time.Millisecond)}
	var got atomic.Int64
	f := yomo.NewStreamFunction("sink", addrs, copts...)
	f.SetObserveDataTags(1)
	f.SetHandler(func(ctx yomo.Context) { got.Add(1) })
	if err := f.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := yomo.NewSource("src", addrs, copts...)
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.Write(1, []byte("via z1"))
	eventually(t, 5*time.Second, func() bool { return got.Load() == 1 }, func() string { return "first frame" })
	if z1.Stats().Connections.Sources != 1 {
		t.Fatal("clients did not start on the first address")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := z1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		c := z2.Stats().Connections
		return c.Sources == 1 && c.Functions == 1
	}, func() string {
		return fmt.Sprintf("clients did not move to the second zipper: %+v", z2.Stats().Connections)
	})
	src.Write(1, []byte("via z2"))
	eventually(t, 5*time.Second, func() bool { return got.Load() == 2 }, func() string { return "no delivery through the second zipper" })
}

func TestFrameOverAClientsLimitIsDroppedForItNotSent(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "")
	var small, big atomic.Int64
	var reported errs
	fs := newFn(t, tz, "small", append(tz.clients, yomo.WithMaxFrameSize(1024)), []yomo.Tag{1}, func(ctx yomo.Context) { small.Add(1) })
	fs.SetErrorHandler(reported.add)
	if err := fs.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	connectFn(t, tz, "big", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) { big.Add(1) })
	src := connectSource(t, tz, "src", tz.clients)
	src.Write(1, make([]byte, 4096)) // over "small"'s limit
	src.Write(1, make([]byte, 16))
	eventually(t, 5*time.Second, func() bool { return big.Load() == 2 && small.Load() == 1 }, func() string { return fmt.Sprintf("big=%d small=%d", big.Load(), small.Load()) })
	f, _ := tz.Stats().Function("small")
	if f.Dropped != 1 {
		t.Fatalf("small's stats %+v: the oversized frame is not counted", f)
	}
	eventually(t, 5*time.Second, func() bool {
		return reported.find(func(err error) bool { var de *yomo.DroppedError; return errors.As(err, &de) && de.Total == 1 })
	}, func() string { return "small was not told of its drop" })
	if reported.find(func(err error) bool { return strings.Contains(err.Error(), "connection lost") }) {
		t.Fatal("the oversized frame broke small's connection")
	}
}

// restartWithSource serves a zipper with a connected source, restarts the
// zipper on the same address (Shutdown, then a new zipper with opts) and
// waits until the source is back. It returns the new zipper and the source.
func restartWithSource(t *testing.T, opts ...yomo.ZipperOption) (*testZipper, *yomo.Source) {
	t.Helper()
	tz, trust, restart := restartableZipper(t)
	copts := []yomo.ClientOption{trust, yomo.WithReconnectBackoff(5*time.Millisecond, 20*time.Millisecond)}
	src := connectSource(t, tz, "src", copts)
	if err := tz.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	z2 := restart(opts...)
	z2.clients = copts
	eventually(t, 10*time.Second, func() bool { return z2.Stats().Connections.Sources == 1 },
		func() string { return fmt.Sprintf("source did not reconnect: %+v", z2.Stats().Connections) })
	return z2, src
}

// After a restart the clients come back in any order. What a reconnected
// source writes before any function is back is held during the startup
// grace and delivered, in order, when the function connects.
func TestRestartHoldsFramesUntilFunctionsReturn(t *testing.T) {
	t.Parallel()
	z2, src := restartWithSource(t)
	const n = 500
	for i := 0; i < n; i++ {
		if err := src.Write(1, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing observes tag 1 yet: the frames must not be counted unroutable.
	var got recorder
	connectFn(t, z2, "late", z2.clients, []yomo.Tag{1}, func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
	eventually(t, 10*time.Second, func() bool { return got.len() == n }, func() string {
		return fmt.Sprintf("late function got %d of %d; stats %+v", got.len(), n, z2.Stats())
	})
	for i, r := range got.snapshot() {
		if r.data != strconv.Itoa(i) {
			t.Fatalf("frame %d is %q: held frames out of order", i, r.data)
		}
	}
	if u := z2.Stats().Unroutable; u != 0 {
		t.Fatalf("%d frames counted unroutable", u)
	}
	// A source connecting for the first time is not held: its frames for
	// an unobserved tag are counted at once, well inside the grace.
	fresh := connectSource(t, z2, "fresh", z2.clients)
	fresh.Write(9, []byte("nobody"))
	eventually(t, yomo.DefaultReconnectGrace/2, func() bool { return z2.Stats().UnroutableByTag[9] == 1 },
		func() string { return fmt.Sprintf("fresh source's frame not counted: %+v", z2.Stats()) })
}

// Once the grace is over, held frames are counted unroutable, and frames
// written later are counted at once.
func TestRestartGraceEnds(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	z2, src := restartWithSource(t, yomo.WithReconnectGrace(grace))
	for i := 0; i < 3; i++ {
		src.Write(1, []byte("nobody yet"))
	}
	eventually(t, 10*time.Second, func() bool { return z2.Stats().UnroutableByTag[1] == 3 },
		func() string { return fmt.Sprintf("held frames not counted after the grace: %+v", z2.Stats()) })
	var got atomic.Int64
	connectFn(t, z2, "late", z2.clients, []yomo.Tag{1}, func(ctx yomo.Context) { got.Add(1) })
	src.Write(1, []byte("now"))
	eventually(t, 5*time.Second, func() bool { return got.Load() == 1 }, func() string { return fmt.Sprintf("got %d", got.Load()) })
}

// Accounting: for every function, frames its handler saw plus the drops
// it was told of equal the frames sent, and the zipper's counters agree.
// One function keeps up, two are slow (their small queues overflow).
func TestAccountingDeliveredPlusDroppedEqualsSent(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "", yomo.WithQueueLimits(512, 256<<10))
	type counts struct{ got, told atomic.Int64 }
	fns := map[string]*counts{"fast": {}, "slow": {}, "slower": {}}
	pause := map[string]time.Duration{"fast": 0, "slow": 50 * time.Microsecond, "slower": 200 * time.Microsecond}
	for name, c := range fns {
		d := pause[name]
		f := newFn(t, tz, name, tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) {
			c.got.Add(1)
			if d > 0 {
				time.Sleep(d)
			}
		})
		f.SetErrorHandler(func(err error) {
			var de *yomo.DroppedError
			if errors.As(err, &de) {
				c.told.Add(int64(de.Count))
			}
		})
		if err := f.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	src := connectSource(t, tz, "src", tz.clients)
	const n = 20000
	p := make([]byte, 1024)
	for i := 0; i < n; i++ {
		if err := src.Write(1, p); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range fns {
		eventually(t, 30*time.Second, func() bool { return c.got.Load()+c.told.Load() == n }, func() string {
			fs, _ := tz.Stats().Function(name)
			return fmt.Sprintf("%s: handled %d + told dropped %d != sent %d; zipper: %+v", name, c.got.Load(), c.told.Load(), n, fs)
		})
		fs, _ := tz.Stats().Function(name)
		if fs.FramesOut != uint64(c.got.Load()) || fs.Dropped != uint64(c.told.Load()) || fs.QueuedFrames != 0 {
			t.Fatalf("%s: handled %d, told %d dropped; zipper says out %d, dropped %d, queued %d", name, c.got.Load(), c.told.Load(), fs.FramesOut, fs.Dropped, fs.QueuedFrames)
		}
		t.Logf("%s: handled %d, dropped %d", name, c.got.Load(), c.told.Load())
	}
	// Whether the function that keeps up loses frames is the isolation
	// tests' business (with queues this small, a loaded machine can make
	// it look stalled now and then); here every function's frames must
	// add up, and the test must have overflowed the slow ones.
	if fns["slower"].told.Load() == 0 {
		t.Fatal("the slowest function dropped nothing: the test did not overflow its queue")
	}
}

// Isolation with the default limits and policy: a stuck function on the
// same tag, or on another tag of the same source, costs a function that
// keeps up nothing: it receives every frame, none dropped, while the
// stuck one's frames are dropped once its queue is full.
//
// Not parallel, nor its subtests: a function that keeps up but is starved
// of CPU by parallel tests can be taken for stalled (see runQUICAlone).
func TestStuckFunctionWithDefaults(t *testing.T) {
	for _, sameTag := range []bool{true, false} {
		name := map[bool]string{true: "same tag", false: "other tag"}[sameTag]
		t.Run(name, func(t *testing.T) {
			tz := startZipper(t, "")
			stuckTag := yomo.Tag(2)
			if sameTag {
				stuckTag = 1
			}
			release := make(chan struct{})
			stuck := newFn(t, tz, "stuck", tz.clients, []yomo.Tag{stuckTag}, func(ctx yomo.Context) { <-release })
			if err := stuck.Connect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { close(release) })
			var fast atomic.Int64
			connectFn(t, tz, "fast", tz.clients, []yomo.Tag{1}, func(ctx yomo.Context) { fast.Add(1) })
			src := connectSource(t, tz, "src", tz.clients)
			// More than the stuck function's queue (8 MiB) and stream window
			// (2 MiB) hold: about 10 000 frames of 1 KiB.
			const n = 12000
			p := make([]byte, 1024)
			start := time.Now()
			for i := 0; i < n; i++ {
				if err := src.Write(1, p); err != nil {
					t.Fatal(err)
				}
				if !sameTag {
					if err := src.Write(2, p); err != nil {
						t.Fatal(err)
					}
				}
			}
			eventually(t, 20*time.Second, func() bool { return fast.Load() == n }, func() string {
				return fmt.Sprintf("fast got %d of %d; stats %+v", fast.Load(), n, tz.Stats())
			})
			t.Logf("fast function got all %d frames in %v", n, time.Since(start))
			st := tz.Stats()
			if f, _ := st.Function("fast"); f.Dropped != 0 {
				t.Fatalf("fast function dropped %d", f.Dropped)
			}
			s, _ := st.Function("stuck")
			if s.Dropped == 0 {
				t.Fatalf("stuck function dropped nothing: %+v", s)
			}
			t.Logf("the stuck function dropped %d of the frames meant for it", s.Dropped)
		})
	}
}

// Shutdown under load with a second zipper: GOAWAY moves the clients, the
// source usually first; nothing is lost or reordered on the way, because
// z1 drains before closing and z2 holds the reconnected source's frames
// until the function is back.
func TestGoAwayUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	z1, z2, addrs, roots := twoZippers(t)
	var got recorder
	f := yomo.NewStreamFunction("sink", addrs, roots, yomo.WithReconnectBackoff(300*time.Millisecond, 600*time.Millisecond))
	f.SetObserveDataTags(1)
	f.SetHandler(func(ctx yomo.Context) { got.add(ctx.Tag(), ctx.Data()) })
	if err := f.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := yomo.NewSource("src", addrs, roots, yomo.WithReconnectBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The writer runs, paced, until told to stop: before, during and after
	// the move.
	var wrote atomic.Int64
	stop := make(chan struct{})
	writerDone := steadyWriter(src, &wrote, stop)
	eventually(t, 10*time.Second, func() bool { return got.len() > 1000 }, func() string { return "load did not start" })
	if err := z1.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return z2.Stats().Connections.Sources == 1 }, func() string { return "source did not move" })
	after := wrote.Load()
	eventually(t, 10*time.Second, func() bool { return wrote.Load() > after+2000 }, func() string { return "writes stopped after the move" })
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	n := int(wrote.Load())
	eventually(t, 20*time.Second, func() bool { return got.len() >= n }, func() string {
		return fmt.Sprintf("got %d of %d; z1 %+v; z2 %+v", got.len(), n, z1.Stats(), z2.Stats())
	})
	for i, r := range got.snapshot() {
		if r.data != strconv.Itoa(i) {
			t.Fatalf("frame %d is %q: lost or reordered across the move", i, r.data)
		}
	}
	if d, u := z1.Stats().Dropped+z2.Stats().Dropped, z2.Stats().Unroutable; d != 0 || u != 0 {
		t.Fatalf("dropped %d, unroutable %d", d, u)
	}
}

// Close waits for the handler call in progress, not for every frame that
// is still buffered at the function: once the bounded drain is over, the
// rest is not handed to the handler (with or without handler concurrency).
func TestFunctionCloseSkipsBufferedFrames(t *testing.T) {
	t.Parallel()
	for _, conc := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency=%d", conc), func(t *testing.T) {
			t.Parallel()
			tz := startZipper(t, "")
			release := make(chan struct{})
			var calls atomic.Int64
			f := yomo.NewStreamFunction("slow", tz.addr, append(tz.clients, yomo.WithHandlerConcurrency(conc))...)
			f.SetObserveDataTags(1)
			f.SetHandler(func(ctx yomo.Context) {
				calls.Add(1)
				<-release
			})
			if err := f.Connect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			src := connectSource(t, tz, "src", tz.clients)
			for i := 0; i < 200; i++ {
				if err := src.Write(1, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 5*time.Second, func() bool { return calls.Load() == 1 }, func() string { return "handler not called" })
			// Wait until the function holds more frames than the one in
			// progress (they reached its connection).
			eventually(t, 5*time.Second, func() bool {
				fs, _ := tz.Stats().Function("slow")
				return fs.FramesOut == 200
			}, func() string { return fmt.Sprintf("frames not sent to the function: %+v", tz.Stats()) })
			closed := make(chan struct{})
			go func() { // owned by the test: ends when Close returns
				f.Close()
				close(closed)
			}()
			// Release the handler only once Close has given up draining.
			eventually(t, 10*time.Second, func() bool { return yomo.StoppedForTest(f) }, func() string { return "Close did not stop the client" })
			close(release)
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return after the handler call in progress")
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("handler called %d times; after Close only the call in progress may finish", n)
			}
		})
	}
}
