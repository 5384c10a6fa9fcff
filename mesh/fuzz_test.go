package mesh

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// fuzzFns are the function keys a fuzzed mesh may host (zipper keys are
// always local to their own zipper).
var fuzzFns = []Key{
	fnKey(1, "f", ""),
	fnKey(1, "f", "eu"),
	fnKey(2, "g", ""),
	fnKey(1, "g", ""),
}

var fuzzNames = []string{"z0", "z1", "z2", "z3", "z4", "z5", "z6"}

// fuzzReader hands out the fuzz input a byte at a time, then zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) more() bool { return len(r.b) > 0 }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// cost reads a link cost in 1..1000.
func (r *fuzzReader) cost() uint32 {
	v := uint32(r.byte())<<8 | uint32(r.byte())
	return 1 + v%1000
}

// pair reads two distinct zipper indexes below n.
func (r *fuzzReader) pair(n int) (int, int) {
	i, j := int(r.byte())%n, int(r.byte())%n
	if i == j {
		j = (i + 1) % n
	}
	return i, j
}

// Encoding of a fuzz input (see the seeds for examples):
//
//	[n-3] [scheduler seed: 0 = one FIFO queue, else random interleaving
//	      of the per-link queues]
//	for each pair i<j: [link]  link&3 != 0: up, then [cost:2], and when
//	      link&4 also [cost of j's end:2] (else symmetric)
//	for each zipper: [mask]  bit i < len(fuzzFns): fuzzFns[i] is local
//	ops until the input ends (at most maxFuzzOps); op&0x80: do not settle
//	before the next op; op&0x7f % 6:
//	  0 toggle  [i][j]; when bringing it up, [link][cost:2][cost:2 if link&4]
//	  1 cost    [i][j][cost:2]  (i's end; ignored when the link is down)
//	  2 add     [z][key]
//	  3 remove  [z][key]
//	  4 flap    [i][j]  down and up again with the same costs
//	  5 stagger [i][j][link][cost:2][cost:2 if link&4]  (down first if
//	            up) up at i's end, deliver everything, then up at j's
const maxFuzzOps = 48

// meshCase decodes and runs one fuzz input, checking convergence after
// every settled step. It returns the simulator for statistics.
func meshCase(t testing.TB, data []byte) *sim {
	r := &fuzzReader{b: data}
	n := 3 + int(r.byte())%5
	s := newSim(t, fuzzNames[:n]...)
	if seed := r.byte(); seed != 0 {
		s.rng = randFor(uint64(seed))
	}
	name := func(i int) string { return fuzzNames[i] }
	costs := func() (ab, ba uint32) {
		flags := r.byte()
		ab = r.cost()
		ba = ab
		if flags&4 != 0 {
			ba = r.cost()
		}
		return ab, ba
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			flags := r.byte()
			if flags&3 == 0 {
				continue
			}
			ab := r.cost()
			ba := ab
			if flags&4 != 0 {
				ba = r.cost()
			}
			s.linkUp(name(i), name(j), ab, ba)
		}
	}
	for i := range n {
		mask := r.byte()
		for k, key := range fuzzFns {
			if mask&(1<<k) != 0 {
				s.addLocal(name(i), key)
			}
		}
	}
	s.settle()
	for ops := 0; r.more() && ops < maxFuzzOps; ops++ {
		op := r.byte()
		switch (op & 0x7f) % 6 {
		case 0:
			i, j := r.pair(n)
			if s.isUp(name(i), name(j)) {
				s.linkDown(name(i), name(j))
			} else {
				ab, ba := costs()
				s.linkUp(name(i), name(j), ab, ba)
			}
		case 1:
			i, j := r.pair(n)
			c := r.cost()
			if s.isUp(name(i), name(j)) {
				s.setCost(name(i), name(j), c)
			}
		case 2:
			z, k := int(r.byte())%n, int(r.byte())%len(fuzzFns)
			s.addLocal(name(z), fuzzFns[k])
		case 3:
			z, k := int(r.byte())%n, int(r.byte())%len(fuzzFns)
			s.removeLocal(name(z), fuzzFns[k])
		case 4:
			i, j := r.pair(n)
			a, b := name(i), name(j)
			if s.isUp(a, b) {
				l := s.links[mkLinkID(a, b)]
				ab, ba := l.cost[a], l.cost[b]
				s.linkDown(a, b)
				s.linkUp(a, b, ab, ba)
			}
		case 5:
			i, j := r.pair(n)
			a, b := name(i), name(j)
			if s.isUp(a, b) {
				s.linkDown(a, b)
			}
			ab, ba := costs()
			s.linkUpStaggered(a, b, ab, ba)
		}
		if op&0x80 == 0 {
			s.settle()
		}
	}
	s.settle()
	return s
}

// seedBuilder writes fuzz inputs in the encoding meshCase reads.
type seedBuilder []byte

func (b seedBuilder) cost(c uint32) seedBuilder {
	v := c - 1
	return append(b, byte(v>>8), byte(v))
}

// header starts an input of n zippers.
func seedHeader(n int, sched byte) seedBuilder { return seedBuilder{byte(n - 3), sched} }

// links appends the link section: costs[i][j] is i's end of i-j, 0 for
// no link.
func (b seedBuilder) links(costs [][]uint32) seedBuilder {
	n := len(costs)
	for i := range n {
		for j := i + 1; j < n; j++ {
			ab, ba := costs[i][j], costs[j][i]
			switch { //nolint:staticcheck // cases read better as conditions
			case ab == 0:
				b = append(b, 0)
			case ab == ba:
				b = append(b, 1).cost(ab)
			default:
				b = append(b, 5).cost(ab).cost(ba)
			}
		}
	}
	return b
}

func (b seedBuilder) masks(m ...byte) seedBuilder { return append(b, m...) }

func (b seedBuilder) toggleDown(i, j int, settle bool) seedBuilder {
	return append(b, opByte(0, settle), byte(i), byte(j))
}

func (b seedBuilder) toggleUp(i, j int, ab, ba uint32, settle bool) seedBuilder {
	b = append(b, opByte(0, settle), byte(i), byte(j))
	if ab == ba {
		return append(b, 1).cost(ab)
	}
	return append(b, 5).cost(ab).cost(ba)
}

func (b seedBuilder) setCost(i, j int, c uint32, settle bool) seedBuilder {
	return append(b, opByte(1, settle), byte(i), byte(j)).cost(c)
}

func (b seedBuilder) add(z, k int, settle bool) seedBuilder {
	return append(b, opByte(2, settle), byte(z), byte(k))
}

func (b seedBuilder) remove(z, k int, settle bool) seedBuilder {
	return append(b, opByte(3, settle), byte(z), byte(k))
}

func (b seedBuilder) flap(i, j int, settle bool) seedBuilder {
	return append(b, opByte(4, settle), byte(i), byte(j))
}

func (b seedBuilder) stagger(i, j int, ab, ba uint32, settle bool) seedBuilder {
	b = append(b, opByte(5, settle), byte(i), byte(j))
	if ab == ba {
		return append(b, 1).cost(ab)
	}
	return append(b, 5).cost(ab).cost(ba)
}

func opByte(kind byte, settle bool) byte {
	if !settle {
		return kind | 0x80
	}
	return kind
}

// chainCosts returns an n-zipper chain with the given cost everywhere.
func chainCosts(n int, c uint32) [][]uint32 {
	m := square(n)
	for i := 0; i+1 < n; i++ {
		m[i][i+1], m[i+1][i] = c, c
	}
	return m
}

func square(n int) [][]uint32 {
	m := make([][]uint32, n)
	for i := range m {
		m[i] = make([]uint32, n)
	}
	return m
}

// fuzzSeeds are the interesting cases the fuzz target starts from.
func fuzzSeeds() map[string][]byte {
	seeds := make(map[string][]byte)

	// A chain of 7 cut in the middle: the classic count-to-infinity
	// set-up for distance-vector routing.
	seeds["chain7-cut"] = seedHeader(7, 0).links(chainCosts(7, 10)).
		masks(0, 0, 0, 0, 0, 0, 1).
		toggleDown(2, 3, true).toggleUp(2, 3, 10, 10, true).
		remove(6, 0, true)

	// A ring of 4 with a cheap and an expensive side; cut, heal, reprice.
	ring := square(4)
	for i := range 4 {
		j := (i + 1) % 4
		ring[i][j], ring[j][i] = 1, 1
	}
	ring[2][3], ring[3][2], ring[3][0], ring[0][3] = 10, 10, 10, 10
	seeds["ring4"] = seedHeader(4, 0).links(ring).masks(0, 0, 1, 0).
		toggleDown(0, 1, true).toggleUp(0, 1, 1, 1, true).
		setCost(1, 2, 1000, true).setCost(0, 3, 1, false).flap(1, 2, true)

	// A full mesh of 5 with asymmetric costs and two instances of a
	// function, changed without settling in between.
	full := square(5)
	for i := range 5 {
		for j := range 5 {
			if i != j {
				full[i][j] = uint32(1 + (i*7+j*13)%50)
			}
		}
	}
	seeds["full5-asym"] = seedHeader(5, 7).links(full).masks(1, 0, 0, 0, 3).
		remove(0, 0, false).add(2, 0, false).toggleDown(4, 2, false).setCost(1, 4, 1, true).
		remove(4, 0, true).remove(4, 1, true)

	// A partition of 6 into two triangles joined by one link.
	two := square(6)
	for _, e := range [][2]int{{0, 1}, {1, 2}, {0, 2}, {3, 4}, {4, 5}, {3, 5}, {2, 3}} {
		two[e[0]][e[1]], two[e[1]][e[0]] = 5, 5
	}
	seeds["partition6"] = seedHeader(6, 3).links(two).masks(1, 0, 0, 0, 0, 4).
		toggleDown(2, 3, true).add(4, 0, true).toggleUp(2, 3, 1, 900, true).
		toggleDown(2, 3, false).toggleUp(1, 4, 3, 3, false).flap(0, 1, true)

	// Flapping links while routes are in flight.
	seeds["flap-storm"] = seedHeader(5, 42).links(full).masks(1, 2, 4, 8, 0).
		flap(0, 1, false).flap(1, 2, false).flap(2, 3, false).flap(3, 4, false).
		toggleDown(0, 4, false).setCost(0, 1, 999, false).remove(3, 3, false).flap(0, 2, true)

	// Links that come up at one end first, so that the other end learns
	// routes before its own LinkUp, while functions move.
	seeds["staggered"] = seedHeader(5, 0).links(chainCosts(5, 20)).masks(1, 0, 0, 0, 2).
		stagger(0, 4, 7, 9, false).remove(0, 0, false).stagger(1, 3, 1, 1, true).
		toggleDown(0, 4, false).add(2, 1, false).stagger(4, 0, 3, 500, true)
	return seeds
}

func FuzzMeshConverges(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Add([]byte{})
	f.Add([]byte{4, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		meshCase(t, data)
	})
}

// TestMeshConvergesRandom is the property behind FuzzMeshConverges run
// over a fixed set of pseudo-random inputs, so plain `go test` covers it.
func TestMeshConvergesRandom(t *testing.T) {
	cases := 400
	if testing.Short() || raceEnabled {
		cases = 60
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var delivered, dropped, early, maxRun int
	for i := range cases {
		data := make([]byte, 16+rng.IntN(200))
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s := meshCase(t, data)
			delivered += s.delivered
			dropped += s.dropped
			early += s.early
			maxRun = max(maxRun, s.maxRun)
		})
	}
	t.Logf("%d cases: %d messages delivered (%d before the receiver's LinkUp), %d lost to down links, at most %d deliveries to settle one step",
		cases, delivered, early, dropped, maxRun)
}

func TestFuzzSeeds(t *testing.T) {
	for name, seed := range fuzzSeeds() {
		t.Run(name, func(t *testing.T) {
			s := meshCase(t, seed)
			t.Logf("%d delivered (%d early), %d lost, max run %d", s.delivered, s.early, s.dropped, s.maxRun)
		})
	}
}
