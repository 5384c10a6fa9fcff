package wasm_test

// Benchmarks: the cost of the wasm adapter next to the same logic as a Go
// closure, called directly with a fake context (BenchmarkHandle) and end
// to end through an in-memory zipper (BenchmarkPipeline), and the cost of
// loading a module (BenchmarkLoad).
//
//	go test -run='^$' -bench=. -count=5 ./wasm | tee /tmp/wasm-bench.txt
//	benchstat /tmp/wasm-bench.txt

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// The examples' Go guest (upper-cases tag 0x10 into 0x11): a module with
// the whole Go runtime, next to the hand-written abi guest.
const goGuestPath = "../examples/wasm/testdata/uppercase-go.wasm"

// nopContext is a yomo.Context whose writes only count.
type nopContext struct {
	tag    yomo.Tag
	data   []byte
	writes int
	bytes  int
}

func (c *nopContext) Tag() yomo.Tag                  { return c.tag }
func (c *nopContext) Data() []byte                   { return c.data }
func (c *nopContext) Metadata(string) (string, bool) { return "", false }
func (c *nopContext) Write(_ yomo.Tag, data []byte) error {
	c.writes++
	c.bytes += len(data)
	return nil
}
func (c *nopContext) WriteWithTarget(tag yomo.Tag, data []byte, _ string) error {
	return c.Write(tag, data)
}

func reportFrames(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

func benchLoad(b *testing.B, module []byte, cfg wasm.Config) *wasm.Function {
	b.Helper()
	cfg.Cache = cache
	cfg.OnError = func(err error) { b.Error(err) }
	f, err := wasm.Load(context.Background(), module, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

// echo is the abi guest's tag 9 as a Go closure: write the payload back
// with tag 0x11.
func echo(c yomo.Context) { _ = c.Write(0x11, c.Data()) }

func upper(c yomo.Context) { _ = c.Write(0x11, bytes.ToUpper(c.Data())) }

// BenchmarkHandle calls a handler directly, one frame per op: the adapter's
// own cost (borrowing an instance, a deadline, copying the payload into
// the guest, the host calls) against a plain closure.
func BenchmarkHandle(b *testing.B) {
	abi := guest(b, "abi")
	goGuest, err := os.ReadFile(goGuestPath)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{16, 1 << 10, 16 << 10} {
		payload := bytes.Repeat([]byte("y"), size)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			serial := func(b *testing.B, tag yomo.Tag, h yomo.Handler) {
				c := &nopContext{tag: tag, data: payload}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					h(c)
				}
				reportFrames(b)
				if c.writes != b.N {
					b.Fatalf("%d writes for %d frames", c.writes, b.N)
				}
			}
			parallel := func(b *testing.B, tag yomo.Tag, h yomo.Handler) {
				var writes atomic.Int64
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.RunParallel(func(pb *testing.PB) {
					c := &nopContext{tag: tag, data: payload}
					for pb.Next() {
						h(c)
					}
					writes.Add(int64(c.writes))
				})
				reportFrames(b)
				if writes.Load() != int64(b.N) {
					b.Fatalf("%d writes for %d frames", writes.Load(), b.N)
				}
			}
			b.Run("echo/closure", func(b *testing.B) { serial(b, 9, echo) })
			b.Run("echo/wasm", func(b *testing.B) { serial(b, 9, benchLoad(b, abi, wasm.Config{}).Handle) })
			b.Run("echo/wasm-interpreter", func(b *testing.B) {
				serial(b, 9, benchLoad(b, abi, wasm.Config{Interpreter: true}).Handle)
			})
			b.Run("echo/closure-parallel", func(b *testing.B) { parallel(b, 9, echo) })
			b.Run("echo/wasm-1-parallel", func(b *testing.B) {
				parallel(b, 9, benchLoad(b, abi, wasm.Config{Instances: 1}).Handle)
			})
			b.Run("echo/wasm-2-parallel", func(b *testing.B) {
				parallel(b, 9, benchLoad(b, abi, wasm.Config{Instances: 2}).Handle)
			})
			b.Run("upper/closure", func(b *testing.B) { serial(b, 0x10, upper) })
			b.Run("upper/wasm-go-guest", func(b *testing.B) { serial(b, 0x10, benchLoad(b, goGuest, wasm.Config{}).Handle) })
			b.Run("upper/wasm-go-guest-1-parallel", func(b *testing.B) {
				parallel(b, 0x10, benchLoad(b, goGuest, wasm.Config{Instances: 1}).Handle)
			})
			b.Run("upper/wasm-go-guest-2-parallel", func(b *testing.B) {
				parallel(b, 0x10, benchLoad(b, goGuest, wasm.Config{Instances: 2}).Handle)
			})
		})
	}
}

// BenchmarkPipeline sends b.N 16-byte frames from a source through an
// in-memory zipper to a function that echoes them back to the source:
// the wasm adapter in its real setting, against a closure.
func BenchmarkPipeline(b *testing.B) {
	abi := guest(b, "abi")
	b.Run("closure", func(b *testing.B) { benchPipeline(b, echo, 1) })
	b.Run("wasm-1", func(b *testing.B) { benchPipeline(b, benchLoad(b, abi, wasm.Config{}).Handle, 1) })
	b.Run("wasm-2", func(b *testing.B) {
		benchPipeline(b, benchLoad(b, abi, wasm.Config{Instances: 2}).Handle, 2)
	})
}

func benchPipeline(b *testing.B, h yomo.Handler, concurrency int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	// Block: a frame is never dropped, so every one comes back.
	z, err := yomo.NewZipper("bench", quiet, yomo.WithOverflowPolicy(yomo.Block))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	sfn := yomo.NewStreamFunction("echo", "mem", yomo.WithInMemory(z), quiet,
		yomo.WithHandlerConcurrency(concurrency))
	sfn.SetObserveDataTags(9)
	sfn.SetErrorHandler(func(err error) { b.Error(err) })
	if err := sfn.SetHandler(h); err != nil {
		b.Fatal(err)
	}
	if err := sfn.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sfn.Close() }()

	var got atomic.Int64
	target := make(chan struct{}, 1)
	var want atomic.Int64
	src := yomo.NewSource("bench", "mem", yomo.WithInMemory(z), quiet)
	src.SetObserveDataTags(0x11)
	src.SetReceiveHandler(func(yomo.Tag, []byte) {
		if got.Add(1) == want.Load() {
			target <- struct{}{}
		}
	})
	if err := src.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = src.Close() }()

	payload := bytes.Repeat([]byte("y"), 16)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	want.Store(int64(b.N))
	b.ResetTimer()
	for range b.N {
		if err := src.Write(9, payload); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-target:
	case <-ctx.Done():
		b.Fatalf("%d of %d frames came back", got.Load(), b.N)
	}
	b.StopTimer()
	reportFrames(b)
}

// BenchmarkLoad measures Load (compile unless cached, start one instance)
// and Close.
func BenchmarkLoad(b *testing.B) {
	abi := guest(b, "abi")
	goGuest, err := os.ReadFile(goGuestPath)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, module []byte, cfg wasm.Config) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := wasm.Load(context.Background(), module, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("abi/compile", func(b *testing.B) { run(b, abi, wasm.Config{}) })
	b.Run("abi/cached", func(b *testing.B) { run(b, abi, wasm.Config{Cache: cache}) })
	b.Run("abi/interpreter", func(b *testing.B) { run(b, abi, wasm.Config{Interpreter: true}) })
	b.Run("go-guest/compile", func(b *testing.B) { run(b, goGuest, wasm.Config{}) })
	b.Run("go-guest/cached", func(b *testing.B) { run(b, goGuest, wasm.Config{Cache: cache}) })
	b.Run("go-guest/interpreter", func(b *testing.B) { run(b, goGuest, wasm.Config{Interpreter: true}) })
	b.Run("go-guest/cached-4-instances", func(b *testing.B) {
		run(b, goGuest, wasm.Config{Cache: cache, Instances: 4})
	})
}
