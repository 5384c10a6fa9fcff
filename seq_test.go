package yomo

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

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
	c := &conn{z: z, cnt: new(connCounters), policy: DropNewest, out: newOutbox(1<<16, 1<<30, nil)}
	c.writerOn.Store(true) // deliver only queues
	return &seqHarness{z: z, to: c, k: flowKey{flow: 7, name: "sink"}}
}

func (h *seqHarness) admit(seq uint64) {
	h.z.admit(h.k, seq, &frame.Data{Tag: 1, Payload: []byte(fmt.Sprint(seq))}, h.to, nil)
}

// delivered returns the numbers queued for the destination since the
// last call, in queue order.
func (h *seqHarness) delivered(t *testing.T) []string {
	t.Helper()
	b, _ := h.to.out.take()
	var got []string
	for len(b) > 0 {
		_, n, err := frame.ParseHeader(b, math.MaxInt)
		if err != nil {
			t.Fatal(err)
		}
		var d frame.Data
		if err := d.Decode(b[frame.HeaderSize : frame.HeaderSize+n]); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d.Payload))
		b = b[frame.HeaderSize+n:]
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
	st := h.z.seq.state(h.k, 0, nanotime())
	st.since -= int64(seqGapTimeout)
	st.mu.Unlock()
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
		{frame.Data{Names: names, Seq: frame.AppendSeq(nil, 1, 5, 6)}, true},
		{frame.Data{Seq: frame.AppendSeq(nil, 1, 5)}, true}, // backflow: one number
		{frame.Data{Names: names, Seq: frame.AppendSeq(nil, 1, 5)}, false},
		{frame.Data{Names: names, Seq: frame.AppendSeq(nil, 1, 5, 6, 7)}, false},
		{frame.Data{Seq: []byte{1, 2, 3}}, false},
	} {
		if err := checkSeq(&c.d); (err == nil) != c.ok {
			t.Errorf("checkSeq(%x) = %v", c.d.Seq, err)
		}
	}
}
