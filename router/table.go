package router

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// Table is an immutable routing snapshot returned by [Router.Table].
//
// A Table is safe for concurrent use by any number of goroutines, and is not
// affected by later mutations of the Router it came from. Its only mutable
// state is the round-robin counters, which are updated atomically.
//
// A nil *Table is valid and routes nothing, so the zero value of an
// atomic.Pointer[Table[D]] can be loaded and used before anything is
// published.
type Table[D any] struct {
	// untargeted maps a tag to the route for frames without a target.
	untargeted map[Tag]*route[D]
	// targeted maps a (tag, non-empty target) pair to the route for frames
	// with that target. Pairs no instance wants are absent.
	targeted map[tagTarget]*route[D]
	// n is the number of instances.
	n int
}

type tagTarget struct {
	tag    Tag
	target string
}

// route is the precomputed result for one (tag, target): one group per
// function name, sorted by name. It is immutable once built, except for the
// groups' counters.
type route[D any] struct {
	groups []group[D]
	// targets lists the non-empty targets that have a route for the same
	// tag; set on untargeted routes only, so that a rebuild can delete them.
	targets []string
}

// group holds the candidates of one function name for one route: the
// instances with the lowest cost, in ID order.
type group[D any] struct {
	name  string
	dests []D
	next  atomic.Uint64 // round-robin counter
}

// Route appends to dst one destination per function name observing tag and
// returns the extended slice. For each name the destination is that of one
// of the instances observing tag that
//   - want target, if target is not empty (names with no such instance are
//     skipped; with an empty target any instance qualifies), and
//   - have the lowest Cost among the qualifying instances of that name,
//
// chosen round robin, in ID order, among the qualifying ones: over k
// consecutive calls with the same tag and target each of k candidates is
// chosen once. Each (tag, target, name) has its own counter, which starts at
// the lowest ID when built and is carried over to later Tables for as long
// as nothing changes that tag.
//
// Destinations are appended in name order. Route does not allocate when dst
// has enough capacity. It is safe for concurrent use.
func (t *Table[D]) Route(tag Tag, target string, dst []D) []D {
	if t == nil {
		return dst
	}
	var rt *route[D]
	if target == "" {
		rt = t.untargeted[tag]
	} else {
		rt = t.targeted[tagTarget{tag, target}]
	}
	if rt == nil {
		return dst
	}
	for i := range rt.groups {
		g := &rt.groups[i]
		if len(g.dests) == 1 {
			dst = append(dst, g.dests[0])
			continue
		}
		n := g.next.Add(1) - 1
		dst = append(dst, g.dests[n%uint64(len(g.dests))])
	}
	return dst
}

// RouteName is Route restricted to one function name: it returns the
// destination chosen for name (with the same rules and counter as Route),
// or false when no instance of name qualifies. It does not allocate and is
// safe for concurrent use.
func (t *Table[D]) RouteName(tag Tag, target, name string) (D, bool) {
	var zero D
	if t == nil {
		return zero, false
	}
	var rt *route[D]
	if target == "" {
		rt = t.untargeted[tag]
	} else {
		rt = t.targeted[tagTarget{tag, target}]
	}
	if rt == nil {
		return zero, false
	}
	// Groups are sorted by name.
	lo, hi := 0, len(rt.groups)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rt.groups[m].name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(rt.groups) || rt.groups[lo].name != name {
		return zero, false
	}
	g := &rt.groups[lo]
	if len(g.dests) == 1 {
		return g.dests[0], true
	}
	n := g.next.Add(1) - 1
	return g.dests[n%uint64(len(g.dests))], true
}

// Observed reports whether any instance observes tag, whatever its target.
// It is safe for concurrent use.
func (t *Table[D]) Observed(tag Tag) bool {
	return t != nil && t.untargeted[tag] != nil
}

// Groups returns the sorted function names observing tag, or nil if there
// are none. It is meant for statistics and debugging and allocates a new
// slice, which the caller owns. It is safe for concurrent use.
func (t *Table[D]) Groups(tag Tag) []string {
	if t == nil {
		return nil
	}
	rt := t.untargeted[tag]
	if rt == nil {
		return nil
	}
	names := make([]string, len(rt.groups))
	for i := range rt.groups {
		names[i] = rt.groups[i].name
	}
	return names
}

// Len returns the number of instances in the snapshot, including those that
// observe no tag. It is safe for concurrent use.
func (t *Table[D]) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// build adds the routes of tag to t, whose maps hold no entry for tag yet.
// es holds the instances observing tag, in any order, and is reordered.
func (t *Table[D]) build(tag Tag, es []*entry[D]) {
	slices.SortFunc(es, func(a, b *entry[D]) int {
		return cmp.Or(
			cmp.Compare(a.name, b.name),
			cmp.Compare(a.cost, b.cost),
			cmp.Compare(a.id, b.id),
		)
	})
	un := newRoute(es)

	// Regroup by target, keeping (name, cost, id) order within a target.
	slices.SortStableFunc(es, func(a, b *entry[D]) int {
		return cmp.Compare(a.target, b.target)
	})
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].target == es[i].target {
			j++
		}
		if target := es[i].target; target != "" {
			t.targeted[tagTarget{tag, target}] = newRoute(es[i:j])
			un.targets = append(un.targets, target)
		}
		i = j
	}
	t.untargeted[tag] = un
}

// newRoute builds the route for es, which is non-empty and sorted by
// (name, cost, id).
func newRoute[D any](es []*entry[D]) *route[D] {
	// Count first so that each route takes exactly two allocations besides
	// itself. An entry is a candidate iff its cost is that of the first
	// (cheapest) entry of its name.
	ngroups, ndests := 0, 0
	var minCost uint32
	for i, e := range es {
		if i == 0 || e.name != es[i-1].name {
			ngroups++
			minCost = e.cost
		}
		if e.cost == minCost {
			ndests++
		}
	}
	rt := &route[D]{groups: make([]group[D], 0, ngroups)}
	dests := make([]D, 0, ndests)
	for i := 0; i < len(es); {
		name, cost := es[i].name, es[i].cost
		lo := len(dests)
		j := i
		for ; j < len(es) && es[j].name == name; j++ {
			if es[j].cost == cost {
				dests = append(dests, es[j].dest)
			}
		}
		rt.groups = rt.groups[:len(rt.groups)+1]
		g := &rt.groups[len(rt.groups)-1]
		g.name = name
		g.dests = dests[lo:len(dests):len(dests)]
		i = j
	}
	return rt
}
