package yomo

import (
	"errors"
	"log/slog"
	"testing"

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
	reg := func(hs *frame.Handshake) *conn {
		_, srv := transport.Pipe("batch")
		c := z.newConn(srv, nil)
		if rej := z.register(c, hs); rej != nil {
			t.Fatalf("register %s: %s", hs.Name, rej.reason)
		}
		t.Cleanup(func() { z.unregister(c) })
		return c
	}
	src := reg(&frame.Handshake{Kind: frame.KindSource, Name: "src", ID: 7, Custody: true})
	src.write = newTagSet([]Tag{1}) // its ACL: tag 1 only
	fn := reg(&frame.Handshake{Kind: frame.KindFunction, Name: "fn", ObserveTags: []Tag{1}})

	var b inBatch
	var sc scratch
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
	if err := src.endBatch(&b); err != nil {
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
	if _, n := fn.out.take(); n != 3 {
		t.Fatalf("the function got %d frames, want 3", n)
	}
	if src.writer.mu.TryLock() {
		src.writer.mu.Unlock()
	} else {
		t.Fatal("the batch ended with the writer's lock still held")
	}
	// A batch whose only frame failed counts it as read and nothing else.
	_ = src.readFrame(&frame.Data{Tag: 2}, 5, true, &b, &sc)
	if err := src.endBatch(&b); err != nil {
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
		if got, conn := z.Stats().FramesIn, src.cnt.framesIn.Load(); got != 5 || conn != 7 {
			t.Fatalf("%s its batch ended, the zipper counts %d frames in and the connection %d, want 5 and 7", when, got, conn)
		}
	}
	check("before")
	if got := src.handled.Load(); got != 5 {
		t.Fatalf("before its batch ended, %d frames handled (for Flush), want 5: a Flush could be answered before the last frame is routed", got)
	}
	if err := src.endBatch(&b); err != nil {
		t.Fatal(err)
	}
	check("after") // none counted twice
	if got := src.handled.Load(); got != 7 {
		t.Fatalf("after its batch ended, %d frames handled, want 7", got)
	}
}
