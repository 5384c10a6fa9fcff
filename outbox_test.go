package yomo

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
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
	o := newOutbox(4, 1<<20, nil)
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
	// The fifth put must wait for room (not drop).
	waitForWaiter(t, o, done)
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
	o := newOutbox(2, 1<<20, nil)
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
	// Once judged stalled, it stays so until it has caught up: a write
	// completing (a rare flow-control update for a slow reader) does not
	// make producers wait a whole stall timeout again.
	o.progress.Store(nanotime())
	done := make(chan bool, 1)
	go func() { done <- o.put(d, DropStalled, nil, 0, time.Hour) }()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("accepted a frame into a full queue")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a put for a destination already judged stalled waited")
	}
	// The flusher empties the queue and finds nothing more: caught up.
	// A full queue is then waited for again while writes complete.
	if _, n := o.take(); n != 2 {
		t.Fatalf("took %d, want 2", n)
	}
	if _, n := o.take(); n != 0 {
		t.Fatalf("took %d, want 0", n)
	}
	for range 2 {
		if !o.put(d, DropStalled, nil, 0, time.Hour) {
			t.Fatal("put into a queue with room failed")
		}
	}
	go func() { done <- o.put(d, DropStalled, nil, 0, time.Hour) }()
	waitForWaiter(t, o, done)
	o.take()
	if !<-done {
		t.Fatal("a destination that caught up was still treated as stalled")
	}
}

// waitForWaiter waits until a put is waiting for room in o; it fails if
// the put returned instead (its result arrives on done).
func waitForWaiter(t *testing.T, o *outbox, done <-chan bool) {
	t.Helper()
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
}

// hasWaiter reports whether a put is waiting for room.
func (o *outbox) hasWaiter() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.space != nil
}

// A destination far away (long round trips) is given stallRTTs round trips
// before it is judged stuck, even with a shorter stall timeout.
func TestOutboxStallTimeoutScalesWithRTT(t *testing.T) {
	o := newOutbox(2, 1<<20, func() time.Duration { return time.Second })
	d := &frame.Data{Tag: 1, Payload: []byte("x")}
	for range 2 {
		if !o.put(d, DropStalled, nil, 0, 50*time.Millisecond) {
			t.Fatal("put into a queue with room failed")
		}
	}
	// Its last write was 1 s ago: stuck by the 50 ms timeout, not by 8 round trips of 1 s.
	o.progress.Store(nanotime() - int64(time.Second))
	done := make(chan bool, 1)
	go func() { done <- o.put(d, DropStalled, nil, 0, 50*time.Millisecond) }()
	waitForWaiter(t, o, done)
	o.take()
	if !<-done {
		t.Fatal("a destination with 1 s round trips was judged stuck after 1 s")
	}
}

// Custody on a client's write buffer: frames taken and not covered go
// back in front of those queued, in order, and a Custody counts frames
// from the first ever put, across requeues; room is what is held plus
// what is queued.
func TestOutboxRequeueKeepsOrderAndNumbers(t *testing.T) {
	size := len(frame.AppendData(nil, &frame.Data{Tag: 1, Payload: []byte("f1")}))
	o := newOutbox(1<<62, 4*size, nil) // room for 4 frames
	o.custody = true
	put := func(s string) {
		t.Helper()
		if !o.put(&frame.Data{Tag: 1, Payload: []byte(s)}, DropNewest, nil, 0, 0) {
			t.Fatalf("put %q failed", s)
		}
	}
	payloads := func(b []byte) []string {
		var out []string
		for _, p := range framePayloads(t, b) {
			out = append(out, string(p))
		}
		return out
	}
	put("f1")
	put("f2")
	put("f3")
	if _, n := o.take(); n != 3 { // the first connection sends f1 … f3
		t.Fatalf("took %d, want 3", n)
	}
	o.release(1) // its zipper covers f1 only
	put("f4")
	put("f5")
	if o.put(&frame.Data{Tag: 1, Payload: []byte("f6")}, DropNewest, nil, 0, 0) {
		t.Fatal("a frame was queued beyond the limit: held frames do not count")
	}
	o.requeue() // the connection ended
	if all, _ := o.releasedAll(); !all || o.releasedCount() != 1 {
		t.Fatalf("after requeue: released %d, nothing held: %v", o.releasedCount(), all)
	}
	b, n := o.take() // the next connection sends f2 … f5, f2 first
	if got := payloads(joined(b)); n != 4 || len(got) != 4 || got[0] != "f2" || got[3] != "f5" {
		t.Fatalf("next connection sends %q (%d frames), want f2 … f5", got, n)
	}
	o.release(1 + 2) // its zipper covers 2 of them: f2, f3
	if all, _ := o.releasedAll(); all || o.releasedCount() != 3 {
		t.Fatalf("released %d, want 3 with f4, f5 held", o.releasedCount())
	}
	o.release(5)
	if all, _ := o.releasedAll(); !all {
		t.Fatal("f4, f5 still held after a Custody covering them")
	}
	if o.heldFrames != 0 || o.heldBytes != 0 {
		t.Fatalf("nothing held, yet %d frames and %d bytes are counted as held", o.heldFrames, o.heldBytes)
	}
}

// Custody holds taken frames in the segments they were encoded in and
// recycles a segment only when nothing refers to it: never while the
// flusher is still writing a batch the peer already covered (it read the
// first frames while the flusher wrote the rest), only once the flusher
// takes again. Frames held across several segments are sent again in
// order.
func TestOutboxCustodyReusesOnlyWrittenBatches(t *testing.T) {
	o := newOutbox(1<<20, 1<<30, nil)
	o.custody = true
	// Frames of 6 KB and of 100 B, so that batches start and end
	// anywhere in a segment and span several.
	payload := func(i int) []byte {
		if i%7 < 3 {
			return bytes.Repeat([]byte{byte(i)}, 100)
		}
		return bytes.Repeat([]byte{byte(i)}, 6000)
	}
	next := 0
	put := func(k int) {
		t.Helper()
		for range k {
			if !o.put(&frame.Data{Tag: 1, Payload: payload(next)}, DropNewest, nil, 0, 0) {
				t.Fatalf("put %d failed", next)
			}
			next++
		}
	}
	check := func(b []byte, first, n int) {
		t.Helper()
		ps := framePayloads(t, b)
		if len(ps) != n {
			t.Fatalf("%d frames, want %d", len(ps), n)
		}
		for i, p := range ps {
			if !bytes.Equal(p, payload(first+i)) {
				t.Fatalf("frame %d has payload %d…", first+i, p[0])
			}
		}
	}
	put(3)
	for round := range 60 {
		views, n := o.take()
		want := joined(views)
		check(want, next-n, n)
		o.release(o.takenCount()) // the peer covers all of it while it is written
		put(40 + round%5)         // producers fill the queue meanwhile: about 140 KB
		if got := joined(views); !bytes.Equal(got, want) {
			t.Fatalf("round %d: the batch being written was overwritten once covered", round)
		}
	}
	// Frames held across segments, the first partly covered: a new
	// connection sends the rest again, in order.
	if _, n := o.take(); n == 0 {
		t.Fatal("nothing taken")
	}
	put(30)
	o.take()
	held := int(o.takenCount() - o.releasedCount())
	o.release(o.releasedCount() + 5)
	o.requeue()
	views, n := o.take()
	if n != held-5 {
		t.Fatalf("requeued %d frames, want %d", n, held-5)
	}
	check(joined(views), next-(held-5), held-5)
}

// Producers encode into the tail segment while the flusher writes the
// part of it taken before: every frame written arrives whole, once, in
// each producer's order, with custody releasing as the flusher goes and
// without. Under -race this also checks that the flusher reads no byte a
// producer writes.
func TestOutboxConcurrentProducersAndFlusher(t *testing.T) {
	for _, custody := range []bool{false, true} {
		o := newOutbox(256, 64<<10, nil)
		o.custody = custody
		const producers, each = 4, 3000
		var got [producers]int // the next number expected from each producer
		var frames int
		var stream []byte // what was written and not yet parsed: writes cut frames anywhere
		w := writerFunc(func(b []byte) (int, error) {
			stream = append(stream, b...)
			for len(stream) >= frame.HeaderSize {
				_, size, err := frame.ParseHeader(stream, 1<<20)
				if err != nil {
					return 0, err
				}
				if len(stream) < frame.HeaderSize+size {
					break // the rest of the frame comes with the next write
				}
				var d frame.Data
				if err := d.Decode(stream[frame.HeaderSize : frame.HeaderSize+size]); err != nil {
					return 0, err
				}
				p, i := int(d.Tag), int(binary.BigEndian.Uint32(d.Payload))
				if p >= producers || i != got[p] || !bytes.Equal(d.Payload[4:], bytes.Repeat([]byte{byte(i)}, i%700)) {
					return 0, fmt.Errorf("producer %d: frame %d arrived where frame %d was due, or damaged", p, i, got[p])
				}
				got[p]++
				frames++
				stream = stream[frame.HeaderSize+size:]
			}
			if custody {
				o.release(uint64(frames)) // the peer covers what it read
			}
			return len(b), nil
		})
		stop, drain := make(chan struct{}), make(chan struct{})
		flushed := make(chan error, 1)
		go func() { // owned by the test: drain ends it
			_, err := o.flush(w, stop, drain, nil)
			o.close() // a failed write: the producers stop
			flushed <- err
		}()
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range each {
					payload := binary.BigEndian.AppendUint32(nil, uint32(i))
					payload = append(payload, bytes.Repeat([]byte{byte(i)}, i%700)...)
					if !o.put(&frame.Data{Tag: frame.Tag(p), Payload: payload}, Block, nil, 0, 0) {
						t.Errorf("producer %d: put %d failed", p, i)
						return
					}
				}
			})
		}
		wg.Wait()
		close(drain)
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		for p := range producers {
			if got[p] != each {
				t.Fatalf("custody %v: producer %d: %d frames arrived, want %d", custody, p, got[p], each)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// A frame is encoded into a segment only when it fits whole: a segment
// never grows (growing would move the frames in it to a new array), for
// frames of every size, including those that leave a segment a few bytes
// short of a whole frame.
func TestOutboxSegmentsNeverGrow(t *testing.T) {
	for size := range 300 {
		o := newOutbox(1<<20, 1<<30, nil)
		d := &frame.Data{Tag: 1, Payload: make([]byte, size)}
		arrays := map[*seg]*byte{}
		for i := range 200 {
			if !o.put(d, DropNewest, nil, 0, 0) {
				t.Fatalf("payload %d: put %d failed", size, i)
			}
			s := o.tail
			first := &s.b[:1][0]
			if a, ok := arrays[s]; ok && a != first {
				t.Fatalf("payload %d, frame %d: the segment grew into a new array", size, i)
			}
			arrays[s] = first
		}
	}
}

// framePayloads decodes b, whole data frames one after another, and
// returns their payloads in order (aliasing b).
func framePayloads(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		_, n, err := frame.ParseHeader(b, math.MaxInt)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < frame.HeaderSize+n {
			t.Fatalf("a frame of %d bytes cut after %d", frame.HeaderSize+n, len(b))
		}
		var d frame.Data
		if err := d.Decode(b[frame.HeaderSize : frame.HeaderSize+n]); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Payload)
		b = b[frame.HeaderSize+n:]
	}
	return out
}

// joined returns the bytes of a batch, as the flusher writes them.
func joined(views [][]byte) []byte {
	var b []byte
	for _, v := range views {
		b = append(b, v...)
	}
	return b
}

// A trickle of single frames under custody (a Source's requests, one at a
// time) allocates nothing once warm: the frames of many batches share a
// segment, recycled once covered. (Holding each batch in a buffer of its
// own cost a 64 KiB buffer per frame and doubled the round trip.)
func TestOutboxCustodySmallBatchesAllocateNothing(t *testing.T) {
	o := newOutbox(1<<62, 4<<20, nil)
	o.custody = true
	d := &frame.Data{Tag: 1, Payload: []byte("ping")}
	var sent int
	step := func() {
		o.put(d, DropNewest, nil, 0, 0)
		if _, n := o.take(); n != 1 {
			t.Fatalf("took %d frames, want 1", n)
		}
		if sent++; sent%256 == 0 {
			o.release(uint64(sent)) // a Custody every 256 frames
		}
	}
	for range 10_000 {
		step() // warm: buffers grown, some covered
	}
	// Per 256 frames: AllocsPerRun's average is a whole number.
	a := testing.AllocsPerRun(40, func() {
		for range 256 {
			step()
		}
	})
	if a >= 1 {
		t.Fatalf("%.0f allocations per 256 frames, want none", a)
	}
}

// TestOutboxCustodyLargeBatchesAllocateNothing: a link's batches vary in
// size (what accumulated while the last was written) and are held until
// a Custody covers them. Once traffic has run a while, covered segments
// are reused: none is allocated (growing a queue buffer instead copied
// everything queued again, a quarter of a zipper's CPU in the cascade
// across processes), nor anything per frame.
func TestOutboxCustodyLargeBatchesAllocateNothing(t *testing.T) {
	o := newOutbox(1<<62, 8<<20, nil)
	o.custody = true
	d := &frame.Data{Tag: 1, Payload: make([]byte, 1024)}
	sizes := []int{20, 700, 60, 1500, 300, 16, 1100, 90} // frames per batch
	var taken [4]uint64                                  // frames taken after each of the last 4 batches
	var batches int
	cycle := func() {
		for _, k := range sizes {
			for range k {
				if !o.put(d, DropNewest, nil, 0, 0) {
					t.Fatal("put failed")
				}
			}
			if _, n := o.take(); n != k {
				t.Fatalf("took %d frames, want %d", n, k)
			}
			taken[batches%4] = o.takenCount()
			if batches++; batches >= 4 {
				// The peer covers what was taken three batches ago.
				o.release(taken[batches%4])
			}
		}
	}
	for range 50 {
		cycle() // warm: buffers grown, some covered
	}
	made := func() uint64 {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.made
	}
	before := made()
	a := testing.AllocsPerRun(20, cycle)
	if n := made() - before; n > 0 {
		t.Fatalf("%d segments allocated in 20 rounds of %d batches, want none", n, len(sizes))
	}
	// AllocsPerRun counts every goroutine's allocations while it runs:
	// the bound tolerates a few from the rest of the process and fails
	// on one per 100 frames.
	if frames := 3786.0; a >= frames/100 {
		t.Fatalf("%.0f allocations per %.0f frames", a, frames)
	}
}

// After a burst, the segments it left in the pool are let go once traffic
// stays small: a connection that was busy once does not keep megabytes.
// They are kept while traffic stays large.
func TestOutboxPoolShrinksAfterBurst(t *testing.T) {
	o := newOutbox(1<<20, 8<<20, nil)
	big := &frame.Data{Tag: 1, Payload: make([]byte, 4<<10)}
	small := &frame.Data{Tag: 1, Payload: []byte("x")}
	batch := func(d *frame.Data, k int) {
		t.Helper()
		for range k {
			if !o.put(d, DropNewest, nil, 0, 0) {
				t.Fatal("put failed")
			}
		}
		if _, n := o.take(); n != k {
			t.Fatalf("took %d frames, want %d", n, k)
		}
	}
	pooled := func() int {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.poolBytes
	}
	batch(big, 1000) // a 4 MiB burst
	batch(small, 1)  // the burst is written
	burst := pooled()
	if burst < 2<<20 {
		t.Fatalf("%d bytes pooled after a 4 MiB burst, want its segments", burst)
	}
	for range 2 * shrinkAfter {
		batch(big, 300) // batches over a quarter of the pool: it stays
	}
	batch(small, 1) // the last is written
	if got := pooled(); got < burst*3/4 {
		t.Fatalf("pool fell from %d to %d bytes under large batches", burst, got)
	}
	for range 8 * shrinkAfter {
		batch(small, 1)
	}
	if got := pooled(); got > segMax {
		t.Fatalf("%d bytes still pooled after %d small batches, want one segment at most", got, 8*shrinkAfter)
	}
}

// Steady small batches (16 B frames, a few per batch) cycle through a
// tail or two and allocate nothing, however long they run: the pool is
// trimmed to what traffic uses, not emptied. (Trimming it by its size
// against the batches' freed and reallocated the segments every few
// thousand frames: 15 B per 16 B frame in BenchmarkZipperRoute.)
func TestOutboxSteadySmallBatchesAllocateNothing(t *testing.T) {
	for _, custody := range []bool{false, true} {
		o := newOutbox(1<<20, 8<<20, nil)
		o.custody = custody
		d := &frame.Data{Tag: 1, Payload: make([]byte, 16)}
		var sent uint64
		run := func(frames int) {
			for i := range frames {
				o.put(d, DropNewest, nil, 0, 0)
				if i%8 == 7 {
					_, n := o.take()
					sent += uint64(n)
					if custody && sent%256 == 0 {
						o.release(sent)
					}
				}
			}
		}
		made := func() uint64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			return o.made
		}
		run(100_000) // warm: segments grown to their largest
		// 200 000 frames of 23 bytes: 4.6 MB through segments of 256 KiB.
		// Counted by the outbox rather than by testing.AllocsPerRun,
		// which counts every goroutine's allocations while it runs.
		before := made()
		run(200_000)
		if n := made() - before; n > 0 {
			t.Fatalf("custody %v: %d segments allocated in 200 000 frames, want none", custody, n)
		}
	}
}

// BenchmarkOutboxCustody measures a client's write buffer per 1 KiB frame:
// put, the flusher's take, and with custody the copy kept until a Custody
// covers it and the release of 256 frames at a time (what first-hop
// custody adds on the client).
//
//	go test -run='^$' -bench=OutboxCustody -count=6 .
func BenchmarkOutboxCustody(b *testing.B) {
	for _, custody := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[custody], func(b *testing.B) {
			o := newOutbox(1<<62, 4<<20, nil)
			o.custody = custody
			d := &frame.Data{Tag: 1, Payload: make([]byte, 1024)}
			b.SetBytes(1024)
			b.ReportAllocs()
			var taken uint64
			for i := range b.N {
				if !o.put(d, Block, nil, 0, 0) {
					b.Fatal("put failed")
				}
				if i%32 == 31 { // a flusher's batch
					_, n := o.take()
					taken += uint64(n)
				}
				if custody && i%256 == 255 {
					o.release(taken)
				}
			}
		})
	}
}

// A link's Custody is due every 1024 frames or 1 MiB with the default
// queue limits, and every eighth of smaller limits, so that the peer's
// held frames never fill its queue before a Custody comes; a client's
// every 256 frames or 256 KiB.
func TestCustodyInterval(t *testing.T) {
	due := func(k *custodyIn, size int) int {
		for i := 1; i <= 1<<20; i++ {
			if k.add(1, uint64(size)) {
				return i
			}
		}
		return -1
	}
	var client, link, small custodyIn
	link.setLink(DefaultQueueFrames, DefaultQueueBytes)
	small.setLink(64, 64<<10)
	for _, c := range []struct {
		name string
		k    *custodyIn
		size int
		want int
	}{
		{"client, 16 B frames", &client, 16, custodyFrames},
		{"link, 16 B frames", &link, 16, linkCustodyFrames},
		{"link, 4 KiB frames", &link, 4 << 10, (1 << 20) / (4 << 10)},
		{"small queue, 16 B frames", &small, 16, 8},
		{"small queue, 4 KiB frames", &small, 4 << 10, 2},
	} {
		if got := due(c.k, c.size); got != c.want {
			t.Errorf("%s: a Custody due after %d frames, want %d", c.name, got, c.want)
		}
	}
}
