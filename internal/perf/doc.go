// Package perf holds yomo's end-to-end benchmark harness, apart from the
// library package: it uses only yomo's public API and internal/transport,
// and has no code outside its tests.
//
//   - bench_test.go: throughput, fan-out, isolation and round-trip
//     benchmarks of a zipper over QUIC on 127.0.0.1 and in memory
//     (BenchmarkPipeline, BenchmarkFanOut, BenchmarkIsolation,
//     BenchmarkInMemoryPipeline, BenchmarkRoundTrip), each next to the
//     raw relay in the same run.
//   - cascade_test.go: source → zipper → zipper → function
//     (BenchmarkCascade).
//   - stream_test.go: one body of 1 GiB (-perf.streamsize) through a
//     zipper and through two meshed zippers to a stream handler, next to
//     raw QUIC streams copied by one and two relays (BenchmarkStream):
//     MB/s and the process's peak RSS.
//   - relay_test.go: the raw QUIC relay the zipper is measured against
//     (source → relay → handler on internal/transport), and TestRawRelay,
//     which checks that it delivers every message in order.
//   - datagram_test.go: latency of a datagram tag against the same tag
//     on the stream, through a proxy that loses 3 % of the packets
//     (BenchmarkDatagramLoss).
//   - scale_test.go: connection scale (BenchmarkScale): N clients connect
//     to a zipper, or to a raw QUIC server, running in a child process
//     (TestScaleServerProcess, skipped unless the benchmark starts it);
//     the child's memory is measured.
//
// The micro-benchmark of the zipper's forwarding path, BenchmarkZipperRoute,
// needs the package's internals and stays in the root package.
//
// Run from the repository root (BENCHMARKS.md has the figures, the method
// and the machine):
//
//	go test -run='^$' -bench='Pipeline|RoundTrip|FanOut|InMemory|Cascade' -benchtime=2s -count=5 -timeout=30m ./internal/perf/ | tee /tmp/bench.txt
//	go test -run='^$' -bench=Isolation -benchtime=50000x -count=5 ./internal/perf/
//	go test -run='^$' -bench=Scale -benchtime=1x -count=5 ./internal/perf/
//	go test -run='^$' -bench=DatagramLoss -benchtime=3000x -count=6 ./internal/perf/
//	go test -run='^$' -bench=Stream -benchtime=1x -count=3 -timeout=30m ./internal/perf/
//	go test -run='^$' -bench=ZipperRoute -count=5 .
//	benchstat /tmp/bench.txt
//
// TestRawRelay runs with the rest of the test suite (go test ./...);
// BenchmarkScale skips with -short.
package perf
