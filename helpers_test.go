package yomo

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			// describe runs now, so the message shows the state at the
			// deadline, not the state when the wait began.
			t.Fatalf("condition not met within %v: %s", d, describe())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testZipper is a zipper serving on 127.0.0.1 for one test.
type testZipper struct {
	*Zipper
	addr    string
	clients []ClientOption
	served  chan error
}

// startZipper serves a zipper on 127.0.0.1:0 (or addr) until the test ends.
func startZipper(t testing.TB, addr string, opts ...ZipperOption) *testZipper {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	z, err := NewZipper("test-zipper", opts...)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tz := &testZipper{Zipper: z, addr: pc.LocalAddr().String(), served: make(chan error, 1)}
	tz.clients = []ClientOption{WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()})}
	go func() { tz.served <- z.Serve(context.Background(), pc) }() // owned by the test: ends on Close
	t.Cleanup(func() { tz.stop(t) })
	return tz
}

// stop closes the zipper and checks that Serve returned ErrClosed.
func (tz *testZipper) stop(t testing.TB) {
	t.Helper()
	tz.Close()
	select {
	case err := <-tz.served:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return after Close")
	default:
		// already collected
	}
}

// transports lists the ways a client reaches a test zipper.
var transports = []struct {
	name string
	opts func(tz *testZipper) []ClientOption
}{
	{"quic", func(tz *testZipper) []ClientOption { return tz.clients }},
	{"mem", func(tz *testZipper) []ClientOption { return []ClientOption{WithInMemory(tz.Zipper)} }},
}

// recorder collects frames a handler sees.
type recorder struct {
	mu     sync.Mutex
	frames []rec
}

type rec struct {
	tag  Tag
	data string
}

func (r *recorder) add(tag Tag, data []byte) {
	r.mu.Lock()
	r.frames = append(r.frames, rec{tag, string(data)})
	r.mu.Unlock()
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

func (r *recorder) snapshot() []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rec(nil), r.frames...)
}

// errs collects errors reported to an error handler.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) find(match func(error) bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.list {
		if match(err) {
			return true
		}
	}
	return false
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newFn returns a function with handler h, closed when the test ends.
func newFn(t testing.TB, tz *testZipper, name string, opts []ClientOption, tags []Tag, h Handler) *StreamFunction {
	t.Helper()
	f := NewStreamFunction(name, tz.addr, opts...)
	f.SetObserveDataTags(tags...)
	if err := f.SetHandler(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
