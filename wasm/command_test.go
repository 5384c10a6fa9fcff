package wasm_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// A WASI command runs _start, then YoMo's sequence, on every instance,
// once: the log each instance keeps of its starts reads "SOTI" (_start,
// yomo_observe_datatags, yomo_wanted_target, yomo_init) and then one H
// per frame it handled.
func TestCommandStartOrder(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "order", wasm.Config{Interpreter: interp, Instances: 2})
		if got := f.ObserveDataTags(); !slices.Equal(got, []yomo.Tag{1}) {
			t.Errorf("ObserveDataTags = %v", got)
		}
		if got := f.WantedTarget(); got != "order-target" {
			t.Errorf("WantedTarget = %q", got)
		}
		// Whichever instance a frame goes to, its log shows one start.
		logs := map[string]int{}
		for range 4 {
			w := handle(f, 1, "").got()
			if len(w) != 1 {
				t.Fatalf("writes %v", w)
			}
			logs[w[0].data]++
		}
		for log := range logs {
			if len(log) < 5 || log[:4] != "SOTI" || log[4:] != "HHHH"[:len(log)-4] {
				t.Errorf("an instance's log is %q, want SOTI then one H per frame", log)
			}
		}
		if l := e.take(); len(l) != 0 {
			t.Errorf("unexpected errors: %v", l)
		}
	})
}

// A _start that exits with code 0 (C's exit(0)) completes the start; its
// state stays. An exit in a handler is a failure like any other, and the
// replacement runs _start again.
func TestCommandExitZero(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "startexit0", wasm.Config{Interpreter: interp})
		for range 2 {
			expectWrites(t, handle(f, 1, ""), written{2, "ok", ""})
			var exit *wasm.ExitError
			if err := e.one(t); !errors.As(err, &exit) || exit.Code != 0 {
				t.Errorf("reported %v, want an *ExitError with code 0", err)
			}
		}
		if st := f.Stats(); st.Replaced != 2 {
			t.Errorf("Stats = %+v, want 2 replacements", st)
		}
	})
}

// _start runs inside the start's deadline.
func TestCommandStartTimeout(t *testing.T) {
	_, err := wasm.Load(t.Context(), guest(t, "startloopcmd"), wasm.Config{Cache: cache, InitTimeout: 50 * time.Millisecond})
	var ce *wasm.CallError
	if !errors.As(err, &ce) || ce.Export != "_start" || !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("Load: %v, want a *CallError of _start wrapping ErrTimeout", err)
	}
}

func TestContextMetadata(t *testing.T) {
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "metadata", wasm.Config{Interpreter: interp})
		tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		for _, tc := range []struct {
			key  string
			want written
		}{
			{"traceparent", written{0x11, tp, ""}}, // longer than the first buffer
			{"k", written{0x11, "v", ""}},
			{"empty", written{0x11, "", ""}},
			{"missing", written{0x12, "absent", ""}},
		} {
			c := frame(1, tc.key)
			c.md = map[string]string{"traceparent": tp, "k": "v", "empty": ""}
			f.Handle(c)
			expectWrites(t, c, tc.want)
		}
		if l := e.take(); len(l) != 0 {
			t.Errorf("unexpected errors: %v", l)
		}
	})
}
