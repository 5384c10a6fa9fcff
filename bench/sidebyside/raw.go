package sidebyside

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"

	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go" //nolint:depguard // the raw relay is plain quic-go by design: the ceiling yomo is measured against
)

// The raw relay: the transport ceiling. quic-go with the QUIC settings
// yomo's transport uses, TLS 1.3 with the benchmark's certificate, and no
// protocol beyond a 4-byte big-endian length before each message (the
// harness of the library's relay_test.go, rebuilt on quic-go directly since
// the library's transport is internal).
//
// Every client opens one unidirectional stream to the relay and sends its
// kind as the first byte: 'P' producer, 'C' consumer, 'K' connect-only.
// The relay forwards each message from a producer to every consumer, and
// each message from a consumer (the round trip's echo) to every producer,
// on one unidirectional stream per client that it opens itself. A relay
// given a peer (-peer: the cascade) joins the peer as a producer and
// forwards its own producers' messages there. A 'K' client gets one byte
// back: its "connected".
//
// Writers coalesce messages into 32 KiB writes (relay_test.go's batched
// variant, the technique of the library's outbox) except in the round
// trip, where one message is in flight and a direct write is fastest.

const (
	rawALPN    = "sidebyside-raw"
	rawBatch   = 32 << 10
	rawMaxMsg  = 16 << 20
	kindProd   = 'P'
	kindCons   = 'C'
	kindClient = 'K'
)

// rawQUICConfig is yomo's transport default (internal/transport QUICConfig{}).
func rawQUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		MaxIdleTimeout:                 15 * time.Second,
		KeepAlivePeriod:                5 * time.Second,
		MaxStreamReceiveWindow:         16 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
		InitialStreamReceiveWindow:     2 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxIncomingStreams:             100,
		MaxIncomingUniStreams:          100,
	}
}

func rawTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{rawALPN}
	c.MinVersion = tls.VersionTLS13
	return c
}

// msgWriter sends length-prefixed messages on one stream.
type msgWriter interface {
	writeMsg(p []byte) error
	close()
}

// directWriter does one stream Write per message; safe for concurrent use.
type directWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (d *directWriter) writeMsg(p []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = binary.BigEndian.AppendUint32(d.buf[:0], uint32(len(p)))
	d.buf = append(d.buf, p...)
	_, err := d.w.Write(d.buf)
	return err
}

func (d *directWriter) close() {}

// batchWriter coalesces messages: writeMsg appends to a buffer (waiting
// while it holds rawBatch bytes) and a flusher goroutine swaps it out and
// writes it whenever it holds data.
type batchWriter struct {
	w io.Writer

	mu     sync.Mutex
	buf    []byte
	space  chan struct{}
	closed bool

	ready chan struct{}
	stop  chan struct{}
	done  chan struct{}
	spare []byte
}

func newBatchWriter(w io.Writer) *batchWriter {
	b := &batchWriter{w: w, ready: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flush() // owned by b: close stops it and waits
	return b
}

func (c *batchWriter) writeMsg(p []byte) error {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return net.ErrClosed
		}
		if len(c.buf) == 0 || len(c.buf)+4+len(p) <= rawBatch {
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

func (c *batchWriter) flush() {
	defer close(c.done)
	defer c.shut()
	for {
		select {
		case <-c.ready:
		case <-c.stop:
			return
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
				return
			}
		}
	}
}

// drain waits until everything written so far was handed to the stream.
func (c *batchWriter) drain() {
	for {
		c.mu.Lock()
		empty := len(c.buf) == 0 || c.closed
		c.mu.Unlock()
		if empty {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func (c *batchWriter) shut() {
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

func (c *batchWriter) close() {
	c.shut()
	<-c.done
}

// readMsgs calls fn with every length-prefixed message of r (p is valid
// during the call) until r fails.
func readMsgs(r io.Reader, fn func(p []byte)) error {
	br := bufio.NewReaderSize(r, rawBatch)
	var big []byte
	for {
		h, err := br.Peek(4)
		if err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(h))
		_, _ = br.Discard(4)
		if n > rawMaxMsg {
			return fmt.Errorf("raw: message of %d bytes", n)
		}
		if n <= br.Size() {
			p, err := br.Peek(n)
			if err != nil {
				return err
			}
			fn(p)
			_, _ = br.Discard(n)
			continue
		}
		if cap(big) < n {
			big = make([]byte, n)
		}
		if _, err := io.ReadFull(br, big[:n]); err != nil {
			return err
		}
		fn(big[:n])
	}
}

func newMsgWriter(w io.Writer, batched bool) msgWriter {
	if batched {
		return newBatchWriter(w)
	}
	return &directWriter{w: w}
}

// rawRelay is the router process of the raw system.
type rawRelay struct {
	batched bool
	ln      *quic.Listener
	pc      net.PacketConn
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu        sync.Mutex
	conns     []*quic.Conn
	writers   []msgWriter
	consumers atomic.Pointer[[]msgWriter] // copy on write
	producers atomic.Pointer[[]msgWriter]
}

func (r *rawRelay) add(list *atomic.Pointer[[]msgWriter], w msgWriter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws []msgWriter
	if old := list.Load(); old != nil {
		ws = append(ws, *old...)
	}
	ws = append(ws, w)
	list.Store(&ws)
	r.writers = append(r.writers, w)
}

func forward(list *atomic.Pointer[[]msgWriter], p []byte) {
	ws := list.Load()
	if ws == nil {
		return
	}
	for _, w := range *ws {
		_ = w.writeMsg(p) // a consumer that left; the others go on
	}
}

func (r *rawRelay) spawn(f func()) {
	r.wg.Add(1)
	go func() { // owned by r: stop cancels r.ctx, closes the connections and waits
		defer r.wg.Done()
		f()
	}()
}

func (r *rawRelay) serve() {
	for {
		c, err := r.ln.Accept(r.ctx)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		r.spawn(func() { r.serveConn(c) })
	}
}

func (r *rawRelay) serveConn(c *quic.Conn) {
	rs, err := c.AcceptUniStream(r.ctx)
	if err != nil {
		return
	}
	var kind [1]byte
	if _, err := io.ReadFull(rs, kind[:]); err != nil {
		return
	}
	out, err := c.OpenUniStreamSync(r.ctx)
	if err != nil {
		return
	}
	switch kind[0] {
	case kindClient:
		_, _ = out.Write([]byte{1})
		<-c.Context().Done()
	case kindProd:
		r.add(&r.producers, newMsgWriter(out, r.batched))
		_ = readMsgs(rs, func(p []byte) { forward(&r.consumers, p) })
	case kindCons:
		r.add(&r.consumers, newMsgWriter(out, r.batched))
		_ = readMsgs(rs, func(p []byte) { forward(&r.producers, p) })
	}
}

func (r *rawRelay) stop() {
	r.cancel()
	r.mu.Lock()
	conns, writers := r.conns, r.writers
	r.mu.Unlock()
	for _, w := range writers {
		w.close()
	}
	for _, c := range conns {
		_ = c.CloseWithError(0, "")
	}
	_ = r.ln.Close()
	r.wg.Wait()
	_ = r.pc.Close()
}

// rawClient is one client connection: its stream to the relay (kind byte
// sent) and, once the relay wrote on it, the relay's stream back.
type rawClient struct {
	conn *quic.Conn
	out  *quic.SendStream
}

func rawDial(ctx context.Context, addr string, certs *tlsFiles, kind byte) (*rawClient, error) {
	c, err := quic.DialAddr(ctx, addr, rawTLS(certs.client), rawQUICConfig())
	if err != nil {
		return nil, err
	}
	out, err := c.OpenUniStreamSync(ctx)
	if err == nil {
		_, err = out.Write([]byte{kind})
	}
	if err != nil {
		_ = c.CloseWithError(0, "")
		return nil, err
	}
	return &rawClient{conn: c, out: out}, nil
}

// receive calls fn with every message the relay sends, on a goroutine
// that ends when the connection closes; it returns a channel closed then.
func (c *rawClient) receive(fn func(p []byte)) <-chan struct{} {
	done := make(chan struct{})
	go func() { // owned by c: ends when c.conn is closed
		defer close(done)
		in, err := c.conn.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		_ = readMsgs(in, fn)
	}()
	return done
}

var rawSystem = system{
	name: "raw relay",
	router: func(ctx context.Context, a childArgs, certs *tlsFiles) (role, error) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ln, err := quic.Listen(pc, rawTLS(certs.server), rawQUICConfig())
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		r := &rawRelay{batched: !a.rtt, ln: ln, pc: pc}
		r.ctx, r.cancel = context.WithCancel(context.Background())
		r.spawn(r.serve)
		if a.peer != "" {
			up, err := rawDial(ctx, a.peer, certs, kindProd)
			if err != nil {
				r.stop()
				return nil, err
			}
			r.mu.Lock()
			r.conns = append(r.conns, up.conn)
			r.mu.Unlock()
			r.add(&r.consumers, newMsgWriter(up.out, r.batched))
		}
		addr := pc.LocalAddr().String()
		return &routerRole{addrs: addr + " " + addr, stop: r.stop}, nil
	},
	producer: func(ctx context.Context, a childArgs, certs *tlsFiles, onReply func([]byte)) (producer, error) {
		c, err := rawDial(ctx, a.addr, certs, kindProd)
		if err != nil {
			return nil, err
		}
		p := &rawProducer{c: c, w: newMsgWriter(c.out, onReply == nil)}
		if onReply == nil {
			onReply = func([]byte) {}
		}
		p.done = c.receive(onReply)
		return p, nil
	},
	consumer: func(ctx context.Context, a childArgs, certs *tlsFiles, onMsg func(int, []byte)) (consumer, error) {
		var cs []*rawClient
		var dones []<-chan struct{}
		closeAll := func() {
			for _, c := range cs {
				_ = c.conn.CloseWithError(0, "")
			}
			for _, d := range dones {
				<-d
			}
		}
		for i := range a.consumers {
			c, err := rawDial(ctx, a.addr, certs, kindCons)
			if err != nil {
				closeAll()
				return nil, err
			}
			cs = append(cs, c)
			echo := &directWriter{w: c.out}
			dones = append(dones, c.receive(func(p []byte) {
				onMsg(i, p)
				if a.rtt {
					if err := echo.writeMsg(p); err != nil {
						reportAsync(err)
					}
				}
			}))
		}
		return closerFunc(closeAll), nil
	},
	connect: func(ctx context.Context, a childArgs, certs *tlsFiles, i int) (func(), error) {
		c, err := rawDial(ctx, a.addr, certs, kindClient)
		if err != nil {
			return nil, err
		}
		in, err := c.conn.AcceptUniStream(ctx)
		if err == nil {
			var b [1]byte
			_, err = io.ReadFull(in, b[:])
		}
		if err != nil {
			_ = c.conn.CloseWithError(0, "")
			return nil, err
		}
		return func() { _ = c.conn.CloseWithError(0, "") }, nil
	},
}

type rawProducer struct {
	c    *rawClient
	w    msgWriter
	done <-chan struct{}
}

func (p *rawProducer) send(b []byte) error { return p.w.writeMsg(b) }

func (p *rawProducer) flush() error {
	if bw, ok := p.w.(*batchWriter); ok {
		bw.drain()
	}
	return nil
}

func (p *rawProducer) close() {
	p.w.close()
	_ = p.c.conn.CloseWithError(0, "")
	<-p.done
}
