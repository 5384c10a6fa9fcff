package wasm_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// The Go guest SDK (package wasm/guest) end to end, with the guest in
// testdata/sdkguest. The interpreter keeps the load short under -race.

func TestGoGuestSDK(t *testing.T) {
	var stderr syncBuffer
	f, e := load(t, "sdk", wasm.Config{Interpreter: true, Stderr: &stderr})

	if got := f.ObserveDataTags(); !slices.Equal(got, []yomo.Tag{1, 2, 3, 4, 5, 6}) {
		t.Errorf("ObserveDataTags = %v", got)
	}
	if got := f.WantedTarget(); got != "sdk-target" {
		t.Errorf("WantedTarget = %q", got)
	}
	big := strings.Repeat("go guest ", 1000)
	for _, payload := range []string{"", "hello", big} {
		expectWrites(t, handle(f, 1, payload),
			written{0x101, payload, ""}, written{0x102, strings.ToUpper(payload), ""})
	}
	expectWrites(t, handle(f, 2, "peer-7"), written{0x103, "peer-7", "peer-7"})

	expectWrites(t, handle(f, 4, "x"), written{0x104, "guest: the host failed to write the frame", ""})
	var we *wasm.WriteError
	if err := e.one(t); !errors.As(err, &we) || we.Tag != failTag {
		t.Errorf("reported %v, want a *WriteError", err)
	}

	// A panic in the guest's handler: the Go runtime prints it and aborts
	// (in an exported function, with unreachable).
	expectWrites(t, handle(f, 3, ""))
	var trap *wasm.TrapError
	if err := e.one(t); !errors.As(err, &trap) || !strings.Contains(trap.Message, "main.handle") {
		t.Errorf("reported %v, want a *TrapError with the guest's stack", err)
	}
	if !strings.Contains(stderr.String(), "panic: boom") {
		t.Errorf("guest's stderr lacks its panic:\n%s", stderr.String())
	}
	// The replacement serves the next frame.
	expectWrites(t, handle(f, 2, "again"), written{0x103, "again", "again"})
}

func TestGoGuestSDKMetadataAndHTTP(t *testing.T) {
	s := httpServer(t)
	f, e := load(t, "sdk", wasm.Config{Interpreter: true, HTTPClient: s.Client()})
	long := strings.Repeat("m", 100) // past the SDK's first buffer
	for key, want := range map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "long": long, "missing": "absent"} {
		c := frame(5, key)
		c.md = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "long": long}
		f.Handle(c)
		expectWrites(t, c, written{0x105, want, ""})
	}
	expectWrites(t, handle(f, 6, s.URL+"/echo"), written{0x106, "418 a, b GET sdk ", ""})
	if l := e.take(); len(l) != 0 {
		t.Errorf("unexpected errors: %v", l)
	}

	// Without a client: an error for the guest, a report for the host.
	f, e = load(t, "sdk", wasm.Config{Interpreter: true})
	expectWrites(t, handle(f, 6, s.URL+"/echo"), written{0x106, "guest: HTTP request failed with host status 8", ""})
	if err := e.one(t); !errors.Is(err, wasm.ErrNoNetwork) {
		t.Errorf("reported %v, want ErrNoNetwork", err)
	}
}

func TestGoGuestSDKInitFails(t *testing.T) {
	var stderr syncBuffer
	_, err := wasm.Load(t.Context(), guest(t, "sdk"), wasm.Config{
		Interpreter: true,
		Cache:       cache,
		Env:         map[string]string{"FAIL_INIT": "1"},
		Stderr:      &stderr,
	})
	var ie *wasm.InitError
	if !errors.As(err, &ie) || ie.Code != 1 {
		t.Fatalf("Load: %v, want *InitError with code 1", err)
	}
	if !strings.Contains(stderr.String(), "yomo_init: asked to fail") {
		t.Errorf("guest's stderr lacks its init error: %q", stderr.String())
	}
}
