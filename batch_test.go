package yomo

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// A reader's batch counts what it read in Stats, but takes into custody,
// and counts as routed, only the frames that passed the checks: a frame
// the client may not write ends the batch (and the connection) without
// being acknowledged, and the frames before it are. The zipper's count
// of frames in takes a batch before its last frame is routed, once.
func TestBatchAcknowledgesOnlyRoutedFrames(t *testing.T) {
	z, err := NewZipper("batch", WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	z.holdCustody.Store(true) // no control stream here: count, do not send
	src := regForBatch(t, z, &frame.Handshake{Kind: frame.KindSource, Name: "src", ID: 7, Custody: true})
	src.write = newTagSet([]Tag{1}) // its ACL: tag 1 only
	fn := regForBatch(t, z, &frame.Handshake{Kind: frame.KindFunction, Name: "fn", ObserveTags: []Tag{1}})

	var b inBatch
	sc := scratch{batch: true} // as readData's: fn's queue stays locked across a batch
	for range 3 {
		if err := src.readFrame(&frame.Data{Tag: 1, Payload: []byte("ok")}, 10, false, &b, &sc); err != nil {
			t.Fatal(err)
		}
	}
	err = src.readFrame(&frame.Data{Tag: 2, Payload: []byte("denied")}, 10, true, &b, &sc)
	var rej *rejection
	if !errors.As(err, &rej) || rej.code != frame.RejectDenied {
		t.Fatalf("a frame of a tag the client may not write: %v, want a RejectDenied rejection", err)
	}
	if err := src.endBatch(&b, &sc); err != nil {
		t.Fatal(err)
	}
	if got := src.acks.took.Load(); got != 3 {
		t.Fatalf("custody took %d frames, want the 3 routed", got)
	}
	if got := src.cnt.framesIn.Load(); got != 4 {
		t.Fatalf("the connection counted %d frames in, want the 4 read", got)
	}
	if got := z.Stats().FramesIn; got != 3 {
		t.Fatalf("the zipper counted %d frames in, want the 3 routed", got)
	}
	if fn.queue().mu.TryLock() {
		fn.queue().mu.Unlock()
	} else {
		t.Fatal("the batch ended with the function's queue still locked")
	}
	if _, n := fn.queue().take(); n != 3 {
		t.Fatalf("the function got %d frames, want 3", n)
	}
	if src.writer.mu.TryLock() {
		src.writer.mu.Unlock()
	} else {
		t.Fatal("the batch ended with the writer's lock still held")
	}
	// A batch whose only frame failed counts it as read and nothing else.
	_ = src.readFrame(&frame.Data{Tag: 2}, 5, true, &b, &sc)
	if err := src.endBatch(&b, &sc); err != nil {
		t.Fatal(err)
	}
	if src.acks.took.Load() != 3 || src.cnt.framesIn.Load() != 5 || z.Stats().FramesIn != 3 {
		t.Fatalf("after a failed frame alone: custody %d, read %d, routed %d; want 3, 5, 3",
			src.acks.took.Load(), src.cnt.framesIn.Load(), z.Stats().FramesIn)
	}
	// A batch of two whose last frame is routed: the zipper counts both
	// before routing the last, so whoever sees it routed sees it counted.
	for i := range 2 {
		if err := src.readFrame(&frame.Data{Tag: 1, Payload: []byte("ok")}, 10, i == 1, &b, &sc); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		// What Stats reports as FramesIn: Stats itself would wait for the
		// function's queue, which the batch holds.
		if got, conn := z.framesIn.Load(), src.cnt.framesIn.Load(); got != 5 || conn != 7 {
			t.Fatalf("%s its batch ended, the zipper counts %d frames in and the connection %d, want 5 and 7", when, got, conn)
		}
	}
	check("before")
	if got := src.handled.Load(); got != 5 {
		t.Fatalf("before its batch ended, %d frames handled (for Flush), want 5: a Flush could be answered before the last frame is routed", got)
	}
	if err := src.endBatch(&b, &sc); err != nil {
		t.Fatal(err)
	}
	check("after") // none counted twice
	if got := src.handled.Load(); got != 7 {
		t.Fatalf("after its batch ended, %d frames handled, want 7", got)
	}
}

// regForBatch registers a connection with handshake hs on z, on an
// in-memory transport end, as the handshake would (no goroutines).
func regForBatch(t *testing.T, z *Zipper, hs *frame.Handshake) *conn {
	t.Helper()
	_, srv := transport.Pipe("batch")
	c := z.newConn(srv, nil)
	if rej := z.register(c, hs); rej != nil {
		t.Fatalf("register %s: %s", hs.Name, rej.reason)
	}
	t.Cleanup(func() { z.unregister(c) })
	return c
}

// A reader keeps a function's queue locked across the frames of a batch
// it queues there; the counts per tag it adds when it lets go must still
// go to each frame's own tag, whichever destinations and tags alternate.
func TestBatchCountsEachTagOfAHeldQueue(t *testing.T) {
	z, err := NewZipper("batch", WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	src := regForBatch(t, z, &frame.Handshake{Kind: frame.KindSource, Name: "src", ID: 7})
	fa := regForBatch(t, z, &frame.Handshake{Kind: frame.KindFunction, Name: "a", ObserveTags: []Tag{1, 2}})
	fb := regForBatch(t, z, &frame.Handshake{Kind: frame.KindFunction, Name: "b", ObserveTags: []Tag{3}})

	var b inBatch
	sc := scratch{batch: true}
	tags := []Tag{1, 1, 2, 1, 3, 3, 1, 2, 2}
	for i, tag := range tags {
		if err := src.readFrame(&frame.Data{Tag: tag, Payload: []byte{byte(i)}}, 10, i == len(tags)-1, &b, &sc); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.endBatch(&b, &sc); err != nil {
		t.Fatal(err)
	}
	want := map[*conn]map[Tag]uint64{fa: {1: 4, 2: 3}, fb: {3: 2}}
	for c, tags := range want {
		for tag, n := range tags {
			if got := c.observes(tag).queued.Load(); got != n {
				t.Errorf("%s: %d frames of tag %d counted as queued, want %d", c.hs.Name, got, tag, n)
			}
		}
	}
	// In order, each function's own.
	for c, order := range map[*conn][]byte{fa: {0, 1, 2, 3, 6, 7, 8}, fb: {4, 5}} {
		views, n := c.queue().take()
		if n != len(order) {
			t.Fatalf("%s got %d frames, want %d", c.hs.Name, n, len(order))
		}
		var got []byte
		for _, v := range views {
			for len(v) > 0 {
				_, size, err := frame.ParseHeader(v, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				var d frame.Data
				if err := d.Decode(v[frame.HeaderSize : frame.HeaderSize+size]); err != nil {
					t.Fatal(err)
				}
				got = append(got, d.Payload[0])
				v = v[frame.HeaderSize+size:]
			}
		}
		if string(got) != string(order) {
			t.Errorf("%s got frames %v, want %v", c.hs.Name, got, order)
		}
	}
}

// A frame that finds the queue the reader holds full waits for room (the
// Block policy) only after the reader lets go of the queue: otherwise the
// flusher, which makes the room, could never take the lock.
func TestBatchLetsGoOfAFullQueueBeforeWaiting(t *testing.T) {
	z, err := NewZipper("batch", WithLogger(slog.New(slog.DiscardHandler)),
		WithQueueLimits(2, 1<<20), WithOverflowPolicy(Block))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Close() }()
	src := regForBatch(t, z, &frame.Handshake{Kind: frame.KindSource, Name: "src", ID: 7})
	fn := regForBatch(t, z, &frame.Handshake{Kind: frame.KindFunction, Name: "fn", ObserveTags: []Tag{1}})

	var b inBatch
	sc := scratch{batch: true}
	for range 2 { // fills the queue, which the reader now holds
		if err := src.readFrame(&frame.Data{Tag: 1, Payload: []byte("x")}, 10, false, &b, &sc); err != nil {
			t.Fatal(err)
		}
	}
	third := make(chan error, 1)
	go func() { third <- src.readFrame(&frame.Data{Tag: 1, Payload: []byte("y")}, 10, true, &b, &sc) }()
	took := make(chan int, 1)
	go func() { _, n := fn.queue().take(); took <- n }() // the flusher
	deadline := time.After(10 * time.Second)
	select {
	case n := <-took:
		if n != 2 {
			t.Fatalf("the flusher took %d frames, want the 2 queued", n)
		}
	case <-deadline:
		t.Fatal("the flusher could not take the full queue: the reader waits for room holding its lock")
	}
	select {
	case err := <-third:
		if err != nil {
			t.Fatal(err)
		}
	case <-deadline:
		t.Fatal("the third frame still waits for room after the flusher took the queue")
	}
	if err := src.endBatch(&b, &sc); err != nil {
		t.Fatal(err)
	}
	if _, n := fn.queue().take(); n != 1 {
		t.Fatalf("the flusher then took %d frames, want the third", n)
	}
	if d := z.Stats().Dropped; d != 0 {
		t.Fatalf("%d frames dropped, want none (Block)", d)
	}
}

// A connection whose queue was never made and that has ended drops a
// frame routed to it late (by a reader that found it before it was
// unregistered) and counts it, as it would with a queue that was closed.
func TestLateFrameForConnWithoutQueueIsCounted(t *testing.T) {
	z, err := NewZipper("late", WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	src := regForBatch(t, z, &frame.Handshake{Kind: frame.KindSource, Name: "src", ID: 9})
	if src.out.Load() != nil {
		t.Fatal("a source registered with nothing routed to it has a queue")
	}
	z.unregister(src)
	src.deliver(&frame.Data{Tag: 1, Payload: []byte("late")}, nil)
	if got := src.cnt.dropped.Load(); got != 1 {
		t.Fatalf("the connection counted %d dropped frames, want 1", got)
	}
	if got := z.Stats().Dropped; got != 1 {
		t.Fatalf("the zipper counted %d dropped frames, want 1", got)
	}
	if n, _ := src.queueDepth(); n != 0 {
		t.Fatalf("%d frames queued for an ended connection", n)
	}
}
