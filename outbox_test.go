package yomo

import (
	"testing"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// A destination that was idle for longer than the stall timeout is not
// stuck: when a burst fills its queue before its flusher has even woken,
// producers must wait for the flusher, not drop. This is the race that
// made a fast function lose frames next to a stuck one.
func TestOutboxIdleDestinationIsNotStalled(t *testing.T) {
	const stall = 500 * time.Millisecond
	o := newOutbox(4, 1<<20)
	// The last write completed long ago; the flusher is idle (not started
	// here, so it cannot record anything itself).
	o.progress.Store(nanotime() - int64(10*stall))
	d := &frame.Data{Tag: 1, Payload: []byte("x")}
	for i := range 4 {
		if !o.put(d, DropStalled, nil, 0, stall) {
			t.Fatalf("put %d into a queue with room failed", i)
		}
	}
	done := make(chan bool, 1)
	go func() { done <- o.put(d, DropStalled, nil, 0, stall) }()
	// The fifth put must wait for room (not drop): wait until it does.
	deadline := time.Now().Add(10 * time.Second)
	for !o.hasWaiter() {
		select {
		case ok := <-done:
			t.Fatalf("put into a full queue returned %v at once; it should wait for the flusher", ok)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("put neither waited nor returned")
		}
		time.Sleep(time.Millisecond)
	}
	// The flusher takes the batch: room is made, the waiting put succeeds.
	if _, n := o.take(); n != 4 {
		t.Fatalf("took %d frames, want 4", n)
	}
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("frame dropped for a destination whose flusher had work for less than the stall timeout")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("put did not return after room was made")
	}
}

// A flusher that holds a batch it cannot write (its reader is stuck) is
// declared stalled one stall timeout after its last completed write, even
// though frames keep arriving for it.
func TestOutboxStuckDestinationIsDroppedAfterStallTimeout(t *testing.T) {
	const stall = 50 * time.Millisecond
	o := newOutbox(2, 1<<20)
	d := &frame.Data{Tag: 1, Payload: []byte("x")}
	o.put(d, DropStalled, nil, 0, stall)
	if _, n := o.take(); n != 1 { // the flusher is now "writing", forever
		t.Fatalf("took %d, want 1", n)
	}
	start := time.Now()
	for range 2 {
		if !o.put(d, DropStalled, nil, 0, stall) {
			t.Fatal("put into a queue with room failed")
		}
	}
	if o.put(d, DropStalled, nil, 0, stall) {
		t.Fatal("a full queue whose flusher never completes a write accepted a frame")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("dropping took %v", el)
	}
	// Once stalled, later frames are dropped at once, without waiting.
	o.progress.Store(nanotime() - int64(2*time.Hour))
	before := time.Now()
	if o.put(d, DropStalled, nil, 0, time.Hour) {
		t.Fatal("accepted a frame for a stalled destination")
	}
	if el := time.Since(before); el > time.Second {
		t.Fatalf("a put for a destination stalled for an hour waited %v", el)
	}
}

// hasWaiter reports whether a put is waiting for room.
func (o *outbox) hasWaiter() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.space != nil
}
