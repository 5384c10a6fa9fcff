package mesh

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/yomo-dev/yomo/frame"
)

// This file holds a deterministic, in-memory mesh simulator used by the
// table tests and by FuzzMeshConverges. It drives a set of Tables the way
// a zipper drives its own: every Change is turned into an Advert and sent
// to every neighbour whose link is up; when a link comes up, both ends
// send their full table (Adverts) to each other. Messages travel through
// one FIFO queue; a message sent over a link that has since gone down (or
// gone down and come up again) is lost, as frames in flight on a broken
// QUIC connection are.

// defaultStepBound bounds the messages one run may deliver. Path-vector
// routing over at most a handful of zippers settles in far fewer; a run
// that exceeds it is counting to infinity or oscillating.
const defaultStepBound = 50_000

// infCost marks an unreachable destination in the reference computation.
const infCost = math.MaxUint64

type simMsg struct {
	from, to string
	epoch    int // the link incarnation the message was sent on
	routes   []frame.Route
}

// simLink is the link between two zippers. It is open from the moment the
// connection exists until it is lost; each end calls LinkUp when it sees
// the link come up, which need not be at the same time (an end may learn
// routes over an open link before its own LinkUp).
type simLink struct {
	open  bool
	upAt  map[string]bool   // the ends that called LinkUp
	epoch int               // incremented whenever the link opens
	cost  map[string]uint32 // cost as configured at each end
}

func (l *simLink) up() bool {
	if !l.open {
		return false
	}
	n := 0
	for _, u := range l.upAt {
		if u {
			n++
		}
	}
	return n == 2
}

type linkID struct{ a, b string } // a < b

func mkLinkID(x, y string) linkID {
	if x > y {
		x, y = y, x
	}
	return linkID{x, y}
}

type sim struct {
	t      testing.TB
	names  []string // sorted
	tables map[string]*Table
	links  map[linkID]*simLink
	local  map[string]map[Key]int // the simulator's own view of local counts
	keys   map[Key]bool           // every key ever made local somewhere
	queue  []simMsg

	// bound is the number of deliveries one run may make (defaultStepBound
	// when 0).
	bound int
	// rng, when set, picks which link's queue head is delivered next
	// (per-direction FIFO order is always kept, as on a QUIC stream);
	// nil means one global FIFO.
	rng *rand.Rand

	// statistics
	delivered int // messages delivered (all runs)
	dropped   int // messages lost to a down link
	early     int // messages learned before the receiver's own LinkUp
	maxRun    int // most deliveries in one run
	log       []string
}

// newSim returns a simulator of tables named names, each with its own
// zipper key local.
func newSim(t testing.TB, names ...string) *sim {
	t.Helper()
	s := &sim{
		t:      t,
		names:  slices.Sorted(slices.Values(names)),
		tables: make(map[string]*Table),
		links:  make(map[linkID]*simLink),
		local:  make(map[string]map[Key]int),
		keys:   make(map[Key]bool),
	}
	for _, n := range s.names {
		if _, dup := s.tables[n]; dup {
			t.Fatalf("sim: duplicate zipper %q", n)
		}
		s.tables[n] = New(n)
		s.local[n] = make(map[Key]int)
		s.addLocal(n, zipperKey(n))
	}
	return s
}

func zipperKey(name string) Key { return Key{Kind: frame.RouteZipper, Name: name} }

func fnKey(tag uint32, name, target string) Key {
	return Key{Kind: frame.RouteFunction, Tag: tag, Name: name, Target: target}
}

func (s *sim) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf(format, args...))
}

func (s *sim) table(name string) *Table {
	tb, ok := s.tables[name]
	if !ok {
		s.t.Fatalf("sim: no zipper %q", name)
	}
	return tb
}

func (s *sim) link(a, b string) *simLink {
	s.table(a)
	s.table(b)
	if a == b {
		s.t.Fatalf("sim: link from %q to itself", a)
	}
	id := mkLinkID(a, b)
	l := s.links[id]
	if l == nil {
		l = &simLink{upAt: make(map[string]bool), cost: make(map[string]uint32)}
		s.links[id] = l
	}
	return l
}

func (s *sim) isUp(a, b string) bool {
	l := s.links[mkLinkID(a, b)]
	return l != nil && l.up()
}

// neighbours returns the zippers z advertises to: those whose link is up
// at z's end, sorted.
func (s *sim) neighbours(z string) []string {
	var out []string
	for _, n := range s.names {
		if l := s.links[mkLinkID(z, n)]; n != z && l != nil && l.open && l.upAt[z] {
			out = append(out, n)
		}
	}
	return out
}

// send queues routes from one zipper to another over their current link.
func (s *sim) send(from, to string, routes []frame.Route) {
	if len(routes) == 0 {
		return
	}
	l := s.links[mkLinkID(from, to)]
	// Deep copy: what is on the wire is independent of both tables.
	cp := make([]frame.Route, len(routes))
	for i, r := range routes {
		r.Path = slices.Clone(r.Path)
		cp[i] = r
	}
	s.queue = append(s.queue, simMsg{from: from, to: to, epoch: l.epoch, routes: cp})
}

// broadcast checks the changes a table returned and sends their adverts
// to every up neighbour of from.
func (s *sim) broadcast(from string, changes []Change) {
	s.t.Helper()
	if len(changes) == 0 {
		return
	}
	tb := s.tables[from]
	routes := make([]frame.Route, 0, len(changes))
	for _, c := range changes {
		s.checkChange(from, c)
		routes = append(routes, tb.Advert(c))
	}
	for _, n := range s.neighbours(from) {
		s.send(from, n, routes)
	}
}

// checkChange verifies what must hold for every change at every moment,
// converged or not.
func (s *sim) checkChange(self string, c Change) {
	s.t.Helper()
	if c.Removed {
		if _, ok := s.tables[self].Best(c.Key); ok {
			s.t.Fatalf("%s: change removes %v but Best still has it", self, c.Key)
		}
		return
	}
	cur, ok := s.tables[self].Best(c.Key)
	if !ok || !sameBest(cur, c.Best) {
		s.t.Fatalf("%s: change %v = %+v, but Best is %+v (%v)", self, c.Key, c.Best, cur, ok)
	}
	if err := checkPath(self, c.Best); err != nil {
		s.t.Fatalf("%s: change for %v: %v", self, c.Key, err)
	}
}

// checkPath verifies a route's path: no repeated zipper, self only as the
// whole path of a local route, Via last.
func checkPath(self string, b Best) error {
	if len(b.Path) == 0 {
		return fmt.Errorf("empty path in %+v", b)
	}
	seen := make(map[string]bool, len(b.Path))
	for _, z := range b.Path {
		if seen[z] {
			return fmt.Errorf("path %v repeats %q", b.Path, z)
		}
		seen[z] = true
	}
	if b.Via == "" {
		if len(b.Path) != 1 || b.Path[0] != self || b.Cost != 0 {
			return fmt.Errorf("local route %+v, want cost 0 and path [%s]", b, self)
		}
		return nil
	}
	if seen[self] {
		return fmt.Errorf("path %v via %s contains self %q", b.Path, b.Via, self)
	}
	if b.Path[len(b.Path)-1] != b.Via {
		return fmt.Errorf("path %v does not end at via %q", b.Path, b.Via)
	}
	return nil
}

// linkUp brings the link a-b up, with cost ab at a's end and ba at b's
// end, and exchanges the full tables.
func (s *sim) linkUp(a, b string, ab, ba uint32) {
	s.t.Helper()
	l := s.open(a, b)
	s.logf("up %s-%s %d/%d", a, b, ab, ba)
	l.upAt[a], l.upAt[b] = true, true
	l.cost[a], l.cost[b] = max(ab, 1), max(ba, 1)
	s.broadcast(a, s.tables[a].LinkUp(b, ab))
	s.broadcast(b, s.tables[b].LinkUp(a, ba))
	s.send(a, b, s.tables[a].Adverts())
	s.send(b, a, s.tables[b].Adverts())
}

func (s *sim) open(a, b string) *simLink {
	s.t.Helper()
	l := s.link(a, b)
	if l.open {
		s.t.Fatalf("sim: link %s-%s already open", a, b)
	}
	l.open = true
	l.epoch++
	clear(l.upAt)
	return l
}

// linkUpStaggered brings the link a-b up at a's end first: a sends its
// table, and b learns it (and everything else in flight is delivered)
// before b calls LinkUp, as when a's first round trip completes before
// b's.
func (s *sim) linkUpStaggered(a, b string, ab, ba uint32) {
	s.t.Helper()
	l := s.open(a, b)
	s.logf("up %s-%s %d/%d (%s first)", a, b, ab, ba, a)
	l.upAt[a] = true
	l.cost[a] = max(ab, 1)
	s.broadcast(a, s.tables[a].LinkUp(b, ab))
	s.send(a, b, s.tables[a].Adverts())
	s.run()
	l.upAt[b] = true
	l.cost[b] = max(ba, 1)
	s.broadcast(b, s.tables[b].LinkUp(a, ba))
	s.send(b, a, s.tables[b].Adverts())
}

// linkDown takes the link a-b down at both ends.
func (s *sim) linkDown(a, b string) {
	s.t.Helper()
	l := s.link(a, b)
	if !l.open {
		s.t.Fatalf("sim: link %s-%s already down", a, b)
	}
	s.logf("down %s-%s", a, b)
	l.open = false
	clear(l.upAt)
	s.broadcast(a, s.tables[a].LinkDown(b))
	s.broadcast(b, s.tables[b].LinkDown(a))
}

// setCost changes the cost of the up link a-b as seen from a.
func (s *sim) setCost(a, b string, cost uint32) {
	s.t.Helper()
	l := s.link(a, b)
	if !l.up() {
		s.t.Fatalf("sim: setCost on down link %s-%s", a, b)
	}
	s.logf("cost %s->%s %d", a, b, cost)
	l.cost[a] = max(cost, 1)
	s.broadcast(a, s.tables[a].SetCost(b, cost))
}

func (s *sim) addLocal(z string, k Key) {
	s.t.Helper()
	s.logf("add %s %v", z, k)
	s.local[z][k]++
	s.keys[k] = true
	s.broadcast(z, s.table(z).AddLocal(k))
}

func (s *sim) removeLocal(z string, k Key) {
	s.t.Helper()
	s.logf("remove %s %v", z, k)
	if s.local[z][k] > 0 {
		s.local[z][k]--
	}
	s.broadcast(z, s.table(z).RemoveLocal(k))
}

// next removes the message to deliver next from the queue.
func (s *sim) next() simMsg {
	i := 0
	if s.rng != nil {
		// The heads of the per-direction queues.
		type dir struct{ from, to string }
		seen := make(map[dir]bool)
		var heads []int
		for j, m := range s.queue {
			d := dir{m.from, m.to}
			if !seen[d] {
				seen[d] = true
				heads = append(heads, j)
			}
		}
		i = heads[s.rng.IntN(len(heads))]
	}
	m := s.queue[i]
	s.queue = slices.Delete(s.queue, i, i+1)
	return m
}

// run delivers messages until none is left, and fails the test when that
// takes more than the step bound.
func (s *sim) run() int {
	s.t.Helper()
	bound := s.bound
	if bound == 0 {
		bound = defaultStepBound
	}
	steps := 0
	for len(s.queue) > 0 {
		if steps >= bound {
			s.t.Fatalf("sim: no quiescence after %d deliveries (count to infinity or oscillation); %d queued, head %+v\nhistory:\n%s",
				steps, len(s.queue), s.queue[0], strings.Join(s.log, "\n"))
		}
		m := s.next()
		l := s.links[mkLinkID(m.from, m.to)]
		if !l.open || l.epoch != m.epoch {
			s.dropped++
			continue
		}
		steps++
		s.delivered++
		if !l.upAt[m.to] {
			s.early++
		}
		s.broadcast(m.to, s.tables[m.to].Learn(m.from, m.routes))
	}
	s.maxRun = max(s.maxRun, steps)
	return steps
}

// dist returns, for key k, every zipper's least cost to a zipper where k
// is local, over the links that are up, computed independently of the
// tables (Floyd–Warshall on the directed cost graph: the cost of u->v is
// the one configured at u's end).
func (s *sim) dist(k Key) map[string]uint64 {
	n := len(s.names)
	idx := make(map[string]int, n)
	for i, z := range s.names {
		idx[z] = i
	}
	d := make([][]uint64, n)
	for i := range d {
		d[i] = make([]uint64, n)
		for j := range d[i] {
			if i != j {
				d[i][j] = infCost
			}
		}
	}
	for id, l := range s.links {
		if !l.up() {
			continue
		}
		d[idx[id.a]][idx[id.b]] = uint64(l.cost[id.a])
		d[idx[id.b]][idx[id.a]] = uint64(l.cost[id.b])
	}
	for m := range n {
		for i := range n {
			if d[i][m] == infCost {
				continue
			}
			for j := range n {
				if d[m][j] != infCost && d[i][m]+d[m][j] < d[i][j] {
					d[i][j] = d[i][m] + d[m][j]
				}
			}
		}
	}
	out := make(map[string]uint64, n)
	for i, z := range s.names {
		best := uint64(infCost)
		for j, o := range s.names {
			if s.local[o][k] > 0 {
				best = min(best, d[i][j])
			}
		}
		out[z] = best
	}
	return out
}

// checkConverged compares every table with the reference. It must be
// called with an empty queue.
func (s *sim) checkConverged() {
	s.t.Helper()
	if len(s.queue) != 0 {
		s.t.Fatalf("sim: checkConverged with %d messages queued", len(s.queue))
	}
	fail := func(format string, args ...any) {
		s.t.Helper()
		s.t.Fatalf("%s\nhistory:\n%s", fmt.Sprintf(format, args...), strings.Join(s.log, "\n"))
	}
	keys := slices.SortedFunc(func(yield func(Key) bool) {
		for k := range s.keys {
			if !yield(k) {
				return
			}
		}
	}, compareKeys)
	for _, k := range keys {
		dist := s.dist(k)
		for _, z := range s.names {
			tb := s.tables[z]
			b, ok := tb.Best(k)
			if reachable := dist[z] != infCost; ok != reachable {
				fail("%s: route to %v present=%v, but reachable=%v (best %+v)", z, k, ok, reachable, b)
			}
			if !ok {
				continue
			}
			if uint64(b.Cost) != dist[z] {
				fail("%s: route to %v costs %d, shortest is %d (best %+v)", z, k, b.Cost, dist[z], b)
			}
			if err := checkPath(z, b); err != nil {
				fail("%s: route to %v: %v", z, k, err)
			}
			if s.local[z][k] > 0 && b.Via != "" {
				fail("%s: %v is local but routed via %s", z, k, b.Via)
			}
			// Follow Via to a zipper where k is local.
			cur, sum := z, uint64(0)
			visited := map[string]bool{z: true}
			var hops []string
			for {
				cb, ok := s.tables[cur].Best(k)
				if !ok {
					fail("%s: following %v from %s: %s has no route (hops %v)", z, k, z, cur, hops)
				}
				if cb.Via == "" {
					if s.local[cur][k] == 0 {
						fail("%s: following %v: %s claims it local but it is not", z, k, cur)
					}
					break
				}
				if !s.isUp(cur, cb.Via) {
					fail("%s: following %v: %s routes via %s over a down link", z, k, cur, cb.Via)
				}
				if c, ok := s.tables[cur].Cost(cb.Via); !ok || c != s.links[mkLinkID(cur, cb.Via)].cost[cur] {
					fail("%s: table cost to %s is %d,%v; configured %d", cur, cb.Via, c, ok, s.links[mkLinkID(cur, cb.Via)].cost[cur])
				}
				sum += uint64(s.links[mkLinkID(cur, cb.Via)].cost[cur])
				cur = cb.Via
				hops = append(hops, cur)
				if visited[cur] {
					fail("%s: forwarding loop to %v: %s -> %v", z, k, z, hops)
				}
				visited[cur] = true
			}
			if sum != uint64(b.Cost) {
				fail("%s: route to %v costs %d but its hops %v sum to %d", z, k, b.Cost, hops, sum)
			}
			// The path is the followed hops, reversed.
			slices.Reverse(hops)
			if b.Via != "" && !slices.Equal(hops, b.Path) {
				fail("%s: route to %v has path %v, forwarding follows %v", z, k, b.Path, hops)
			}
		}
	}
	// No table holds a route to anything else.
	for _, z := range s.names {
		for _, r := range s.tables[z].Adverts() {
			if !s.keys[keyOf(r)] {
				fail("%s: route to unknown key %v", z, keyOf(r))
			}
			if r.Withdraw {
				fail("%s: Adverts has a withdrawal %+v", z, r)
			}
		}
	}
}

// settle runs to quiescence and checks convergence.
func (s *sim) settle() {
	s.t.Helper()
	s.run()
	s.checkConverged()
}

// --- tests of the simulator itself ---------------------------------------

func TestSimDropsInFlightOnLinkDown(t *testing.T) {
	s := newSim(t, "a", "b")
	s.linkUp("a", "b", 1, 1)
	if len(s.queue) == 0 {
		t.Fatal("link up sent nothing")
	}
	s.linkDown("a", "b")
	s.linkUp("a", "b", 2, 2) // a new incarnation: the old messages are lost
	s.settle()
	if s.dropped == 0 {
		t.Fatal("messages sent before the link went down were delivered")
	}
	if b, ok := s.tables["a"].Best(zipperKey("b")); !ok || b.Cost != 2 {
		t.Fatalf("a -> b: %+v %v", b, ok)
	}
}

func TestSimReferenceDist(t *testing.T) {
	s := newSim(t, "a", "b", "c", "d")
	s.linkUp("a", "b", 1, 7)
	s.linkUp("b", "c", 2, 9)
	s.linkUp("a", "c", 5, 5)
	k := zipperKey("c")
	got := s.dist(k)
	want := map[string]uint64{"a": 3, "b": 2, "c": 0, "d": infCost}
	for z, w := range want {
		if got[z] != w {
			t.Errorf("dist %s -> c = %d, want %d", z, got[z], w)
		}
	}
	got = s.dist(zipperKey("a"))
	if got["c"] != 5 || got["b"] != 7 {
		t.Errorf("dist to a: %v", got)
	}
}

// randFor returns a scheduler for seed, for sim.rng.
func randFor(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d657368)) }
