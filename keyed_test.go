package yomo_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// TestKeyedAffinity scales a keyed function from 2 to 3 instances and
// back while frames flow: every key reaches one instance per phase, in
// order; a joiner takes keys only for itself; when it leaves, its keys go
// back where they were.
func TestKeyedAffinity(t *testing.T) {
	z, err := yomo.NewZipper("keyed")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	type hit struct {
		inst int
		seq  uint32
	}
	var mu sync.Mutex
	seen := map[string][]hit{} // key -> hits, in handling order
	start := func(inst int) *yomo.StreamFunction {
		fn := yomo.NewStreamFunction("window", "", yomo.WithInMemory(z))
		fn.SetObserveDataTags(1)
		_ = fn.SetHandler(func(c yomo.Context) {
			k := c.(yomo.MessageContext).Key()
			mu.Lock()
			seen[k] = append(seen[k], hit{inst, binary.BigEndian.Uint32(c.Data())})
			mu.Unlock()
		})
		if err := fn.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		return fn
	}
	instances := func() int { f, _ := z.Stats().Function("window"); return f.Instances }
	src := connectedSource(t, yomo.WithInMemory(z))
	defer src.Close()
	const keys, perKey = 60, 20
	seq := uint32(0)
	phase := func() map[string]int {
		t.Helper()
		mu.Lock()
		clear(seen)
		mu.Unlock()
		b := make([]byte, 4)
		for range perKey {
			for k := range keys {
				seq++
				binary.BigEndian.PutUint32(b, seq)
				if err := src.WriteMessage(yomo.Message{Tag: 1, Data: b, Key: fmt.Sprint("dev-", k)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		eventually(t, 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, h := range seen {
				n += len(h)
			}
			return n == keys*perKey
		}, func() string { return "not every frame handled" })
		mu.Lock()
		defer mu.Unlock()
		owner := map[string]int{}
		for k, hits := range seen {
			for i, h := range hits {
				if h.inst != hits[0].inst {
					t.Fatalf("key %s went to instances %d and %d in one phase", k, hits[0].inst, h.inst)
				}
				if i > 0 && h.seq <= hits[i-1].seq {
					t.Fatalf("key %s out of order: %d after %d", k, h.seq, hits[i-1].seq)
				}
			}
			owner[k] = hits[0].inst
		}
		return owner
	}

	a, b := start(1), start(2)
	defer a.Close()
	defer b.Close()
	eventually(t, 5*time.Second, func() bool { return instances() == 2 }, func() string { return "2 instances" })
	two := phase()
	used := map[int]int{}
	for _, inst := range two {
		used[inst]++
	}
	if used[1] == 0 || used[2] == 0 {
		t.Fatalf("keys not spread over both instances: %v", used)
	}

	c := start(3)
	eventually(t, 5*time.Second, func() bool { return instances() == 3 }, func() string { return "3 instances" })
	three := phase()
	moved := 0
	for k, inst := range three {
		if inst != two[k] {
			moved++
			if inst != 3 {
				t.Fatalf("key %s moved from %d to %d, not to the joiner", k, two[k], inst)
			}
		}
	}
	if moved < keys/6 || moved > keys/2 {
		t.Errorf("%d of %d keys moved to the third instance, want about a third", moved, keys)
	}

	c.Close()
	eventually(t, 5*time.Second, func() bool { return instances() == 2 }, func() string { return "back to 2" })
	back := phase()
	for k, inst := range back {
		if inst != two[k] {
			t.Fatalf("key %s on %d after the joiner left, was on %d", k, inst, two[k])
		}
	}
}

// TestKeyedAffinityAcrossMesh: with instances of one function on two
// zippers, a key reaches the same instance whichever zipper its frames are
// written at.
func TestKeyedAffinityAcrossMesh(t *testing.T) {
	a, b := meshPair(t)
	var mu sync.Mutex
	owner := map[string]map[int]bool{} // key -> instances that handled it
	start := func(z *yomo.Zipper, inst int) {
		fn := yomo.NewStreamFunction("window", "", yomo.WithInMemory(z))
		fn.SetObserveDataTags(1)
		_ = fn.SetHandler(func(c yomo.Context) {
			k := c.(yomo.MessageContext).Key()
			mu.Lock()
			if owner[k] == nil {
				owner[k] = map[int]bool{}
			}
			owner[k][inst] = true
			mu.Unlock()
		})
		if err := fn.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fn.Close() })
	}
	start(a, 1)
	start(a, 2)
	start(b, 3)
	// Each zipper knows all three instances (its own and the other's).
	eventually(t, 10*time.Second, func() bool {
		return yomo.InstancesForTest(a, 1, "window") == 3 && yomo.InstancesForTest(b, 1, "window") == 3
	}, func() string {
		return fmt.Sprintf("instances known: a %d, b %d", yomo.InstancesForTest(a, 1, "window"), yomo.InstancesForTest(b, 1, "window"))
	})
	sa, sb := connectedSource(t, yomo.WithInMemory(a)), connectedSource(t, yomo.WithInMemory(b))
	defer sa.Close()
	defer sb.Close()
	const keys = 60
	for k := range keys {
		for _, s := range []*yomo.Source{sa, sb} {
			if err := s.WriteMessage(yomo.Message{Tag: 1, Key: fmt.Sprint("dev-", k)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(owner) == keys
	}, func() string { return "not every key handled" })
	// Both writes of a key are handled before we look: flush both sources.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = sa.Flush(ctx)
	_ = sb.Flush(ctx)
	used := map[int]int{}
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		clear(used)
		for _, insts := range owner {
			if len(insts) != 1 {
				return false
			}
			for i := range insts {
				used[i]++
			}
		}
		return true
	}, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("keys handled by several instances: %v", owner)
	})
	if len(used) != 3 {
		t.Fatalf("keys spread over %v, want all three instances", used)
	}
}

// TestKeyedHandlerConcurrency: with handler concurrency, frames of one key
// never run at once, even from several writers; other keys do.
func TestKeyedHandlerConcurrency(t *testing.T) {
	z, err := yomo.NewZipper("keyconc")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var mu sync.Mutex
	running := map[string]int{}
	overlap, peak, now, handled := false, 0, 0, 0
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z), yomo.WithHandlerConcurrency(8))
	fn.SetObserveDataTags(1)
	_ = fn.SetHandler(func(c yomo.Context) {
		k := c.(yomo.MessageContext).Key()
		mu.Lock()
		running[k]++
		now++
		overlap = overlap || running[k] > 1
		peak = max(peak, now)
		mu.Unlock()
		time.Sleep(time.Millisecond) // the work the handler does, not a synchronisation
		mu.Lock()
		running[k]--
		now--
		handled++
		mu.Unlock()
	})
	if err := fn.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	s1, s2 := connectedSource(t, yomo.WithInMemory(z)), connectedSource(t, yomo.WithInMemory(z))
	defer s1.Close()
	defer s2.Close()
	const n = 200
	for i := range n {
		for _, s := range []*yomo.Source{s1, s2} {
			if err := s.WriteMessage(yomo.Message{Tag: 1, Key: fmt.Sprint("k", i%8)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return handled == 2*n },
		func() string { mu.Lock(); defer mu.Unlock(); return fmt.Sprintf("%d of %d handled", handled, 2*n) })
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("two frames of one key ran at once")
	}
	if peak < 2 {
		t.Fatalf("at most %d calls at once: keys did not run concurrently", peak)
	}
}
