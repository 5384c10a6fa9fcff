package chaosnet

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Proxy. The zero value is usable.
type Config struct {
	// Seed seeds the generator behind every random decision. Zero is a
	// seed like any other.
	Seed uint64
	// QueueLimit bounds the datagrams waiting for their release time in
	// each direction; zero means 65536. A datagram beyond it is dropped
	// and counted.
	QueueLimit int
	// MaxClients bounds the client addresses (each has a socket towards
	// the target); zero means 1024. Datagrams from further clients are
	// dropped and counted.
	MaxClients int
}

// Faults are what a Proxy does to the datagrams it forwards, in both
// directions. The zero value forwards everything at once.
type Faults struct {
	// Loss is the probability, from 0 to 1, that a datagram is dropped.
	Loss float64
	// Delay holds every datagram this long.
	Delay time.Duration
	// Jitter adds a delay drawn uniformly from [0, Jitter] to each
	// datagram. Datagrams are released in the order of their release
	// times, so a jitter larger than the gap between two datagrams
	// reorders them.
	Jitter time.Duration
	// Duplicate is the probability, from 0 to 1, that a datagram that
	// was not lost is sent twice (the copy with its own jitter).
	Duplicate float64
}

func (f Faults) validate() error {
	switch {
	case f.Loss < 0 || f.Loss > 1 || math.IsNaN(f.Loss):
		return fmt.Errorf("chaosnet: loss %v not in [0, 1]", f.Loss)
	case f.Duplicate < 0 || f.Duplicate > 1 || math.IsNaN(f.Duplicate):
		return fmt.Errorf("chaosnet: duplicate %v not in [0, 1]", f.Duplicate)
	case f.Delay < 0 || f.Jitter < 0:
		return fmt.Errorf("chaosnet: negative delay %v or jitter %v", f.Delay, f.Jitter)
	}
	return nil
}

// Stats counts datagrams, each way.
type Stats struct {
	ToTarget  DirStats `json:"to_target"`  // from clients to the target
	ToClients DirStats `json:"to_clients"` // from the target back to clients
	Clients   int      `json:"clients"`    // client addresses seen
}

// DirStats are the counters of one direction.
type DirStats struct {
	Received  uint64 `json:"received"`  // datagrams read
	Forwarded uint64 `json:"forwarded"` // datagrams written (a duplicate counts twice)
	// Dropped counts datagrams not forwarded: lost on purpose, dropped by
	// a cut (also those waiting for their release time when it began), by
	// a full queue, or because the write failed (say, the target is down).
	Dropped    uint64 `json:"dropped"`
	Duplicated uint64 `json:"duplicated"` // extra copies queued
}

type dirCounters struct {
	received, forwarded, dropped, duplicated atomic.Uint64
}

func (c *dirCounters) snapshot() DirStats {
	return DirStats{Received: c.received.Load(), Forwarded: c.forwarded.Load(),
		Dropped: c.dropped.Load(), Duplicated: c.duplicated.Load()}
}

// Proxy forwards UDP datagrams between its clients and one target address
// through runtime-adjustable faults. Its methods are safe for concurrent
// use.
type Proxy struct {
	pc     *net.UDPConn
	target *net.UDPAddr
	cfg    Config

	mu      sync.Mutex // guards faults, rng, clients, closed
	faults  Faults
	rng     *rand.Rand
	clients map[string]*client
	closed  bool

	cut atomic.Bool

	toTarget, toClients *queue
	cntTo, cntFrom      dirCounters

	wg sync.WaitGroup // every goroutine of the proxy
}

// client is one client address and its socket towards the target.
type client struct {
	addr *net.UDPAddr
	up   *net.UDPConn
}

// Listen starts a proxy on 127.0.0.1 (a free port) forwarding to target,
// a UDP address.
func Listen(target string, cfg Config) (*Proxy, error) {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("chaosnet: target: %w", err)
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 1 << 16
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 1024
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("chaosnet: %w", err)
	}
	p := &Proxy{
		pc:      pc,
		target:  ta,
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		clients: map[string]*client{},
	}
	p.toTarget = newQueue(p, &p.cntTo)
	p.toClients = newQueue(p, &p.cntFrom)
	p.wg.Add(3)
	go p.toTarget.run() // owned by p: ends when Close closes the queue
	go p.toClients.run()
	go p.readClients() // owned by p: ends when Close closes pc
	return p, nil
}

// Addr is the address clients send to instead of the target's.
func (p *Proxy) Addr() string { return p.pc.LocalAddr().String() }

// SetFaults replaces the faults; datagrams already queued keep their
// release times.
func (p *Proxy) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
	return nil
}

// Faults returns the current faults.
func (p *Proxy) Faults() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// Cut drops every datagram both ways, including those waiting for their
// release time, until Restore.
func (p *Proxy) Cut() {
	p.cut.Store(true)
	p.toTarget.dropAll()
	p.toClients.dropAll()
}

// Restore ends a Cut: datagrams flow again, under the current faults.
func (p *Proxy) Restore() { p.cut.Store(false) }

// IsCut reports whether the proxy is cut.
func (p *Proxy) IsCut() bool { return p.cut.Load() }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	n := len(p.clients)
	p.mu.Unlock()
	return Stats{ToTarget: p.cntTo.snapshot(), ToClients: p.cntFrom.snapshot(), Clients: n}
}

// Close stops the proxy and waits for its goroutines. Datagrams still
// queued are dropped (not counted). Close is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, c := range p.clients {
		_ = c.up.Close() // ends its reader; nothing to report
	}
	p.mu.Unlock()
	err := p.pc.Close()
	p.toTarget.close()
	p.toClients.close()
	p.wg.Wait()
	return err
}

// decide draws the fate of one datagram: how many copies (0, 1 or 2) and
// the delay of each.
func (p *Proxy) decide() (copies int, d1, d2 time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	if f.Loss > 0 && p.rng.Float64() < f.Loss {
		return 0, 0, 0
	}
	delay := func() time.Duration {
		d := f.Delay
		if f.Jitter > 0 {
			d += time.Duration(p.rng.Int64N(int64(f.Jitter) + 1))
		}
		return d
	}
	d1 = delay()
	if f.Duplicate > 0 && p.rng.Float64() < f.Duplicate {
		return 2, d1, delay()
	}
	return 1, d1, 0
}

// ingress applies the faults to one datagram read from a client (to the
// target, over c.up) or from the target (back to c.addr).
func (p *Proxy) ingress(q *queue, c *client, b []byte) {
	q.cnt.received.Add(1)
	if p.cut.Load() {
		q.cnt.dropped.Add(1)
		return
	}
	copies, d1, d2 := p.decide()
	if copies == 0 {
		q.cnt.dropped.Add(1)
		return
	}
	// One copy per datagram: the reader's buffer is reused. A test tool,
	// so the allocation is not worth a pool.
	msg := append([]byte(nil), b...)
	now := time.Now()
	q.push(packet{at: now.Add(d1), c: c, b: msg})
	if copies == 2 {
		q.cnt.duplicated.Add(1)
		q.push(packet{at: now.Add(d2), c: c, b: msg})
	}
}

// readClients reads datagrams from clients until Close.
func (p *Proxy) readClients() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.pc.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // say, an ICMP error reported on the socket
		}
		c := p.client(from)
		if c == nil {
			p.cntTo.received.Add(1)
			p.cntTo.dropped.Add(1)
			continue
		}
		p.ingress(p.toTarget, c, buf[:n])
	}
}

// client returns the client for addr, creating it (and its socket towards
// the target, and that socket's reader) on its first datagram; nil when
// closed or at MaxClients.
func (p *Proxy) client(addr *net.UDPAddr) *client {
	key := addr.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[key]; c != nil {
		return c
	}
	if p.closed || len(p.clients) >= p.cfg.MaxClients {
		return nil
	}
	up, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, p.target)
	if err != nil {
		return nil
	}
	c := &client{addr: addr, up: up}
	p.clients[key] = c
	p.wg.Add(1)
	go p.readTarget(c) // owned by p: ends when Close closes c.up
	return c
}

// readTarget reads what the target sends to client c until Close.
func (p *Proxy) readTarget(c *client) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an ICMP port unreachable while the target
			// is down: it is reported once, so this does not spin.
			continue
		}
		p.ingress(p.toClients, c, buf[:n])
	}
}

// send writes one released datagram. It is counted as forwarded before
// the write: the peer may have it, and answer it, before the write
// returns, and Stats must not show the answer without its cause. A write
// that fails moves it to dropped.
func (q *queue) send(pk packet) {
	q.cnt.forwarded.Add(1)
	var err error
	if q == q.p.toTarget {
		_, err = pk.c.up.Write(pk.b)
	} else {
		_, err = q.p.pc.WriteToUDP(pk.b, pk.c.addr)
	}
	if err != nil {
		q.cnt.forwarded.Add(^uint64(0))
		q.cnt.dropped.Add(1)
	}
}

// packet is a datagram waiting for its release time.
type packet struct {
	at  time.Time
	seq uint64 // arrival order: equal release times keep it
	c   *client
	b   []byte
}

type packetHeap []packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = packet{}
	*h = old[:len(old)-1]
	return x
}

// queue holds one direction's datagrams until their release times; one
// goroutine (run) releases them.
type queue struct {
	p   *Proxy
	cnt *dirCounters

	mu     sync.Mutex
	h      packetHeap
	seq    uint64
	closed bool

	wake chan struct{} // cap 1: the head changed
	stop chan struct{} // closed by close
}

func newQueue(p *Proxy, cnt *dirCounters) *queue {
	return &queue{p: p, cnt: cnt, wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (q *queue) push(pk packet) {
	q.mu.Lock()
	if q.closed || len(q.h) >= q.p.cfg.QueueLimit {
		q.mu.Unlock()
		q.cnt.dropped.Add(1)
		return
	}
	q.seq++
	pk.seq = q.seq
	heap.Push(&q.h, pk)
	head := q.h[0].seq == pk.seq
	q.mu.Unlock()
	if head {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// dropAll drops and counts everything queued.
func (q *queue) dropAll() {
	q.mu.Lock()
	n := len(q.h)
	clear(q.h)
	q.h = q.h[:0]
	q.mu.Unlock()
	q.cnt.dropped.Add(uint64(n))
}

func (q *queue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.stop)
	}
	q.mu.Unlock()
}

// run releases datagrams at their release times until close.
func (q *queue) run() {
	defer q.p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []packet
	for {
		q.mu.Lock()
		now := time.Now()
		due = due[:0]
		for len(q.h) > 0 && !q.h[0].at.After(now) {
			due = append(due, heap.Pop(&q.h).(packet))
		}
		wait := time.Duration(-1)
		if len(q.h) > 0 {
			wait = q.h[0].at.Sub(now)
		}
		q.mu.Unlock()
		for _, pk := range due {
			if q.p.cut.Load() {
				q.cnt.dropped.Add(1)
				continue
			}
			q.send(pk)
		}
		clear(due)
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-q.stop:
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}
