package wasm_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/yomo-dev/yomo/internal/guestbuild"
	"github.com/yomo-dev/yomo/wasm"
)

// The example guests, one per language, built from source
// (examples/wasm-guests.sh; a missing toolchain skips its language). All
// upper-case the payload of tag 0x10 and write it with tag 0x11.
//
//	go test -run='^$' -bench='Guest(Call|Pool)' -benchtime=300ms -count=3 ./wasm
//	go test -run='^$' -bench=GuestLoad -benchtime=3x -count=3 ./wasm

func langGuest(b *testing.B, lang string) []byte {
	b.Helper()
	return guestbuild.ForTest(b, lang)
}

// BenchmarkGuestCall is the cost of one call per language: Handle with a
// 16-byte payload (the adapter and the guest's own work) and 1 KiB.
func BenchmarkGuestCall(b *testing.B) {
	for _, lang := range guestbuild.Langs {
		b.Run(lang, func(b *testing.B) {
			f := benchLoad(b, langGuest(b, lang), wasm.Config{})
			for _, size := range []int{16, 1 << 10} {
				b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
					c := &nopContext{tag: 0x10, data: bytes.Repeat([]byte("y"), size)}
					b.ReportAllocs()
					b.SetBytes(int64(size))
					for b.Loop() {
						f.Handle(c)
					}
					reportFrames(b)
					if c.writes != b.N || c.bytes != b.N*size {
						b.Fatalf("%d writes of %d bytes for %d frames", c.writes, c.bytes, b.N)
					}
				})
			}
		})
	}
}

// BenchmarkGuestPool is the throughput of a Function with 1, 2 and 4
// instances, called from 4 goroutines at once (16-byte frames).
func BenchmarkGuestPool(b *testing.B) {
	for _, lang := range guestbuild.Langs {
		b.Run(lang, func(b *testing.B) {
			module := langGuest(b, lang)
			for _, n := range []int{1, 2, 4} {
				b.Run(fmt.Sprintf("instances-%d", n), func(b *testing.B) {
					f := benchLoad(b, module, wasm.Config{Instances: n})
					payload := bytes.Repeat([]byte("y"), 16)
					var writes atomic.Int64
					b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						c := &nopContext{tag: 0x10, data: payload}
						for pb.Next() {
							f.Handle(c)
						}
						writes.Add(int64(c.writes))
					})
					reportFrames(b)
					if writes.Load() != int64(b.N) {
						b.Fatalf("%d writes for %d frames", writes.Load(), b.N)
					}
				})
			}
		})
	}
}

// BenchmarkGuestLoad is Load and Close per language: compiling each time,
// from a compilation cache, and in the interpreter.
func BenchmarkGuestLoad(b *testing.B) {
	for _, lang := range guestbuild.Langs {
		b.Run(lang, func(b *testing.B) {
			module := langGuest(b, lang)
			warm := wasm.NewCache()
			b.Cleanup(func() { _ = warm.Close(context.Background()) })
			for name, cfg := range map[string]wasm.Config{
				"compile":     {},
				"cached":      {Cache: warm},
				"interpreter": {Interpreter: true},
			} {
				b.Run(name, func(b *testing.B) {
					if cfg.Cache != nil { // fill it first
						f, err := wasm.Load(context.Background(), module, cfg)
						if err != nil {
							b.Fatal(err)
						}
						_ = f.Close(context.Background())
					}
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
				})
			}
		})
	}
}
