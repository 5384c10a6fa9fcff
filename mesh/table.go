package mesh

import (
	"slices"

	"github.com/yomo-dev/yomo/frame"
)

// Key identifies a destination a zipper can route to: a function name
// observing a tag with a wanted target (frame.RouteFunction), or a zipper
// (frame.RouteZipper, where backflow for its sources goes).
type Key struct {
	Kind   uint8  // frame.RouteFunction or frame.RouteZipper
	Tag    uint32 // RouteFunction: the observed tag
	Name   string // function name, or zipper name
	Target string // RouteFunction: the wanted target
}

// Best is the route a zipper uses to reach a key. Its Path is shared with
// the table: do not modify it.
type Best struct {
	// Via is the neighbour to forward to; "" when the destination is local.
	Via string
	// Cost is the total cost in microseconds (0 when local).
	Cost uint32
	// Path lists the zippers from the destination's to Via, inclusive
	// (just this zipper when local).
	Path []string
}

// Change reports that the best route to Key changed; Removed means there
// is no route any more.
type Change struct {
	Key  Key
	Best Best // the new route; when Removed, the route that went away
	// Removed says there is no route to Key any more.
	Removed bool
}

// Table is a path-vector routing table: the decision logic of a mesh
// zipper, with no I/O, no goroutines and no clock. Its owner feeds it
// local destinations, link states and costs, and the neighbours'
// advertisements, and sends the advertisements it returns. It is not safe
// for concurrent use.
//
// Loop freedom: a route is accepted from a neighbour only when this
// zipper's name is not on its path, and every advertisement carries the
// path it was computed along, so a zipper never selects a route that runs
// through itself. See RATIONALE.md for the argument.
type Table struct {
	self    string
	local   map[Key]int
	links   map[string]uint32              // neighbours whose links are up -> cost
	learned map[string]map[Key]frame.Route // neighbour -> its advertisements
	best    map[Key]Best
}

// New returns an empty table for the zipper named self.
func New(self string) *Table {
	return &Table{
		self:    self,
		local:   make(map[Key]int),
		links:   make(map[string]uint32),
		learned: make(map[string]map[Key]frame.Route),
		best:    make(map[Key]Best),
	}
}

// Self returns the zipper's name.
func (t *Table) Self() string { return t.self }

// AddLocal records one more local instance of k.
func (t *Table) AddLocal(k Key) []Change {
	t.local[k]++
	return t.recompute(nil, k)
}

// RemoveLocal records one instance of k fewer.
func (t *Table) RemoveLocal(k Key) []Change {
	if t.local[k] <= 1 {
		delete(t.local, k)
	} else {
		t.local[k]--
	}
	return t.recompute(nil, k)
}

// LinkUp records a link to peer with the given cost (at least 1).
func (t *Table) LinkUp(peer string, cost uint32) []Change {
	t.links[peer] = max(cost, 1)
	return t.recomputeVia(peer)
}

// SetCost updates the cost of an up link.
func (t *Table) SetCost(peer string, cost uint32) []Change {
	if _, ok := t.links[peer]; !ok {
		return nil
	}
	t.links[peer] = max(cost, 1)
	return t.recomputeVia(peer)
}

// LinkDown forgets a link and everything learned over it; call it for
// every lost link, whether or not it was up.
func (t *Table) LinkDown(peer string) []Change {
	delete(t.links, peer)
	keys := keysOf(t.learned[peer])
	delete(t.learned, peer)
	var out []Change
	for _, k := range keys {
		out = t.recompute(out, k)
	}
	return out
}

// Learn applies a neighbour's advertisements. Routes from a neighbour
// whose link is not up yet are kept and selected at its LinkUp; only
// LinkDown forgets them, so the owner must call LinkDown for every lost
// link it fed to Learn. A route whose path contains
// this zipper, or which is a withdrawal, removes what was learned for its
// key from that neighbour.
func (t *Table) Learn(peer string, routes []frame.Route) []Change {
	m := t.learned[peer]
	if m == nil {
		m = make(map[Key]frame.Route)
		t.learned[peer] = m
	}
	var out []Change
	for _, r := range routes {
		k := Key{Kind: r.Kind, Tag: r.Tag, Name: r.Name, Target: r.Target}
		if r.Withdraw || slices.Contains(r.Path, t.self) || len(r.Path) == 0 || len(r.Path) > frame.MaxListEntries {
			if _, ok := m[k]; !ok {
				continue
			}
			delete(m, k)
		} else {
			r.Path = slices.Clone(r.Path)
			m[k] = r
		}
		out = t.recompute(out, k)
	}
	return out
}

// Best returns the current route to k.
func (t *Table) Best(k Key) (Best, bool) {
	b, ok := t.best[k]
	return b, ok
}

// Cost returns the cost of the link to peer, if it is up.
func (t *Table) Cost(peer string) (uint32, bool) {
	c, ok := t.links[peer]
	return c, ok
}

// Adverts returns the whole table as advertisements, for a neighbour whose
// link just came up.
func (t *Table) Adverts() []frame.Route {
	out := make([]frame.Route, 0, len(t.best))
	for k, b := range t.best {
		out = append(out, t.advert(k, b, false))
	}
	slices.SortFunc(out, func(a, b frame.Route) int { return compareKeys(keyOf(a), keyOf(b)) })
	return out
}

// Advert turns a change into the advertisement to send to neighbours.
func (t *Table) Advert(c Change) frame.Route {
	return t.advert(c.Key, c.Best, c.Removed)
}

func (t *Table) advert(k Key, b Best, withdraw bool) frame.Route {
	r := frame.Route{Kind: k.Kind, Tag: k.Tag, Name: k.Name, Target: k.Target, Withdraw: withdraw}
	if !withdraw {
		r.Cost = b.Cost
		r.Path = b.Path
		if b.Via != "" {
			r.Path = append(slices.Clone(b.Path), t.self)
		}
	} else {
		r.Path = []string{t.self}
	}
	return r
}

func (t *Table) recomputeVia(peer string) []Change {
	var out []Change
	for _, k := range keysOf(t.learned[peer]) {
		out = t.recompute(out, k)
	}
	return out
}

// recompute selects the best route to k and appends a Change to out when
// it differs from the current one.
func (t *Table) recompute(out []Change, k Key) []Change {
	var best Best
	found := false
	if t.local[k] > 0 {
		best, found = Best{Path: []string{t.self}}, true
	}
	if !found {
		for peer, cost := range t.links {
			r, ok := t.learned[peer][k]
			if !ok {
				continue
			}
			c := saturatingAdd(r.Cost, cost)
			cand := Best{Via: peer, Cost: c, Path: r.Path}
			if !found || better(cand, best) {
				best, found = cand, true
			}
		}
	}
	old, had := t.best[k]
	switch {
	case !found && had:
		delete(t.best, k)
		return append(out, Change{Key: k, Best: old, Removed: true})
	case found && (!had || !sameBest(old, best)):
		t.best[k] = best
		return append(out, Change{Key: k, Best: best})
	}
	return out
}

// better orders candidates: lower cost, then shorter path, then the
// neighbour's name (deterministic).
func better(a, b Best) bool {
	if a.Cost != b.Cost {
		return a.Cost < b.Cost
	}
	if len(a.Path) != len(b.Path) {
		return len(a.Path) < len(b.Path)
	}
	return a.Via < b.Via
}

func sameBest(a, b Best) bool {
	return a.Via == b.Via && a.Cost == b.Cost && slices.Equal(a.Path, b.Path)
}

func saturatingAdd(a, b uint32) uint32 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint32(0)
}

func keyOf(r frame.Route) Key { return Key{Kind: r.Kind, Tag: r.Tag, Name: r.Name, Target: r.Target} }

func compareKeys(a, b Key) int {
	switch {
	case a.Kind != b.Kind:
		return int(a.Kind) - int(b.Kind)
	case a.Tag != b.Tag:
		if a.Tag < b.Tag {
			return -1
		}
		return 1
	case a.Name != b.Name:
		if a.Name < b.Name {
			return -1
		}
		return 1
	case a.Target != b.Target:
		if a.Target < b.Target {
			return -1
		}
		return 1
	}
	return 0
}

func keysOf(m map[Key]frame.Route) []Key {
	out := make([]Key, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, compareKeys)
	return out
}

// Entry is a key with its best route.
type Entry struct {
	Key  Key  // the destination
	Best Best // the route to it
}

// Entries returns every key with its best route, sorted by key.
func (t *Table) Entries() []Entry {
	out := make([]Entry, 0, len(t.best))
	for k, b := range t.best {
		out = append(out, Entry{k, b})
	}
	slices.SortFunc(out, func(a, b Entry) int { return compareKeys(a.Key, b.Key) })
	return out
}
