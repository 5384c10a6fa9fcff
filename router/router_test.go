package router

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// inst returns an instance whose Dest is name+id (for example "a1"), so that
// tests can tell both the instance and its group from a destination.
func inst(id uint64, name string, tags []Tag, target string, cost uint32) Instance[string] {
	return Instance[string]{
		ID:     id,
		Name:   name,
		Tags:   tags,
		Target: target,
		Cost:   cost,
		Dest:   name + strconv.FormatUint(id, 10),
	}
}

// groupOf returns the function name of a destination made by inst.
func groupOf(d string) string { return strings.TrimRight(d, "0123456789") }

func newRouter(t testing.TB, ins ...Instance[string]) *Router[string] {
	t.Helper()
	r := New[string]()
	for _, in := range ins {
		if err := r.Add(in); err != nil {
			t.Fatalf("Add(%+v): %v", in, err)
		}
	}
	return r
}

// routeN routes n frames and counts the deliveries per destination. It fails
// the test if one call delivers to a group twice or out of name order.
func routeN(t testing.TB, tbl *Table[string], tag Tag, target string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	var dst []string
	for range n {
		dst = tbl.Route(tag, target, dst[:0])
		for i, d := range dst {
			if i > 0 && groupOf(dst[i-1]) >= groupOf(d) {
				t.Fatalf("Route(%d, %q) = %v: groups repeated or not in name order", tag, target, dst)
			}
			got[d]++
		}
	}
	return got
}

func TestRoute(t *testing.T) {
	tags := func(ts ...Tag) []Tag { return ts }
	tests := []struct {
		name   string
		ins    []Instance[string]
		tag    Tag
		target string
		frames int
		want   map[string]int
	}{
		{
			name:   "empty router",
			tag:    1,
			frames: 3,
			want:   map[string]int{},
		},
		{
			name:   "unobserved tag",
			ins:    []Instance[string]{inst(1, "a", tags(1), "", 0), inst(2, "b", nil, "", 0)},
			tag:    2,
			frames: 3,
			want:   map[string]int{},
		},
		{
			name: "fan-out to every name",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 0),
				inst(2, "b", tags(1, 2), "", 0),
				inst(3, "c", tags(3, 1), "", 0),
				inst(4, "d", tags(2), "", 0),
			},
			tag:    1,
			frames: 3,
			want:   map[string]int{"a1": 3, "b2": 3, "c3": 3},
		},
		{
			name: "group load balancing is exact",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 0),
				inst(2, "a", tags(1), "", 0),
				inst(3, "a", tags(1), "", 0),
				inst(4, "b", tags(1), "", 0),
				inst(5, "b", tags(1), "", 0),
				inst(6, "c", tags(1), "", 0),
			},
			tag:    1,
			frames: 6,
			want:   map[string]int{"a1": 2, "a2": 2, "a3": 2, "b4": 3, "b5": 3, "c6": 6},
		},
		{
			name: "only instances observing the tag are in the group",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 0),
				inst(2, "a", tags(2), "", 0),
				inst(3, "a", tags(1, 2), "", 0),
			},
			tag:    2,
			frames: 4,
			want:   map[string]int{"a2": 2, "a3": 2},
		},
		{
			name:   "duplicated tags do not duplicate deliveries",
			ins:    []Instance[string]{inst(1, "a", tags(1, 1, 2, 1), "", 0), inst(2, "b", tags(2, 2), "", 0)},
			tag:    1,
			frames: 3,
			want:   map[string]int{"a1": 3},
		},
		{
			name: "targeted frame goes only to matching instances",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "x", 0),
				inst(2, "a", tags(1), "y", 0),
				inst(3, "a", tags(1), "", 0),
				inst(4, "b", tags(1), "y", 0),
				inst(5, "c", tags(1), "x", 0),
				inst(6, "c", tags(1), "x", 0),
			},
			tag:    1,
			target: "x",
			frames: 4,
			want:   map[string]int{"a1": 4, "c5": 2, "c6": 2},
		},
		{
			name: "untargeted frame goes to any instance",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "x", 0),
				inst(2, "a", tags(1), "y", 0),
				inst(3, "a", tags(1), "", 0),
				inst(4, "b", tags(1), "y", 0),
			},
			tag:    1,
			frames: 3,
			want:   map[string]int{"a1": 1, "a2": 1, "a3": 1, "b4": 3},
		},
		{
			name: "group without a matching instance is skipped",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "x", 0),
				inst(2, "b", tags(1), "", 0),
				inst(3, "c", tags(1), "y", 0),
			},
			tag:    1,
			target: "y",
			frames: 2,
			want:   map[string]int{"c3": 2},
		},
		{
			name:   "target nobody wants",
			ins:    []Instance[string]{inst(1, "a", tags(1), "x", 0), inst(2, "b", tags(1), "", 0)},
			tag:    1,
			target: "z",
			frames: 2,
			want:   map[string]int{},
		},
		{
			name:   "target wanted only on another tag",
			ins:    []Instance[string]{inst(1, "a", tags(2), "x", 0), inst(2, "a", tags(1), "", 0)},
			tag:    1,
			target: "x",
			frames: 2,
			want:   map[string]int{},
		},
		{
			name: "local preferred over remote",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 1),
				inst(2, "a", tags(1), "", 0),
				inst(3, "a", tags(1), "", 2),
			},
			tag:    1,
			frames: 3,
			want:   map[string]int{"a2": 3},
		},
		{
			name: "balance among the cheapest only",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 1),
				inst(2, "a", tags(1), "", 2),
				inst(3, "a", tags(1), "", 1),
				inst(4, "b", tags(1), "", 3),
				inst(5, "b", tags(1), "", 3),
				inst(6, "b", tags(1), "", 3),
			},
			tag:    1,
			frames: 6,
			want:   map[string]int{"a1": 3, "a3": 3, "b4": 2, "b5": 2, "b6": 2},
		},
		{
			name: "cheapest is taken among matching instances",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 0),
				inst(2, "a", tags(1), "x", 5),
				inst(3, "a", tags(1), "x", 7),
				inst(4, "a", tags(1), "x", 5),
			},
			tag:    1,
			target: "x",
			frames: 4,
			want:   map[string]int{"a2": 2, "a4": 2},
		},
		{
			name: "cheapest is taken among instances observing the tag",
			ins: []Instance[string]{
				inst(1, "a", tags(1), "", 0),
				inst(2, "a", tags(1, 2), "", 3),
			},
			tag:    2,
			frames: 2,
			want:   map[string]int{"a2": 2},
		},
		{
			name:   "instance without tags receives nothing",
			ins:    []Instance[string]{inst(1, "a", nil, "", 0), inst(2, "a", tags(1), "", 1)},
			tag:    1,
			frames: 2,
			want:   map[string]int{"a2": 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(t, tc.ins...)
			got := routeN(t, r.Table(), tc.tag, tc.target, tc.frames)
			if !maps.Equal(got, tc.want) {
				t.Errorf("deliveries of %d frames (tag %d, target %q) = %v, want %v",
					tc.frames, tc.tag, tc.target, got, tc.want)
			}
		})
	}
}

// TestRouteInterleavedTargets checks that balance stays exact for each
// target when frames of different targets are interleaved.
func TestRouteInterleavedTargets(t *testing.T) {
	r := newRouter(t,
		inst(1, "a", []Tag{1}, "x", 0),
		inst(2, "a", []Tag{1}, "x", 0),
		inst(3, "a", []Tag{1}, "y", 0),
		inst(4, "a", []Tag{1}, "", 0),
	)
	tbl := r.Table()
	got := map[string]map[string]int{"": {}, "x": {}, "y": {}}
	var dst []string
	for range 12 {
		for _, target := range []string{"x", "", "y"} {
			dst = tbl.Route(1, target, dst[:0])
			for _, d := range dst {
				got[target][d]++
			}
		}
	}
	want := map[string]map[string]int{
		"":  {"a1": 3, "a2": 3, "a3": 3, "a4": 3},
		"x": {"a1": 6, "a2": 6},
		"y": {"a3": 12},
	}
	for target := range want {
		if !maps.Equal(got[target], want[target]) {
			t.Errorf("target %q: deliveries = %v, want %v", target, got[target], want[target])
		}
	}
}

func TestCostPreference(t *testing.T) {
	r := newRouter(t,
		inst(1, "a", []Tag{1}, "", 0),
		inst(2, "a", []Tag{1}, "", 1),
	)
	steps := []struct {
		name   string
		mutate func(*Router[string]) bool
		want   map[string]int
	}{
		{"local chosen", nil, map[string]int{"a1": 4}},
		{"local removed", func(r *Router[string]) bool { return r.Remove(1) }, map[string]int{"a2": 4}},
		{"local back", func(r *Router[string]) bool { return r.Add(inst(3, "a", []Tag{1}, "", 0)) == nil }, map[string]int{"a3": 4}},
		{"local made farther", func(r *Router[string]) bool { return r.Update(3, 2) }, map[string]int{"a2": 4}},
		{"remote made farther", func(r *Router[string]) bool { return r.Update(2, 5) }, map[string]int{"a3": 4}},
		{"costs equal", func(r *Router[string]) bool { return r.Update(2, 2) }, map[string]int{"a2": 2, "a3": 2}},
		{"unknown instance", func(r *Router[string]) bool { return !r.Update(1, 0) }, map[string]int{"a2": 2, "a3": 2}},
		{"remote made local", func(r *Router[string]) bool { return r.Update(2, 0) }, map[string]int{"a2": 4}},
	}
	for _, s := range steps {
		if s.mutate != nil && !s.mutate(r) {
			t.Fatalf("%s: mutation failed", s.name)
		}
		if got := routeN(t, r.Table(), 1, "", 4); !maps.Equal(got, s.want) {
			t.Errorf("%s: deliveries = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestAddRemove(t *testing.T) {
	r := New[string]()
	if r.Len() != 0 || r.Table().Len() != 0 {
		t.Fatalf("new router: Len = %d, Table().Len = %d", r.Len(), r.Table().Len())
	}
	if r.Remove(1) {
		t.Error("Remove(1) on empty router = true")
	}
	if r.Update(1, 3) {
		t.Error("Update(1) on empty router = true")
	}
	for _, in := range []Instance[string]{
		inst(1, "a", []Tag{1}, "", 0),
		inst(2, "a", []Tag{1}, "", 0),
		inst(3, "b", []Tag{1, 2}, "", 0),
		inst(4, "c", nil, "", 0),
	} {
		if err := r.Add(in); err != nil {
			t.Fatal(err)
		}
	}
	if r.Len() != 4 || r.Table().Len() != 4 {
		t.Fatalf("Len = %d, Table().Len = %d, want 4", r.Len(), r.Table().Len())
	}
	if got, want := routeN(t, r.Table(), 1, "", 2), map[string]int{"a1": 1, "a2": 1, "b3": 2}; !maps.Equal(got, want) {
		t.Errorf("before Remove: %v, want %v", got, want)
	}
	if !r.Remove(1) {
		t.Error("Remove(1) = false")
	}
	if r.Remove(1) {
		t.Error("second Remove(1) = true")
	}
	if got, want := routeN(t, r.Table(), 1, "", 2), map[string]int{"a2": 2, "b3": 2}; !maps.Equal(got, want) {
		t.Errorf("after Remove(1): %v, want %v", got, want)
	}
	if !r.Remove(3) {
		t.Error("Remove(3) = false")
	}
	tbl := r.Table()
	if tbl.Observed(2) || tbl.Groups(2) != nil {
		t.Errorf("tag 2 still observed after its only instance left: %v", tbl.Groups(2))
	}
	if got, want := routeN(t, tbl, 1, "", 2), map[string]int{"a2": 2}; !maps.Equal(got, want) {
		t.Errorf("after Remove(3): %v, want %v", got, want)
	}
	// An ID may be reused once removed.
	if err := r.Add(inst(1, "b", []Tag{2}, "", 0)); err != nil {
		t.Fatalf("re-Add(1): %v", err)
	}
	if got, want := routeN(t, r.Table(), 2, "", 2), map[string]int{"b1": 2}; !maps.Equal(got, want) {
		t.Errorf("after re-Add(1): %v, want %v", got, want)
	}
	if r.Len() != 3 || r.Table().Len() != 3 {
		t.Errorf("Len = %d, Table().Len = %d, want 3", r.Len(), r.Table().Len())
	}
	for _, id := range []uint64{1, 2, 4} {
		if !r.Remove(id) {
			t.Errorf("Remove(%d) = false", id)
		}
	}
	tbl = r.Table()
	if r.Len() != 0 || tbl.Len() != 0 || tbl.Observed(1) || tbl.Observed(2) {
		t.Errorf("after removing all: Len = %d, Table().Len = %d, Observed(1) = %v, Observed(2) = %v",
			r.Len(), tbl.Len(), tbl.Observed(1), tbl.Observed(2))
	}
	if len(r.byTag) != 0 || len(tbl.untargeted) != 0 || len(tbl.targeted) != 0 {
		t.Errorf("after removing all, index holds %d tags, Table %d+%d routes",
			len(r.byTag), len(tbl.untargeted), len(tbl.targeted))
	}
}

func TestAddErrors(t *testing.T) {
	tests := []struct {
		name string
		in   Instance[string]
		want error
	}{
		{"duplicate ID", inst(1, "b", []Tag{2}, "", 0), ErrDuplicateID},
		{"duplicate ID same name", inst(1, "a", []Tag{1}, "", 0), ErrDuplicateID},
		{"empty name", inst(2, "", []Tag{1}, "", 0), ErrEmptyName},
		{"empty name and duplicate ID", inst(1, "", []Tag{1}, "", 0), ErrEmptyName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(t, inst(1, "a", []Tag{1}, "", 0))
			before := r.Table()
			err := r.Add(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Add(%+v) = %v, want %v", tc.in, err, tc.want)
			}
			if r.Len() != 1 {
				t.Errorf("Len after failed Add = %d, want 1", r.Len())
			}
			if r.Table() != before {
				t.Error("failed Add produced a new Table")
			}
			if got, want := routeN(t, r.Table(), 1, "", 1), map[string]int{"a1": 1}; !maps.Equal(got, want) {
				t.Errorf("after failed Add: %v, want %v", got, want)
			}
		})
	}
}

func TestAddCopiesTags(t *testing.T) {
	tags := []Tag{2, 1, 2}
	r := newRouter(t, inst(1, "a", tags, "", 0))
	if !slices.Equal(tags, []Tag{2, 1, 2}) {
		t.Errorf("Add modified the caller's Tags: %v", tags)
	}
	tags[0], tags[1], tags[2] = 3, 3, 3
	tbl := r.Table()
	for _, tc := range []struct {
		tag  Tag
		want bool
	}{{1, true}, {2, true}, {3, false}} {
		if got := tbl.Observed(tc.tag); got != tc.want {
			t.Errorf("Observed(%d) = %v, want %v", tc.tag, got, tc.want)
		}
	}
	r.Remove(1)
	tbl = r.Table()
	for tag := Tag(1); tag <= 3; tag++ {
		if tbl.Observed(tag) {
			t.Errorf("Observed(%d) after Remove = true", tag)
		}
	}
}

// TestRoundRobinOrder checks that candidates take turns in ID order,
// whatever the order they were added in, starting with the lowest ID on a
// fresh Table.
func TestRoundRobinOrder(t *testing.T) {
	r := New[string]()
	var want []string
	for _, id := range []uint64{7, 3, 11, 1, 9, 12, 5, 2, 10, 4, 8, 6} {
		cost := uint32(0)
		if id%4 == 0 {
			cost = 1 // not a candidate
		}
		if err := r.Add(inst(id, "a", []Tag{1}, "", cost)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []int{1, 2, 3, 5, 6, 7, 9, 10, 11, 1, 2} {
		want = append(want, "a"+strconv.Itoa(id))
	}
	tbl := r.Table()
	var got []string
	for range len(want) {
		got = tbl.Route(1, "", got)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%d frames went to %q, want %q", len(want), got, want)
	}
}

func TestObservedGroups(t *testing.T) {
	r := newRouter(t,
		inst(1, "c", []Tag{1}, "", 0),
		inst(2, "a", []Tag{1}, "x", 3),
		inst(3, "b", []Tag{1, 2}, "", 0),
		inst(4, "a", []Tag{1}, "", 0),
		inst(5, "d", []Tag{2}, "x", 0),
	)
	tbl := r.Table()
	tests := []struct {
		tag      Tag
		observed bool
		groups   []string
	}{
		{1, true, []string{"a", "b", "c"}},
		{2, true, []string{"b", "d"}},
		{3, false, nil},
	}
	for _, tc := range tests {
		if got := tbl.Observed(tc.tag); got != tc.observed {
			t.Errorf("Observed(%d) = %v, want %v", tc.tag, got, tc.observed)
		}
		if got := tbl.Groups(tc.tag); !slices.Equal(got, tc.groups) {
			t.Errorf("Groups(%d) = %q, want %q", tc.tag, got, tc.groups)
		}
	}
	// Groups returns a fresh slice each time.
	g := tbl.Groups(1)
	g[0] = "z"
	if got := tbl.Groups(1); got[0] != "a" {
		t.Errorf("Groups(1) affected by caller's change: %q", got)
	}
}

func TestNilTable(t *testing.T) {
	var tbl *Table[string]
	dst := tbl.Route(1, "", []string{"keep"})
	if !slices.Equal(dst, []string{"keep"}) {
		t.Errorf("nil Table Route = %q", dst)
	}
	if tbl.Observed(1) || tbl.Groups(1) != nil || tbl.Len() != 0 {
		t.Error("nil Table is not empty")
	}
}

func TestRouteAppends(t *testing.T) {
	r := newRouter(t, inst(1, "a", []Tag{1}, "", 0), inst(2, "b", []Tag{1}, "", 0))
	dst := r.Table().Route(1, "", []string{"x"})
	if want := []string{"x", "a1", "b2"}; !slices.Equal(dst, want) {
		t.Errorf("Route = %q, want %q", dst, want)
	}
}

// snapshot records everything observable about tbl for a few tags and
// targets, routing each (tag, target) 6 times.
func snapshot(t *testing.T, tbl *Table[string]) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "len=%d\n", tbl.Len())
	for tag := Tag(0); tag < 4; tag++ {
		fmt.Fprintf(&b, "tag %d observed=%v groups=%q\n", tag, tbl.Observed(tag), tbl.Groups(tag))
		for _, target := range []string{"", "x", "y"} {
			fmt.Fprintf(&b, "  %q: %v\n", target, routeN(t, tbl, tag, target, 6))
		}
	}
	return b.String()
}

func TestSnapshotImmutable(t *testing.T) {
	add := func(t *testing.T, r *Router[string], in Instance[string]) {
		t.Helper()
		if err := r.Add(in); err != nil {
			t.Fatal(err)
		}
	}
	mutations := []struct {
		name   string
		mutate func(*testing.T, *Router[string])
	}{
		{"add to group", func(t *testing.T, r *Router[string]) { add(t, r, inst(10, "a", []Tag{1, 2}, "", 0)) }},
		{"add new group", func(t *testing.T, r *Router[string]) { add(t, r, inst(10, "z", []Tag{1, 3}, "x", 0)) }},
		{"remove", func(_ *testing.T, r *Router[string]) { r.Remove(1) }},
		{"remove group", func(_ *testing.T, r *Router[string]) { r.Remove(3) }},
		{"update", func(_ *testing.T, r *Router[string]) { r.Update(2, 0) }},
		{"many", func(t *testing.T, r *Router[string]) {
			r.Remove(1)
			r.Remove(2)
			add(t, r, inst(1, "b", []Tag{0, 1, 2, 3}, "y", 0))
			r.Update(4, 9)
		}},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			r := newRouter(t,
				inst(1, "a", []Tag{1}, "", 0),
				inst(2, "a", []Tag{1, 2}, "x", 1),
				inst(3, "b", []Tag{2}, "y", 0),
				inst(4, "c", []Tag{1, 3}, "", 0),
			)
			old := r.Table()
			want := snapshot(t, old)
			m.mutate(t, r)
			cur := r.Table()
			if cur == old {
				t.Fatal("Table() after a mutation returned the old Table")
			}
			if got := snapshot(t, old); got != want {
				t.Errorf("old Table changed by mutation:\n got: %s\nwant: %s", got, want)
			}
			if got := snapshot(t, cur); got == want {
				t.Errorf("new Table does not reflect the mutation:\n%s", got)
			}
		})
	}
}

func TestTableReused(t *testing.T) {
	r := newRouter(t, inst(1, "a", []Tag{1}, "", 2))
	tbl := r.Table()
	if r.Table() != tbl {
		t.Error("Table() without mutation returned a new Table")
	}
	r.Update(1, 2) // same cost
	r.Remove(7)
	r.Update(7, 1)
	if r.Table() != tbl {
		t.Error("Table() after no-op mutations returned a new Table")
	}
	if err := r.Add(inst(2, "b", nil, "", 0)); err != nil {
		t.Fatal(err)
	}
	if r.Table() == tbl {
		t.Error("Table() after Add of an instance without tags returned the old Table")
	}
	if r.Table().Len() != 2 {
		t.Errorf("Len = %d, want 2", r.Table().Len())
	}
}

// TestRouteConcurrentBalance checks that balance is exact even when many
// goroutines route on one Table at once.
func TestRouteConcurrentBalance(t *testing.T) {
	const goroutines, perG = 8, 300
	r := newRouter(t,
		inst(1, "a", []Tag{1}, "", 0),
		inst(2, "a", []Tag{1}, "", 0),
		inst(3, "a", []Tag{1}, "", 0),
		inst(4, "b", []Tag{1}, "", 0),
		inst(5, "b", []Tag{1}, "", 0),
	)
	tbl := r.Table()
	counts := make([]map[string]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			c := map[string]int{}
			var dst []string
			for range perG {
				dst = tbl.Route(1, "", dst[:0])
				for _, d := range dst {
					c[d]++
				}
			}
			counts[g] = c
		})
	}
	wg.Wait()
	total := map[string]int{}
	for _, c := range counts {
		for d, n := range c {
			total[d] += n
		}
	}
	const n = goroutines * perG
	want := map[string]int{"a1": n / 3, "a2": n / 3, "a3": n / 3, "b4": n / 2, "b5": n / 2}
	if !maps.Equal(total, want) {
		t.Errorf("deliveries = %v, want %v", total, want)
	}
}

// TestConcurrentPublish has readers route on the current Table while the
// owner mutates the Router and publishes new Tables. Every Table keeps one
// remote instance in each of the groups a, b and c, so every Table must
// route tag 1 to exactly one instance of each.
func TestConcurrentPublish(t *testing.T) {
	const readers, mutations, minReads = 8, 2000, 200
	r := newRouter(t,
		inst(1, "a", []Tag{1}, "", 100),
		inst(2, "b", []Tag{1}, "", 100),
		inst(3, "c", []Tag{1}, "", 100),
	)
	var current atomic.Pointer[Table[string]]
	current.Store(r.Table())
	var done, failed atomic.Bool
	fail := func(format string, args ...any) {
		if failed.CompareAndSwap(false, true) {
			t.Errorf(format, args...)
		}
	}
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			var dst []string
			for i := 0; i < minReads || !done.Load(); i++ {
				if failed.Load() {
					return
				}
				tbl := current.Load()
				dst = tbl.Route(1, "", dst[:0])
				if len(dst) != 3 || groupOf(dst[0]) != "a" || groupOf(dst[1]) != "b" || groupOf(dst[2]) != "c" {
					fail("Route(1, \"\") = %q, want one of each of a, b, c", dst)
					return
				}
				dst = tbl.Route(1, "t1", dst[:0])
				for j := 1; j < len(dst); j++ {
					if groupOf(dst[j-1]) >= groupOf(dst[j]) {
						fail("Route(1, \"t1\") = %q: groups repeated or unordered", dst)
						return
					}
				}
				dst = tbl.Route(2, "", dst[:0])
				if len(dst) > 3 {
					fail("Route(2, \"\") = %q: more than 3 groups", dst)
					return
				}
				if g := tbl.Groups(1); !slices.Equal(g, []string{"a", "b", "c"}) {
					fail("Groups(1) = %q", g)
					return
				}
			}
		})
	}
	names := []string{"a", "b", "c"}
	for i := range mutations {
		id := uint64(100 + i)
		in := inst(id, names[i%3], []Tag{1, 2}, "t"+strconv.Itoa(i%2), uint32(i%4))
		if err := r.Add(in); err != nil {
			t.Fatal(err)
		}
		if i >= 5 {
			r.Remove(id - 5)
		}
		if i%7 == 0 {
			r.Update(id-1, uint32(i%3))
		}
		current.Store(r.Table())
	}
	done.Store(true)
	wg.Wait()
}

func TestRouteAllocs(t *testing.T) {
	r := New[*int]()
	for id := range uint64(12) {
		v := int(id)
		in := Instance[*int]{ID: id, Name: string(rune('a' + id%4)), Tags: []Tag{1, 2}, Target: []string{"", "x"}[id%2], Dest: &v}
		if err := r.Add(in); err != nil {
			t.Fatal(err)
		}
	}
	tbl := r.Table()
	dst := make([]*int, 0, 8)
	for _, tc := range []struct {
		tag    Tag
		target string
	}{{1, ""}, {1, "x"}, {2, "y"}, {3, ""}, {3, "x"}} {
		allocs := testing.AllocsPerRun(100, func() {
			dst = tbl.Route(tc.tag, tc.target, dst[:0])
		})
		if allocs != 0 {
			t.Errorf("Route(%d, %q) allocates %v times", tc.tag, tc.target, allocs)
		}
	}
}

// model is the reference model of FuzzRouter: the instances by ID.
type model map[uint64]Instance[uint64]

func observes(in Instance[uint64], tag Tag) bool { return slices.Contains(in.Tags, tag) }

// candidates returns, per function name, the IDs the model allows for a
// frame of tag and target.
func (m model) candidates(tag Tag, target string) map[string][]uint64 {
	minCost := map[string]uint32{}
	for _, in := range m {
		if !observes(in, tag) || target != "" && in.Target != target {
			continue
		}
		if c, ok := minCost[in.Name]; !ok || in.Cost < c {
			minCost[in.Name] = in.Cost
		}
	}
	cands := map[string][]uint64{}
	for _, in := range m {
		if observes(in, tag) && (target == "" || in.Target == target) && in.Cost == minCost[in.Name] {
			cands[in.Name] = append(cands[in.Name], in.ID)
		}
	}
	return cands
}

const (
	fuzzTags  = 4 // tags 0..3 are used, 4 never is
	fuzzIDs   = 10
	fuzzCosts = 3
)

var (
	fuzzNames   = []string{"", "a", "b", "c"}
	fuzzTargets = []string{"", "x", "y", "z"} // "z" is never wanted
)

// checkTable checks tbl against m with one Route per tag and target.
func checkTable(t *testing.T, tbl *Table[uint64], m model) {
	t.Helper()
	if tbl.Len() != len(m) {
		t.Fatalf("Table.Len = %d, want %d", tbl.Len(), len(m))
	}
	var dst []uint64
	for tag := Tag(0); tag <= fuzzTags; tag++ {
		all := m.candidates(tag, "")
		names := slices.Sorted(maps.Keys(all))
		if got := tbl.Groups(tag); !slices.Equal(got, names) {
			t.Fatalf("Groups(%d) = %q, want %q", tag, got, names)
		}
		if got := tbl.Observed(tag); got != (len(names) > 0) {
			t.Fatalf("Observed(%d) = %v, want %v", tag, got, len(names) > 0)
		}
		for _, target := range fuzzTargets {
			cands := m.candidates(tag, target)
			dst = tbl.Route(tag, target, dst[:0])
			if len(dst) != len(cands) {
				t.Fatalf("Route(%d, %q) = %v, want one of each of %v", tag, target, dst, cands)
			}
			for i, id := range dst {
				in, ok := m[id]
				switch {
				case !ok:
					t.Fatalf("Route(%d, %q) = %v: unknown instance %d", tag, target, dst, id)
				case i > 0 && m[dst[i-1]].Name >= in.Name:
					t.Fatalf("Route(%d, %q) = %v: groups repeated or unordered", tag, target, dst)
				case !observes(in, tag):
					t.Fatalf("Route(%d, %q) = %v: %+v does not observe the tag", tag, target, dst, in)
				case target != "" && in.Target != target:
					t.Fatalf("Route(%d, %q) = %v: %+v does not want the target", tag, target, dst, in)
				case !slices.Contains(cands[in.Name], id):
					t.Fatalf("Route(%d, %q) = %v: %+v is not among the cheapest %v", tag, target, dst, in, cands[in.Name])
				}
			}
		}
	}
}

// checkBalance routes a whole number of rounds of every group and checks
// that every candidate is chosen equally often.
func checkBalance(t *testing.T, tbl *Table[uint64], m model, tag Tag, target string) {
	t.Helper()
	cands := m.candidates(tag, target)
	rounds := 1
	for _, ids := range cands {
		rounds = lcm(rounds, len(ids))
	}
	got := map[uint64]int{}
	var dst []uint64
	for range rounds {
		dst = tbl.Route(tag, target, dst[:0])
		for _, id := range dst {
			got[id]++
		}
	}
	want := map[uint64]int{}
	for _, ids := range cands {
		for _, id := range ids {
			want[id] = rounds / len(ids)
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("%d frames (tag %d, target %q): deliveries %v, want %v (candidates %v)", rounds, tag, target, got, want, cands)
	}
}

func lcm(a, b int) int {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// FuzzRouter applies a sequence of operations decoded from the input to a
// Router and to a reference model, checking the Tables against the model.
func FuzzRouter(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 1, 2, 0, 1, 0, 0, 2, 1, 2, 0, 1, 0, 3, 0, 0})
	f.Add([]byte{0, 1, 1, 3, 0, 1, 2, 1, 0, 2, 1, 2, 1, 2, 1, 0, 4, 0, 3, 1, 1, 1, 0, 3, 1, 0})
	f.Add([]byte{0, 1, 2, 1, 3, 0, 0, 0, 2, 2, 1, 3, 1, 1, 4, 1, 2, 2, 1, 0, 3, 2, 3, 1, 2, 3, 1, 0, 3, 1, 1})
	f.Add([]byte("\x00\x05\x01\x02\x01\x01\x00\x00\x06\x01\x02\x01\x01\x00\x00\x07\x01\x01\x01\x00\x00\x03\x01\x00\x02\x05\x01\x03\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		type snap struct {
			tbl *Table[uint64]
			m   model
		}
		var snaps []snap
		r := New[uint64]()
		m := model{}
		prev := r.Table()
		checkTable(t, prev, m)
		for ops := 0; len(data) > 0 && ops < 200; ops++ {
			prevModel := maps.Clone(m)
			changed := false
			switch next() % 5 {
			case 0: // add
				id := uint64(next() % fuzzIDs)
				in := Instance[uint64]{
					ID:     id,
					Name:   fuzzNames[next()%len(fuzzNames)],
					Target: fuzzTargets[next()%(len(fuzzTargets)-1)],
					Cost:   uint32(next() % fuzzCosts),
					Dest:   id,
				}
				for range next() % 4 {
					in.Tags = append(in.Tags, Tag(next()%fuzzTags))
				}
				err := r.Add(in)
				_, dup := m[id]
				switch {
				case in.Name == "":
					if !errors.Is(err, ErrEmptyName) {
						t.Fatalf("Add(%+v) = %v, want ErrEmptyName", in, err)
					}
				case dup:
					if !errors.Is(err, ErrDuplicateID) {
						t.Fatalf("Add(%+v) = %v, want ErrDuplicateID", in, err)
					}
				case err != nil:
					t.Fatalf("Add(%+v) = %v", in, err)
				default:
					in.Tags = slices.Clone(in.Tags)
					m[id] = in
					changed = true
				}
			case 1: // remove
				id := uint64(next() % fuzzIDs)
				_, ok := m[id]
				if got := r.Remove(id); got != ok {
					t.Fatalf("Remove(%d) = %v, want %v", id, got, ok)
				}
				delete(m, id)
				changed = ok
			case 2: // update
				id := uint64(next() % fuzzIDs)
				cost := uint32(next() % fuzzCosts)
				in, ok := m[id]
				if got := r.Update(id, cost); got != ok {
					t.Fatalf("Update(%d, %d) = %v, want %v", id, cost, got, ok)
				}
				if ok {
					changed = in.Cost != cost
					in.Cost = cost
					m[id] = in
				}
			case 3: // balance
				checkBalance(t, r.Table(), m, Tag(next()%(fuzzTags+1)), fuzzTargets[next()%len(fuzzTargets)])
			case 4: // keep a snapshot to check at the end
				snaps = append(snaps, snap{r.Table(), maps.Clone(m)})
			}
			if r.Len() != len(m) {
				t.Fatalf("Len = %d, want %d", r.Len(), len(m))
			}
			observed := map[Tag]bool{}
			for _, in := range m {
				for _, tag := range in.Tags {
					observed[tag] = true
				}
			}
			if len(r.byTag) != len(observed) {
				t.Fatalf("Router indexes %d tags, want %d", len(r.byTag), len(observed))
			}
			tbl := r.Table()
			if changed == (tbl == prev) {
				t.Fatalf("model changed: %v, but new Table: %v", changed, tbl != prev)
			}
			checkTable(t, tbl, m)
			checkTable(t, prev, prevModel)
			prev = tbl
		}
		for _, s := range snaps {
			checkTable(t, s.tbl, s.m)
		}
	})
}

func BenchmarkRoute(b *testing.B) {
	const perGroup = 6
	for _, groups := range []int{1, 4, 64} {
		r := New[*int]()
		id := uint64(0)
		for g := range groups {
			for i := range perGroup {
				v := int(id)
				// Every instance also observes unrelated tags, so that the
				// tag lookup is not in a trivially small map.
				tags := []Tag{1, Tag(100 + g), Tag(1000 + id)}
				in := Instance[*int]{
					ID: id, Name: fmt.Sprintf("sfn-%03d", g), Tags: tags,
					Target: []string{"", "user-1"}[i%2], Cost: uint32(i / 4), Dest: &v,
				}
				if err := r.Add(in); err != nil {
					b.Fatal(err)
				}
				id++
			}
		}
		tbl := r.Table()
		for _, target := range []string{"", "user-1"} {
			name := fmt.Sprintf("groups=%d", groups)
			if target != "" {
				name += "/target"
			}
			b.Run(name, func(b *testing.B) {
				dst := make([]*int, 0, groups)
				b.ReportAllocs()
				for b.Loop() {
					dst = tbl.Route(1, target, dst[:0])
				}
				if len(dst) != groups {
					b.Fatalf("routed to %d groups, want %d", len(dst), groups)
				}
			})
		}
		b.Run(fmt.Sprintf("groups=%d/parallel", groups), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				dst := make([]*int, 0, groups)
				for pb.Next() {
					dst = tbl.Route(1, "", dst[:0])
				}
			})
		})
	}
}

func TestRouteName(t *testing.T) {
	r := New[string]()
	for _, in := range []Instance[string]{
		{ID: 1, Name: "a", Tags: []Tag{1}, Dest: "a1"},
		{ID: 2, Name: "a", Tags: []Tag{1}, Dest: "a2"},
		{ID: 3, Name: "b", Tags: []Tag{1}, Target: "t", Dest: "b1"},
		{ID: 4, Name: "c", Tags: []Tag{2}, Dest: "c1"},
		{ID: 5, Name: "c", Tags: []Tag{1}, Cost: 7, Dest: "c-remote"},
		{ID: 6, Name: "c", Tags: []Tag{1}, Cost: 3, Dest: "c-near"},
	} {
		if err := r.Add(in); err != nil {
			t.Fatal(err)
		}
	}
	tb := r.Table()
	got := map[string]int{}
	for i := 0; i < 10; i++ {
		d, ok := tb.RouteName(1, "", "a")
		if !ok {
			t.Fatal("a not routed")
		}
		got[d]++
	}
	if got["a1"] != 5 || got["a2"] != 5 {
		t.Fatalf("round robin within a name: %v", got)
	}
	if d, ok := tb.RouteName(1, "t", "b"); !ok || d != "b1" {
		t.Fatalf("targeted name: %v %v", d, ok)
	}
	if _, ok := tb.RouteName(1, "other", "b"); ok {
		t.Fatal("routed a target nobody wants")
	}
	if d, ok := tb.RouteName(1, "", "c"); !ok || d != "c-near" {
		t.Fatalf("cost preference: %v %v", d, ok)
	}
	if _, ok := tb.RouteName(1, "", "zzz"); ok {
		t.Fatal("routed an unknown name")
	}
	if _, ok := tb.RouteName(9, "", "a"); ok {
		t.Fatal("routed an unobserved tag")
	}
	if n := testing.AllocsPerRun(100, func() { tb.RouteName(1, "", "a") }); n != 0 {
		t.Fatalf("RouteName allocates %v", n)
	}
	var nilTable *Table[string]
	if _, ok := nilTable.RouteName(1, "", "a"); ok {
		t.Fatal("nil table routed")
	}
}
