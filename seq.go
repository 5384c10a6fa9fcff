package yomo

import (
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// Mesh sequencing: exactly once and in order across reroutes.
//
// The zipper where a frame enters the mesh (its writer's zipper) numbers
// the frames of each flow: one writer connection towards one function
// name, or, for backflow, one writer towards one origin Source. The
// numbers travel in the frame's sequence area (frame.AppendSeq), start at
// 1 and have no gaps: a flow's frames all take the mesh, none stays local.
// Custody (link.go, outbox.go) sends a frame again over another path when
// a link fails before its peer took it, so a frame may arrive twice, and
// frames on a new path may overtake frames still on the old one. The
// zipper that delivers a flow (its last zipper) therefore keeps, per
// flow, the next number it expects: it drops what is below (a duplicate),
// delivers what is equal, and holds what is ahead until the gap fills.
// A gap that does not fill within seqGapTimeout (the frames were lost
// with a zipper that crashed, or dropped and counted on the way) is
// skipped and its frames counted in Stats.MeshGaps; one that arrives
// after all is delivered late (Stats.MeshLate) rather than dropped.
//
// A flow first seen here midway (at a number above 1) starts at that
// number: its earlier frames went to another zipper, were lost, or were
// delivered long ago and forgotten. Except when the writer's zipper says
// otherwise: when it moved the flow to another next hop while frames
// sent on the old one may still be travelling, it gives each frame a
// Back (frame.SeqNum), and a zipper new to the flow waits for those
// numbers too, up to seqBackTimeout, so that a new path that is faster
// does not reorder the flow's first frames.
//
// A flow id is the writer's id (its high 48 bits, random) and a
// generation (its low 16 bits). The writer's zipper starts a new
// generation, numbered from 1 again, when it lost frames for want of a
// path (flowSeqs.sync). The zipper delivering the flow keeps only the
// newest generation of each writer: when a newer one arrives it delivers
// what the older one held, without waiting for its gaps, and drops (and
// counts in Stats.MeshStale and Stats.Dropped) frames of an older
// generation that arrive after that, so that the writer's frames stay in
// order across the loss.
//
// Sequence number 0 means "not sequenced": delivered as it comes. A
// zipper that sends a frame on towards another name than the one its
// number was given for (keyed routing chose an instance on the way) sends
// it with 0.

// seqGapTimeout is how long frames ahead of a gap wait for it to fill.
// It covers a link failure's reroute (the frames the failed link held are
// sent again as soon as it is declared dead, right after the route
// change) and the queue of an old path after a cost change.
// It is longer than meshHoldWindow, the time a failed link's frames may
// wait for a new path before they are sent again.
const seqGapTimeout = meshHoldWindow + time.Second

// seqBackTimeout is how long a flow first seen here waits for the frames
// its Back says were sent shortly before over another path. Shorter than
// seqGapTimeout: those frames were not lost on a failed link (that would
// have started a new flow), they are only on a slower path, or they went
// to the zipper the function was at before it moved here.
const seqBackTimeout = time.Second

// seqMaxHeld bounds the frames held per flow; when more arrive ahead of a
// gap, the gap is skipped at once.
const seqMaxHeld = 16384

// seqMaxSkipped bounds the numbers of skipped gaps remembered per flow,
// so that a frame arriving after its gap was skipped is still delivered
// (late, rather than lost).
const seqMaxSkipped = 65536

// seqIdle is how long a flow with nothing held is remembered after its
// last frame.
const seqIdle = time.Minute

// seqSweep is how often held gaps and idle flows are checked.
const seqSweep = 100 * time.Millisecond

// genBits are the low bits of a flow id that number its generation.
const genBits = 16

// flowKey names a flow at its last zipper.
type flowKey struct {
	flow   uint64 // the flow id; in the sequencer, without its generation
	origin uint64 // backflow: the origin Source; 0 for a function name
	name   string // the function name; "" for backflow
}

// flowState is what the last zipper of a flow remembers of it.
type flowState struct {
	mu   sync.Mutex
	gen  uint16               // the generation of the writer's flow seen last
	next uint64               // the next number to deliver
	held map[uint64]heldFrame // frames ahead of next
	// skipped are the numbers below next given up on (counted in
	// seqGaps) that have not arrived since.
	skipped map[uint64]struct{}
	// before covers the numbers just below the one the flow started at
	// here, when that was not 1: frames that took a slower path than the
	// first one seen. Each is delivered late when it arrives, once.
	before window
	since  int64 // nanotime the current gap was first seen; 0: none
	// patience is how long the current gap may wait: seqGapTimeout, or
	// seqBackTimeout for the one a flow's Back opened when it started here.
	patience time.Duration
	backTo   uint64 // the numbers below it are those a Back said to wait for
	used     int64  // nanotime of the last arrival
}

// window is a set of up to 1024 numbers [base, limit) below a flow's
// start, with the ones that arrived.
type window struct {
	base, limit uint64
	seen        [16]uint64
}

// take reports whether seq is in the window and had not arrived, and
// marks it arrived.
func (w *window) take(seq uint64) bool {
	if seq < w.base || seq >= w.limit {
		return false
	}
	i := seq - w.base
	if w.seen[i/64]&(1<<(i%64)) != 0 {
		return false
	}
	w.seen[i/64] |= 1 << (i % 64)
	return true
}

// heldFrame is a frame waiting for a gap before it: its encoding and
// where it goes (nil: nowhere, it only advances the flow).
type heldFrame struct {
	b  []byte
	to *conn
}

// sequencer holds the flows delivered here, sharded by flow id.
type sequencer struct {
	shards [16]struct {
		mu    sync.Mutex
		flows map[flowKey]*flowState
	}
}

func (s *sequencer) shard(k flowKey) *struct {
	mu    sync.Mutex
	flows map[flowKey]*flowState
} {
	return &s.shards[k.flow%uint64(len(s.shards))]
}

// state returns the flow's state, starting it at seq when it is new: the
// first frame of a flow seen here may not be its first (its route came
// here after a while), and it is not held back unless its Back says
// frames before it may still arrive.
func (s *sequencer) state(k flowKey, gen uint16, seq frame.SeqNum, now int64) *flowState {
	sh := s.shard(k)
	sh.mu.Lock()
	st := sh.flows[k]
	if st == nil {
		if sh.flows == nil {
			sh.flows = make(map[flowKey]*flowState)
		}
		k.name = strings.Clone(k.name) // the caller's aliases a frame buffer
		st = new(flowState)
		st.start(gen, seq)
		sh.flows[k] = st
	}
	sh.mu.Unlock()
	st.mu.Lock()
	st.used = now
	return st
}

// start (re)starts the flow at generation gen with the frame seq.
func (st *flowState) start(gen uint16, seq frame.SeqNum) {
	start := seq.N - seq.Back
	st.gen, st.next, st.held, st.skipped, st.before = gen, start, nil, nil, window{}
	st.since, st.patience, st.backTo = 0, seqGapTimeout, 0
	if seq.Back > 0 {
		st.patience, st.backTo = seqBackTimeout, seq.N
	}
	if start > 1 {
		st.before = window{base: max(1, start, 1025) - 1024, limit: start}
	}
}

// admit delivers d, number seq of flow k, to `to` (nil: the frame only
// advances the flow) in the flow's order: at once when it is next,
// together with what it unblocks; later when it is ahead; never when it
// is a duplicate.
func (z *Zipper) admit(k flowKey, sn frame.SeqNum, d *frame.Data, to *conn, wait <-chan struct{}) {
	seq := sn.N
	if seq == 0 {
		if to != nil {
			to.deliver(d, wait)
		}
		return
	}
	now := nanotime()
	gen := uint16(k.flow)
	k.flow &^= 1<<genBits - 1
	st := z.seq.state(k, gen, sn, now)
	defer st.mu.Unlock()
	if gen != st.gen {
		if int16(gen-st.gen) < 0 {
			// An older generation: the writer's newer frames went ahead.
			z.seqStale.Add(1)
			z.droppedAll.Add(1)
			z.noteMeshLoss(d)
			return
		}
		for len(st.held) > 0 {
			z.skipOneGapLocked(st, wait) // the older generation's gaps will not fill
		}
		st.start(gen, sn)
	}
	switch {
	case seq < st.next:
		if st.before.take(seq) {
			z.seqLate.Add(1) // it took a slower path than the flow's first frame here
			if to != nil {
				to.deliver(d, wait)
			}
			return
		}
		if _, late := st.skipped[seq]; late {
			// Its gap was skipped: deliver it late rather than lose it.
			delete(st.skipped, seq)
			z.seqGaps.Add(^uint64(0))
			z.seqLate.Add(1)
			if to != nil {
				to.deliver(d, wait)
			}
			return
		}
		z.seqDups.Add(1)
	case seq == st.next:
		if to != nil {
			to.deliver(d, wait)
		}
		st.next++
		z.releaseLocked(st, wait)
	default:
		if _, dup := st.held[seq]; dup {
			z.seqDups.Add(1)
			return
		}
		if st.held == nil {
			st.held = make(map[uint64]heldFrame)
		}
		st.held[seq] = heldFrame{b: frame.AppendData(nil, d), to: to}
		z.meshHeld.Add(1)
		if st.since == 0 {
			st.since = now
		}
		if len(st.held) > seqMaxHeld {
			z.skipGapLocked(st, wait)
		}
	}
}

// releaseLocked delivers the held frames that follow next without a gap.
func (z *Zipper) releaseLocked(st *flowState, wait <-chan struct{}) {
	var d frame.Data
	for len(st.held) > 0 {
		h, ok := st.held[st.next]
		if !ok {
			st.since = nanotime() // a new gap, or the same one still open: its clock restarts on progress
			if st.next >= st.backTo {
				st.patience = seqGapTimeout
			}
			return
		}
		delete(st.held, st.next)
		z.meshHeld.Add(-1)
		st.next++
		if h.to != nil && d.Decode(h.b[frame.HeaderSize:]) == nil {
			h.to.deliver(&d, wait)
		}
	}
	st.since, st.patience = 0, seqGapTimeout
}

// skipGapLocked gives up on the frames missing before the first held one
// (and on all a Back said to wait for): they are counted, and what
// follows is delivered.
func (z *Zipper) skipGapLocked(st *flowState, wait <-chan struct{}) {
	z.skipOneGapLocked(st, wait)
	for len(st.held) > 0 && st.next < st.backTo {
		z.skipOneGapLocked(st, wait)
	}
}

func (z *Zipper) skipOneGapLocked(st *flowState, wait <-chan struct{}) {
	first := uint64(0)
	for s := range st.held {
		if first == 0 || s < first {
			first = s
		}
	}
	if first == 0 {
		return
	}
	z.seqGaps.Add(first - st.next)
	for s := st.next; s < first && len(st.skipped) < seqMaxSkipped; s++ {
		if st.skipped == nil {
			st.skipped = make(map[uint64]struct{})
		}
		st.skipped[s] = struct{}{}
	}
	st.next = first
	z.releaseLocked(st, wait)
}

// sweepSeq skips the gaps that waited seqGapTimeout and forgets idle flows.
func (z *Zipper) sweepSeq() {
	now := nanotime()
	wait := z.ctx.Done()
	for i := range z.seq.shards {
		sh := &z.seq.shards[i]
		sh.mu.Lock()
		var waiting []*flowState
		for k, st := range sh.flows {
			st.mu.Lock()
			switch {
			case len(st.held) > 0 && now-st.since >= int64(st.patience):
				waiting = append(waiting, st)
			case len(st.held) == 0 && now-st.used >= int64(seqIdle+seqGapTimeout):
				delete(sh.flows, k)
			}
			st.mu.Unlock()
		}
		sh.mu.Unlock()
		for _, st := range waiting {
			st.mu.Lock()
			if len(st.held) > 0 && now-st.since >= int64(st.patience) {
				z.skipGapLocked(st, wait)
			}
			st.mu.Unlock()
		}
	}
}

// runSeqSweeper sweeps until the zipper closes; started with the mesh.
func (z *Zipper) runSeqSweeper() {
	defer z.wg.Done()
	t := time.NewTicker(seqSweep)
	defer t.Stop()
	var sc scratch
	for {
		select {
		case <-z.ctx.Done():
			return
		case <-t.C:
			z.sweepSeq()
			z.sendLossNotices(&sc)
		}
	}
}

// flowSeqs numbers a writer connection's flows into the mesh. It is used
// only by the connection's reader goroutine, which routes its frames.
type flowSeqs struct {
	writer  uint64 // the flow id's high bits, chosen at random on first use
	gen     uint16 // the flow id's generation
	epoch   uint64 // the zipper's flowEpoch when gen began
	names   map[string]*seqCounter
	origins map[uint64]*seqCounter
}

// seqCounter numbers one flow and remembers the next hops it took.
type seqCounter struct {
	n        uint64 // the last number given
	hop      string // the peer the last frame was sent to
	run      uint64 // the first number sent to hop in a row
	last     int64  // nanotime of the last frame
	low      uint64 // the first number that may still be on an old path...
	lowUntil int64  // ...until then (nanotime)
}

// next numbers a frame of the flow sent to the peer hop at now. When the
// flow moves to another hop while frames sent on the old one may still
// be travelling (the last was sent less than seqGapTimeout ago), the
// frames for seqGapTimeout from then carry a Back down to the first of
// those: a zipper new to the flow waits for them (seqBackTimeout).
func (c *seqCounter) next(hop string, now int64) frame.SeqNum {
	c.n++
	if hop != c.hop {
		if c.hop != "" && now-c.last < int64(seqGapTimeout) {
			if now >= c.lowUntil {
				c.low = c.run // an earlier move's frames are older: settled
			}
			c.lowUntil = now + int64(seqGapTimeout)
		}
		c.hop, c.run = hop, c.n
	}
	c.last = now
	if now < c.lowUntil {
		return frame.SeqNum{N: c.n, Back: c.n - c.low}
	}
	return frame.SeqNum{N: c.n}
}

// sync starts a new generation of c's flows (numbers from 1 again) when
// the zipper lost frames of mesh flows since this one began: the zippers
// delivering them would otherwise hold every later frame for the gap, up
// to seqGapTimeout, although the lost frames were counted here.
func (f *flowSeqs) sync(epoch uint64) {
	if epoch != f.epoch {
		f.epoch, f.names, f.origins = epoch, nil, nil
		f.gen++
	}
}

// flowID returns the id of c's flows: its writer id and generation.
func (f *flowSeqs) flowID() uint64 {
	for f.writer == 0 {
		f.writer = rand.Uint64() &^ (1<<genBits - 1)
	}
	return f.writer | uint64(f.gen)
}

// nextName numbers the next frame of c's flow towards name, sent to the
// peer hop.
func (f *flowSeqs) nextName(epoch uint64, name, hop string) frame.SeqNum {
	f.sync(epoch)
	return counter(&f.names, name).next(hop, nanotime())
}

// nextOrigin numbers the next frame of c's backflow towards origin, sent
// to the peer hop.
func (f *flowSeqs) nextOrigin(epoch uint64, origin uint64, hop string) frame.SeqNum {
	f.sync(epoch)
	return counter(&f.origins, origin).next(hop, nanotime())
}

// counter returns the counter of k in *m, making both as needed.
func counter[K comparable](m *map[K]*seqCounter, k K) *seqCounter {
	if *m == nil {
		*m = make(map[K]*seqCounter)
	}
	c := (*m)[k]
	if c == nil {
		c = new(seqCounter)
		(*m)[k] = c
	}
	return c
}

// checkSeq reports what is wrong with the sequence area of a frame from
// a link: it must hold a flow id and one number per name (one for
// backflow). A frame without one is not sequenced.
func checkSeq(d *frame.Data) error {
	if d.Seq == nil {
		return nil
	}
	_, seqs, err := frame.ParseSeq(d.Seq)
	if err != nil {
		return err
	}
	want := max(1, d.Names.Len())
	for i := 0; i < want; i++ {
		if _, seqs, err = frame.NextSeq(seqs); err != nil {
			return err
		}
	}
	if len(seqs) != 0 {
		return &protocolError{msg: "sequence area has more numbers than the frame has names"}
	}
	return nil
}
