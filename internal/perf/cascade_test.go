package perf

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/knobs"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
)

// benchCascade links zipper "a" (where the source is) to zipper "b" (where
// the function is), source → a → b → function, and returns an
// environment for each end.
func benchCascade(b *testing.B) (atA, atB *benchEnv) {
	b.Helper()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		b.Fatal(err)
	}
	// One certificate for both zippers, which verify it when they link.
	ztls := yomo.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool})
	opts := []yomo.ClientOption{yomo.WithTLSConfig(&tls.Config{RootCAs: pool}),
		yomo.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond), yomo.WithLogger(benchLogger)}
	zb, addrB := serve(b, "b", ztls)
	za, addrA := serve(b, "a", ztls, yomo.WithMesh(mesh.Peer{Name: "b", Addr: addrB}))
	return &benchEnv{z: za, addr: addrA, opts: opts}, &benchEnv{z: zb, addr: addrB, opts: opts}
}

// awaitRoute waits until zipper a routes tag to function fn through b.
func awaitRoute(b *testing.B, a *yomo.Zipper, tag yomo.Tag, fn string) {
	b.Helper()
	deadline := time.Now().Add(benchStall)
	for {
		for _, r := range a.Stats().Routes {
			if r.Tag == tag && r.Function == fn && r.Via == "b" {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("no route for tag %d to %s within %v: %+v", tag, fn, benchStall, a.Stats().Routes)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// eitherFailed returns the first error the clients of x or y reported.
func eitherFailed(x, y *benchEnv) func() error {
	return func() error {
		if err := x.failed(); err != nil {
			return err
		}
		return y.failed()
	}
}

// BenchmarkCascade: source → zipper → zipper → function over QUIC on
// 127.0.0.1, 1 KiB, next to the raw two-relay chain (source → relay →
// relay → handler, batched) in the same run; and the 16 B round trip
// through both zippers with backflow.
func BenchmarkCascade(b *testing.B) {
	const size = 1 << 10
	cascade := func(b *testing.B, custody bool) {
		// Custody and mesh sequencing are on in the library; the variant
		// without them measures what they cost (issue 13: at most 5 %).
		knobs.NoMeshCustody.Store(!custody)
		defer knobs.NoMeshCustody.Store(false)
		atA, atB := benchCascade(b)
		rs := newBenchArrivals(1)
		atB.fn(b, "sink", func(yomo.Context) { rs[0].add() }, 1)
		awaitRoute(b, atA.z, 1, "sink")
		src := atA.source(b, "src", nil)
		payload := make([]byte, size)
		benchExpect(rs, 1)
		if err := src.Write(1, payload); err != nil {
			b.Fatal(err)
		}
		failed := eitherFailed(atA, atB)
		benchAwait(b, rs, nil, failed)
		dropped := func() uint64 { return atA.dropped() + atB.dropped() }
		start := benchStart(b, rs, size)
		cpu0 := cpuTime()
		for range b.N {
			if err := src.Write(1, payload); err != nil {
				b.Fatal(err)
			}
		}
		benchAwait(b, rs, dropped, failed)
		elapsed := time.Since(start)
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
		b.StopTimer()
		b.ReportMetric(float64(rs[0].n.Load()-1)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(float64(dropped())/float64(b.N), "dropped/op")
	}
	b.Run("1KiB/yomo", func(b *testing.B) { cascade(b, true) })
	b.Run("1KiB/yomo-without-custody", func(b *testing.B) { cascade(b, false) })
	b.Run("1KiB/relay-chain", func(b *testing.B) { benchRelayPipeline(b, size, 1, 2, true, false, "msgs/s") })
	b.Run("roundtrip-16B/yomo", func(b *testing.B) {
		atA, atB := benchCascade(b)
		atB.fn(b, "echo", func(ctx yomo.Context) { _ = ctx.Write(2, ctx.Data()) }, 1)
		awaitRoute(b, atA.z, 1, "echo")
		got := make(chan struct{}, 1)
		src := atA.source(b, "src", func(yomo.Tag, []byte) { benchSignal(got) }, 2)
		payload := make([]byte, 16)
		benchRoundTrip(b, func() error { return src.Write(1, payload) }, got, eitherFailed(atA, atB))
	})
}
