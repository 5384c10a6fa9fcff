package perf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/transport"
)

// streamSize is the size of one body in BenchmarkStream: 1 GiB by
// default, one body per op (run with -benchtime=1x). Smaller for a
// quick run: -perf.streamsize=64MiB is not parsed, give bytes.
var streamSize = flag.Int64("perf.streamsize", 1<<30, "bytes per body in BenchmarkStream")

// streamChunk is the size of the writer's and the raw relay's writes.
const streamChunk = 256 << 10

// streamPayload is what the writers write, again and again.
var streamPayload = func() []byte {
	b := make([]byte, streamChunk)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}()

// writeN writes n bytes of streamPayload to w.
func writeN(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(streamPayload)))
		if _, err := w.Write(streamPayload[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// resetPeakRSS resets the process's VmHWM (Linux: clear_refs 5), so that
// peakRSS reports the peak of what follows. It reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the process's VmHWM in bytes (0 when unknown).
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if v, ok := bytes.CutPrefix(s.Bytes(), []byte("VmHWM:")); ok {
			f := bytes.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// benchBody times b.N bodies of *streamSize bytes, each written by send
// and read to its end by the receiver (send returns once the receiver
// has it all), and reports MB/s and the process's peak RSS during the
// run. Everything (writer, zipper or relays, reader) is in this process.
func benchBody(b *testing.B, send func() error) {
	b.Helper()
	if err := send(); err != nil { // warm-up: connections, windows
		b.Fatal(err)
	}
	rss := resetPeakRSS()
	b.SetBytes(*streamSize)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if rss {
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
	}
	// CPU per GiB moved: less sensitive than MB/s to other load on the
	// machine (it still counts what contention costs, such as cache misses).
	b.ReportMetric(cpu.Seconds()/(float64(*streamSize)*float64(b.N)/(1<<30)), "cpu-s/GiB")
}

// BenchmarkStream: one body of -perf.streamsize bytes (1 GiB) per op,
// from a Source through a zipper (and through two meshed zippers) to a
// function's stream handler that reads it to the end, over QUIC on
// 127.0.0.1; next to the raw relay: the same bytes on one QUIC stream per
// hop, copied by a relay through a 32 KiB buffer, as the zipper does.
//
//	go test -run='^$' -bench='Stream/zipper/yomo$' -benchtime=1x -count=5 ./internal/perf/
func BenchmarkStream(b *testing.B) {
	yomoBody := func(b *testing.B, src *yomo.Source) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*streamSize>>20)*time.Second+benchStall)
			defer cancel()
			w, err := src.OpenStream(ctx, 1)
			if err != nil {
				return err
			}
			if err := writeN(w, *streamSize); err != nil {
				return err
			}
			return w.Close() // returns once the handler read it all
		}
	}
	sink := func(r *yomo.StreamReader) error {
		n, err := io.Copy(io.Discard, r)
		if err == nil && n != *streamSize {
			err = errors.New("short body")
		}
		return err
	}
	streamFn := func(b *testing.B, e *benchEnv) {
		f := yomo.NewStreamFunction("sink", e.addr, e.opts...)
		f.SetObserveDataTags(1)
		f.SetStreamHandler(sink)
		f.SetErrorHandler(e.report)
		if err := f.Connect(benchCtx(b)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = f.Close() })
	}
	b.Run("zipper/yomo", func(b *testing.B) {
		e := newBenchEnv(b, false)
		streamFn(b, e)
		benchBody(b, yomoBody(b, e.source(b, "src", nil)))
	})
	b.Run("zipper/relay", func(b *testing.B) { benchBody(b, rawStreamChain(b, 1)) })
	b.Run("mesh/yomo", func(b *testing.B) {
		atA, atB := benchCascade(b)
		streamFn(b, atB)
		awaitRoute(b, atA.z, 1, "sink")
		benchBody(b, yomoBody(b, atA.source(b, "src", nil)))
	})
	b.Run("mesh/relay", func(b *testing.B) { benchBody(b, rawStreamChain(b, 2)) })
}

// rawStreamChain builds source → relay (→ relay) → reader over QUIC on
// 127.0.0.1, and returns a send that carries one body on a new
// unidirectional stream per hop, each relay copying it through a 32 KiB
// buffer, and returns once the reader has read it to its end.
func rawStreamChain(b *testing.B, hops int) func() error {
	n := newRawNet(b)
	ln := n.listen() // the relay next to the reader
	rc, out := n.connect(ln)
	done := make(chan error, 1)
	n.spawn(func() error { // the reader
		for {
			rs, err := rc.AcceptUniStream(n.ctx)
			if err != nil {
				return err
			}
			k, err := io.Copy(io.Discard, rs)
			if err == nil && k != *streamSize {
				err = errors.New("short body")
			}
			done <- err
		}
	})
	for h := 1; h < hops; h++ {
		up := n.listen()          // the relay before it
		dial, in := n.connect(ln) // that relay's connection to this one
		n.spawn(rawStreamCopier(n, in, out))
		out, ln = dial, up
	}
	src, in := n.connect(ln)
	n.spawn(rawStreamCopier(n, in, out))
	return func() error {
		ss, err := src.OpenUniStream(n.ctx)
		if err != nil {
			return err
		}
		if err := writeN(ss, *streamSize); err != nil {
			return err
		}
		if err := ss.Close(); err != nil {
			return err
		}
		select {
		case err := <-done:
			return err
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
	}
}

// rawStreamCopier returns a relay loop: every unidirectional stream the
// peer of in opens is copied, one at a time, to a new stream on out.
func rawStreamCopier(n *rawNet, in, out transport.Conn) func() error {
	return func() error {
		buf := make([]byte, 32<<10)
		for {
			rs, err := in.AcceptUniStream(n.ctx)
			if err != nil {
				return err
			}
			ss, err := out.OpenUniStream(n.ctx)
			if err != nil {
				return err
			}
			if _, err := io.CopyBuffer(ss, rs, buf); err != nil {
				return err
			}
			if err := ss.Close(); err != nil {
				return err
			}
		}
	}
}
