// Package wasmexample is the program the examples wasm-c, wasm-command,
// wasm-rust, wasm-zig and wasm-go share: one WebAssembly stream function
// (a guest that upper-cases the payloads of tag 0x10 and writes them with
// tag 0x11) behind a zipper, over real QUIC on localhost, and a source
// that writes words and gets them back upper-cased.
package wasmexample

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/guestbuild"
	"github.com/yomo-dev/yomo/wasm"
)

// Tags of the guests.
const (
	TagWord  yomo.Tag = 0x10
	TagUpper yomo.Tag = 0x11
)

// Main is the main function of the example of the guest of lang: it runs
// the module given with -module, or else builds the guest from source
// (examples/wasm-guests.sh), and exits 1 on an error.
func Main(lang string) {
	module := flag.String("module", "", "a built guest (default: build it from source)")
	flag.Parse()
	path := *module
	if path == "" {
		var err error
		if path, err = guestbuild.Build(lang); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = Run(os.Stdout, "upper-"+lang, b, wasm.Config{}, "hello", "yomo", "webassembly")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wasm-"+lang+":", err)
		os.Exit(1)
	}
}

// Run loads module as the stream function name, writes words through a
// zipper and prints what came back. cfg is the Function's base
// configuration (a test may set a cache or the interpreter); the guest's
// standard output and error go to out.
func Run(out io.Writer, name string, module []byte, cfg wasm.Config, words ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(out, format, args...) }

	// A zipper on a free localhost port, with a self-signed certificate
	// that the clients of this process trust.
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
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: zipper.RootCAs()})

	// Errors of the function (its connection and its guest) end up here;
	// Run fails if there is any.
	failures := make(chan error, 16)
	onError := func(err error) {
		select {
		case failures <- err:
		default:
		}
	}

	// The WebAssembly function. It must outlive its StreamFunction: the
	// defers close the StreamFunction first.
	cfg.OnError = onError
	cfg.Stdout, cfg.Stderr = out, out
	f, err := wasm.Load(ctx, module, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { _ = f.Close(context.Background()) }()
	say("loaded %s (%d bytes): observes %#x\n", name, len(module), f.ObserveDataTags())

	sfn := yomo.NewStreamFunction(name, addr, trust, quiet)
	sfn.SetObserveDataTags(f.ObserveDataTags()...)
	sfn.SetWantedTarget(f.WantedTarget())
	sfn.SetErrorHandler(onError)
	if err := sfn.SetHandler(f.Handle); err != nil {
		return err
	}
	if err := sfn.Connect(ctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { _ = sfn.Close() }()

	// A source: writes words and receives the results.
	results := make(chan string, len(words))
	source := yomo.NewSource("words", addr, trust, quiet)
	source.SetObserveDataTags(TagUpper)
	source.SetReceiveHandler(func(_ yomo.Tag, data []byte) {
		results <- string(data) // data is only valid during the call: copy it
	})
	if err := source.Connect(ctx); err != nil {
		return err
	}
	defer func() { _ = source.Close() }()

	for _, w := range words {
		if err := source.Write(TagWord, []byte(w)); err != nil {
			return err
		}
	}
	// Frames of one source and tag arrive in order: the i-th result is
	// the i-th word's.
	for _, w := range words {
		select {
		case r := <-results:
			say("%s -> %s %s\n", short(w), name, short(r))
		case err := <-failures:
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for results: %w", ctx.Err())
		}
	}
	fs, _ := zipper.Stats().Function(name)
	say("zipper: function %q handled %d frames\n", fs.Name, fs.FramesOut)
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
