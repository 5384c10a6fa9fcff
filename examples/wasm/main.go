// Command wasm runs two WebAssembly stream functions behind a zipper, over
// real QUIC on localhost: a Go guest that upper-cases words and a C guest
// that reverses them. A source writes words and gets both results back.
//
//	go run ./examples/wasm
//
// The guests' sources are in guest-go and guest-c; their binaries are in
// testdata (embedded), rebuilt with go generate (needs clang, lld,
// wasi-libc and libclang-rt-14-dev-wasm32 for the C guest).
package main

//go:generate env GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o testdata/uppercase-go.wasm ./guest-go
//go:generate clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wl,--strip-debug -o testdata/reverse-c.wasm guest-c/reverse.c

import (
	"context"
	"crypto/tls"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// Tags: the source writes words; the Go guest answers with them
// upper-cased, the C guest reverses those.
const (
	tagWord     yomo.Tag = 0x10
	tagUpper    yomo.Tag = 0x11
	tagReversed yomo.Tag = 0x12
)

var (
	//go:embed testdata/uppercase-go.wasm
	uppercaseGo []byte
	//go:embed testdata/reverse-c.wasm
	reverseC []byte
)

func main() {
	if err := run(os.Stdout, wasm.Config{}, "hello", "yomo", "webassembly"); err != nil {
		fmt.Fprintln(os.Stderr, "wasm:", err)
		os.Exit(1)
	}
}

// run runs the pipeline for words and prints what flowed. cfg is the
// base configuration of both functions (the defaults suit; a test may set
// a compilation cache or the interpreter).
func run(out io.Writer, cfg wasm.Config, words ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(out, format, args...) }

	// 1. A zipper on a free localhost port, with a self-signed certificate
	//    that the clients of this process trust.
	zipper, err := yomo.NewZipper("wasm-zipper", quiet)
	if err != nil {
		return err
	}
	defer func() { _ = zipper.Close() }()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = zipper.Serve(ctx, pc) }() // ends when the zipper is closed
	addr := pc.LocalAddr().String()
	say("zipper listening on %s\n", addr)
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: zipper.RootCAs()})

	// Errors of both functions (their connections and their guests) end
	// up here; run fails if there is any.
	failures := make(chan error, 16)
	onError := func(err error) {
		select {
		case failures <- err:
		default:
		}
	}

	// 2. The two WebAssembly functions. Each Function must outlive its
	//    StreamFunction: the defers close the StreamFunction first.
	for _, g := range []struct {
		name   string
		module []byte
	}{
		{"uppercase-go", uppercaseGo},
		{"reverse-c", reverseC},
	} {
		cfg.OnError = onError
		cfg.Stderr = out // the guests' diagnostics
		f, err := wasm.Load(ctx, g.module, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		defer func() { _ = f.Close(context.Background()) }()
		say("loaded %-12s (%7d bytes): observes %#x\n", g.name, len(g.module), f.ObserveDataTags())

		sfn := yomo.NewStreamFunction(g.name, addr, trust, quiet)
		sfn.SetObserveDataTags(f.ObserveDataTags()...)
		sfn.SetWantedTarget(f.WantedTarget())
		sfn.SetErrorHandler(onError)
		if err := sfn.SetHandler(f.Handle); err != nil {
			return err
		}
		if err := sfn.Connect(ctx); err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		defer func() { _ = sfn.Close() }()
	}

	// 3. A source: writes words and receives both functions' results.
	type result struct {
		tag  yomo.Tag
		data string
	}
	results := make(chan result, 2*len(words))
	source := yomo.NewSource("words", addr, trust, quiet)
	source.SetObserveDataTags(tagUpper, tagReversed)
	source.SetReceiveHandler(func(tag yomo.Tag, data []byte) {
		results <- result{tag, string(data)} // data is only valid during the call: copy it
	})
	if err := source.Connect(ctx); err != nil {
		return err
	}
	defer func() { _ = source.Close() }()

	for _, w := range words {
		if err := source.Write(tagWord, []byte(w)); err != nil {
			return err
		}
	}
	got := map[yomo.Tag][]string{}
	for range 2 * len(words) {
		select {
		case r := <-results:
			got[r.tag] = append(got[r.tag], r.data)
		case err := <-failures:
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for results: %w", ctx.Err())
		}
	}
	if len(got[tagUpper]) != len(words) || len(got[tagReversed]) != len(words) {
		return fmt.Errorf("got %d upper-cased and %d reversed words for %d words",
			len(got[tagUpper]), len(got[tagReversed]), len(words))
	}
	// Frames of one source and tag arrive in order, so the i-th result of
	// each tag belongs to the i-th word.
	for i, w := range words {
		say("%s -> uppercase-go %s -> reverse-c %s\n",
			short(w), short(got[tagUpper][i]), short(got[tagReversed][i]))
	}

	st := zipper.Stats()
	for _, name := range []string{"uppercase-go", "reverse-c"} {
		fs, _ := st.Function(name)
		say("zipper: function %q handled %d frames\n", fs.Name, fs.FramesOut)
	}
	say("zipper: %d frames in, %d dropped\n", st.FramesIn, st.Dropped)
	select {
	case err := <-failures:
		return err
	default:
		return nil
	}
}

// short quotes s, eliding the middle of long strings.
func short(s string) string {
	if len(s) > 24 {
		return fmt.Sprintf("%q...(%d bytes)", s[:12], len(s))
	}
	return fmt.Sprintf("%q", s)
}
