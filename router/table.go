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
	keys  []uint64      // the instances' keys, parallel to dests
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
	rt := t.lookup(tag, target)
	if rt == nil {
		return dst
	}
	for i := range rt.groups {
		dst = append(dst, rt.groups[i].roundRobin())
	}
	return dst
}

// RouteName is Route restricted to one function name: it returns the
// destination chosen for name (with the same rules and counter as Route),
// or false when no instance of name qualifies. It does not allocate and is
// safe for concurrent use.
func (t *Table[D]) RouteName(tag Tag, target, name string) (D, bool) {
	g := t.lookup(tag, target).group(name)
	if g == nil {
		var zero D
		return zero, false
	}
	return g.roundRobin(), true
}

// roundRobin returns the group's next candidate.
func (g *group[D]) roundRobin() D {
	if len(g.dests) == 1 {
		return g.dests[0]
	}
	n := g.next.Add(1) - 1
	return g.dests[n%uint64(len(g.dests))]
}

// RouteKey is Route for a frame with an affinity key: in each group the
// candidate is chosen by rendezvous hashing of key over the candidates'
// instance keys (Instance.Key) instead of round robin. So while a group's
// candidates do not change, every frame with one key goes to one
// instance; when a candidate leaves, only its keys move (each to the
// candidate with the next highest score); when one joins, it takes about
// 1/n of the keys, from every other candidate alike. The choice depends on
// the key and the instance keys only, so any Router with the same
// candidates chooses the same. An empty key routes like Route. RouteKey
// does not allocate and is safe for concurrent use.
func (t *Table[D]) RouteKey(tag Tag, target string, key []byte, dst []D) []D {
	if len(key) == 0 {
		return t.Route(tag, target, dst)
	}
	rt := t.lookup(tag, target)
	if rt == nil {
		return dst
	}
	h := hashKey(key)
	for i := range rt.groups {
		dst = append(dst, rt.groups[i].pick(h))
	}
	return dst
}

// RouteNameKey is RouteName with an affinity key (see RouteKey).
func (t *Table[D]) RouteNameKey(tag Tag, target, name string, key []byte) (D, bool) {
	if len(key) == 0 {
		return t.RouteName(tag, target, name)
	}
	var zero D
	g := t.lookup(tag, target).group(name)
	if g == nil {
		return zero, false
	}
	return g.pick(hashKey(key)), true
}

// MemberSep separates a group name from a member's suffix in the names
// RouteMembersKey chooses among ("fn" + MemberSep + "a1", "fn" +
// MemberSep + "b2", ...).
const MemberSep = '\x01'

// RouteMembersKey chooses, for a frame with a non-empty affinity key, one
// of the groups whose names are group + MemberSep + a suffix (one
// instance each, typically), by rendezvous hashing of key over their
// instance keys: the same choice in every Table that has the same
// members. It reports false when group has no members. It does not
// allocate and is safe for concurrent use.
func (t *Table[D]) RouteMembersKey(tag Tag, target, group string, key []byte) (D, bool) {
	var zero D
	rt := t.lookup(tag, target)
	if rt == nil || len(key) == 0 {
		return zero, false
	}
	n := len(group)
	lo, hi := 0, len(rt.groups)
	for lo < hi { // the first name >= group + MemberSep
		m := int(uint(lo+hi) >> 1)
		if name := rt.groups[m].name; name[:min(len(name), n)] < group ||
			name[:min(len(name), n)] == group && (len(name) == n || name[n] < MemberSep) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	h := hashKey(key)
	best, found := -1, false
	var bestScore uint64
	for i := lo; i < len(rt.groups); i++ {
		name := rt.groups[i].name
		if len(name) <= n || name[:n] != group || name[n] != MemberSep {
			break
		}
		if s := mix64(h ^ mix64(rt.groups[i].keys[0])); !found || s > bestScore {
			best, bestScore, found = i, s, true
		}
	}
	if !found {
		return zero, false
	}
	return rt.groups[best].dests[0], true
}

func (t *Table[D]) lookup(tag Tag, target string) *route[D] {
	if t == nil {
		return nil
	}
	if target == "" {
		return t.untargeted[tag]
	}
	return t.targeted[tagTarget{tag, target}]
}

// group returns the group of name, or nil.
func (rt *route[D]) group(name string) *group[D] {
	if rt == nil {
		return nil
	}
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
		return nil
	}
	return &rt.groups[lo]
}

// pick returns the candidate with the highest rendezvous score for a key
// hashed to h (ties, in practice impossible, go to the first).
func (g *group[D]) pick(h uint64) D {
	best, bestScore := 0, uint64(0)
	for i, k := range g.keys {
		if s := mix64(h ^ mix64(k)); i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return g.dests[best]
}

// HashKey is the hash RouteKey and RouteMembersKey give a key: FNV-1a, 64
// bits, stable across processes and versions, which rendezvous hashing
// needs.
func HashKey(key []byte) uint64 { return hashKey(key) }

func hashKey(key []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range key {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}

// mix64 is the finalizer of SplitMix64: a bijection that spreads every
// input bit over the output.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
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
	keys := make([]uint64, 0, ndests)
	for i := 0; i < len(es); {
		name, cost := es[i].name, es[i].cost
		lo := len(dests)
		j := i
		for ; j < len(es) && es[j].name == name; j++ {
			if es[j].cost == cost {
				dests = append(dests, es[j].dest)
				keys = append(keys, es[j].key)
			}
		}
		rt.groups = rt.groups[:len(rt.groups)+1]
		g := &rt.groups[len(rt.groups)-1]
		g.name = name
		g.dests = dests[lo:len(dests):len(dests)]
		g.keys = keys[lo:len(keys):len(keys)]
		i = j
	}
	return rt
}
