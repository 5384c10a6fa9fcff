package yomo

import (
	"sync"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// First-hop custody: a client keeps every frame it writes until the
// zipper's Custody covers it (client.go, outbox.go) and sends the rest
// again, first and in order, on its next connection. The zipper numbers a
// client's frames as the client does, from 1 over its whole life (the
// handshake's Acked says where a connection starts), and remembers per
// client the highest number it routed: a frame at or below it was routed
// on an earlier connection whose Custody the client never got, and is
// dropped rather than delivered twice. The memory outlives the
// connection by writerMemory, for the client's reconnect; a new zipper
// (a restart) starts without it, which is why a graceful Shutdown sends
// every client a last Custody for all it read.

// writerMemory is how long a zipper remembers a client's highest routed
// frame after its last connection closed.
const writerMemory = time.Minute

// writerMaxGone bounds the clients remembered after they left: beyond it,
// a client that leaves is forgotten at once (its frames sent again after
// a reconnect may then be delivered twice).
const writerMaxGone = 1 << 16

// writerKey names a client that keeps its frames: its authenticated
// identity, name and instance id (an id alone could be claimed by another
// identity to have this one's frames dropped).
type writerKey struct {
	ident, name string
	id          uint64
}

// writerState is what the zipper remembers of one such client.
type writerState struct {
	// mu is held while a frame is checked and routed, so that two
	// connections of the client (the old one not yet closed here) route
	// each number once, in order.
	mu     sync.Mutex
	routed uint64 // the highest frame number routed
	conns  int    // its connections here; guarded by writers.mu
	left   int64  // nanotime its last connection closed; guarded by writers.mu
}

// writers is the zipper's table of clients that keep their frames.
type writers struct {
	mu    sync.Mutex
	m     map[writerKey]*writerState
	gone  int   // entries of m without a connection
	swept int64 // nanotime of the last sweep
}

// attach returns the state of the client k for a new connection of it.
// It forgets, at most once per writerMemory/4, the clients gone for
// longer than writerMemory, so the table holds the connected clients and
// at most writerMaxGone of those of the last minute.
func (w *writers) attach(k writerKey) *writerState {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := nanotime()
	if now-w.swept > int64(writerMemory/4) {
		w.swept = now
		for key, st := range w.m {
			if st.conns == 0 && now-st.left > int64(writerMemory) {
				delete(w.m, key)
				w.gone--
			}
		}
	}
	st := w.m[k]
	if st == nil {
		if w.m == nil {
			w.m = make(map[writerKey]*writerState)
		}
		st = new(writerState)
		w.m[k] = st
	} else if st.conns == 0 {
		w.gone--
	}
	st.conns++
	return st
}

// detach notes that connection c of its client closed.
func (w *writers) detach(c *conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := c.writer
	if st.conns--; st.conns > 0 {
		return
	}
	if w.gone >= writerMaxGone {
		delete(w.m, writerKey{ident: c.ident, name: c.hs.Name, id: c.hs.ID})
		return
	}
	w.gone++
	st.left = nanotime()
}

// attachWriter gives client c, registered with handshake hs, its first-hop
// custody state when it asked for it.
func (z *Zipper) attachWriter(c *conn, hs *frame.Handshake) {
	if !hs.Custody {
		return
	}
	c.writer = z.writers.attach(writerKey{ident: c.ident, name: hs.Name, id: hs.ID})
	c.writerSeq = hs.Acked
}

// routeOnce routes frame number seq of client c, unless c routed it
// already on an earlier connection: then it is dropped and counted.
// c.writer.mu is held (by the reader, across a batch: inBatch).
func (z *Zipper) routeOnce(c *conn, d *frame.Data, seq uint64, sc *scratch) {
	w := c.writer
	if seq <= w.routed {
		z.clientDups.Add(1)
		return
	}
	w.routed = seq
	z.route(c, d, sc)
}
