package perf

// A raw QUIC relay: the ceiling the zipper is measured against in the same
// benchmark run (bench_test.go).
//
// "source → relay → handler" moves length-prefixed messages (a 4-byte
// big-endian length, then the payload) on one QUIC unidirectional stream
// per hop: no routing, no handshake, no framing beyond the length. The
// relay is built on internal/transport's Conn and streams, which are thin
// adapters over quic-go (only internal/transport may import quic-go:
// depguard rule quic-only-in-transport); the zipper uses the very same
// transport and QUIC configuration (transport.QUICConfig{}), so the
// difference between the two is the library's own cost.
//
// Writers come in two kinds: relayDirectWriter does one stream Write per
// message (unbatched); relayBatchWriter coalesces messages into ~32 KiB buffers,
// a mutex-guarded buffer that a flusher goroutine swaps out and writes
// whenever it holds data (the technique of the root package's outbox.go).
// In the batched variants both the source and the relay coalesce.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo/internal/transport"
)

// relayBatch is the size of a relayBatchWriter's buffer and of a relayReader's
// read buffer (the zipper's frame.Reader also reads through 32 KiB).
const relayBatch = 32 << 10

// relayMaxMsg bounds a message, so that a framing bug fails instead of
// allocating wildly.
const relayMaxMsg = 16 << 20

// relayWriter sends length-prefixed messages on one stream.
type relayWriter interface {
	writeMsg(p []byte) error
}

// relayDirectWriter does one stream Write per message (header and payload
// together). Not safe for concurrent use.
type relayDirectWriter struct {
	w   transport.SendStream
	buf []byte
}

func (d *relayDirectWriter) writeMsg(p []byte) error {
	d.buf = binary.BigEndian.AppendUint32(d.buf[:0], uint32(len(p)))
	d.buf = append(d.buf, p...)
	_, err := d.w.Write(d.buf)
	return err
}

// relayBatchWriter coalesces messages: writeMsg appends to a buffer under a
// mutex (waiting while the buffer holds relayBatch bytes), and flush, run
// by one goroutine, swaps the buffer out and writes it in one stream Write
// whenever it holds data. At most two buffers exist: the one being filled
// and the one being written.
type relayBatchWriter struct {
	w transport.SendStream

	mu     sync.Mutex
	buf    []byte
	space  chan struct{} // closed when the flusher took the buffer; nil when nobody waits
	closed bool

	ready chan struct{} // cap 1: wakes the flusher
	stop  chan struct{} // closed by close
	spare []byte        // the flusher's buffer
}

func newRelayBatchWriter(w transport.SendStream) *relayBatchWriter {
	return &relayBatchWriter{w: w, ready: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (c *relayBatchWriter) writeMsg(p []byte) error {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return net.ErrClosed
		}
		if len(c.buf) == 0 || len(c.buf)+4+len(p) <= relayBatch {
			c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(len(p)))
			c.buf = append(c.buf, p...)
			c.mu.Unlock()
			select {
			case c.ready <- struct{}{}:
			default:
			}
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		<-space
	}
}

// flush writes what writeMsg queues until close or a write error.
func (c *relayBatchWriter) flush() error {
	defer c.close() // a failed stream releases waiting writers
	for {
		select {
		case <-c.ready:
		case <-c.stop:
			return nil
		}
		for {
			c.mu.Lock()
			b := c.buf
			c.buf = c.spare[:0]
			if c.space != nil {
				close(c.space)
				c.space = nil
			}
			c.mu.Unlock()
			c.spare = b
			if len(b) == 0 {
				break
			}
			if _, err := c.w.Write(b); err != nil {
				return err
			}
		}
	}
}

// close makes writeMsg fail, releases waiting writers and stops flush.
func (c *relayBatchWriter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.stop)
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
}

// relayReader reads length-prefixed messages through a 32 KiB buffer. A
// message that fits in the buffer is returned without a copy (like
// frame.Reader); it is valid until the next call to next.
type relayReader struct {
	br      *bufio.Reader
	big     []byte
	discard int
}

func newRelayReader(r io.Reader) *relayReader {
	return &relayReader{br: bufio.NewReaderSize(r, relayBatch)}
}

func (r *relayReader) next() ([]byte, error) {
	if r.discard > 0 {
		if _, err := r.br.Discard(r.discard); err != nil {
			return nil, err
		}
		r.discard = 0
	}
	h, err := r.br.Peek(4)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(h))
	if _, err := r.br.Discard(4); err != nil {
		return nil, err
	}
	if n > relayMaxMsg {
		return nil, fmt.Errorf("relay: message of %d bytes", n)
	}
	if n <= r.br.Size() {
		p, err := r.br.Peek(n)
		if err != nil {
			return nil, err
		}
		r.discard = n
		return p, nil
	}
	if cap(r.big) < n {
		r.big = make([]byte, n)
	}
	p := r.big[:n]
	if _, err := io.ReadFull(r.br, p); err != nil {
		return nil, err
	}
	return p, nil
}

// rawNet holds the sockets, connections and goroutines of one raw relay
// setup. close (registered with tb.Cleanup) stops every goroutine started
// through it and waits for them.
type rawNet struct {
	tb     testing.TB
	srvTLS *tls.Config
	cliTLS *tls.Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pcs     []net.PacketConn
	lns     []transport.Listener
	conns   []transport.Conn
	writers []*relayBatchWriter

	mu      sync.Mutex
	closing bool
	err     error // first goroutine error before close
}

func newRawNet(tb testing.TB) *rawNet {
	tb.Helper()
	cert, pool, err := transport.SelfSigned()
	if err != nil {
		tb.Fatal(err)
	}
	n := &rawNet{
		tb:     tb,
		srvTLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		cliTLS: &tls.Config{RootCAs: pool},
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	tb.Cleanup(n.close)
	return n
}

// listen opens one relay endpoint: a UDP socket on 127.0.0.1 with a QUIC
// listener, as the zipper has.
func (n *rawNet) listen() transport.Listener {
	n.tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		n.tb.Fatal(err)
	}
	n.pcs = append(n.pcs, pc)
	ln, err := transport.Listen(pc, n.srvTLS, transport.QUICConfig{})
	if err != nil {
		n.tb.Fatal(err)
	}
	n.lns = append(n.lns, ln)
	return ln
}

// connect dials ln and returns the dialer's end and the listener's end of
// the new connection. Dials are sequential, so the connection accepted is
// the one just dialled.
func (n *rawNet) connect(ln transport.Listener) (dialer, accepted transport.Conn) {
	n.tb.Helper()
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	d, err := transport.Dial(ctx, ln.Addr().String(), n.cliTLS, transport.QUICConfig{})
	if err != nil {
		n.tb.Fatal(err)
	}
	n.conns = append(n.conns, d)
	a, err := ln.Accept(ctx)
	if err != nil {
		n.tb.Fatal(err)
	}
	n.conns = append(n.conns, a)
	return d, a
}

// spawn runs f on a goroutine that close waits for. An error f returns
// before close started is recorded (see failed).
func (n *rawNet) spawn(f func() error) {
	n.wg.Add(1)
	go func() { // owned by n: ends when close cancels n.ctx and closes the connections
		defer n.wg.Done()
		if err := f(); err != nil {
			n.mu.Lock()
			if !n.closing && n.err == nil {
				n.err = err
			}
			n.mu.Unlock()
		}
	}()
}

// failed returns the first error of a goroutine, if any.
func (n *rawNet) failed() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// sender opens a unidirectional stream on c and returns its writer; a
// batched writer gets its flusher goroutine.
func (n *rawNet) sender(c transport.Conn, batched bool) relayWriter {
	n.tb.Helper()
	st, err := c.OpenUniStream(n.ctx)
	if err != nil {
		n.tb.Fatal(err)
	}
	if !batched {
		return &relayDirectWriter{w: st}
	}
	bw := newRelayBatchWriter(st)
	n.writers = append(n.writers, bw)
	n.spawn(bw.flush)
	return bw
}

// receive accepts the next unidirectional stream the peer of c opens and
// calls fn with every message, on one goroutine.
func (n *rawNet) receive(c transport.Conn, fn func(p []byte) error) {
	n.spawn(func() error {
		rs, err := c.AcceptUniStream(n.ctx)
		if err != nil {
			return err
		}
		r := newRelayReader(rs)
		for {
			p, err := r.next()
			if err != nil {
				return err
			}
			if err := fn(p); err != nil {
				return err
			}
		}
	})
}

// relay forwards every message of the next stream from c's peer to outs.
func (n *rawNet) relay(c transport.Conn, outs ...relayWriter) {
	n.receive(c, func(p []byte) error {
		for _, w := range outs {
			if err := w.writeMsg(p); err != nil {
				return err
			}
		}
		return nil
	})
}

func (n *rawNet) close() {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	n.cancel()
	for _, w := range n.writers {
		w.close()
	}
	for _, c := range n.conns {
		_ = c.CloseWithError(0, "")
	}
	n.wg.Wait()
	for _, ln := range n.lns {
		_ = ln.Close()
	}
	for _, pc := range n.pcs {
		_ = pc.Close()
	}
}

// rawPipeline is source → relay (→ relay ...) → handlers. Handlers dial the
// last relay and relays dial the next one, as functions and the source
// dial a zipper.
type rawPipeline struct {
	*rawNet
	src relayWriter // used by one goroutine at a time
}

// newRawPipeline builds a pipeline of hops relays (≥ 1) fanning out to
// handlers receivers; onMsg(i, p) runs on handler i's goroutine.
func newRawPipeline(tb testing.TB, batched bool, hops, handlers int, onMsg func(i int, p []byte)) *rawPipeline {
	tb.Helper()
	n := newRawNet(tb)
	ln := n.listen() // the relay next to the handlers
	outs := make([]relayWriter, handlers)
	for i := range outs {
		hc, rc := n.connect(ln)
		n.receive(hc, func(p []byte) error { onMsg(i, p); return nil })
		outs[i] = n.sender(rc, batched)
	}
	for h := 1; h < hops; h++ {
		up := n.listen() // the relay before it
		uc, da := n.connect(ln)
		n.relay(da, outs...)
		outs = []relayWriter{n.sender(uc, batched)}
		ln = up
	}
	sc, ra := n.connect(ln)
	n.relay(ra, outs...)
	return &rawPipeline{rawNet: n, src: n.sender(sc, batched)}
}

// newRawEcho builds source → relay → handler with the handler echoing every
// message back to the source through the relay, on a return stream per
// hop. onReply runs on the source's receiving goroutine. Writers are
// unbatched: with one message in flight there is nothing to coalesce, and
// a direct Write has the lowest latency.
func newRawEcho(tb testing.TB, onReply func(p []byte)) *rawPipeline {
	tb.Helper()
	n := newRawNet(tb)
	ln := n.listen()
	hc, ha := n.connect(ln)
	sc, sa := n.connect(ln)
	n.relay(sa, n.sender(ha, false)) // forward path
	n.relay(ha, n.sender(sa, false)) // return path
	n.receive(hc, n.sender(hc, false).writeMsg)
	n.receive(sc, func(p []byte) error { onReply(p); return nil })
	return &rawPipeline{rawNet: n, src: n.sender(sc, false)}
}

// TestRawRelay checks the benchmark's relay: every variant delivers every
// message intact and in order, and stops all its goroutines (goleak).
func TestRawRelay(t *testing.T) {
	sizes := []int{0, 1, 100, relayBatch - 4, relayBatch, 70 << 10}
	const n = 60
	msg := func(i int) []byte {
		p := make([]byte, sizes[i%len(sizes)]+8)
		binary.BigEndian.PutUint64(p, uint64(i))
		for j := 8; j < len(p); j++ {
			p[j] = byte(i + j)
		}
		return p
	}
	check := func(want int, p []byte) error {
		if string(p) != string(msg(want)) {
			return fmt.Errorf("message %d: got %d bytes, want %d (corrupt or out of order)", want, len(p), len(msg(want)))
		}
		return nil
	}
	for _, tc := range []struct {
		name           string
		batched        bool
		hops, handlers int
	}{
		{"unbatched", false, 1, 1},
		{"batched", true, 1, 1},
		{"chain", true, 2, 1},
		{"fanout", true, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]int, tc.handlers)
			errc := make(chan error, tc.handlers)
			done := make(chan struct{}, tc.handlers)
			p := newRawPipeline(t, tc.batched, tc.hops, tc.handlers, func(i int, p []byte) {
				if err := check(got[i], p); err != nil {
					errc <- err
				}
				got[i]++
				if got[i] == n {
					done <- struct{}{}
				}
			})
			for i := range n {
				if err := p.src.writeMsg(msg(i)); err != nil {
					t.Fatal(err)
				}
			}
			timeout := time.After(10 * time.Second)
			for range tc.handlers {
				select {
				case <-done:
				case err := <-errc:
					t.Fatal(err)
				case <-timeout:
					t.Fatalf("timed out waiting for %d messages per handler (goroutine error: %v)", n, p.failed())
				}
			}
			select {
			case err := <-errc:
				t.Fatal(err)
			default:
			}
			if err := p.failed(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("echo", func(t *testing.T) {
		replies := make(chan []byte, 1)
		p := newRawEcho(t, func(p []byte) { replies <- append([]byte(nil), p...) })
		for i := range 20 {
			if err := p.src.writeMsg(msg(i)); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-replies:
				if err := check(i, r); err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no reply to message %d (goroutine error: %v)", i, p.failed())
			}
		}
	})
}
