package perf

// Benchmarks of the zipper against a raw QUIC relay (relay_test.go), in
// the same run so that the ratio is meaningful on a noisy machine.
//
// Throughput benchmarks count delivered messages: the source writes b.N
// messages and the benchmark ends when every handler received all of them
// (or, under a dropping overflow policy, when deliveries plus the zipper's
// Stats().Dropped account for all of them: drops are reported as the
// dropped/op metric, never hidden; under Block any drop fails). msgs/s is
// delivered messages per second per receiver. Setup and teardown are not
// timed.
//
//	go test -run='^$' -bench=. -benchtime=2s -count=5 ./internal/perf/ | tee /tmp/bench.txt
//	benchstat /tmp/bench.txt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
)

var benchLogger = slog.New(slog.DiscardHandler)

var benchSizes = []struct {
	name string
	n    int
}{
	{"16B", 16},
	{"1KiB", 1 << 10},
	{"64KiB", 64 << 10},
}

// benchStall fails a benchmark whose receivers make no progress this long.
const benchStall = 10 * time.Second

// benchArrivals counts the messages one receiver got and signals done when the
// count reaches the target.
type benchArrivals struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{} // cap 1
}

func newBenchArrivals(k int) []*benchArrivals {
	rs := make([]*benchArrivals, k)
	for i := range rs {
		rs[i] = &benchArrivals{done: make(chan struct{}, 1)}
	}
	return rs
}

func (a *benchArrivals) add() {
	if a.n.Add(1) == a.target.Load() {
		select {
		case a.done <- struct{}{}:
		default:
		}
	}
}

// benchExpect sets every receiver's target to what it has now plus k. Call it
// before writing the k messages.
func benchExpect(rs []*benchArrivals, k int) {
	for _, r := range rs {
		r.target.Store(r.n.Load() + int64(k))
	}
}

// benchAwait waits until every receiver reached its target. With dropped
// non-nil it also returns once deliveries plus dropped() account for every
// expected message. It fails the benchmark when failed reports an error or
// nothing progresses for benchStall.
func benchAwait(b *testing.B, rs []*benchArrivals, dropped func() uint64, failed func() error) {
	b.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sums := func() (got, want int64) {
		for _, r := range rs {
			got += r.n.Load()
			want += r.target.Load()
		}
		return got, want
	}
	last, moved := int64(-1), time.Now()
	for i := 0; i < len(rs); {
		select {
		case <-rs[i].done:
			i++
			continue
		case <-tick.C:
		}
		if err := failed(); err != nil {
			b.Fatalf("during the benchmark: %v", err)
		}
		got, want := sums()
		if dropped != nil {
			if d := int64(dropped()); got+d >= want {
				return
			}
		}
		if got != last {
			last, moved = got, time.Now()
		} else if time.Since(moved) > benchStall {
			b.Fatalf("stalled for %v: delivered %d of %d", benchStall, got, want)
		}
	}
}

// benchEnv is a zipper and the options its clients need.
type benchEnv struct {
	z    *yomo.Zipper
	addr string
	opts []yomo.ClientOption

	mu  sync.Mutex
	err error // first error reported to a client's error handler
}

// newBenchEnv starts a zipper serving QUIC on 127.0.0.1 (or, inMemory, not
// serving at all: clients then connect WithInMemory). Everything is closed
// by b.Cleanup, after the timer stopped.
func newBenchEnv(b *testing.B, inMemory bool, zopts ...yomo.ZipperOption) *benchEnv {
	b.Helper()
	zopts = append([]yomo.ZipperOption{yomo.WithLogger(benchLogger)}, zopts...)
	if inMemory {
		z, err := yomo.NewZipper("bench", zopts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = z.Close() })
		return &benchEnv{z: z, addr: "mem", opts: []yomo.ClientOption{yomo.WithInMemory(z), yomo.WithLogger(benchLogger)}}
	}
	z, addr := serve(b, "bench", zopts...)
	return &benchEnv{z: z, addr: addr, opts: []yomo.ClientOption{yomo.WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()}), yomo.WithLogger(benchLogger)}}
}

// serve starts zipper name (logging nowhere) serving QUIC on 127.0.0.1
// and returns it and its address. b.Cleanup closes it and checks that
// Serve returned ErrClosed.
func serve(b *testing.B, name string, opts ...yomo.ZipperOption) (*yomo.Zipper, string) {
	b.Helper()
	z, err := yomo.NewZipper(name, append([]yomo.ZipperOption{yomo.WithLogger(benchLogger)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- z.Serve(context.Background(), pc) }() // owned by the benchmark: ends on Close
	b.Cleanup(func() {
		_ = z.Close()
		if err := <-served; !errors.Is(err, yomo.ErrClosed) {
			b.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return z, pc.LocalAddr().String()
}

// report records the first error a client reports. Drop reports are not
// errors here: drops are counted from Stats (dropped/op).
func (e *benchEnv) report(err error) {
	if _, ok := errors.AsType[*yomo.DroppedError](err); ok {
		return
	}
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *benchEnv) failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *benchEnv) dropped() uint64 { return e.z.Stats().Dropped }

// benchStart prepares the timed part of a throughput benchmark: every
// receiver expects b.N more messages of size bytes; the timer restarts.
// It returns the start time.
func benchStart(b *testing.B, rs []*benchArrivals, size int64) time.Time {
	benchExpect(rs, b.N)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	return time.Now()
}

func benchCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	b.Cleanup(cancel)
	return ctx
}

// fn connects a function observing tags.
func (e *benchEnv) fn(b *testing.B, name string, h yomo.Handler, tags ...yomo.Tag) *yomo.StreamFunction {
	b.Helper()
	f := yomo.NewStreamFunction(name, e.addr, e.opts...)
	f.SetObserveDataTags(tags...)
	if err := f.SetHandler(h); err != nil {
		b.Fatal(err)
	}
	f.SetErrorHandler(e.report)
	if err := f.Connect(benchCtx(b)); err != nil {
		b.Fatalf("connect %s: %v", name, err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return f
}

// source connects a source observing tags (backflow) with receive handler
// recv (may be nil).
func (e *benchEnv) source(b *testing.B, name string, recv func(yomo.Tag, []byte), tags ...yomo.Tag) *yomo.Source {
	b.Helper()
	s := yomo.NewSource(name, e.addr, e.opts...)
	s.SetObserveDataTags(tags...)
	s.SetReceiveHandler(recv)
	s.SetErrorHandler(e.report)
	if err := s.Connect(benchCtx(b)); err != nil {
		b.Fatalf("connect %s: %v", name, err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// benchYomoPipeline: 1 source → zipper → fns functions (distinct names, one
// tag), size-byte payloads. unit names the msgs/s metric.
func benchYomoPipeline(b *testing.B, size, fns int, inMemory bool, pol benchPolicy, unit string) {
	env := newBenchEnv(b, inMemory, pol.opts...)
	rs := newBenchArrivals(fns)
	for i, r := range rs {
		env.fn(b, fmt.Sprintf("sink-%d", i), func(yomo.Context) { r.add() }, 1)
	}
	src := env.source(b, "src", nil)
	payload := make([]byte, size)
	// Warm up: the zipper's stream towards each function exists afterwards.
	benchExpect(rs, 1)
	if err := src.Write(1, payload); err != nil {
		b.Fatal(err)
	}
	benchAwait(b, rs, nil, env.failed)

	start := benchStart(b, rs, int64(size))
	for range b.N {
		if err := src.Write(1, payload); err != nil {
			b.Fatal(err)
		}
	}
	benchAwait(b, rs, env.dropped, env.failed)
	elapsed := time.Since(start)
	b.StopTimer()

	var delivered int64
	for _, r := range rs {
		delivered += r.n.Load() - 1 // minus the warm-up message
	}
	dropped := int64(env.z.Stats().Dropped)
	want := int64(fns) * int64(b.N)
	if delivered+dropped != want {
		b.Errorf("delivered %d + dropped %d != %d written × %d functions: frames lost or duplicated", delivered, dropped, b.N, fns)
	}
	if pol.lossless && dropped != 0 {
		b.Errorf("%d frames dropped under the Block policy", dropped)
	}
	b.ReportMetric(float64(delivered)/float64(fns)/elapsed.Seconds(), unit)
	b.ReportMetric(float64(dropped)/float64(want), "dropped/op")
}

// benchRelayPipeline is benchYomoPipeline on the raw relay: source → hops
// relays → handlers. With sameBytes, each message is as long on the wire
// as the yomo data frame of a size-byte payload (header, tag, origin, tid
// ...), so that the relay moves the same bytes as the zipper; MB/s still
// counts size bytes per message.
func benchRelayPipeline(b *testing.B, size, handlers, hops int, batched, sameBytes bool, unit string) {
	rs := newBenchArrivals(handlers)
	p := newRawPipeline(b, batched, hops, handlers, func(i int, _ []byte) { rs[i].add() })
	payload := make([]byte, size)
	if sameBytes {
		wire := frame.HeaderSize + frame.DataSize(&frame.Data{Tag: 1, Origin: 1, TID: 1, Payload: payload})
		payload = make([]byte, wire-4) // the relay's header is 4 bytes
	}
	benchExpect(rs, 1)
	if err := p.src.writeMsg(payload); err != nil {
		b.Fatal(err)
	}
	benchAwait(b, rs, nil, p.failed)

	start := benchStart(b, rs, int64(size))
	for range b.N {
		if err := p.src.writeMsg(payload); err != nil {
			b.Fatal(err)
		}
	}
	benchAwait(b, rs, nil, p.failed)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(0, "dropped/op")
}

// benchPolicy is a zipper overflow policy a yomo variant runs with.
type benchPolicy struct {
	name     string
	opts     []yomo.ZipperOption
	lossless bool // a drop fails the benchmark
}

var benchPolicies = []benchPolicy{
	{"yomo", nil, false}, // the library's default policy
	{"yomo-dropnewest", []yomo.ZipperOption{yomo.WithOverflowPolicy(yomo.DropNewest)}, false},
	{"yomo-block", []yomo.ZipperOption{yomo.WithOverflowPolicy(yomo.Block)}, true},
}

// BenchmarkPipeline: 1 Source → zipper → 1 StreamFunction over QUIC on
// 127.0.0.1, next to the raw relay (source → relay → handler) batched and
// unbatched, and a two-relay chain.
//
//	yomo             the default overflow policy: drops counted in dropped/op
//	yomo-dropnewest  WithOverflowPolicy(DropNewest): drops counted in dropped/op
//	yomo-block       WithOverflowPolicy(Block): lossless, backpressure
//	relay            raw relay, source and relay coalescing into ~32 KiB writes
//	relay-unbatched  raw relay, one stream Write per message
//	relay-samebytes  relay, messages padded to the yomo frame's wire size
//	relay-chain      source → relay → relay → handler, batched
func BenchmarkPipeline(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			for _, pol := range benchPolicies {
				b.Run(pol.name, func(b *testing.B) { benchYomoPipeline(b, sz.n, 1, false, pol, "msgs/s") })
			}
			b.Run("relay", func(b *testing.B) { benchRelayPipeline(b, sz.n, 1, 1, true, false, "msgs/s") })
			b.Run("relay-unbatched", func(b *testing.B) { benchRelayPipeline(b, sz.n, 1, 1, false, false, "msgs/s") })
			b.Run("relay-samebytes", func(b *testing.B) { benchRelayPipeline(b, sz.n, 1, 1, true, true, "msgs/s") })
			b.Run("relay-chain", func(b *testing.B) { benchRelayPipeline(b, sz.n, 1, 2, true, false, "msgs/s") })
		})
	}
}

// BenchmarkFanOut: 1 source → 4 functions (distinct names) observing one
// tag, 1 KiB; msgs/s/fn is per function. The relay copies each message to
// 4 handlers' streams (batched).
func BenchmarkFanOut(b *testing.B) {
	const size, fns = 1 << 10, 4
	for _, pol := range benchPolicies {
		b.Run(pol.name, func(b *testing.B) { benchYomoPipeline(b, size, fns, false, pol, "msgs/s/fn") })
	}
	b.Run("relay", func(b *testing.B) { benchRelayPipeline(b, size, fns, 1, true, false, "msgs/s/fn") })
}

// BenchmarkIsolation: 1 source → a function that keeps up, 1 KiB, with
// no other function ("alone"), or next to a function that is stuck from
// its first frame, on the same tag or on a second tag the source writes
// as often. msgs/s counts what the healthy function received; the stuck
// function's drops are counted in dropped/op (per frame written to it).
// With a fixed burst (-benchtime=50000x) it shows what a stuck neighbour
// costs: one stall timeout, at most, to decide it is stuck.
func BenchmarkIsolation(b *testing.B) {
	for _, mode := range []string{"alone", "stuck-same-tag", "stuck-other-tag"} {
		b.Run(mode, func(b *testing.B) { benchIsolation(b, mode) })
	}
}

func benchIsolation(b *testing.B, mode string) {
	env := newBenchEnv(b, false)
	rs := newBenchArrivals(1)
	env.fn(b, "healthy", func(yomo.Context) { rs[0].add() }, 1)
	stuckTag := yomo.Tag(1)
	if mode == "stuck-other-tag" {
		stuckTag = 2
	}
	if mode != "alone" {
		release := make(chan struct{})
		env.fn(b, "stuck", func(yomo.Context) { <-release }, stuckTag)
		b.Cleanup(func() { close(release) }) // runs before the function's Close
	}
	src := env.source(b, "src", nil)
	payload := make([]byte, 1<<10)
	benchExpect(rs, 1)
	if err := src.Write(1, payload); err != nil {
		b.Fatal(err)
	}
	benchAwait(b, rs, nil, env.failed)

	start := benchStart(b, rs, 1<<10)
	for range b.N {
		if err := src.Write(1, payload); err != nil {
			b.Fatal(err)
		}
		if mode == "stuck-other-tag" {
			if err := src.Write(2, payload); err != nil {
				b.Fatal(err)
			}
		}
	}
	benchAwait(b, rs, nil, env.failed)
	elapsed := time.Since(start)
	b.StopTimer()
	st := env.z.Stats()
	if h, _ := st.Function("healthy"); h.Dropped != 0 {
		b.Fatalf("the healthy function lost %d frames", h.Dropped)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	stuck, _ := st.Function("stuck")
	b.ReportMetric(float64(stuck.Dropped)/float64(b.N), "dropped/op")
}

// BenchmarkInMemoryPipeline: source and function both connected
// WithInMemory(z), no network and no TLS.
func BenchmarkInMemoryPipeline(b *testing.B) {
	b.Run("16B", func(b *testing.B) {
		for _, pol := range benchPolicies {
			b.Run(pol.name, func(b *testing.B) { benchYomoPipeline(b, 16, 1, true, pol, "msgs/s") })
		}
	})
}

// benchRoundTrip measures b.N round trips, one in flight: send writes a
// message and got receives a signal when its echo arrived. It reports the
// p50 and p99 latencies.
func benchRoundTrip(b *testing.B, send func() error, got <-chan struct{}, failed func() error) {
	lat := make([]time.Duration, b.N)
	timer := time.NewTimer(benchStall)
	defer timer.Stop()
	one := func() time.Duration {
		t0 := time.Now()
		if err := send(); err != nil {
			b.Fatal(err)
		}
		timer.Reset(benchStall)
		select {
		case <-got:
		case <-timer.C:
			b.Fatalf("no echo within %v (error: %v)", benchStall, failed())
		}
		return time.Since(t0)
	}
	for range 100 { // warm up streams and congestion control
		one()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range lat {
		lat[i] = one()
	}
	b.StopTimer()
	if err := failed(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i]) / float64(time.Microsecond)
	}
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// benchSignal sends on c without blocking (a stray extra echo must not block a
// receiving goroutine that Close waits for).
func benchSignal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// BenchmarkRoundTrip: 16 B, one in flight. yomo: the source writes tag 1,
// the function echoes with ctx.Write to tag 2, which the source observes
// (backflow), and its receive handler signals. relay: the handler echoes
// through the relay on return streams.
func BenchmarkRoundTrip(b *testing.B) {
	payload := make([]byte, 16)
	b.Run("yomo", func(b *testing.B) {
		env := newBenchEnv(b, false)
		env.fn(b, "echo", func(ctx yomo.Context) {
			if err := ctx.Write(2, ctx.Data()); err != nil {
				env.report(err)
			}
		}, 1)
		got := make(chan struct{}, 1)
		src := env.source(b, "src", func(yomo.Tag, []byte) { benchSignal(got) }, 2)
		benchRoundTrip(b, func() error { return src.Write(1, payload) }, got, env.failed)
	})
	b.Run("request", func(b *testing.B) {
		// Source.Request against the same echo: the reply comes back as
		// backflow of the request's transaction, without a receive handler.
		env := newBenchEnv(b, false)
		env.fn(b, "echo", func(ctx yomo.Context) {
			if err := ctx.Write(2, ctx.Data()); err != nil {
				env.report(err)
			}
		}, 1)
		src := env.source(b, "src", nil)
		ctx := benchCtx(b)
		got := make(chan struct{}, 1)
		benchRoundTrip(b, func() error {
			if _, err := src.Request(ctx, 1, payload); err != nil {
				return err
			}
			benchSignal(got)
			return nil
		}, got, env.failed)
	})
	b.Run("relay", func(b *testing.B) {
		got := make(chan struct{}, 1)
		p := newRawEcho(b, func([]byte) { benchSignal(got) })
		benchRoundTrip(b, func() error { return p.src.writeMsg(payload) }, got, p.failed)
	})
}
