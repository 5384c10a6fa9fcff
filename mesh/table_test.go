package mesh

import (
	"slices"
	"testing"

	"github.com/yomo-dev/yomo/frame"
)

var (
	fnUpper    = fnKey(0x10, "uppercase", "")
	fnTargeted = fnKey(0x10, "uppercase", "eu")
)

type edge struct {
	a, b   string
	ab, ba uint32 // cost at a's end, at b's end
}

type placement struct {
	at  string
	key Key
}

// want is an expectation on one zipper's route to one key.
type want struct {
	at   string
	key  Key
	none bool   // no route at all
	via  string // "" = local
	cost uint32
	path []string // nil: not checked
}

type step struct {
	name string
	do   func(s *sim)
	want []want
}

type topology struct {
	name    string
	zippers []string
	links   []edge
	locals  []placement
	want    []want // once the initial mesh settled
	steps   []step
}

func (w want) check(t *testing.T, s *sim) {
	t.Helper()
	b, ok := s.tables[w.at].Best(w.key)
	if w.none {
		if ok {
			t.Errorf("%s -> %v: route %+v, want none", w.at, w.key, b)
		}
		return
	}
	if !ok {
		t.Errorf("%s -> %v: no route, want via %q cost %d", w.at, w.key, w.via, w.cost)
		return
	}
	if b.Via != w.via || b.Cost != w.cost || (w.path != nil && !slices.Equal(b.Path, w.path)) {
		t.Errorf("%s -> %v: via %q cost %d path %v; want via %q cost %d path %v",
			w.at, w.key, b.Via, b.Cost, b.Path, w.via, w.cost, w.path)
	}
}

// asym builds the edges of a full mesh from a cost matrix given per end.
func asym(names []string, cost map[[2]string]uint32) []edge {
	var out []edge
	for i, a := range names {
		for _, b := range names[i+1:] {
			out = append(out, edge{a, b, cost[[2]string{a, b}], cost[[2]string{b, a}]})
		}
	}
	return out
}

var topologies = []topology{
	{
		name:    "chain A-B-C",
		zippers: []string{"A", "B", "C"},
		links:   []edge{{"A", "B", 10, 10}, {"B", "C", 20, 20}},
		locals:  []placement{{"C", fnUpper}},
		want: []want{
			{at: "A", key: fnUpper, via: "B", cost: 30, path: []string{"C", "B"}},
			{at: "B", key: fnUpper, via: "C", cost: 20, path: []string{"C"}},
			{at: "C", key: fnUpper, via: "", cost: 0, path: []string{"C"}},
			{at: "A", key: zipperKey("C"), via: "B", cost: 30, path: []string{"C", "B"}},
			{at: "C", key: zipperKey("A"), via: "B", cost: 30, path: []string{"A", "B"}},
			{at: "A", key: fnTargeted, none: true},
		},
		steps: []step{{
			name: "withdraw at C",
			do:   func(s *sim) { s.removeLocal("C", fnUpper) },
			want: []want{
				{at: "A", key: fnUpper, none: true},
				{at: "B", key: fnUpper, none: true},
				{at: "C", key: fnUpper, none: true},
				{at: "A", key: zipperKey("C"), via: "B", cost: 30},
			},
		}, {
			name: "add again at C",
			do:   func(s *sim) { s.addLocal("C", fnUpper) },
			want: []want{{at: "A", key: fnUpper, via: "B", cost: 30, path: []string{"C", "B"}}},
		}},
	},
	{
		name:    "ring A-B-C-D-A",
		zippers: []string{"A", "B", "C", "D"},
		links:   []edge{{"A", "B", 1, 1}, {"B", "C", 1, 1}, {"C", "D", 10, 10}, {"D", "A", 10, 10}},
		locals:  []placement{{"C", fnUpper}},
		want: []want{
			{at: "A", key: fnUpper, via: "B", cost: 2, path: []string{"C", "B"}},
			{at: "D", key: fnUpper, via: "C", cost: 10, path: []string{"C"}},
			{at: "D", key: zipperKey("B"), via: "A", cost: 11, path: []string{"B", "A"}},
		},
		steps: []step{{
			name: "cut A-B",
			do:   func(s *sim) { s.linkDown("A", "B") },
			want: []want{
				{at: "A", key: fnUpper, via: "D", cost: 20, path: []string{"C", "D"}},
				{at: "B", key: zipperKey("A"), via: "C", cost: 21, path: []string{"A", "D", "C"}},
			},
		}, {
			name: "cut C-D as well",
			do:   func(s *sim) { s.linkDown("C", "D") },
			want: []want{
				{at: "A", key: fnUpper, none: true},
				{at: "D", key: fnUpper, none: true},
				{at: "D", key: zipperKey("A"), via: "A", cost: 10},
			},
		}, {
			name: "heal A-B",
			do:   func(s *sim) { s.linkUp("A", "B", 1, 1) },
			want: []want{
				{at: "A", key: fnUpper, via: "B", cost: 2, path: []string{"C", "B"}},
				{at: "D", key: fnUpper, via: "A", cost: 12, path: []string{"C", "B", "A"}},
			},
		}},
	},
	{
		name:    "full mesh of 5 with asymmetric costs",
		zippers: []string{"A", "B", "C", "D", "E"},
		links: asym([]string{"A", "B", "C", "D", "E"}, map[[2]string]uint32{
			{"A", "B"}: 10, {"B", "A"}: 50,
			{"A", "C"}: 40, {"C", "A"}: 5,
			{"A", "D"}: 30, {"D", "A"}: 30,
			{"A", "E"}: 100, {"E", "A"}: 1,
			{"B", "C"}: 10, {"C", "B"}: 60,
			{"B", "D"}: 70, {"D", "B"}: 15,
			{"B", "E"}: 50, {"E", "B"}: 2,
			{"C", "D"}: 5, {"D", "C"}: 80,
			{"C", "E"}: 30, {"E", "C"}: 3,
			{"D", "E"}: 45, {"E", "D"}: 4,
		}),
		locals: []placement{{"E", fnUpper}},
		want: []want{
			// A: direct 100, via D 75, via C 70, via B then C 50.
			{at: "A", key: fnUpper, via: "B", cost: 50, path: []string{"E", "C", "B"}},
			{at: "B", key: fnUpper, via: "C", cost: 40, path: []string{"E", "C"}},
			{at: "C", key: fnUpper, via: "E", cost: 30},
			{at: "D", key: fnUpper, via: "E", cost: 45},
			// The other way the costs differ: E reaches A directly for 1.
			{at: "E", key: zipperKey("A"), via: "A", cost: 1},
			{at: "B", key: zipperKey("A"), via: "C", cost: 15, path: []string{"A", "C"}},
			// D -> A: direct 30 ties with D-B-C-A 30; the shorter path wins.
			{at: "D", key: zipperKey("A"), via: "A", cost: 30, path: []string{"A"}},
		},
		steps: []step{{
			name: "C-E gets expensive at C",
			do:   func(s *sim) { s.setCost("C", "E", 200) },
			want: []want{
				{at: "C", key: fnUpper, via: "D", cost: 50, path: []string{"E", "D"}},
				{at: "B", key: fnUpper, via: "E", cost: 50},
				{at: "A", key: fnUpper, via: "B", cost: 60, path: []string{"E", "B"}},
			},
		}, {
			name: "E leaves",
			do: func(s *sim) {
				for _, n := range []string{"A", "B", "C", "D"} {
					s.linkDown(n, "E")
				}
			},
			want: []want{
				{at: "A", key: fnUpper, none: true},
				{at: "A", key: zipperKey("E"), none: true},
				{at: "E", key: zipperKey("A"), none: true},
			},
		}},
	},
	{
		name:    "nearest of two instances",
		zippers: []string{"A", "B", "C"},
		links:   []edge{{"A", "B", 5, 5}, {"B", "C", 3, 3}},
		locals:  []placement{{"A", fnUpper}, {"C", fnUpper}},
		want: []want{
			{at: "B", key: fnUpper, via: "C", cost: 3, path: []string{"C"}},
			{at: "A", key: fnUpper, via: "", cost: 0, path: []string{"A"}},
			{at: "C", key: fnUpper, via: "", cost: 0, path: []string{"C"}},
		},
		steps: []step{{
			name: "links get as cheap as possible: local still wins",
			do: func(s *sim) {
				s.setCost("A", "B", 1)
				s.setCost("C", "B", 0)
			},
			want: []want{
				{at: "A", key: fnUpper, via: "", cost: 0},
				{at: "C", key: fnUpper, via: "", cost: 0},
				{at: "B", key: fnUpper, via: "C", cost: 3},
			},
		}, {
			name: "B-A gets cheaper than B-C",
			do:   func(s *sim) { s.setCost("B", "A", 2) },
			want: []want{{at: "B", key: fnUpper, via: "A", cost: 2, path: []string{"A"}}},
		}, {
			name: "the instance at A goes",
			do:   func(s *sim) { s.removeLocal("A", fnUpper) },
			want: []want{
				{at: "B", key: fnUpper, via: "C", cost: 3},
				{at: "A", key: fnUpper, via: "B", cost: 4, path: []string{"C", "B"}},
			},
		}, {
			name: "a third instance at B",
			do:   func(s *sim) { s.addLocal("B", fnUpper) },
			want: []want{
				{at: "B", key: fnUpper, via: "", cost: 0},
				{at: "A", key: fnUpper, via: "B", cost: 1, path: []string{"B"}},
				{at: "C", key: fnUpper, via: "", cost: 0},
			},
		}},
	},
	{
		name:    "triangle cost change",
		zippers: []string{"A", "B", "C"},
		links:   []edge{{"A", "B", 1, 1}, {"B", "C", 1, 1}, {"A", "C", 5, 5}},
		locals:  []placement{{"C", fnUpper}},
		want:    []want{{at: "A", key: fnUpper, via: "B", cost: 2, path: []string{"C", "B"}}},
		steps: []step{{
			name: "A-B expensive",
			do:   func(s *sim) { s.setCost("A", "B", 10) },
			want: []want{{at: "A", key: fnUpper, via: "C", cost: 5, path: []string{"C"}}},
		}, {
			name: "A-B cheap again",
			do:   func(s *sim) { s.setCost("A", "B", 1) },
			want: []want{{at: "A", key: fnUpper, via: "B", cost: 2, path: []string{"C", "B"}}},
		}, {
			name: "B-C expensive: B goes round through A",
			do:   func(s *sim) { s.setCost("B", "C", 1000) },
			want: []want{
				{at: "B", key: fnUpper, via: "A", cost: 6, path: []string{"C", "A"}},
				{at: "A", key: fnUpper, via: "C", cost: 5, path: []string{"C"}},
				// Only B's end changed: C still reaches B for 1.
				{at: "C", key: zipperKey("B"), via: "B", cost: 1},
			},
		}},
	},
	{
		// C reaches F over two equal-cost branches, E and G. Losing E
		// changes only the paths (not the costs or next hops) of B and A,
		// and they must still learn the new paths.
		name:    "diamond C-E-F / C-G-F behind A-B-C",
		zippers: []string{"A", "B", "C", "E", "F", "G"},
		links: []edge{
			{"A", "B", 1, 1}, {"B", "C", 1, 1},
			{"C", "E", 1, 1}, {"E", "F", 1, 1}, {"C", "G", 1, 1}, {"G", "F", 1, 1},
		},
		locals: []placement{{"F", fnUpper}},
		want: []want{
			{at: "C", key: fnUpper, via: "E", cost: 2, path: []string{"F", "E"}},
			{at: "A", key: fnUpper, via: "B", cost: 4, path: []string{"F", "E", "C", "B"}},
		},
		steps: []step{{
			name: "cut C-E",
			do:   func(s *sim) { s.linkDown("C", "E") },
			want: []want{
				{at: "C", key: fnUpper, via: "G", cost: 2, path: []string{"F", "G"}},
				{at: "B", key: fnUpper, via: "C", cost: 3, path: []string{"F", "G", "C"}},
				{at: "A", key: fnUpper, via: "B", cost: 4, path: []string{"F", "G", "C", "B"}},
			},
		}, {
			name: "G's side gets dearer at C only",
			do:   func(s *sim) { s.linkUp("C", "E", 1, 1); s.setCost("C", "G", 5) },
			want: []want{
				{at: "A", key: fnUpper, via: "B", cost: 4, path: []string{"F", "E", "C", "B"}},
			},
		}},
	},
	{
		name:    "partition and heal A-B | C-D",
		zippers: []string{"A", "B", "C", "D"},
		links:   []edge{{"A", "B", 1, 1}, {"B", "C", 1, 1}, {"C", "D", 1, 1}},
		locals:  []placement{{"D", fnUpper}, {"A", fnTargeted}},
		want: []want{
			{at: "A", key: fnUpper, via: "B", cost: 3, path: []string{"D", "C", "B"}},
			{at: "D", key: fnTargeted, via: "C", cost: 3, path: []string{"A", "B", "C"}},
		},
		steps: []step{{
			name: "cut B-C",
			do:   func(s *sim) { s.linkDown("B", "C") },
			want: []want{
				{at: "A", key: fnUpper, none: true},
				{at: "B", key: fnUpper, none: true},
				{at: "A", key: zipperKey("C"), none: true},
				{at: "A", key: zipperKey("D"), none: true},
				{at: "D", key: fnTargeted, none: true},
				{at: "D", key: zipperKey("A"), none: true},
				{at: "A", key: zipperKey("B"), via: "B", cost: 1},
				{at: "C", key: fnUpper, via: "D", cost: 1},
			},
		}, {
			name: "changes while partitioned",
			do: func(s *sim) {
				s.removeLocal("D", fnUpper)
				s.addLocal("C", fnUpper)
			},
			want: []want{{at: "D", key: fnUpper, via: "C", cost: 1}},
		}, {
			name: "heal B-C at a new cost",
			do:   func(s *sim) { s.linkUp("B", "C", 7, 2) },
			want: []want{
				{at: "A", key: fnUpper, via: "B", cost: 8, path: []string{"C", "B"}},
				{at: "D", key: fnTargeted, via: "C", cost: 4, path: []string{"A", "B", "C"}},
				{at: "D", key: fnUpper, via: "C", cost: 1},
			},
		}},
	},
}

func TestTopologies(t *testing.T) {
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.zippers...)
			for _, e := range tc.links {
				s.linkUp(e.a, e.b, e.ab, e.ba)
			}
			for _, p := range tc.locals {
				s.addLocal(p.at, p.key)
			}
			s.settle()
			for _, w := range tc.want {
				w.check(t, s)
			}
			for _, st := range tc.steps {
				if t.Failed() {
					return
				}
				st.do(s)
				s.settle()
				for _, w := range st.want {
					t.Run(st.name, func(t *testing.T) { w.check(t, s) })
				}
			}
		})
	}
}

// TestTopologiesUnsettled applies every topology's steps without letting
// the mesh settle in between (and with interleaved delivery), then checks
// the final state against the reference.
func TestTopologiesUnsettled(t *testing.T) {
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(20) {
				s := newSim(t, tc.zippers...)
				if seed > 0 {
					s.rng = randFor(seed)
				}
				for _, e := range tc.links {
					s.linkUp(e.a, e.b, e.ab, e.ba)
				}
				for _, p := range tc.locals {
					s.addLocal(p.at, p.key)
				}
				for _, st := range tc.steps {
					st.do(s)
				}
				s.settle()
				if last := len(tc.steps) - 1; last >= 0 {
					for _, w := range tc.steps[last].want {
						w.check(t, s)
					}
				}
			}
		})
	}
}

// --- a single table -------------------------------------------------------

func route(k Key, cost uint32, path ...string) frame.Route {
	return frame.Route{Kind: k.Kind, Tag: k.Tag, Name: k.Name, Target: k.Target, Cost: cost, Path: path}
}

func withdrawal(k Key, from string) frame.Route {
	r := route(k, 0, from)
	r.Withdraw = true
	return r
}

func mustBest(t *testing.T, tb *Table, k Key, via string, cost uint32, path ...string) {
	t.Helper()
	b, ok := tb.Best(k)
	if !ok || b.Via != via || b.Cost != cost || !slices.Equal(b.Path, path) {
		t.Fatalf("%s -> %v: %+v (%v); want via %q cost %d path %v", tb.Self(), k, b, ok, via, cost, path)
	}
}

func mustNone(t *testing.T, tb *Table, k Key) {
	t.Helper()
	if b, ok := tb.Best(k); ok {
		t.Fatalf("%s -> %v: %+v, want no route", tb.Self(), k, b)
	}
}

func TestLearnRouteThroughSelf(t *testing.T) {
	tests := []struct {
		name    string
		learned []frame.Route // from B, before the looping route
		loop    frame.Route   // from B, with A on its path
		changes int           // what the looping route changes
	}{
		{"replaces B's route: withdrawal", []frame.Route{route(fnUpper, 3, "C", "B")}, route(fnUpper, 1, "A", "B"), 1},
		{"self in the middle", []frame.Route{route(fnUpper, 3, "C", "B")}, route(fnUpper, 9, "C", "A", "B"), 1},
		{"self at the origin", []frame.Route{route(fnUpper, 3, "C", "B")}, route(fnUpper, 9, "A", "D", "B"), 1},
		{"nothing learned before: no-op", nil, route(fnUpper, 1, "A", "B"), 0},
		{"another key learned: untouched", []frame.Route{route(fnTargeted, 3, "C", "B")}, route(fnUpper, 1, "A", "B"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New("A")
			tb.LinkUp("B", 5)
			tb.LinkUp("D", 50)
			tb.Learn("D", []frame.Route{route(fnTargeted, 1, "C", "D")})
			if got := tb.Learn("B", tc.learned); len(got) != len(tc.learned) {
				t.Fatalf("learning %v: %d changes", tc.learned, len(got))
			}
			got := tb.Learn("B", []frame.Route{tc.loop})
			if len(got) != tc.changes {
				t.Fatalf("looping route: changes %+v, want %d", got, tc.changes)
			}
			mustNone(t, tb, fnUpper)
			if tc.changes == 1 && (!got[0].Removed || got[0].Key != fnUpper) {
				t.Fatalf("change %+v, want fnUpper removed", got[0])
			}
			// What D advertised is untouched; B's fnTargeted too, when learned.
			if slices.ContainsFunc(tc.learned, func(r frame.Route) bool { return keyOf(r) == fnTargeted }) {
				mustBest(t, tb, fnTargeted, "B", 8, "C", "B")
			} else {
				mustBest(t, tb, fnTargeted, "D", 51, "C", "D")
			}
		})
	}
}

func TestLearnLoopFallsBackToOtherNeighbour(t *testing.T) {
	tb := New("A")
	tb.LinkUp("B", 1)
	tb.LinkUp("D", 10)
	tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")})
	tb.Learn("D", []frame.Route{route(fnUpper, 1, "C", "D")})
	mustBest(t, tb, fnUpper, "B", 2, "C", "B")
	got := tb.Learn("B", []frame.Route{route(fnUpper, 2, "C", "D", "A", "B")})
	if len(got) != 1 || got[0].Removed {
		t.Fatalf("changes %+v", got)
	}
	mustBest(t, tb, fnUpper, "D", 11, "C", "D")
}

func TestNoOps(t *testing.T) {
	newTable := func() *Table {
		tb := New("A")
		tb.AddLocal(zipperKey("A"))
		tb.LinkUp("B", 5)
		tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")})
		return tb
	}
	tests := []struct {
		name string
		do   func(tb *Table) []Change // returns the changes of the no-op call
	}{
		{"withdraw unknown key", func(tb *Table) []Change { return tb.Learn("B", []frame.Route{withdrawal(fnTargeted, "B")}) }},
		{"withdraw from unknown peer", func(tb *Table) []Change { return tb.Learn("X", []frame.Route{withdrawal(fnUpper, "X")}) }},
		{"withdraw twice", func(tb *Table) []Change {
			if got := tb.Learn("B", []frame.Route{withdrawal(fnUpper, "B")}); len(got) != 1 || !got[0].Removed {
				t.Fatalf("first withdrawal: %+v", got)
			}
			got := tb.Learn("B", []frame.Route{withdrawal(fnUpper, "B")})
			tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")}) // as before, for the comparison
			return got
		}},
		{"remove unknown local", func(tb *Table) []Change { return tb.RemoveLocal(fnTargeted) }},
		{"remove local that is remote", func(tb *Table) []Change { return tb.RemoveLocal(fnUpper) }},
		{"link down unknown", func(tb *Table) []Change { return tb.LinkDown("X") }},
		{"set cost of down link", func(tb *Table) []Change { return tb.SetCost("X", 1) }},
		{"set same cost", func(tb *Table) []Change { return tb.SetCost("B", 5) }},
		{"learn same route again", func(tb *Table) []Change { return tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")}) }},
		{"learn empty", func(tb *Table) []Change { return tb.Learn("B", nil) }},
		{"learn worse from down peer", func(tb *Table) []Change { return tb.Learn("D", []frame.Route{route(fnUpper, 1, "C", "D")}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable()
			before := tb.Adverts()
			if got := tc.do(tb); len(got) != 0 {
				t.Fatalf("changes %+v, want none", got)
			}
			if !slices.EqualFunc(before, tb.Adverts(), routesEqual) {
				t.Fatalf("table changed: %+v -> %+v", before, tb.Adverts())
			}
			if _, ok := tb.Cost("X"); ok {
				t.Fatal("SetCost brought a down link up")
			}
		})
	}
}

func routesEqual(a, b frame.Route) bool {
	return keyOf(a) == keyOf(b) && a.Cost == b.Cost && a.Withdraw == b.Withdraw && slices.Equal(a.Path, b.Path)
}

func TestDuplicateAddLocal(t *testing.T) {
	tb := New("A")
	tb.LinkUp("B", 3)
	tb.Learn("B", []frame.Route{route(fnUpper, 4, "C", "B")})
	if got := tb.AddLocal(fnUpper); len(got) != 1 || got[0].Best.Via != "" {
		t.Fatalf("first AddLocal: %+v", got)
	}
	if got := tb.AddLocal(fnUpper); len(got) != 0 {
		t.Fatalf("second AddLocal: %+v, want no change", got)
	}
	if got := tb.RemoveLocal(fnUpper); len(got) != 0 {
		t.Fatalf("first RemoveLocal: %+v, want no change", got)
	}
	mustBest(t, tb, fnUpper, "", 0, "A")
	got := tb.RemoveLocal(fnUpper)
	if len(got) != 1 || got[0].Removed || got[0].Best.Via != "B" {
		t.Fatalf("last RemoveLocal: %+v, want the route via B", got)
	}
	mustBest(t, tb, fnUpper, "B", 7, "C", "B")
	if got := tb.RemoveLocal(fnUpper); len(got) != 0 {
		t.Fatalf("RemoveLocal below zero: %+v", got)
	}
	// The count does not go negative: one AddLocal makes it local again.
	if got := tb.AddLocal(fnUpper); len(got) != 1 {
		t.Fatalf("AddLocal after underflow: %+v", got)
	}
	mustBest(t, tb, fnUpper, "", 0, "A")
}

func TestDuplicateAddLocalMesh(t *testing.T) {
	s := newSim(t, "A", "B")
	s.linkUp("A", "B", 4, 4)
	s.addLocal("B", fnUpper)
	s.addLocal("B", fnUpper)
	s.settle()
	s.removeLocal("B", fnUpper)
	s.settle()
	want{at: "A", key: fnUpper, via: "B", cost: 4}.check(t, s)
	s.removeLocal("B", fnUpper)
	s.settle()
	want{at: "A", key: fnUpper, none: true}.check(t, s)
}

func TestAdvert(t *testing.T) {
	tb := New("A")
	tb.LinkUp("B", 3)
	local := tb.AddLocal(fnUpper)
	learned := tb.Learn("B", []frame.Route{route(fnTargeted, 4, "C", "B")})
	removed := tb.LinkDown("B")
	if len(local) != 1 || len(learned) != 1 || len(removed) != 1 {
		t.Fatalf("changes %v %v %v", local, learned, removed)
	}
	tests := []struct {
		name string
		c    Change
		want frame.Route
	}{
		{"local", local[0], frame.Route{Kind: frame.RouteFunction, Tag: 0x10, Name: "uppercase", Cost: 0, Path: []string{"A"}}},
		{"learned", learned[0], frame.Route{Kind: frame.RouteFunction, Tag: 0x10, Name: "uppercase", Target: "eu", Cost: 7, Path: []string{"C", "B", "A"}}},
		{"removed", removed[0], frame.Route{Kind: frame.RouteFunction, Tag: 0x10, Name: "uppercase", Target: "eu", Path: []string{"A"}, Withdraw: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tb.Advert(tc.c); !routesEqual(got, tc.want) {
				t.Fatalf("Advert = %+v, want %+v", got, tc.want)
			}
		})
	}
	// Advert does not touch the change's path.
	if !slices.Equal(learned[0].Best.Path, []string{"C", "B"}) {
		t.Fatalf("Advert modified the change: %v", learned[0].Best.Path)
	}
}

func TestAdvertsSortedAndComplete(t *testing.T) {
	tb := New("M")
	tb.AddLocal(zipperKey("M"))
	tb.AddLocal(fnKey(2, "b", ""))
	tb.AddLocal(fnKey(1, "b", "x"))
	tb.AddLocal(fnKey(1, "b", ""))
	tb.AddLocal(fnKey(1, "a", ""))
	tb.LinkUp("N", 2)
	tb.Learn("N", []frame.Route{route(zipperKey("N"), 0, "N"), route(fnKey(9, "z", ""), 5, "Q", "N")})
	got := tb.Adverts()
	var keys []Key
	for _, r := range got {
		keys = append(keys, keyOf(r))
	}
	want := []Key{
		fnKey(1, "a", ""), fnKey(1, "b", ""), fnKey(1, "b", "x"), fnKey(2, "b", ""), fnKey(9, "z", ""),
		zipperKey("M"), zipperKey("N"),
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("Adverts keys %v\nwant %v", keys, want)
	}
	if r := got[4]; r.Cost != 7 || !slices.Equal(r.Path, []string{"Q", "N", "M"}) {
		t.Fatalf("learned advert %+v", r)
	}
	if len(New("X").Adverts()) != 0 {
		t.Fatal("an empty table advertises")
	}
}

func TestTieBreak(t *testing.T) {
	tests := []struct {
		name   string
		routes map[string]frame.Route // neighbour -> its advert; every link costs 1
		via    string
	}{
		{"lower cost", map[string]frame.Route{"B": route(fnUpper, 5, "Z", "B"), "C": route(fnUpper, 4, "Y", "X", "C")}, "C"},
		{"equal cost, shorter path", map[string]frame.Route{"B": route(fnUpper, 4, "Z", "Y", "B"), "C": route(fnUpper, 4, "Z", "C")}, "C"},
		{"equal cost and length, lower name", map[string]frame.Route{"C": route(fnUpper, 4, "Z", "C"), "B": route(fnUpper, 4, "Y", "B")}, "B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Whatever order the links come up and the routes arrive in.
			for _, order := range [][]string{{"B", "C"}, {"C", "B"}} {
				tb := New("A")
				for _, n := range order {
					tb.LinkUp(n, 1)
				}
				for _, n := range order {
					tb.Learn(n, []frame.Route{tc.routes[n]})
				}
				if b, _ := tb.Best(fnUpper); b.Via != tc.via {
					t.Fatalf("order %v: via %q, want %q", order, b.Via, tc.via)
				}
			}
		})
	}
}

func TestLinkCosts(t *testing.T) {
	tb := New("A")
	tb.LinkUp("B", 0)
	if c, ok := tb.Cost("B"); !ok || c != 1 {
		t.Fatalf("LinkUp cost 0: %d %v, want 1", c, ok)
	}
	tb.Learn("B", []frame.Route{route(fnUpper, ^uint32(0)-1, "C", "B")})
	mustBest(t, tb, fnUpper, "B", ^uint32(0), "C", "B")
	if got := tb.SetCost("B", 10); len(got) != 0 {
		t.Fatalf("saturated cost changed: %+v", got)
	}
	tb.SetCost("B", 0)
	if c, _ := tb.Cost("B"); c != 1 {
		t.Fatalf("SetCost 0: %d, want 1", c)
	}
	tb.LinkDown("B")
	if _, ok := tb.Cost("B"); ok {
		t.Fatal("Cost of a down link")
	}
	if tb.Self() != "A" {
		t.Fatalf("Self %q", tb.Self())
	}
}

func TestLinkDownForgetsLearned(t *testing.T) {
	tb := New("A")
	tb.LinkUp("B", 1)
	tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B"), route(zipperKey("B"), 0, "B")})
	got := tb.LinkDown("B")
	if len(got) != 2 || !got[0].Removed || !got[1].Removed {
		t.Fatalf("LinkDown changes %+v", got)
	}
	if got := tb.LinkUp("B", 1); len(got) != 0 {
		t.Fatalf("LinkUp resurrected %+v", got)
	}
	mustNone(t, tb, fnUpper)
}

func TestLearnDropsInvalidPaths(t *testing.T) {
	long := make([]string, frame.MaxListEntries+1)
	for i := range long {
		long[i] = string(rune('a' + i%26))
	}
	tb := New("A")
	tb.LinkUp("B", 1)
	tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")})
	if got := tb.Learn("B", []frame.Route{route(fnUpper, 1)}); len(got) != 1 || !got[0].Removed {
		t.Fatalf("empty path: %+v", got)
	}
	tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")})
	if got := tb.Learn("B", []frame.Route{route(fnUpper, 1, long...)}); len(got) != 1 || !got[0].Removed {
		t.Fatalf("path over MaxListEntries: %+v", got)
	}
	if got := tb.Learn("B", []frame.Route{route(fnUpper, 1, long[:frame.MaxListEntries]...)}); len(got) != 1 || got[0].Removed {
		t.Fatalf("path of MaxListEntries: %+v", got)
	}
}

func TestLearnCopiesInput(t *testing.T) {
	tb := New("A")
	tb.LinkUp("B", 1)
	in := []frame.Route{route(fnUpper, 1, "C", "B")}
	tb.Learn("B", in)
	in[0].Path[0] = "A" // the caller reuses its buffer
	in[0].Cost = 100
	mustBest(t, tb, fnUpper, "B", 2, "C", "B")
}

// TestLearnBeforeLinkUp: an end may receive its neighbour's table before
// its own LinkUp (the neighbour's first round trip completed first). The
// routes are kept and selected at LinkUp; the neighbour does not send them
// again.
func TestLearnBeforeLinkUp(t *testing.T) {
	tb := New("A")
	if got := tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")}); len(got) != 0 {
		t.Fatalf("Learn before LinkUp: %+v", got)
	}
	mustNone(t, tb, fnUpper)
	if got := tb.LinkUp("B", 2); len(got) != 1 || got[0].Best.Via != "B" {
		t.Fatalf("LinkUp: %+v", got)
	}
	mustBest(t, tb, fnUpper, "B", 3, "C", "B")
}

// TestLinkDownBeforeLinkUp: LinkDown forgets what was learned over a link
// even when this end never called LinkUp, so that a later link to the
// same neighbour starts clean. An owner must therefore call LinkDown for
// every lost link it fed to Learn, up or not.
func TestLinkDownBeforeLinkUp(t *testing.T) {
	tb := New("A")
	tb.Learn("B", []frame.Route{route(fnUpper, 1, "C", "B")})
	if got := tb.LinkDown("B"); len(got) != 0 {
		t.Fatalf("LinkDown of a link never up: %+v", got)
	}
	if got := tb.LinkUp("B", 2); len(got) != 0 {
		t.Fatalf("LinkUp brought back %+v", got)
	}
	mustNone(t, tb, fnUpper)
}

// TestHalfOpenLinkLost: A's end of A-B comes up and B learns A's table,
// but the link is lost before B's LinkUp. The function at A goes away
// meanwhile. Once a new link comes up nothing of the first one survives.
func TestHalfOpenLinkLost(t *testing.T) {
	s := newSim(t, "A", "B", "C")
	s.linkUp("B", "C", 1, 1)
	s.addLocal("A", fnUpper)
	s.settle()
	l := s.open("A", "B")
	l.upAt["A"], l.cost["A"] = true, 1
	s.broadcast("A", s.tables["A"].LinkUp("B", 1))
	s.send("A", "B", s.tables["A"].Adverts())
	s.run()
	if s.early == 0 {
		t.Fatal("B learned nothing before its LinkUp")
	}
	s.linkDown("A", "B") // LinkDown at both ends, though B never called LinkUp
	s.removeLocal("A", fnUpper)
	s.settle()
	s.linkUp("A", "B", 1, 1)
	s.settle()
	want{at: "B", key: fnUpper, none: true}.check(t, s)
	want{at: "C", key: zipperKey("A"), via: "B", cost: 2}.check(t, s)
}

func TestEntries(t *testing.T) {
	s := newSim(t, "A", "B", "C")
	s.linkUp("A", "B", 2, 2)
	s.linkUp("B", "C", 3, 3)
	s.addLocal("C", fnUpper)
	s.addLocal("A", fnTargeted)
	s.settle()
	for _, z := range s.names {
		tb := s.tables[z]
		entries := tb.Entries()
		adverts := tb.Adverts()
		if len(entries) != len(adverts) {
			t.Fatalf("%s: %d entries, %d adverts", z, len(entries), len(adverts))
		}
		for i, e := range entries {
			if e.Key != keyOf(adverts[i]) {
				t.Fatalf("%s: entry %d is %v, advert %v", z, i, e.Key, keyOf(adverts[i]))
			}
			if b, ok := tb.Best(e.Key); !ok || !sameBest(b, e.Best) {
				t.Fatalf("%s: entry %+v, Best %+v", z, e, b)
			}
		}
	}
	if len(New("X").Entries()) != 0 {
		t.Fatal("entries in an empty table")
	}
}
