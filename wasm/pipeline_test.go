package wasm_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// A wasm function behind a zipper (in memory), with handler concurrency
// and a pool of instances, reporting its errors to the StreamFunction's
// error handler.
func TestStreamFunctionPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("wasm-test", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Close() }()

	reported := make(chan error, 16)
	onError := func(err error) {
		select {
		case reported <- err:
		default:
		}
	}
	f, err := wasm.Load(ctx, guest(t, "abi"), wasm.Config{Cache: cache, Instances: 2, OnError: onError})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close(context.Background()) }() // after the StreamFunction: defers run last in, first out

	sfn := yomo.NewStreamFunction("abi", "mem", yomo.WithInMemory(z), quiet, yomo.WithHandlerConcurrency(2))
	sfn.SetObserveDataTags(f.ObserveDataTags()...)
	sfn.SetWantedTarget(f.WantedTarget())
	sfn.SetErrorHandler(onError)
	if err := sfn.SetHandler(f.Handle); err != nil {
		t.Fatal(err)
	}
	if err := sfn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sfn.Close() }()

	const n = 200
	got := make(chan string, n)
	src := yomo.NewSource("src", "mem", yomo.WithInMemory(z), quiet)
	src.SetObserveDataTags(0x11)
	src.SetReceiveHandler(func(_ yomo.Tag, data []byte) { got <- string(data) })
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()

	if err := src.Write(4, nil); err != nil { // the guest traps: reported, then replaced
		t.Fatal(err)
	}
	want := make(map[string]bool, n)
	for i := range n {
		s := fmt.Sprintf("frame %d", i)
		want[s] = true
		if err := src.Write(9, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case s := <-got:
			if !want[s] {
				t.Fatalf("unexpected or repeated result %q", s)
			}
			delete(want, s)
		case <-ctx.Done():
			t.Fatalf("%d results missing", len(want))
		}
	}
	select {
	case err := <-reported:
		var trap *wasm.TrapError
		if !errors.As(err, &trap) {
			t.Errorf("error handler got %v, want the guest's trap", err)
		}
	case <-ctx.Done():
		t.Fatal("the trap was not reported")
	}
}

// The trace context a Source writes ("traceparent" metadata) reaches a
// wasm function through a zipper, with yomo_context_metadata.
func TestTraceContextReachesGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("wasm-test", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	f, err := wasm.Load(ctx, guest(t, "metadata"), wasm.Config{Cache: cache, OnError: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close(context.Background()) }()
	sfn := yomo.NewStreamFunction("metadata", "mem", yomo.WithInMemory(z), quiet)
	sfn.SetObserveDataTags(f.ObserveDataTags()...)
	sfn.SetErrorHandler(func(err error) { t.Error(err) })
	if err := sfn.SetHandler(f.Handle); err != nil {
		t.Fatal(err)
	}
	if err := sfn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sfn.Close() }()

	type result struct {
		tag  yomo.Tag
		data string
	}
	got := make(chan result, 2)
	src := yomo.NewSource("src", "mem", yomo.WithInMemory(z), quiet)
	src.SetObserveDataTags(0x11, 0x12)
	src.SetReceiveHandler(func(tag yomo.Tag, data []byte) { got <- result{tag, string(data)} })
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()

	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := src.WriteWithMetadata(1, []byte("traceparent"), map[string]string{"traceparent": tp}); err != nil {
		t.Fatal(err)
	}
	if err := src.Write(1, []byte("traceparent")); err != nil { // no trace context
		t.Fatal(err)
	}
	for _, want := range []result{{0x11, tp}, {0x12, "absent"}} {
		select {
		case r := <-got:
			if r != want {
				t.Errorf("the guest wrote %+v, want %+v", r, want)
			}
		case <-ctx.Done():
			t.Fatalf("no result: %v", ctx.Err())
		}
	}
}
