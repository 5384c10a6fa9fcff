package yomo

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// seqHarness is a zipper reduced to its sequencer and one local
// destination whose queue the test reads.
type seqHarness struct {
	z  *Zipper
	to *conn
	k  flowKey
}

func newSeqHarness() *seqHarness {
	z := &Zipper{ctx: context.Background()}
	c := &conn{z: z, cnt: new(connCounters), policy: DropNewest}
	c.out.Store(newOutbox(1<<16, 1<<30, nil))
	c.writerOn.Store(true) // deliver only queues
	return &seqHarness{z: z, to: c, k: flowKey{flow: 7, name: "sink"}}
}

func (h *seqHarness) admit(seq uint64) { h.admitBack(seq, 0) }

func (h *seqHarness) admitBack(seq, back uint64) {
	h.z.admit(h.k, frame.SeqNum{N: seq, Back: back}, &frame.Data{Tag: 1, Payload: []byte(fmt.Sprint(seq))}, h.to, nil)
}

// ageGap makes the flow's current gap look d old.
func (h *seqHarness) ageGap(d time.Duration) {
	k := h.k
	k.flow &^= 1<<genBits - 1
	st := h.z.seq.state(k, uint16(h.k.flow), frame.SeqNum{}, nanotime())
	st.since -= int64(d)
	st.mu.Unlock()
}

// delivered returns the numbers queued for the destination since the
// last call, in queue order.
func (h *seqHarness) delivered(t *testing.T) []string {
	t.Helper()
	views, _ := h.to.queue().take()
	var got []string
	for _, p := range framePayloads(t, joined(views)) {
		got = append(got, string(p))
	}
	return got
}

func (h *seqHarness) expect(t *testing.T, want ...string) {
	t.Helper()
	if got := h.delivered(t); !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
}

func TestSeqOrderAndDuplicates(t *testing.T) {
	h := newSeqHarness()
	h.admit(1)
	h.admit(3) // overtook 2: held
	h.expect(t, "1")
	h.admit(2)
	h.expect(t, "2", "3")
	h.admit(2) // custody's second copy
	h.admit(3)
	h.expect(t)
	if d := h.z.seqDups.Load(); d != 2 {
		t.Fatalf("duplicates %d, want 2", d)
	}
	h.admit(0) // not sequenced: as it comes
	h.expect(t, "0")
}

func TestSeqGapSkippedThenLate(t *testing.T) {
	h := newSeqHarness()
	h.admit(1)
	h.admit(3)
	h.admit(4)
	h.expect(t, "1")
	h.z.sweepSeq() // the gap is new: nothing moves
	h.expect(t)
	h.ageGap(seqGapTimeout)
	h.z.sweepSeq()
	h.expect(t, "3", "4")
	if g := h.z.seqGaps.Load(); g != 1 {
		t.Fatalf("gaps %d, want 1", g)
	}
	h.admit(2) // arrives after all: late, not lost
	h.expect(t, "2")
	h.admit(2)
	h.expect(t)
	if g, l, d := h.z.seqGaps.Load(), h.z.seqLate.Load(), h.z.seqDups.Load(); g != 0 || l != 1 || d != 1 {
		t.Fatalf("gaps %d late %d duplicates %d, want 0 1 1", g, l, d)
	}
}

func TestSeqFlowFirstSeenMidway(t *testing.T) {
	h := newSeqHarness()
	h.admit(10) // the flow's route came here after a while, or 9 is slower
	h.expect(t, "10")
	h.admit(9)
	h.expect(t, "9")
	h.admit(9)
	h.admit(10)
	h.expect(t)
	h.admit(11)
	h.expect(t, "11")
}

func TestSeqFlowFirstSeenWithBackWaits(t *testing.T) {
	h := newSeqHarness()
	h.admitBack(16, 15) // 1..15 went by a slower path shortly before
	h.expect(t)
	h.admit(17)
	for s := uint64(1); s <= 15; s++ {
		h.admitBack(s, 0)
	}
	want := []string{}
	for s := 1; s <= 17; s++ {
		want = append(want, fmt.Sprint(s))
	}
	h.expect(t, want...)
	if l, g := h.z.seqLate.Load(), h.z.seqGaps.Load(); l != 0 || g != 0 {
		t.Fatalf("late %d gaps %d, want 0 0", l, g)
	}
}

func TestSeqBackGapWaitsOnlySeqBackTimeout(t *testing.T) {
	h := newSeqHarness()
	h.admitBack(8, 4) // 4..7 may be on a slower path
	h.admit(9)
	h.admit(5) // 4 never comes: it went where the function was before
	h.expect(t)
	h.ageGap(seqBackTimeout - 100*time.Millisecond)
	h.z.sweepSeq()
	h.expect(t)
	h.ageGap(100 * time.Millisecond)
	h.z.sweepSeq()
	h.expect(t, "5", "8", "9")
	h.admit(6) // the wait is over: late
	h.expect(t, "6")
	h.admit(10)
	h.admit(12) // an ordinary gap later in the flow waits seqGapTimeout
	h.ageGap(seqBackTimeout)
	h.z.sweepSeq()
	h.expect(t, "10")
	h.ageGap(seqGapTimeout - seqBackTimeout)
	h.z.sweepSeq()
	h.expect(t, "12")
}

func TestSeqCounterBack(t *testing.T) {
	var c seqCounter
	now := int64(time.Hour)
	for i := uint64(1); i <= 5; i++ {
		if s := c.next("b", now); s != (frame.SeqNum{N: i}) {
			t.Fatalf("frame %d: %+v, want no back", i, s)
		}
	}
	// The flow moves to c right after 1..5 went to b: they may still be
	// on their way.
	now += int64(time.Millisecond)
	if s := c.next("c", now); s != (frame.SeqNum{N: 6, Back: 5}) {
		t.Fatalf("first frame on the new hop: %+v", s)
	}
	if s := c.next("c", now); s != (frame.SeqNum{N: 7, Back: 6}) {
		t.Fatalf("second frame on the new hop: %+v", s)
	}
	// And back to b within the window: the back still reaches 1.
	if s := c.next("b", now); s != (frame.SeqNum{N: 8, Back: 7}) {
		t.Fatalf("moved again: %+v", s)
	}
	// Once the window passed, frames carry no back.
	now += int64(seqGapTimeout)
	if s := c.next("b", now); s != (frame.SeqNum{N: 9}) {
		t.Fatalf("after the window: %+v", s)
	}
	// A move after a long silence: the old frames are settled.
	now += int64(seqGapTimeout)
	if s := c.next("c", now); s != (frame.SeqNum{N: 10}) {
		t.Fatalf("move after silence: %+v", s)
	}
	// A move after a window expired starts the back at the last run.
	now += int64(time.Millisecond)
	if s := c.next("b", now); s != (frame.SeqNum{N: 11, Back: 1}) {
		t.Fatalf("move after an expired window: %+v", s)
	}
}

func TestSeqNewGenerationFlushesAndDropsStale(t *testing.T) {
	h := newSeqHarness()
	h.admit(1)
	h.admit(2)
	h.admit(4) // 3 was lost and counted upstream
	h.admit(5)
	h.expect(t, "1", "2")
	h.k.flow++ // the writer's zipper lost frames: a new generation
	h.admit(1)
	h.expect(t, "4", "5", "1")
	h.admit(2)
	h.expect(t, "2")
	h.k.flow-- // the old generation's 3, rerouted late
	h.admit(3)
	h.admit(6)
	h.expect(t)
	if s, d, g := h.z.seqStale.Load(), h.z.droppedAll.Load(), h.z.seqGaps.Load(); s != 2 || d != 2 || g != 1 {
		t.Fatalf("stale %d dropped %d gaps %d, want 2 2 1", s, d, g)
	}
	h.k.flow += 1 << 16 // another writer: its own flow
	h.admit(1)
	h.expect(t, "1")
}

func TestSeqGenerationWraps(t *testing.T) {
	h := newSeqHarness()
	h.k.flow = 5<<genBits | 0xffff
	h.admit(1)
	h.k.flow = 5 << genBits // generation 0 follows 0xffff
	h.admit(1)
	h.expect(t, "1", "1")
	h.k.flow = 5<<genBits | 0xffff
	h.admit(2)
	h.expect(t)
	if s := h.z.seqStale.Load(); s != 1 {
		t.Fatalf("stale %d, want 1", s)
	}
}

func TestSeqTooMuchHeldSkips(t *testing.T) {
	h := newSeqHarness()
	h.admit(1)
	for s := uint64(3); s <= seqMaxHeld+3; s++ {
		h.admit(s)
	}
	got := h.delivered(t)
	if len(got) != seqMaxHeld+2 || got[0] != "1" || got[1] != "3" {
		t.Fatalf("delivered %d frames starting %q", len(got), got[:2])
	}
	if g := h.z.seqGaps.Load(); g != 1 {
		t.Fatalf("gaps %d, want 1", g)
	}
}

func TestCheckSeq(t *testing.T) {
	names := frame.AppendStrList(nil, "a", "b")
	for _, c := range []struct {
		d  frame.Data
		ok bool
	}{
		{frame.Data{}, true},
		{frame.Data{Names: names, Seq: frame.AppendSeq(nil, 1, frame.SeqNum{N: 5}, frame.SeqNum{N: 6})}, true},
		{frame.Data{Seq: frame.AppendSeq(nil, 1, frame.SeqNum{N: 5})}, true}, // backflow: one number
		{frame.Data{Names: names, Seq: frame.AppendSeq(nil, 1, frame.SeqNum{N: 5})}, false},
		{frame.Data{Names: names, Seq: frame.AppendSeq(nil, 1, frame.SeqNum{N: 5}, frame.SeqNum{N: 6}, frame.SeqNum{N: 7})}, false},
		{frame.Data{Seq: []byte{1, 2, 3}}, false},
	} {
		if err := checkSeq(&c.d); (err == nil) != c.ok {
			t.Errorf("checkSeq(%x) = %v", c.d.Seq, err)
		}
	}
}
