package yomo_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// TestBroadcastGroup: every broadcast instance of a name gets every frame,
// here and across the mesh, while instances of a load-balanced name share
// them.
func TestBroadcastGroup(t *testing.T) {
	a, b := meshPair(t)
	const n = 50
	var bcast [3]atomic.Int64
	var shared atomic.Int64
	start := func(z *yomo.Zipper, name string, count *atomic.Int64, opts ...yomo.ClientOption) {
		fn := yomo.NewStreamFunction(name, "", append(opts, yomo.WithInMemory(z))...)
		fn.SetObserveDataTags(1)
		_ = fn.SetHandler(func(yomo.Context) { count.Add(1) })
		if err := fn.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fn.Close() })
	}
	start(a, "cache", &bcast[0], yomo.WithBroadcast())
	start(a, "cache", &bcast[1], yomo.WithBroadcast())
	start(b, "cache", &bcast[2], yomo.WithBroadcast()) // across the mesh
	start(a, "work", &shared)
	start(a, "work", &shared)
	eventually(t, 10*time.Second, func() bool {
		for _, r := range a.Stats().Routes {
			if r.Function == "cache" && r.Via == "b" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprint(a.Stats().Routes) })
	src := connectedSource(t, yomo.WithInMemory(a))
	defer src.Close()
	for range n {
		if err := src.Write(1, nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool {
		return bcast[0].Load() == n && bcast[1].Load() == n && bcast[2].Load() == n && shared.Load() == n
	}, func() string {
		return fmt.Sprintf("broadcast %d %d %d, shared %d; want %d each", bcast[0].Load(), bcast[1].Load(), bcast[2].Load(), shared.Load(), n)
	})
	if st, ok := a.Stats().Function("cache"); !ok || st.Instances != 2 {
		t.Fatalf("stats of cache at a: %+v", st)
	}
}

// TestUnorderedHandlers: with WithUnorderedHandlers, frames of one source
// and tag run concurrently (ordered, they would run one at a time).
func TestUnorderedHandlers(t *testing.T) {
	z, err := yomo.NewZipper("unordered")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	const conc = 8
	var running, peak atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z), yomo.WithHandlerConcurrency(conc), yomo.WithUnorderedHandlers())
	fn.SetObserveDataTags(1)
	_ = fn.SetHandler(func(yomo.Context) {
		r := running.Add(1)
		for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
		}
		if r == conc {
			once.Do(func() { close(release) })
		}
		<-release
		running.Add(-1)
	})
	if err := fn.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	src := connectedSource(t, yomo.WithInMemory(z))
	defer src.Close()
	for range conc {
		if err := src.Write(1, nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-release:
	case <-time.After(10 * time.Second):
		once.Do(func() { close(release) })
		t.Fatalf("at most %d of %d calls ran at once", peak.Load(), conc)
	}
}
