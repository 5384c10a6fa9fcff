package yomo

import (
	"testing"
	"time"

	"github.com/yomo-dev/yomo/mesh"
)

// benchCascade links zipper "a" (where the source is) to zipper "b" (where
// the function is): source → a → b → function.
func benchCascade(b *testing.B) *meshNet {
	n := newMeshNet(b, "a", "b")
	n.start("b", nil, WithLogger(benchLogger))
	n.start("a", []mesh.Peer{n.peer("b")}, WithLogger(benchLogger))
	n.client = append(n.client, WithLogger(benchLogger))
	return n
}

// BenchmarkCascade: source → zipper → zipper → function over QUIC on
// 127.0.0.1, 1 KiB, next to the raw two-relay chain (source → relay →
// relay → handler, batched) in the same run; and the 16 B round trip
// through both zippers with backflow.
func BenchmarkCascade(b *testing.B) {
	const size = 1 << 10
	b.Run("1KiB/yomo", func(b *testing.B) {
		n := benchCascade(b)
		rs := newBenchArrivals(1)
		n.function("b", "sink", []Tag{1}, func(Context) { rs[0].add() })
		n.waitRoute("a", 1, "sink")
		src := n.source("a", "src")
		if err := src.Connect(ctxT(b)); err != nil {
			b.Fatal(err)
		}
		payload := make([]byte, size)
		benchExpect(rs, 1)
		if err := src.Write(1, payload); err != nil {
			b.Fatal(err)
		}
		benchAwait(b, rs, nil, func() error { return nil })
		dropped := func() uint64 { return n.zippers["a"].Stats().Dropped + n.zippers["b"].Stats().Dropped }
		start := benchStart(b, rs, size)
		for range b.N {
			if err := src.Write(1, payload); err != nil {
				b.Fatal(err)
			}
		}
		benchAwait(b, rs, dropped, func() error { return nil })
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(rs[0].n.Load()-1)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(float64(dropped())/float64(b.N), "dropped/op")
	})
	b.Run("1KiB/relay-chain", func(b *testing.B) { benchRelayPipeline(b, size, 1, 2, true, false, "msgs/s") })
	b.Run("roundtrip-16B/yomo", func(b *testing.B) {
		n := benchCascade(b)
		n.function("b", "echo", []Tag{1}, func(ctx Context) { _ = ctx.Write(2, ctx.Data()) })
		n.waitRoute("a", 1, "echo")
		got := make(chan struct{}, 1)
		src := n.source("a", "src", 2)
		src.SetReceiveHandler(func(Tag, []byte) { benchSignal(got) })
		if err := src.Connect(ctxT(b)); err != nil {
			b.Fatal(err)
		}
		payload := make([]byte, 16)
		benchRoundTrip(b, func() error { return src.Write(1, payload) }, got, func() error { return nil })
	})
}
