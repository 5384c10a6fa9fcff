package yomo

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// outbox is a bounded queue of encoded frames waiting to be written to one
// stream. Producers encode frames straight into its segments (no
// per-frame allocation, no per-frame goroutine); one flusher takes
// everything queued at once and writes it in few stream writes, so small
// frames coalesce into few writes and packets under load.
//
// Frames are encoded at the end of the tail segment until it is full; a
// new tail comes from the outbox's pool of segments that nothing refers
// to any more. So a queue that grows never copies what it holds (growing
// one contiguous buffer did, and cost a quarter of a zipper's CPU under
// load), and a busy outbox allocates nothing.
//
// Limits count what waits, and with custody what is held, not the batch
// being written.
type outbox struct {
	maxFrames int
	maxBytes  int

	mu     sync.Mutex
	q      []span        // the frames waiting, in order
	qBytes int           // their bytes
	frames int           // their number
	space  chan struct{} // closed when room is made; nil when nobody waits
	closed bool
	ready  chan struct{} // cap 1: wakes the flusher

	tail *seg // where the next frame is encoded, when it fits
	// batch: the spans of the flusher's last take, referenced until its
	// next take (by then it has written them); views: their bytes, as
	// handed to the flusher. Both are reused from take to take.
	batch     []span
	views     [][]byte
	pool      []*seg // segments nothing refers to, for the next tails
	poolBytes int
	// batches and tails count the batches taken and the tails started
	// in the current window of shrinkAfter batches (trimPoolLocked).
	batches, tails int
	made           uint64 // segments allocated, ever (the pool had none to reuse)
	writing        bool   // the flusher holds a batch it has not finished writing; guarded by mu
	taken          uint64 // frames taken by flushers, ever; guarded by mu
	// stalled: DropStalled judged the destination stuck; frames for its
	// full queue are dropped at once until the flusher finds the queue
	// empty (the destination caught up). So a slow destination whose
	// stream takes data in rare bursts (QUIC flow-control updates) costs
	// the other destinations one stall timeout per episode, not one per
	// burst. Guarded by mu.
	stalled bool

	// progress is the nanotime of the flusher's last completed write, or
	// of the moment a frame was queued for an idle flusher (or of the
	// outbox's creation): how DropStalled tells stuck from slow. The clock
	// starts when there is work, not when the flusher gets round to it, so
	// a destination that was quiet for a while is not taken for stuck.
	progress atomic.Int64

	// Custody (mesh links, and clients: their write buffer): the spans
	// of every batch the flusher takes stay in held, in the segments they
	// were encoded in (no copy), until the peer's Custody frames cover
	// their frames, and count against the queue limits until then.
	// held[heldHead:] are the spans with frames not yet covered,
	// heldFrames frames and heldBytes bytes of them; released frames were
	// covered (the first released frames ever put).
	custody    bool
	held       []span
	heldHead   int
	heldFrames int
	heldBytes  int
	released   uint64

	// rtt, when set, is the round-trip time of the destination's
	// connection: DropStalled waits at least stallRTTs of it, so a healthy
	// destination far away (a mesh link across regions, whose writes
	// complete once per round trip or slower in loss recovery) is not
	// taken for stuck. Called only when a queue is full.
	rtt func() time.Duration
}

// seg is a buffer frames are encoded into, one after another, never
// beyond its capacity: the bytes of a frame stay where they were encoded
// until the segment is recycled, which is when no span refers to it and
// it is not the tail.
type seg struct {
	b    []byte // the frames encoded so far; grows under the outbox's mu
	refs int    // spans referring to it: queued, being written, held
}

// span is n whole frames, the bytes s.b[off:end].
type span struct {
	s        *seg
	off, end int
	n        int
}

// Segment sizes: an outbox's first segment has segMin bytes, and each
// next one twice its predecessor's up to segMax, so that a connection
// that sends little costs little and a busy one writes large batches. A
// frame larger than segMax gets a segment of its own size.
const (
	segMin = 1 << 10
	segMax = 256 << 10
)

// stallRTTs is how many round trips of its connection a destination may
// take nothing before DropStalled judges it stuck, if that is longer than
// the stall timeout.
const stallRTTs = 8

func newOutbox(maxFrames, maxBytes int, rtt func() time.Duration) *outbox {
	o := &outbox{maxFrames: maxFrames, maxBytes: maxBytes, ready: make(chan struct{}, 1), rtt: rtt}
	o.progress.Store(nanotime())
	return o
}

// put encodes d into the queue, waiting for room while the queue is full
// as the policy says: never (DropNewest), until wait closes (Block), or
// while the flusher keeps making progress, at most until it has completed
// no write for stall (DropStalled). A zero timeout means no further bound;
// otherwise put gives up after timeout. It returns false when the frame
// was not queued; the caller counts the drop.
func (o *outbox) put(d *frame.Data, policy OverflowPolicy, wait <-chan struct{}, timeout, stall time.Duration) bool {
	queued, full := o.tryPut(d)
	if !full {
		return queued
	}
	if policy == DropNewest {
		return false
	}
	return o.putSlow(d, policy, wait, timeout, stall)
}

// tryPut queues d if there is room. The fast path: no timer, no defer.
func (o *outbox) tryPut(d *frame.Data) (queued, full bool) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false, false
	}
	if o.hasRoom() {
		wake := o.frames == 0
		o.appendLocked(d)
		o.mu.Unlock()
		if wake {
			o.wake()
		}
		return true, false
	}
	o.mu.Unlock()
	return false, true
}

// hasRoom reports whether one more frame may be queued; o.mu is held. An
// empty queue always takes one frame, however large.
func (o *outbox) hasRoom() bool {
	if o.custody {
		n := o.frames + o.heldFrames
		return n == 0 || (n < o.maxFrames && o.qBytes+o.heldBytes < o.maxBytes)
	}
	return o.frames == 0 || (o.frames < o.maxFrames && o.qBytes < o.maxBytes)
}

// appendLocked queues d; o.mu is held and hasRoom returned true.
func (o *outbox) appendLocked(d *frame.Data) {
	if o.frames == 0 && !o.writing {
		// Work for an idle flusher: the stall clock starts now. Recording
		// it here rather than when the flusher wakes matters: producers
		// can fill the queue before the flusher goroutine gets to run, and
		// would then see the time of its last write, long ago, and drop.
		o.progress.Store(nanotime())
	}
	t := o.tail
	room := 0
	if t != nil {
		if t.refs == 0 {
			// Nothing refers to the tail's frames any more (written, and
			// covered under custody): encode from its start again, into
			// memory still in the cache.
			t.b = t.b[:0]
		}
		room = cap(t.b) - len(t.b)
	}
	// The bound is cheaper than the exact size, which is needed only
	// near a segment's end.
	if t == nil || room < frame.DataSizeBound(d) {
		if size := frame.HeaderSize + frame.DataSize(d); t == nil || room < size {
			t = o.newTailLocked(size)
		}
	}
	off := len(t.b)
	t.b = frame.AppendData(t.b, d)
	if k := len(o.q); k > 0 && o.q[k-1].s == t && o.q[k-1].end == off {
		o.q[k-1].end = len(t.b)
		o.q[k-1].n++
	} else {
		o.q = append(o.q, span{s: t, off: off, end: len(t.b), n: 1})
		t.refs++
	}
	o.qBytes += len(t.b) - off
	o.frames++
}

// newTailLocked makes a segment with room for size bytes the tail and
// returns it: one from the pool, or a new one twice the size of the last
// (within segMin and segMax). o.mu is held.
func (o *outbox) newTailLocked(size int) *seg {
	want := segMin
	if old := o.tail; old != nil {
		want = min(segMax, 2*cap(old.b))
		o.tail = nil
		if old.refs == 0 {
			o.recycleLocked(old)
		}
	}
	want = max(want, size)
	o.tails++
	var t *seg
	for t == nil && len(o.pool) > 0 {
		k := len(o.pool) - 1
		t = o.pool[k]
		o.pool[k] = nil
		o.pool = o.pool[:k]
		o.poolBytes -= cap(t.b)
		if cap(t.b) < want {
			t = nil // smaller than traffic needs now: left to the collector
		}
	}
	if t == nil {
		t = &seg{b: make([]byte, 0, want)}
		o.made++
	}
	o.tail = t
	return t
}

// unrefLocked drops one span's reference to s, recycling s when it was
// the last and s is not the tail. o.mu is held.
func (o *outbox) unrefLocked(s *seg) {
	if s.refs--; s.refs == 0 && s != o.tail {
		o.recycleLocked(s)
	}
}

// recycleLocked puts s, which nothing refers to, in the pool, if the pool
// has room: at most twice the byte limit, as when the queue and the held
// frames are full and a new batch starts. o.mu is held.
func (o *outbox) recycleLocked(s *seg) {
	if o.closed || o.poolBytes+cap(s.b) > 2*o.maxBytes {
		return
	}
	s.b = s.b[:0]
	o.pool = append(o.pool, s)
	o.poolBytes += cap(s.b)
}

// putSlow waits for room in a full queue (Block or DropStalled).
func (o *outbox) putSlow(d *frame.Data, policy OverflowPolicy, wait <-chan struct{}, timeout, stall time.Duration) bool {
	var expired, stalled <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var stallTimer *time.Timer
	defer func() {
		if stallTimer != nil {
			stallTimer.Stop()
		}
	}()
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return false
		}
		if o.hasRoom() {
			o.appendLocked(d)
			o.mu.Unlock()
			o.wake()
			return true
		}
		if policy == DropStalled {
			if o.rtt != nil && !o.stalled {
				stall = max(stall, stallRTTs*o.rtt())
			}
			left := time.Duration(o.progress.Load()+int64(stall)) - time.Duration(nanotime())
			if o.stalled || left <= 0 {
				o.stalled = true
				o.mu.Unlock()
				return false // stuck: drop without waiting
			}
			if stallTimer == nil {
				stallTimer = time.NewTimer(left)
			} else {
				stallTimer.Reset(left)
			}
			stalled = stallTimer.C
		}
		if o.space == nil {
			o.space = make(chan struct{})
		}
		space := o.space
		o.mu.Unlock()
		select {
		case <-space:
		case <-stalled: // re-check: progress may have been made meanwhile
		case <-wait:
			return false
		case <-expired:
			return false
		}
	}
}

// shrinkAfter is the window, in batches, over which trimPoolLocked
// judges how many pooled segments traffic needs.
const shrinkAfter = 64

// trimPoolLocked lets go the pooled segments that traffic no longer
// needs: at the end of each window of shrinkAfter batches, the pool keeps
// one segment more than the tails the window started, the oldest go. So
// a burst's segments are let go once traffic has stayed small for a
// window, while steady traffic, which starts a tail now and then, keeps
// the one or two it cycles through (trimming by the pool's size against
// the batches' instead freed and reallocated them, a fifth of the 16 B
// forwarding cost). An outbox that takes nothing keeps its pool. o.mu is
// held.
func (o *outbox) trimPoolLocked() {
	if o.batches++; o.batches < shrinkAfter {
		return
	}
	if extra := len(o.pool) - (o.tails + 1); extra > 0 {
		for _, s := range o.pool[:extra] {
			o.poolBytes -= cap(s.b)
		}
		k := copy(o.pool, o.pool[extra:])
		clear(o.pool[k:])
		o.pool = o.pool[:k]
	}
	o.batches, o.tails = 0, 0
}

// writeChunk bounds one stream write of the flusher.
const writeChunk = 64 << 10

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

var clockBase = time.Now()

// wake tells the flusher there is work, without waiting. A producer
// needs to only when the frame it queued is the first waiting: after
// that, a wake-up is pending (sent after the first was queued) or the
// flusher took the queue since, and then the next first frame wakes it.
func (o *outbox) wake() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// take swaps out everything queued, as the byte slices to write in
// order, with the number of frames. The slices, and the slice holding
// them, are the flusher's until its next call to take: by then it has
// written them, and take lets their segments go.
func (o *outbox) take() ([][]byte, int) {
	o.mu.Lock()
	for i := range o.batch {
		o.unrefLocked(o.batch[i].s)
	}
	clear(o.batch)
	n, bytes := o.frames, o.qBytes
	batch := o.q
	o.q, o.batch = o.batch[:0], batch
	clear(o.views)
	views := o.views[:0]
	for _, sp := range batch {
		views = append(views, sp.s.b[sp.off:sp.end])
	}
	o.views = views
	if o.custody {
		for _, sp := range batch {
			if k := len(o.held); k > o.heldHead && o.held[k-1].s == sp.s && o.held[k-1].end == sp.off {
				o.held[k-1].end = sp.end
				o.held[k-1].n += sp.n
				continue
			}
			sp.s.refs++
			o.held = append(o.held, sp)
		}
		o.heldFrames += n
		o.heldBytes += bytes
	}
	if n > 0 {
		o.trimPoolLocked()
	}
	o.qBytes, o.frames = 0, 0
	o.taken += uint64(n)
	o.writing = n > 0
	if n == 0 {
		o.stalled = false // caught up
	}
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
	o.mu.Unlock()
	return views, n
}

// release forgets the held frames the peer's Custody covers: the first
// covered frames ever taken. It counts as progress for DropStalled and
// makes room for waiting producers. A count beyond what was taken is the
// peer's error; it releases what there is.
func (o *outbox) release(covered uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if covered <= o.released {
		return
	}
	for o.released < covered && o.heldFrames > 0 {
		h := &o.held[o.heldHead]
		if uint64(h.n) <= covered-o.released {
			// Covered whole: its frames' sizes are not needed, so their
			// bytes, long out of the cache, are not read.
			o.heldFrames -= h.n
			o.heldBytes -= h.end - h.off
			o.released += uint64(h.n)
			o.unrefLocked(h.s)
			*h = span{}
			o.heldHead++
			continue
		}
		_, n, err := frame.ParseHeader(h.s.b[h.off:h.end], math.MaxInt)
		if err != nil {
			break // cannot happen: held holds frames we encoded
		}
		h.off += frame.HeaderSize + n
		h.n--
		o.heldFrames--
		o.heldBytes -= frame.HeaderSize + n
		o.released++
		if h.n == 0 {
			o.unrefLocked(h.s)
			*h = span{}
			o.heldHead++
		}
	}
	if o.heldFrames == 0 {
		o.held, o.heldHead = o.held[:0], 0
	} else if o.heldHead > len(o.held)/2 {
		// Amortised: the live part moves only when it is the smaller half.
		k := copy(o.held, o.held[o.heldHead:])
		clear(o.held[k:])
		o.held, o.heldHead = o.held[:k], 0
	}
	o.progress.Store(nanotime())
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
}

// requeue puts the held frames back in front of those queued, in order,
// for the next connection to send first: the peer of the one that ended
// never covered them. Called when no flusher runs.
func (o *outbox) requeue() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.heldFrames == 0 {
		return
	}
	// The held spans' references become the queue's.
	q := make([]span, 0, len(o.held)-o.heldHead+len(o.q))
	q = append(append(q, o.held[o.heldHead:]...), o.q...)
	o.q = q
	o.frames += o.heldFrames
	o.qBytes += o.heldBytes
	clear(o.held)
	o.held, o.heldHead, o.heldFrames, o.heldBytes = o.held[:0], 0, 0, 0
	o.wake() // for the next flusher
}

// setCustody turns custody on or off for the frames taken from now on;
// called between connections, when nothing is held. Off, the frames taken
// are forgotten at once and not numbered: the next connection's handshake
// says acked = the frames released, which does not count them.
func (o *outbox) setCustody(on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.custody = on
}

// releasedCount returns how many frames Custody covered so far.
func (o *outbox) releasedCount() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.released
}

// releasedAll reports whether Custody covered every frame taken so far;
// when it did not, wake closes at the next release (or take, or close).
func (o *outbox) releasedAll() (all bool, wake <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.heldFrames == 0 {
		return true, nil
	}
	if o.space == nil {
		o.space = make(chan struct{})
	}
	return false, o.space
}

// closeCustody closes the queue (like close) and returns, in order, the
// frames the peer never covered: those held, then those still queued,
// with their number. The caller routes them again.
func (o *outbox) closeCustody() ([]byte, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, 0
	}
	o.closed = true
	b := make([]byte, 0, o.heldBytes+o.qBytes)
	for _, sp := range o.held[o.heldHead:] {
		b = append(b, sp.s.b[sp.off:sp.end]...)
	}
	for _, sp := range o.q {
		b = append(b, sp.s.b[sp.off:sp.end]...)
	}
	n := o.heldFrames + o.frames
	o.held, o.heldHead, o.heldFrames, o.heldBytes = nil, 0, 0, 0
	o.dropLocked()
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
	return b, n
}

// dropLocked forgets the frames queued and the segments: the queue is
// closed. The flusher's last batch stays valid memory while it writes it.
// o.mu is held.
func (o *outbox) dropLocked() {
	o.q, o.qBytes, o.frames = nil, 0, 0
	o.tail, o.pool, o.poolBytes = nil, nil, 0
}

// isClosed reports whether close or closeCustody was called.
func (o *outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// takenCount returns how many frames flushers have taken so far.
func (o *outbox) takenCount() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.taken
}

// mark returns the number of frames taken plus those waiting: when a
// flusher has taken that many, everything queued now has been taken.
func (o *outbox) mark() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.taken + uint64(o.frames)
}

// depth returns the frames and bytes waiting.
func (o *outbox) depth() (frames, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.frames, o.qBytes
}

// close makes further puts fail and releases waiting producers. It
// returns the frames that were still queued (never to be sent).
func (o *outbox) close() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0
	}
	o.closed = true
	n := o.frames
	o.dropLocked()
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
	return n
}

// flush writes queued frames to w until stop or drain is closed, or a
// write fails. sent is called before each write with the frames it
// carries; when that write fails, flush returns the error and the number
// of those frames (lost with the connection). When stop closes it returns
// at once, leaving what is queued in place; when drain closes it first
// writes everything queued.
func (o *outbox) flush(w interface{ Write([]byte) (int, error) }, stop, drain <-chan struct{}, sent func(frames int)) (int, error) {
	draining := false
	for {
		select {
		case <-o.ready:
		case <-stop:
			return 0, nil
		case <-drain:
			draining = true
		}
		for {
			views, n := o.take()
			if n == 0 {
				break
			}
			if sent != nil {
				sent(n)
			}
			// Write in chunks so progress is visible at a fine grain even
			// when a large batch accumulated.
			for _, b := range views {
				for len(b) > 0 {
					c := min(len(b), writeChunk)
					if _, err := w.Write(b[:c]); err != nil {
						return n, err
					}
					o.progress.Store(nanotime())
					b = b[c:]
				}
			}
		}
		if draining {
			return 0, nil
		}
	}
}
