package yomo

import (
	"testing"

	"github.com/yomo-dev/yomo/frame"
)

// The zipper's memory of clients that keep their frames: a reconnecting
// client finds what was routed for it; one of another identity claiming
// its id does not; past writerMaxGone clients that left, one that leaves
// is forgotten at once.
func TestWritersRememberRoutedAcrossConnections(t *testing.T) {
	var w writers
	conn := func(ident string, id uint64) *conn {
		c := &conn{ident: ident, hs: &frame.Handshake{Name: "src", ID: id}}
		c.writer = w.attach(writerKey{ident: ident, name: "src", id: id})
		return c
	}
	c1 := conn("alice", 7)
	c1.writer.routed = 100
	w.detach(c1)
	if c2 := conn("alice", 7); c2.writer.routed != 100 {
		t.Fatalf("a reconnecting client finds %d routed, want 100", c2.writer.routed)
	}
	if c3 := conn("mallory", 7); c3.writer.routed != 0 {
		t.Fatal("another identity with the same id shares the client's memory")
	}
	for i := range writerMaxGone + 1 {
		w.detach(conn("bob", uint64(1000+i)))
	}
	if w.gone != writerMaxGone || len(w.m) != writerMaxGone+2 {
		t.Fatalf("remembered %d clients that left (%d in all), want at most %d", w.gone, len(w.m), writerMaxGone)
	}
}
