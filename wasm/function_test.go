package wasm_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// forEngine runs fn once with the compiler and once with the interpreter.
func forEngine(t *testing.T, fn func(t *testing.T, interpreter bool)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { fn(t, e.interpreter) })
	}
}

func TestABI(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "abi", wasm.Config{Interpreter: interp})

		want := []yomo.Tag{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
		if got := f.ObserveDataTags(); !slices.Equal(got, want) {
			t.Errorf("ObserveDataTags = %v, want %v", got, want)
		}
		if got := f.WantedTarget(); got != "wasm-target" {
			t.Errorf("WantedTarget = %q, want %q", got, "wasm-target")
		}

		// Payloads that fit the guest's first, 4-byte buffer and ones that
		// do not (it then asks again with the size the host returned).
		for _, payload := range []string{"", "abc", "abcd", "abcde", strings.Repeat("x", 50000)} {
			c := handle(f, 1, payload)
			expectWrites(t, c, written{100, payload, ""}, written{101, payload, ""}, written{102, payload, ""})
		}

		c := handle(f, 2, "to the peer")
		expectWrites(t, c, written{103, "to the peer", "peer"})

		// Statuses: data out of range (1), target out of range (1), the
		// host's write failed (2); the failure is reported too.
		c = handle(f, 3, "")
		expectWrites(t, c, written{104, "\x01\x01\x02", ""})
		var we *wasm.WriteError
		if err := e.one(t); !errors.As(err, &we) || we.Tag != failTag || !errors.Is(err, errHostWrite) {
			t.Errorf("reported %v, want a *WriteError for tag %d wrapping the host's error", err, failTag)
		}

		// Tags the guest does nothing for.
		expectWrites(t, handle(f, 0, "x"))
		expectWrites(t, handle(f, 13, "x"))

		st := f.Stats()
		if st.Calls != 9 || st.Failed != 0 || st.Replaced != 0 || st.WriteErrors != 1 {
			t.Errorf("Stats = %+v", st)
		}
		if l := e.take(); len(l) != 0 {
			t.Errorf("unexpected errors: %v", l)
		}
	})
}

func TestMinimalModule(t *testing.T) {
	f, e := load(t, "minimal", wasm.Config{})
	if got := f.ObserveDataTags(); !slices.Equal(got, []yomo.Tag{1}) {
		t.Errorf("ObserveDataTags = %v", got)
	}
	if got := f.WantedTarget(); got != "" {
		t.Errorf("WantedTarget = %q, want none", got)
	}
	expectWrites(t, handle(f, 1, "ping"), written{2, "ping", ""})
	if l := e.take(); len(l) != 0 {
		t.Errorf("unexpected errors: %v", l)
	}
}

// callCount asks the abi guest how many calls its current instance
// served: 1 right after a replacement (this very call).
func callCount(t *testing.T, f *wasm.Function) uint32 {
	t.Helper()
	c := handle(f, 11, "")
	w := c.got()
	if len(w) != 1 || w[0].tag != 105 {
		t.Fatalf("call count: writes %v", w)
	}
	return le32(w[0].data)
}

// failing runs a frame that makes the abi guest fail, checks the report,
// and checks that the instance was replaced and serves the next frame.
func failing(t *testing.T, f *wasm.Function, e *errs, tag yomo.Tag, check func(err error)) {
	t.Helper()
	handle(f, 1, "warm up") // the instance has served calls before failing
	if n := callCount(t, f); n < 2 {
		t.Fatalf("call count before the failure = %d", n)
	}
	before := f.Stats()
	expectWrites(t, handle(f, tag, "boom"))
	err := e.one(t)
	var ce *wasm.CallError
	if !errors.As(err, &ce) || ce.Export != "yomo_handler" || ce.Tag != tag {
		t.Fatalf("reported %v (%T), want a *CallError of yomo_handler for tag %d", err, err, tag)
	}
	check(err)
	after := f.Stats()
	if after.Failed != before.Failed+1 || after.Replaced != before.Replaced+1 {
		t.Errorf("Stats before %+v, after %+v: want one more failure and replacement", before, after)
	}
	// A fresh instance serves the next frames.
	if n := callCount(t, f); n != 1 {
		t.Errorf("call count after the failure = %d, want 1 (a new instance)", n)
	}
	expectWrites(t, handle(f, 2, "still here"), written{103, "still here", "peer"})
	if l := e.take(); len(l) != 0 {
		t.Errorf("unexpected errors: %v", l)
	}
}

func TestTrap(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "abi", wasm.Config{Interpreter: interp})
		failing(t, f, e, 4, func(err error) {
			var trap *wasm.TrapError
			if !errors.As(err, &trap) || !strings.Contains(trap.Message, "unreachable") {
				t.Errorf("reported %v, want a *TrapError for unreachable", err)
			}
		})
	})
}

func TestTimeout(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "abi", wasm.Config{Interpreter: interp, Timeout: 100 * time.Millisecond})
		failing(t, f, e, 5, func(err error) {
			if !errors.Is(err, wasm.ErrTimeout) {
				t.Errorf("reported %v, want ErrTimeout", err)
			}
		})
	})
}

func TestMemoryLimit(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "abi", wasm.Config{Interpreter: interp, MemoryLimit: 3<<20 + 1000})
		failing(t, f, e, 6, func(err error) {
			var trap *wasm.TrapError
			if !errors.Is(err, wasm.ErrMemoryLimit) || !errors.As(err, &trap) {
				t.Errorf("reported %v, want ErrMemoryLimit and the trap that followed", err)
			}
			if !strings.Contains(err.Error(), "3072 KiB") {
				t.Errorf("%q does not give the limit (rounded down to pages)", err)
			}
		})
	})
}

func TestExit(t *testing.T) {
	f, e := load(t, "abi", wasm.Config{})
	failing(t, f, e, 7, func(err error) {
		var exit *wasm.ExitError
		if !errors.As(err, &exit) || exit.Code != 3 {
			t.Errorf("reported %v, want *ExitError with code 3", err)
		}
	})
}

func TestHostFunctionMisuse(t *testing.T) {
	f, e := load(t, "abi", wasm.Config{})
	for _, tc := range []struct {
		tag  yomo.Tag
		want string
	}{
		{8, "yomo_observe_datatag called from yomo_handler"},
		{10, "yomo_context_data: [4294967040, 4294967040+4) is outside the module's memory"},
	} {
		failing(t, f, e, tc.tag, func(err error) {
			var trap *wasm.TrapError
			if !errors.As(err, &trap) || !strings.Contains(trap.Message, tc.want) {
				t.Errorf("reported %v, want a trap saying %q", err, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		module []byte // or testdata/<name>.wasm
		cfg    wasm.Config
		want   string // in the message
		check  func(t *testing.T, err error)
	}{
		{name: "not wasm", module: []byte("#!/bin/sh\necho hello\n"), want: "not a WebAssembly binary"},
		{name: "empty", module: []byte{}, want: "not a WebAssembly binary"},
		{name: "component", module: []byte("\x00asm\x0d\x00\x01\x00"), want: "not a component"},
		{name: "garbage body", module: []byte("\x00asm\x01\x00\x00\x00\xff\xff\xff"), want: "invalid module"},
		{name: "nohandler", want: "missing required export yomo_handler (func () -> ())"},
		{name: "noobserve", want: "missing required export yomo_observe_datatags (func () -> ())"},
		{name: "nomemory", want: `missing required export memory`},
		{name: "badhandler", want: "export yomo_handler has signature i32 -> (), want () -> ()"},
		{name: "badinit", want: "export yomo_init has signature () -> (), want () -> i32"},
		{name: "badimport", want: "import env.yomo_write has signature (i32, i32) -> i32, want (i32, i32, i32) -> i32"},
		{name: "unknownimport", want: "imports env.yomo_send_email, which the host does not provide"},
		{name: "othermodule", want: "imports net.connect"},
		{name: "commandreactor", want: "exports both _start and _initialize: a WASI module is a command or a reactor, not both"},
		{name: "badalloc", want: "export yomo_alloc has signature () -> i32, want i32 -> i32"},
		{name: "httpnoalloc", want: "imports env.yomo_http_send but does not export yomo_alloc"},
		{name: "startexit3", want: "wasm: _start: guest exited with code 3", check: func(t *testing.T, err error) {
			var ce *wasm.CallError
			var exit *wasm.ExitError
			if !errors.As(err, &ce) || ce.Export != "_start" || !errors.As(err, &exit) || exit.Code != 3 {
				t.Errorf("%v is not a *CallError of _start with an *ExitError of code 3", err)
			}
		}},
		{name: "notags", want: "yomo_observe_datatags registered no tag"},
		{name: "bigmemory", cfg: wasm.Config{MemoryLimit: 1 << 20}, want: "invalid module: its memory starts at 4096 KiB, over the memory limit of 1024 KiB",
			check: func(t *testing.T, err error) {
				if !errors.Is(err, wasm.ErrMemoryLimit) {
					t.Errorf("%v does not wrap ErrMemoryLimit", err)
				}
			}},
		{name: "initfail", want: "yomo_init failed with code 7", check: func(t *testing.T, err error) {
			var ie *wasm.InitError
			if !errors.As(err, &ie) || ie.Code != 7 {
				t.Errorf("%v is not an *InitError with code 7", err)
			}
		}},
		{name: "startloop", cfg: wasm.Config{InitTimeout: 100 * time.Millisecond},
			want: "wasm: start function: timed out after 100ms", check: func(t *testing.T, err error) {
				if !errors.Is(err, wasm.ErrTimeout) {
					t.Errorf("%v does not wrap ErrTimeout", err)
				}
			}},
		{name: "inittrap", want: "wasm: yomo_init: guest trapped", check: func(t *testing.T, err error) {
			var ce *wasm.CallError
			var trap *wasm.TrapError
			if !errors.As(err, &ce) || ce.Export != "yomo_init" || !errors.As(err, &trap) {
				t.Errorf("%v is not a *CallError of yomo_init with a trap", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.module
			if m == nil {
				m = guest(t, tc.name)
			}
			tc.cfg.Cache = cache
			f, err := wasm.Load(context.Background(), m, tc.cfg)
			if err == nil {
				_ = f.Close(context.Background())
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, err)
			} else if !errors.Is(err, wasm.ErrInvalidModule) {
				t.Errorf("%v does not wrap ErrInvalidModule", err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []wasm.Config{
		{Instances: -1},
		{Instances: 5000},
		{MemoryLimit: -1},
		{MemoryLimit: 1000},
		{MemoryLimit: 5 << 30},
		{Timeout: -time.Second},
		{InitTimeout: -time.Second},
		{Env: map[string]string{"A=B": "c"}},
		{Env: map[string]string{"": "c"}},
	} {
		f, err := wasm.Load(context.Background(), guest(t, "minimal"), cfg)
		if err == nil {
			_ = f.Close(context.Background())
			t.Errorf("Load with %+v succeeded", cfg)
		}
	}
}

func TestLoadCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := wasm.Load(ctx, guest(t, "abi"), wasm.Config{Cache: cache})
	if err == nil {
		_ = f.Close(context.Background())
		t.Fatal("Load with a canceled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Load: %v, want context.Canceled", err)
	}
}

// gate holds writes of a fake context until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) block() {
	g.entered <- struct{}{}
	<-g.release
}

func TestPoolRunsCallsConcurrently(t *testing.T) {
	f, e := load(t, "abi", wasm.Config{Instances: 2})
	g := newGate()
	var wg sync.WaitGroup
	ctxs := []*fakeContext{frame(9, "a"), frame(9, "b")}
	for _, c := range ctxs {
		c.block = g.block
		wg.Go(func() { f.Handle(c) })
	}
	// Both calls are inside the guest (in yomo_write) at the same time.
	<-g.entered
	<-g.entered
	close(g.release)
	wg.Wait()
	expectWrites(t, ctxs[0], written{0x11, "a", ""})
	expectWrites(t, ctxs[1], written{0x11, "b", ""})
	if l := e.take(); len(l) != 0 {
		t.Errorf("unexpected errors: %v", l)
	}
}

func TestHandleWaitsForAFreeInstance(t *testing.T) {
	f, _ := load(t, "abi", wasm.Config{Instances: 1})
	g := newGate()
	first := frame(9, "first")
	first.block = g.block
	firstDone := make(chan struct{})
	go func() { f.Handle(first); close(firstDone) }()
	<-g.entered // the only instance is busy

	second := frame(9, "second")
	secondDone := make(chan struct{})
	go func() { f.Handle(second); close(secondDone) }()
	select {
	case <-secondDone:
		t.Fatal("a second call ran while the only instance was busy")
	default:
	}
	close(g.release)
	<-firstDone
	<-secondDone
	expectWrites(t, second, written{0x11, "second", ""})
}

func TestConcurrentCalls(t *testing.T) {
	f, e := load(t, "abi", wasm.Config{Instances: 3})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 40 {
				data := strings.Repeat("x", w*100+i)
				c := handle(f, 9, data)
				if got := c.got(); len(got) != 1 || got[0].data != data {
					t.Errorf("worker %d frame %d: writes %v", w, i, got)
					return
				}
				if i%10 == 9 {
					handle(f, 4, "") // a trap now and then: instances get replaced under load
				}
			}
		})
	}
	wg.Wait()
	st := f.Stats()
	if st.Calls != 6*44 || st.Failed != 6*4 || st.Replaced != 6*4 {
		t.Errorf("Stats = %+v", st)
	}
	if n := len(e.take()); n != 6*4 {
		t.Errorf("%d errors reported, want %d", n, 6*4)
	}
}

func TestClose(t *testing.T) {
	e := new(errs)
	f, err := wasm.Load(context.Background(), guest(t, "abi"), wasm.Config{Cache: cache, OnError: e.add, Instances: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectWrites(t, handle(f, 9, "late"))
	if err := e.one(t); !errors.Is(err, yomo.ErrClosed) {
		t.Errorf("Handle after Close reported %v, want yomo.ErrClosed", err)
	}
}

func TestCloseWaitsForCalls(t *testing.T) {
	e := new(errs)
	f, err := wasm.Load(context.Background(), guest(t, "abi"), wasm.Config{Cache: cache, OnError: e.add})
	if err != nil {
		t.Fatal(err)
	}
	g := newGate()
	c := frame(9, "in flight")
	c.block = g.block
	handled := make(chan struct{})
	go func() { f.Handle(c); close(handled) }()
	<-g.entered

	closed := make(chan error, 1)
	go func() { closed <- f.Close(context.Background()) }()
	close(g.release) // the call finishes normally, then Close completes
	<-handled
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectWrites(t, c, written{0x11, "in flight", ""})
	if l := e.take(); len(l) != 0 {
		t.Errorf("unexpected errors: %v", l)
	}
}

func TestCloseInterruptsWhenContextEnds(t *testing.T) {
	e := new(errs)
	f, err := wasm.Load(context.Background(), guest(t, "abi"), wasm.Config{Cache: cache, OnError: e.add, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Tag 12: the guest writes a frame, then spins forever; only Close's
	// context can stop it.
	g := newGate()
	c := frame(12, "")
	c.block = g.block
	handled := make(chan struct{})
	go func() { f.Handle(c); close(handled) }()
	<-g.entered
	close(g.release) // from here the guest spins

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v, want context.Canceled", err)
	}
	<-handled
	err = e.one(t)
	var ce *wasm.CallError
	if !errors.As(err, &ce) || ce.Tag != 12 || !errors.Is(err, yomo.ErrClosed) {
		t.Errorf("interrupted call reported %v, want a *CallError for tag 12 wrapping yomo.ErrClosed", err)
	}
	expectWrites(t, c, written{106, "", ""})
	if st := f.Stats(); st.Replaced != 0 {
		t.Errorf("Stats = %+v: a closing function must not replace instances", st)
	}
}

// Two Functions of one module (the shared compilation cache included)
// share no state: closing one, even with a call in flight, leaves the
// other serving, which is what swapping a StreamFunction's handler from
// one Function to another relies on.
func TestCloseOneWhileAnotherServes(t *testing.T) {
	old, oldErrs := load(t, "abi", wasm.Config{})
	e := new(errs)
	next, err := wasm.Load(context.Background(), guest(t, "abi"), wasm.Config{Cache: cache, OnError: e.add, Instances: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = next.Close(context.Background()) }()

	stop := make(chan struct{})
	served := make(chan int, 1)
	go func() { // owned by this test: ends at stop, reports its count
		n := 0
		for {
			select {
			case <-stop:
				served <- n
				return
			default:
			}
			c := handle(next, 1, "x")
			if len(c.got()) != 3 {
				t.Errorf("next wrote %v", c.got())
			}
			n++
		}
	}()

	// A call of the old Function is in flight when it closes.
	g := newGate()
	c := frame(9, "last")
	c.block = g.block
	handled := make(chan struct{})
	go func() { old.Handle(c); close(handled) }() // ends when the gate opens
	<-g.entered
	closed := make(chan error, 1)
	go func() { closed <- old.Close(context.Background()) }() // ends after the call
	close(g.release)
	<-handled
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectWrites(t, c, written{0x11, "last", ""})
	old.Handle(frame(1, "after close"))
	if err := oldErrs.one(t); !errors.Is(err, yomo.ErrClosed) {
		t.Errorf("old Function after Close reported %v, want yomo.ErrClosed", err)
	}

	// The other one goes on serving.
	before := next.Stats().Calls
	deadline := time.Now().Add(5 * time.Second)
	for next.Stats().Calls < before+10 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	close(stop)
	if n := <-served; n == 0 || next.Stats().Calls < before+10 {
		t.Errorf("next served %d frames, %d after the close", n, next.Stats().Calls-before)
	}
	if l := e.take(); len(l) != 0 {
		t.Errorf("next reported %v", l)
	}
}
