package yomo

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// outbox is a bounded queue of encoded frames waiting to be written to one
// stream. Producers encode frames straight into its buffer (no per-frame
// allocation, no per-frame goroutine); one flusher swaps the buffer out and
// writes everything queued in a single stream write, so small frames
// coalesce into few writes and packets under load.
//
// Limits count what waits in the buffer, not the batch being written, so
// at most about twice the byte limit is held per outbox.
type outbox struct {
	maxFrames int
	maxBytes  int

	mu     sync.Mutex
	buf    []byte
	frames int
	space  chan struct{} // closed when room is made; nil when nobody waits
	closed bool
	ready  chan struct{} // cap 1: wakes the flusher

	spare   []byte // the flusher's buffer, touched only by the flusher
	small   int    // batches in a row much smaller than spare; guarded by mu
	writing bool   // the flusher holds a batch it has not finished writing; guarded by mu
	taken   uint64 // frames taken by flushers, ever; guarded by mu
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

	// Custody (mesh links, and clients: their write buffer): every batch
	// the flusher takes stays in held, a large one as it was written (no
	// copy), small ones copied together (holdWhole), until the peer's
	// Custody frames cover its frames, and counts against the queue
	// limits until then. held[heldHead:] are the batches with
	// frames not yet covered, heldFrames frames and heldBytes bytes of
	// them; released frames were covered (the first released frames ever
	// put). A batch wholly covered goes to freed, from which take reuses
	// it as the next queue buffer: take runs when the flusher is done
	// writing its last batch, so no buffer is reused while written.
	custody    bool
	held       []heldBatch
	heldHead   int
	heldFrames int
	heldBytes  int
	released   uint64
	freed      [][]byte // at most keepFreed, of 2*maxBytes capacity in all
	freedBytes int

	// rtt, when set, is the round-trip time of the destination's
	// connection: DropStalled waits at least stallRTTs of it, so a healthy
	// destination far away (a mesh link across regions, whose writes
	// complete once per round trip or slower in loss recovery) is not
	// taken for stuck. Called only when a queue is full.
	rtt func() time.Duration
}

// heldBatch is a batch the flusher took (or, copied, several small ones)
// that the peer has not yet wholly covered: b[off:] holds its n frames
// not covered.
type heldBatch struct {
	b      []byte
	off    int
	n      int
	copied bool // b is a buffer of copies (holdCopyLocked), never written by the flusher
}

// keepFreed is how many wholly covered batches are kept for reuse: about
// as many as are held at once under load, so that buffers circulate
// rather than being allocated for each batch.
const keepFreed = 8

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
		o.appendLocked(d)
		o.mu.Unlock()
		o.wake()
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
		return n == 0 || (n < o.maxFrames && len(o.buf)+o.heldBytes < o.maxBytes)
	}
	return o.frames == 0 || (o.frames < o.maxFrames && len(o.buf) < o.maxBytes)
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
	o.buf = frame.AppendData(o.buf, d)
	o.frames++
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

// shrinkAbove: a spare buffer larger than this is released when the
// traffic that grew it has passed, that is after shrinkAfter batches in a
// row used less than a quarter of it.
const (
	shrinkAbove = 1 << 20
	shrinkAfter = 64
)

// writeChunk bounds one stream write of the flusher.
const writeChunk = 64 << 10

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

var clockBase = time.Now()

func (o *outbox) wake() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// take swaps out everything queued. The returned slice is owned by the
// flusher until its next call to take.
func (o *outbox) take() ([]byte, int) {
	o.mu.Lock()
	b, n := o.buf, o.frames
	next := o.spare[:0]
	whole := false // b itself is held: it is not the next spare
	if o.custody && n > 0 {
		if len(b) >= holdWhole {
			next, whole = o.holdWholeLocked(b, n), true
		} else {
			o.holdCopyLocked(b, n)
		}
	}
	if !whole && cap(next) > shrinkAbove {
		// A past burst grew it. Release it once traffic has stayed well
		// below its size for a while (not at the first small batch, which
		// would free and regrow it over and over under steady load).
		if len(b) < cap(next)/4 {
			o.small++
		} else {
			o.small = 0
		}
		if o.small >= shrinkAfter {
			next, o.small = nil, 0
		}
	}
	o.buf, o.frames = next, 0
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
	if !whole {
		o.spare = b
	}
	return b, n
}

// Custody holds a batch of at least holdWhole bytes as it is, and copies a
// smaller one into a buffer of copyHeld bytes that collects small batches:
// a large batch is not copied (the copy and the compaction behind it, two
// more passes over every byte under the queue's lock, cost the 1 KiB
// cascade about 2 % of its throughput), and a small one (a request, a
// trickle of frames) costs no buffer of its own.
const (
	holdWhole = 16 << 10
	copyHeld  = 64 << 10
)

// holdWholeLocked holds the batch b of n frames as it is and returns the
// next queue buffer: one the peer covered, or a new one. o.mu is held.
func (o *outbox) holdWholeLocked(b []byte, n int) []byte {
	o.held = append(o.held, heldBatch{b: b, n: n})
	o.heldFrames += n
	o.heldBytes += len(b)
	// The buffers a past burst grew are released once traffic has stayed
	// well below their size for a while, as spare is in take.
	if k := len(o.freed); k > 0 && cap(o.freed[k-1]) > shrinkAbove {
		if len(b) < cap(o.freed[k-1])/4 {
			o.small++
		} else {
			o.small = 0
		}
		if o.small >= shrinkAfter {
			clear(o.freed)
			o.freed, o.freedBytes, o.small = o.freed[:0], 0, 0
		}
	}
	if next := o.popFreedLocked(0); next != nil {
		return next
	}
	// Room for a batch twice this one, so that buffers in use settle at
	// a size rather than grow at each larger batch.
	return make([]byte, 0, 2*len(b))
}

// holdCopyLocked holds a copy of the small batch b of n frames, in the
// last held buffer of copies when it has room. o.mu is held.
func (o *outbox) holdCopyLocked(b []byte, n int) {
	if k := len(o.held); k > o.heldHead {
		if h := &o.held[k-1]; h.copied && len(h.b)+len(b) <= cap(h.b) {
			h.b = append(h.b, b...)
			h.n += n
			o.heldFrames += n
			o.heldBytes += len(b)
			return
		}
	}
	buf := o.popFreedLocked(copyHeld)
	if buf == nil {
		buf = make([]byte, 0, copyHeld)
	}
	o.held = append(o.held, heldBatch{b: append(buf, b...), n: n, copied: true})
	o.heldFrames += n
	o.heldBytes += len(b)
}

// popFreedLocked returns a covered buffer of at least min bytes of
// capacity for reuse, emptied, or nil. Called from take only: the flusher
// has finished writing every buffer in freed. o.mu is held.
func (o *outbox) popFreedLocked(min int) []byte {
	k := len(o.freed)
	if k == 0 || cap(o.freed[k-1]) < min {
		return nil
	}
	b := o.freed[k-1][:0]
	o.freed[k-1] = nil
	o.freed = o.freed[:k-1]
	o.freedBytes -= cap(b)
	return b
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
		_, n, err := frame.ParseHeader(h.b[h.off:], math.MaxInt)
		if err != nil {
			break // cannot happen: held holds frames we encoded
		}
		h.off += frame.HeaderSize + n
		h.n--
		o.heldFrames--
		o.heldBytes -= frame.HeaderSize + n
		o.released++
		if h.n == 0 {
			if len(o.freed) < keepFreed && o.freedBytes+cap(h.b) <= 2*o.maxBytes {
				o.freed = append(o.freed, h.b)
				o.freedBytes += cap(h.b)
			}
			*h = heldBatch{}
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
	o.buf = append(o.heldLocked(), o.buf...)
	o.frames += o.heldFrames
	o.dropHeldLocked()
	o.wake() // for the next flusher
}

// heldLocked returns a copy of the frames held, in order; o.mu is held.
func (o *outbox) heldLocked() []byte {
	b := make([]byte, 0, o.heldBytes)
	for _, h := range o.held[o.heldHead:] {
		b = append(b, h.b[h.off:]...)
	}
	return b
}

// dropHeldLocked forgets the frames held; o.mu is held.
func (o *outbox) dropHeldLocked() {
	o.held, o.heldHead, o.heldFrames, o.heldBytes = nil, 0, 0, 0
	o.freed, o.freedBytes = nil, 0
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
	b := append(o.heldLocked(), o.buf...)
	n := o.heldFrames + o.frames
	o.dropHeldLocked()
	o.buf, o.frames = nil, 0
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
	return b, n
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
	return o.frames, len(o.buf)
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
	o.buf, o.frames = nil, 0
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
			b, n := o.take()
			if n == 0 {
				break
			}
			if sent != nil {
				sent(n)
			}
			// Write in chunks so progress is visible at a fine grain even
			// when a large batch accumulated.
			for len(b) > 0 {
				c := min(len(b), writeChunk)
				if _, err := w.Write(b[:c]); err != nil {
					return n, err
				}
				o.progress.Store(nanotime())
				b = b[c:]
			}
		}
		if draining {
			return 0, nil
		}
	}
}
