package perf

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/chaosnet"
)

// BenchmarkDatagramLoss measures the one-way latency, source → zipper →
// function, of one tag written as datagrams (yomo.WithDatagramTags) and
// of the same tag on the stream, through a proxy between the source and
// the zipper that drops 3 % of the packets each way and delays each by
// 10 ms (a 20 ms round trip). The source writes a 64-byte frame every
// millisecond (b.N frames, so -benchtime=3000x is 3 s); the function
// notes each frame's age. It reports p50-ms and p99-ms of the frames that
// arrived and lost-% of those that did not: a lost stream frame is
// retransmitted and holds up the frames behind it; a lost datagram is
// gone and delays nothing.
func BenchmarkDatagramLoss(b *testing.B) {
	for _, mode := range []string{"datagram", "stream"} {
		b.Run(mode, func(b *testing.B) { benchDatagramLoss(b, mode == "datagram") })
	}
}

func benchDatagramLoss(b *testing.B, datagram bool) {
	env := newBenchEnv(b, false)
	p, err := chaosnet.Listen(env.addr, chaosnet.Config{Seed: 3})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	base := time.Now()
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	env.fn(b, "sink", func(c yomo.Context) {
		sent := time.Duration(binary.BigEndian.Uint64(c.Data()))
		mu.Lock()
		lat = append(lat, time.Since(base)-sent)
		mu.Unlock()
	}, 1)
	opts := env.opts
	if datagram {
		opts = append(opts, yomo.WithDatagramTags(1))
	}
	src := yomo.NewSource("src", p.Addr(), opts...)
	src.SetErrorHandler(env.report)
	if err := src.Connect(benchCtx(b)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = src.Close() })
	if err := p.SetFaults(chaosnet.Faults{Loss: 0.03, Delay: 10 * time.Millisecond}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C // the load's pace, not a synchronisation
		binary.BigEndian.PutUint64(payload, uint64(time.Since(base)))
		if err := src.Write(1, payload); err != nil {
			b.Fatal(err)
		}
	}
	// Stream frames all arrive; datagrams that have not arrived a second
	// after the last write are lost.
	deadline := time.Now().Add(time.Second)
	if !datagram {
		deadline = time.Now().Add(30 * time.Second)
	}
	for {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n == b.N || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling for the stragglers, after the measurement
	}
	b.StopTimer()
	if err := env.failed(); err != nil {
		b.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(lat)
	mu.Unlock()
	if len(got) == 0 {
		b.Fatal("nothing arrived")
	}
	if !datagram && len(got) != b.N {
		b.Fatalf("stream: %d of %d frames arrived", len(got), b.N)
	}
	slices.Sort(got)
	ms := func(q float64) float64 {
		return float64(got[min(len(got)-1, int(q*float64(len(got))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(100*float64(b.N-len(got))/float64(b.N), "lost-%")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		b.Logf("%d of %d arrived; zipper datagrams %+v; source %+v; proxy %s", len(got), b.N,
			env.z.Stats().Datagrams, src.DatagramStats(), fmt.Sprint(p.Stats()))
	}
}
