package yomo_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// TestRuntimeSubscribe: tags added after Connect reach the function at
// once (after SetObserveDataTags returns), tags dropped stop reaching it,
// and a source's observed tags change its backflow likewise.
func TestRuntimeSubscribe(t *testing.T) {
	z, err := yomo.NewZipper("rt")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	got := make(chan yomo.Tag, 16)
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z))
	fn.SetObserveDataTags(1)
	_ = fn.SetHandler(func(c yomo.Context) {
		got <- c.Tag()
		_ = c.Write(c.Tag()+10, c.Data())
	})
	if err := fn.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	back := make(chan yomo.Tag, 16)
	src := yomo.NewSource("src", "", yomo.WithInMemory(z))
	src.SetReceiveHandler(func(tag yomo.Tag, _ []byte) { back <- tag })
	if err := src.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	recv := func(ch chan yomo.Tag, want yomo.Tag) {
		t.Helper()
		select {
		case tag := <-ch:
			if tag != want {
				t.Fatalf("got tag %d, want %d", tag, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("tag %d did not arrive", want)
		}
	}

	if err := src.Write(2, nil); err != nil { // nobody observes 2 yet
		t.Fatal(err)
	}
	unroutable2 := func() uint64 { return z.Stats().UnroutableByTag[2] }
	eventually(t, 5*time.Second, func() bool { return unroutable2() == 1 }, func() string { return fmt.Sprint(z.Stats()) })

	fn.SetObserveDataTags(1, 2)
	src.SetObserveDataTags(12)
	_ = src.Write(2, nil)
	recv(got, 2)
	recv(back, 12) // the source now observes the result's tag

	fn.SetObserveDataTags(1)
	_ = src.Write(2, nil) // dropped from the subscription: unroutable
	_ = src.Write(1, nil)
	recv(got, 1)
	eventually(t, 5*time.Second, func() bool { return unroutable2() == 2 }, func() string { return fmt.Sprint(z.Stats()) })
	select {
	case tag := <-got:
		t.Fatalf("got tag %d after unsubscribing", tag)
	case tag := <-back:
		t.Fatalf("backflow of tag %d, which the source does not observe", tag)
	default:
	}
	if st := fn.State(); st != yomo.StateConnected {
		t.Fatalf("state %v: the function reconnected?", st)
	}
}

// TestHandlerSwapUnderLoad: swapping the handler while frames flow loses
// and doubles nothing, and no call of the old handler starts after
// SetHandler returns. The source writes until the new handler has been
// called and 1000 frames more, so the swap always falls inside the flow.
func TestHandlerSwapUnderLoad(t *testing.T) {
	for _, conc := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			z, err := yomo.NewZipper("swap")
			if err != nil {
				t.Fatal(err)
			}
			defer z.Close()
			const max = 1 << 22 // frames the source may write at most
			seen := make([]atomic.Int32, max)
			var written atomic.Int64
			var oldCalls, newCalls atomic.Int64
			var swapped atomic.Bool
			var lateOld atomic.Int64
			handler := func(calls *atomic.Int64, isOld bool) yomo.Handler {
				return func(c yomo.Context) {
					if isOld && swapped.Load() {
						lateOld.Add(1)
					}
					calls.Add(1)
					seen[binary.BigEndian.Uint32(c.Data())].Add(1)
				}
			}
			fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z), yomo.WithHandlerConcurrency(conc))
			fn.SetObserveDataTags(1)
			_ = fn.SetHandler(handler(&oldCalls, true))
			if err := fn.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer fn.Close()
			src := yomo.NewSource("src", "", yomo.WithInMemory(z))
			if err := src.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // owned by the test: ends 1000 frames after the new handler's first call
				defer wg.Done()
				b := make([]byte, 4)
				after := 0 // frames written since the new handler was first called
				for i := range max {
					if after == 1000 {
						written.Store(int64(i))
						return
					}
					if newCalls.Load() > 0 {
						after++
					}
					binary.BigEndian.PutUint32(b, uint32(i))
					if err := src.Write(1, b); err != nil {
						t.Error(err)
						return
					}
				}
				t.Errorf("%d frames written, the new handler called %d times", max, newCalls.Load())
			}()
			eventually(t, 10*time.Second, func() bool { return oldCalls.Load() > 2000 }, func() string { return "no load" })
			if err := fn.SetHandler(handler(&newCalls, false)); err != nil {
				t.Fatal(err)
			}
			swapped.Store(true)
			wg.Wait()
			n := written.Load()
			if n == 0 {
				t.FailNow() // the writer reported why
			}
			eventually(t, 20*time.Second, func() bool { return oldCalls.Load()+newCalls.Load() == n },
				func() string { return fmt.Sprintf("old %d + new %d of %d", oldCalls.Load(), newCalls.Load(), n) })
			for i := range n {
				if c := seen[i].Load(); c != 1 {
					t.Fatalf("frame %d handled %d times", i, c)
				}
			}
			if lateOld.Load() != 0 || newCalls.Load() == 0 {
				t.Fatalf("%d calls of the old handler after SetHandler returned; %d of the new", lateOld.Load(), newCalls.Load())
			}
		})
	}
}

// TestStateAndFlush: the state handler sees connect, GOAWAY and close;
// Flush returns once the zipper has read everything written.
func TestStateAndFlush(t *testing.T) {
	z, err := yomo.NewZipper("st")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var mu sync.Mutex
	var changes []yomo.StateChange
	src := yomo.NewSource("src", "", yomo.WithInMemory(z))
	src.SetStateHandler(func(c yomo.StateChange) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	})
	if src.State() != yomo.StateIdle {
		t.Fatalf("state before Connect: %v", src.State())
	}
	if err := src.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if src.State() != yomo.StateConnected {
		t.Fatalf("state after Connect: %v", src.State())
	}
	for range 5000 {
		if err := src.Write(7, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if in := z.Stats().FramesIn; in != 5000 {
		t.Fatalf("after Flush the zipper has read %d frames, want 5000", in)
	}
	src.Close()
	if src.State() != yomo.StateClosed {
		t.Fatalf("state after Close: %v", src.State())
	}
	if err := src.Flush(ctx); !errors.Is(err, yomo.ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []yomo.State{yomo.StateConnecting, yomo.StateConnected, yomo.StateClosed}
	if len(changes) != len(want) {
		t.Fatalf("state changes %+v, want to %v", changes, want)
	}
	for i, c := range changes {
		if c.To != want[i] {
			t.Fatalf("state changes %+v, want to %v", changes, want)
		}
	}
}

// TestConnectErrors: an address nobody serves is named in the error, and
// WithConnectRetry keeps trying until a zipper appears.
func TestConnectErrors(t *testing.T) {
	if _, err := yomo.NewZipper("z", yomo.WithAuthToken()); !errors.Is(err, yomo.ErrNoTokens) {
		t.Fatalf("WithAuthToken(): %v, want ErrNoTokens", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	src := yomo.NewSource("src", "127.0.0.1:9", yomo.WithInsecureSkipVerify())
	defer src.Close()
	err := src.Connect(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !containsAll(err.Error(), "127.0.0.1:9") {
		t.Fatalf("Connect to nothing: %v; want the address and the deadline", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// TestPayloadOfExactlyTheLimit: the frame size limit is a payload limit.
func TestPayloadOfExactlyTheLimit(t *testing.T) {
	const limit = 64 << 10
	z, err := yomo.NewZipper("lim", yomo.WithMaxFrameSize(limit))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	got := make(chan int, 1)
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z), yomo.WithMaxFrameSize(limit))
	fn.SetObserveDataTags(1)
	_ = fn.SetHandler(func(c yomo.Context) { got <- len(c.Data()) })
	if err := fn.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	src := connectedSource(t, yomo.WithInMemory(z), yomo.WithMaxFrameSize(limit))
	defer src.Close()
	err = src.WriteMessage(yomo.Message{Tag: 1, Data: make([]byte, limit), Target: "",
		Metadata: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if err != nil {
		t.Fatalf("a payload of exactly the limit: %v", err)
	}
	select {
	case n := <-got:
		if n != limit {
			t.Fatalf("handler got %d bytes", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the frame did not arrive")
	}
	if err := src.Write(1, make([]byte, limit+1)); !errors.Is(err, yomo.ErrFrameTooLarge) {
		t.Fatalf("a payload over the limit: %v", err)
	}
}

// TestTrustByPEM: a client trusts a zipper's generated certificate through
// its PEM alone, as another process would; without it, it cannot connect.
func TestTrustByPEM(t *testing.T) {
	tz := startZipper(t, "")
	z := tz.Zipper
	pem := z.RootCAPEM()
	if len(pem) == 0 {
		t.Fatal("no PEM for a generated certificate")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	src := yomo.NewSource("src", tz.addr, yomo.WithRootCAPEM(pem))
	defer src.Close()
	if err := src.Connect(ctx); err != nil {
		t.Fatalf("with the PEM: %v", err)
	}
	other, _, err := yomo.DevCertificate()
	if err != nil {
		t.Fatal(err)
	}
	stranger := yomo.NewSource("src2", tz.addr, yomo.WithRootCAPEM(pemOf(t, other)))
	defer stranger.Close()
	if err := stranger.Connect(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("trusting another certificate: %v, want a certificate error", err)
	}
	if err := yomo.NewSource("x", "", yomo.WithRootCAPEM([]byte("junk"))).Connect(ctx); err == nil {
		t.Fatal("junk PEM accepted")
	}
}

func pemOf(t *testing.T, c tls.Certificate) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

// TestShutdownWithContext: Shutdown flushes what was written, then closes;
// after it the client is closed.
func TestShutdownWithContext(t *testing.T) {
	z, err := yomo.NewZipper("sd")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := connectedSource(t, yomo.WithInMemory(z))
	for range 1000 {
		if err := src.Write(3, make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if in := z.Stats().FramesIn; in != 1000 || src.State() != yomo.StateClosed {
		t.Fatalf("after Shutdown: the zipper read %d of 1000, state %v", in, src.State())
	}
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z))
	fn.SetObserveDataTags(3)
	_ = fn.SetHandler(func(yomo.Context) {})
	if err := fn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fn.Shutdown(ctx); err != nil || fn.State() != yomo.StateClosed {
		t.Fatalf("function Shutdown: %v, state %v", err, fn.State())
	}
}
