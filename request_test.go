package yomo_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/chaosnet"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
)

func upperFn(t *testing.T, z *yomo.Zipper, name string, tag yomo.Tag) *yomo.StreamFunction {
	t.Helper()
	fn := yomo.NewStreamFunction(name, "", yomo.WithInMemory(z))
	fn.SetObserveDataTags(tag)
	_ = fn.SetHandler(func(c yomo.Context) {
		switch string(c.Data()) {
		case "panic":
			panic("boom")
		case "silent":
			return
		}
		_ = c.Write(tag+100, bytes.ToUpper(c.Data()))
	})
	if err := fn.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return fn
}

func connectedSource(t *testing.T, opts ...yomo.ClientOption) *yomo.Source {
	t.Helper()
	src := yomo.NewSource("src", "", opts...)
	if err := src.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestRequest(t *testing.T) {
	z, err := yomo.NewZipper("req")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	fn := upperFn(t, z, "upper", 1)
	defer fn.Close()
	src := connectedSource(t, yomo.WithInMemory(z))
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("reply", func(t *testing.T) {
		got, err := src.Request(ctx, 1, []byte("hello"))
		if err != nil || string(got) != "HELLO" {
			t.Fatalf("Request = %q, %v; want HELLO", got, err)
		}
	})
	t.Run("200 concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := range 200 {
			wg.Add(1)
			go func() { // owned by the test: ends with its request
				defer wg.Done()
				in := fmt.Sprintf("req-%d", i)
				got, err := src.Request(ctx, 1, []byte(in))
				if err != nil || string(got) != fmt.Sprintf("REQ-%d", i) {
					errs <- fmt.Errorf("request %d: %q, %v", i, got, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("no responders at once", func(t *testing.T) {
		start := time.Now()
		_, err := src.Request(ctx, 99, []byte("x"))
		if !errors.Is(err, yomo.ErrNoResponders) {
			t.Fatalf("err = %v, want ErrNoResponders", err)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Fatalf("ErrNoResponders after %v, want well under 200ms", d)
		}
	})
	t.Run("handler panic", func(t *testing.T) {
		_, err := src.Request(ctx, 1, []byte("panic"))
		var he *yomo.HandlerError
		if !errors.As(err, &he) || he.Status != "panic" {
			t.Fatalf("err = %v, want a *HandlerError with status panic", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := src.Request(short, 1, []byte("silent"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the context's deadline", err)
		}
	})
}

// meshPair serves two zippers on 127.0.0.1, a linked to b.
func meshPair(t *testing.T) (a, b *yomo.Zipper) {
	t.Helper()
	a, b, _ = meshPairVia(t, false)
	return a, b
}

// meshPairVia is meshPair, with a's link to b through a chaosnet proxy
// (returned) when proxied is set.
func meshPairVia(t *testing.T, proxied bool) (a, b *yomo.Zipper, p *chaosnet.Proxy) {
	t.Helper()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
	pcB, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err = yomo.NewZipper("b", yomo.WithTLSConfig(conf))
	if err != nil {
		t.Fatal(err)
	}
	addrB := pcB.LocalAddr().String()
	if proxied {
		if p, err = chaosnet.Listen(addrB, chaosnet.Config{Seed: 1}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		addrB = p.Addr()
	}
	a, err = yomo.NewZipper("a", yomo.WithTLSConfig(conf), yomo.WithMesh(mesh.Peer{Name: "b", Addr: addrB}))
	if err != nil {
		t.Fatal(err)
	}
	pcA, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = b.Serve(context.Background(), pcB) }() // owned by the test: ends at Close
	go func() { defer wg.Done(); _ = a.Serve(context.Background(), pcA) }() // owned by the test: ends at Close
	t.Cleanup(func() {
		a.Close()
		b.Close()
		wg.Wait()
	})
	return a, b, p
}

func TestRequestAcrossMesh(t *testing.T) {
	a, b := meshPair(t)
	fn := upperFn(t, b, "upper", 1)
	defer fn.Close()
	src := connectedSource(t, yomo.WithInMemory(a))
	defer src.Close()
	eventually(t, 10*time.Second, func() bool {
		for _, r := range a.Stats().Routes {
			if r.Via == "b" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("a has no route via b: %+v", a.Stats()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := src.Request(ctx, 1, []byte("far"))
	if err != nil || string(got) != "FAR" {
		t.Fatalf("Request across the mesh = %q, %v", got, err)
	}
	start := time.Now()
	if _, err := src.Request(ctx, 2, nil); !errors.Is(err, yomo.ErrNoResponders) || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("no responders in the mesh: %v after %v", err, time.Since(start))
	}
}

// TestRequestOverQUIC: a Source that observes nothing, over QUIC, gets its
// replies (its zipper starts writing to it only for them).
func TestRequestOverQUIC(t *testing.T) {
	tz := startZipper(t, "")
	fn := upperFn(t, tz.Zipper, "upper", 1)
	defer fn.Close()
	src := yomo.NewSource("src", tz.addr, yomo.WithRootCAPEM(tz.RootCAPEM()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := range 20 {
		got, err := src.Request(ctx, 1, []byte(fmt.Sprint("q", i)))
		if err != nil || string(got) != fmt.Sprint("Q", i) {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	if _, err := src.Request(ctx, 77, nil); !errors.Is(err, yomo.ErrNoResponders) {
		t.Fatalf("no responders over QUIC: %v", err)
	}
}
