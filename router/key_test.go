package router

import (
	"fmt"
	"testing"
)

func keyedRouter(t *testing.T, ids ...uint64) *Router[uint64] {
	t.Helper()
	r := New[uint64]()
	for _, id := range ids {
		if err := r.Add(Instance[uint64]{ID: id, Name: "fn", Tags: []Tag{1}, Dest: id, Key: id * 1000}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// assign maps n keys to the instance each is routed to.
func assign(tbl *Table[uint64], n int) map[string]uint64 {
	out := make(map[string]uint64, n)
	for i := range n {
		k := fmt.Sprintf("device-%d", i)
		out[k] = tbl.RouteKey(1, "", []byte(k), nil)[0]
	}
	return out
}

func TestRouteKeyAffinityAndMinimalMovement(t *testing.T) {
	const n = 6000
	r := keyedRouter(t, 1, 2, 3)
	before := assign(r.Table(), n)

	// Stable: the same key, the same instance, call after call; spread fairly.
	again := assign(r.Table(), n)
	count := map[uint64]int{}
	for k, id := range before {
		if again[k] != id {
			t.Fatalf("key %s moved from %d to %d with nothing changed", k, id, again[k])
		}
		count[id]++
	}
	for id, c := range count {
		if c < n/3*8/10 || c > n/3*12/10 {
			t.Errorf("instance %d has %d of %d keys, want about a third", id, c, n)
		}
	}

	// A leaver: only its keys move, spread over the others.
	r.Remove(2)
	afterLeave := assign(r.Table(), n)
	for k, id := range before {
		if id != 2 && afterLeave[k] != id {
			t.Fatalf("key %s of instance %d moved to %d when instance 2 left", k, id, afterLeave[k])
		}
		if id == 2 && afterLeave[k] == 2 {
			t.Fatalf("key %s still on the leaver", k)
		}
	}

	// A joiner: it takes about 1/n, and every key that moves goes to it.
	if err := r.Add(Instance[uint64]{ID: 4, Name: "fn", Tags: []Tag{1}, Dest: 4, Key: 4000}); err != nil {
		t.Fatal(err)
	}
	afterJoin := assign(r.Table(), n)
	moved := 0
	for k, id := range afterLeave {
		if afterJoin[k] != id {
			moved++
			if afterJoin[k] != 4 {
				t.Fatalf("key %s moved from %d to %d, not to the joiner", k, id, afterJoin[k])
			}
		}
	}
	if moved < n/3*8/10 || moved > n/3*12/10 {
		t.Errorf("%d of %d keys moved to the joiner of 3 instances, want about a third", moved, n)
	}

	// Another router with the same instances (another zipper) agrees.
	other := keyedRouter(t, 3, 1)
	_ = other.Add(Instance[uint64]{ID: 4, Name: "fn", Tags: []Tag{1}, Dest: 4, Key: 4000})
	if got := assign(other.Table(), n); fmt.Sprint(got) != fmt.Sprint(afterJoin) {
		t.Fatal("two routers with the same instances map keys differently")
	}
}

func TestRouteKeyEmptyKeyIsRoundRobin(t *testing.T) {
	tbl := keyedRouter(t, 1, 2).Table()
	a := tbl.RouteKey(1, "", nil, nil)[0]
	b := tbl.RouteKey(1, "", nil, nil)[0]
	if a == b {
		t.Fatalf("unkeyed frames both went to %d, want round robin", a)
	}
	if got, ok := tbl.RouteNameKey(1, "", "fn", []byte("k")); !ok || got != tbl.RouteKey(1, "", []byte("k"), nil)[0] {
		t.Fatalf("RouteNameKey %d %v disagrees with RouteKey", got, ok)
	}
}

func BenchmarkRouteKey(b *testing.B) {
	r := New[uint64]()
	for id := uint64(1); id <= 8; id++ {
		_ = r.Add(Instance[uint64]{ID: id, Name: "fn", Tags: []Tag{1}, Dest: id})
	}
	tbl := r.Table()
	key := []byte("device-12345")
	dst := make([]uint64, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		dst = tbl.RouteKey(1, "", key, dst[:0])
	}
}

func TestRouteMembersKey(t *testing.T) {
	r := New[uint64]()
	add := func(id uint64, name string, key uint64) {
		if err := r.Add(Instance[uint64]{ID: id, Name: name, Tags: []Tag{1}, Dest: id, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	add(1, "fn", 0)
	add(2, "fn\x01a", 10)
	add(3, "fn\x01b", 20)
	add(4, "fn\x01c", 30)
	add(5, "fm\x01z", 40)  // another group, sorting before
	add(6, "fn0\x01y", 50) // a name that only starts like fn
	tbl := r.Table()
	if _, ok := tbl.RouteMembersKey(1, "", "nope", []byte("k")); ok {
		t.Fatal("members of a group that has none")
	}
	count := map[uint64]int{}
	for i := range 3000 {
		id, ok := tbl.RouteMembersKey(1, "", "fn", []byte(fmt.Sprint("k", i)))
		if !ok || id < 2 || id > 4 {
			t.Fatalf("key %d went to %d (%v), want a member of fn", i, id, ok)
		}
		count[id]++
	}
	for id, c := range count {
		if c < 800 || c > 1200 {
			t.Errorf("member %d has %d of 3000 keys", id, c)
		}
	}
	// The same members in another order, in another router: the same choice.
	r2 := New[uint64]()
	for _, m := range []struct {
		id  uint64
		key uint64
	}{{9, 30}, {8, 10}, {7, 20}} {
		_ = r2.Add(Instance[uint64]{ID: m.id, Name: fmt.Sprintf("fn\x01%d", m.key), Tags: []Tag{1}, Dest: m.key, Key: m.key})
	}
	byKey := map[uint64]uint64{2: 10, 3: 20, 4: 30}
	for i := range 500 {
		k := []byte(fmt.Sprint("k", i))
		a, _ := tbl.RouteMembersKey(1, "", "fn", k)
		b, _ := r2.Table().RouteMembersKey(1, "", "fn", k)
		if byKey[a] != b {
			t.Fatalf("key %s: instance key %d here, %d there", k, byKey[a], b)
		}
	}
}
