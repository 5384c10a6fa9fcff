package yomo

import (
	"sync"
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

	spare []byte // the flusher's buffer, touched only by the flusher
}

func newOutbox(maxFrames, maxBytes int) *outbox {
	return &outbox{maxFrames: maxFrames, maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

// put encodes d into the queue. With wait == nil it never blocks and
// returns false when the queue is full (the caller counts the drop). With
// wait != nil it waits for room until wait is closed or timeout passes
// (zero: no timeout), and returns false then.
func (o *outbox) put(d *frame.Data, wait <-chan struct{}, timeout time.Duration) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var expired <-chan time.Time
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return false
		}
		if o.frames == 0 || (o.frames < o.maxFrames && len(o.buf) < o.maxBytes) {
			o.buf = frame.AppendData(o.buf, d)
			o.frames++
			o.mu.Unlock()
			o.wake()
			return true
		}
		if wait == nil {
			o.mu.Unlock()
			return false
		}
		if o.space == nil {
			o.space = make(chan struct{})
		}
		space := o.space
		o.mu.Unlock()
		if timer == nil && timeout > 0 {
			timer = time.NewTimer(timeout)
			expired = timer.C
		}
		select {
		case <-space:
		case <-wait:
			return false
		case <-expired:
			return false
		}
	}
}

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
	o.buf, o.frames = o.spare[:0], 0
	if o.space != nil {
		close(o.space)
		o.space = nil
	}
	o.mu.Unlock()
	o.spare = b
	return b, n
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
			if _, err := w.Write(b); err != nil {
				return n, err
			}
		}
		if draining {
			return 0, nil
		}
	}
}
