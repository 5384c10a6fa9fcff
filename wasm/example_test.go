package wasm_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// ExampleLoad runs a WebAssembly guest (the C guest of examples/wasm,
// which reverses what it receives on tag 0x11 and writes it with tag
// 0x12) as a StreamFunction, in a zipper's own process.
func ExampleLoad() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	module, err := os.ReadFile("testdata/reverse-c.wasm")
	if err != nil {
		panic(err)
	}
	fn, err := wasm.Load(ctx, module, wasm.Config{Interpreter: true, Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	defer fn.Close(context.Background())
	fmt.Printf("guest observes %#x\n", fn.ObserveDataTags())

	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	zipper, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		panic(err)
	}
	defer zipper.Close()

	sfn := yomo.NewStreamFunction("reverse", "in-process", yomo.WithInMemory(zipper), quiet)
	sfn.SetObserveDataTags(fn.ObserveDataTags()...)
	sfn.SetWantedTarget(fn.WantedTarget())
	if err := sfn.SetHandler(fn.Handle); err != nil {
		panic(err)
	}
	if err := sfn.Connect(ctx); err != nil {
		panic(err)
	}
	defer sfn.Close()

	got := make(chan string, 1)
	src := yomo.NewSource("words", "in-process", yomo.WithInMemory(zipper), quiet)
	src.SetObserveDataTags(0x12)
	src.SetReceiveHandler(func(tag yomo.Tag, data []byte) { got <- string(data) })
	if err := src.Connect(ctx); err != nil {
		panic(err)
	}
	defer src.Close()
	if err := src.Write(0x11, []byte("WASM")); err != nil {
		panic(err)
	}
	select {
	case s := <-got:
		fmt.Println("the guest wrote back:", s)
	case <-ctx.Done():
		fmt.Println("no answer:", ctx.Err())
	}
	// Output:
	// guest observes [0x11]
	// the guest wrote back: MSAW
}

// Swap a running function to a new module without reconnecting: load the
// new one, SetHandler (it returns once no call of the old module runs),
// then close the old one. No frame is lost or handled twice.
func ExampleFunction_Handle_liveSwap() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	module, err := os.ReadFile("testdata/reverse-c.wasm")
	if err != nil {
		panic(err)
	}
	v1, err := wasm.Load(ctx, module, wasm.Config{Interpreter: true})
	if err != nil {
		panic(err)
	}
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	zipper, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		panic(err)
	}
	defer zipper.Close()
	sfn := yomo.NewStreamFunction("reverse", "in-process", yomo.WithInMemory(zipper), quiet)
	sfn.SetObserveDataTags(v1.ObserveDataTags()...)
	_ = sfn.SetHandler(v1.Handle)
	if err := sfn.Connect(ctx); err != nil {
		panic(err)
	}
	defer sfn.Close()

	// Later: a new version of the module (here the same bytes).
	v2, err := wasm.Load(ctx, module, wasm.Config{Interpreter: true})
	if err != nil {
		panic(err)
	}
	defer v2.Close(context.Background())
	_ = sfn.SetHandler(v2.Handle)      // from now on every frame goes to v2
	_ = v1.Close(context.Background()) // safe: v1 serves no call any more
	fmt.Println("swapped; state:", sfn.State())
	// Output: swapped; state: connected
}
