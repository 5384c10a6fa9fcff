package yomo

import (
	"strconv"
	"sync"

	"github.com/yomo-dev/yomo/frame"
)

// Loss notices: a zipper that drops a mesh frame for want of a path (no
// route within the hold window, or a frame of a flow's older generation
// that came after the newer one) counts it and tells the Source the frame
// came from. Notices are coalesced per origin Source and tag, and sent by
// the sequencer's sweeper (every seqSweep) as status frames (TIDReplyOnly,
// StatusKey "lost") routed like backflow; the Source reports a *LostError
// to its error handler. A notice that finds no way back is not counted
// again: the loss it reports is.

// lossKey names the Source a loss notice is for and the tag it lost.
type lossKey struct {
	zipper string // the origin Source's zipper
	origin uint64 // the origin Source's connection id there
	tag    Tag
}

// losses is what was lost since the last notices went out.
type losses struct {
	mu sync.Mutex
	n  map[lossKey]uint64
}

// noteMeshLoss counts d, a frame lost in the mesh for want of a path, for
// its origin Source's next loss notice; frames of no Source (or notices
// themselves) are only counted where they were dropped.
func (z *Zipper) noteMeshLoss(d *frame.Data) {
	if d.Origin == 0 || d.TID&frame.TIDReplyOnly != 0 || !z.meshOn.Load() {
		return // the notices go out with the mesh's sweeper
	}
	k := lossKey{zipper: z.name, origin: d.Origin, tag: d.Tag}
	if len(d.OriginZipper) > 0 {
		k.zipper = string(d.OriginZipper)
	}
	z.lost.mu.Lock()
	if z.lost.n == nil {
		z.lost.n = make(map[lossKey]uint64)
	}
	z.lost.n[k]++
	z.lost.mu.Unlock()
}

// sendLossNotices sends one notice per origin Source and tag for what was
// lost since the last call.
func (z *Zipper) sendLossNotices(sc *scratch) {
	z.lost.mu.Lock()
	n := z.lost.n
	z.lost.n = nil
	z.lost.mu.Unlock()
	for k, count := range n {
		r := frame.Data{Tag: k.tag, Origin: k.origin, TID: frame.TIDReplyOnly,
			Metadata: frame.MetadataOf(frame.StatusKey, frame.StatusLost,
				frame.LostCountKey, strconv.FormatUint(count, 10), frame.LostAtKey, z.name)}
		if k.zipper != z.name {
			r.OriginZipper = []byte(k.zipper)
		}
		z.routeBackflow(&r, nil, nil, z.ctx.Done(), sc)
	}
}

// lostError turns a loss notice into the Source's error, or nil when d is
// not a well-formed one.
func lostError(d *frame.Data) *LostError {
	if s, _ := d.Metadata.Get(frame.StatusKey); s != frame.StatusLost {
		return nil
	}
	v, _ := d.Metadata.Get(frame.LostCountKey)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return nil
	}
	at, _ := d.Metadata.Get(frame.LostAtKey)
	return &LostError{Tag: d.Tag, Count: n, Zipper: at}
}
