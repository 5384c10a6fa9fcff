package yomo_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
)

// BenchmarkZipperRoute measures the zipper's forwarding path alone, without
// network: decoding a data frame body and routing it into the outboxes of
// the functions observing its tag, as a connection's reader does, plus the
// flusher's buffer swap, amortised. It should not allocate. (The
// end-to-end benchmarks are in internal/perf.)
//
//	go test -run='^$' -bench=ZipperRoute -count=5 .
func BenchmarkZipperRoute(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16B", 16}, {"1KiB", 1 << 10}} {
		for _, fns := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/%dfn", sz.name, fns), func(b *testing.B) {
				benchRoute(b, sz.n, fns, false, false)
			})
		}
		// The same from a source that keeps its frames until acknowledged
		// (first-hop custody, which every Source does): what the zipper
		// adds per frame.
		b.Run(sz.name+"/1fn/custody", func(b *testing.B) { benchRoute(b, sz.n, 1, false, true) })
	}
	b.Run("16B/backflow", func(b *testing.B) { benchRoute(b, 16, 0, true, false) })
}

func benchRoute(b *testing.B, size, fns int, backflow, custody bool) {
	z, err := yomo.NewZipper("route", yomo.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	route, take, done, err := yomo.RouteForTest(z, fns, backflow, custody)
	if err != nil {
		b.Fatal(err)
	}
	defer done()
	d := &frame.Data{Tag: 1, Payload: make([]byte, size)}
	if backflow {
		// A function's result for the source's write: goes back to the
		// source (which observes tag 2) only.
		d = &frame.Data{Tag: 2, Origin: 42, TID: 7, Payload: make([]byte, size)}
	}
	enc := frame.AppendData(nil, d)
	body := enc[frame.HeaderSize:]

	var in frame.Data
	step := func(i int) {
		if err := in.Decode(body); err != nil {
			b.Fatal(err)
		}
		route(&in)
		if i%256 == 255 {
			take()
		}
	}
	for i := range 1024 { // grow the outbox buffers
		step(i)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		step(i)
	}
	b.StopTimer()
	take() // ends the reader's hold on the queues, which Stats reads
	if st := z.Stats(); st.Dropped != 0 || st.Unroutable != 0 {
		b.Fatalf("dropped %d, unroutable %d", st.Dropped, st.Unroutable)
	}
}
