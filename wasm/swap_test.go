package wasm_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// TestLiveSwap: a StreamFunction switches from one loaded module to
// another under load (SetHandler), the old one is closed as soon as
// SetHandler returns, and every frame is answered exactly once, by one
// module or the other, with no error.
func TestLiveSwap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("swap", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	var errs atomic.Int64
	onError := func(error) { errs.Add(1) }
	load := func() *wasm.Function {
		f, err := wasm.Load(ctx, guest(t, "abi"), wasm.Config{Cache: cache, Instances: 2, OnError: onError})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	v1, v2 := load(), load()
	defer func() { _ = v2.Close(context.Background()) }()
	var calls1, calls2 atomic.Int64
	sfn := yomo.NewStreamFunction("abi", "mem", yomo.WithInMemory(z), quiet, yomo.WithHandlerConcurrency(2))
	sfn.SetObserveDataTags(v1.ObserveDataTags()...)
	sfn.SetErrorHandler(onError)
	_ = sfn.SetHandler(func(c yomo.Context) { calls1.Add(1); v1.Handle(c) })
	if err := sfn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sfn.Close() }()

	const n = 3000
	got := make(chan string, n)
	src := yomo.NewSource("src", "mem", yomo.WithInMemory(z), quiet)
	src.SetObserveDataTags(0x11)
	src.SetReceiveHandler(func(_ yomo.Tag, data []byte) { got <- string(data) })
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	writeErr := make(chan error, 1)
	go func() { // owned by the test: ends after n writes
		for i := range n {
			if err := src.Write(9, []byte(fmt.Sprintf("frame %d", i))); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	seen := make(map[string]bool, n)
	receive := func() {
		select {
		case s := <-got:
			if seen[s] {
				t.Fatalf("%q answered twice", s)
			}
			seen[s] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d answers, then nothing (calls %d + %d)", len(seen), n, calls1.Load(), calls2.Load())
		}
	}
	for len(seen) < n/4 {
		receive()
	}
	if err := sfn.SetHandler(func(c yomo.Context) { calls2.Add(1); v2.Handle(c) }); err != nil {
		t.Fatal(err)
	}
	if err := v1.Close(ctx); err != nil { // no call of v1 runs or will run
		t.Fatal(err)
	}
	for len(seen) < n {
		receive()
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if calls1.Load()+calls2.Load() != n || calls2.Load() == 0 || errs.Load() != 0 {
		t.Fatalf("calls: %d by v1 + %d by v2, want %d with some by v2; %d errors", calls1.Load(), calls2.Load(), n, errs.Load())
	}
}
