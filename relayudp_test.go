package yomo_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpRelay forwards UDP datagrams between clients and one upstream
// address, delaying each by a fixed latency, and can cut the path. It
// exists to give mesh tests links with WAN-like latency on loopback.
type udpRelay struct {
	pc       net.PacketConn
	upstream *net.UDPAddr
	delay    time.Duration
	cut      atomic.Bool

	mu      sync.Mutex
	clients map[string]*relayClient
	closed  bool
	wg      sync.WaitGroup
}

type relayClient struct {
	addr net.Addr
	up   *net.UDPConn // towards upstream, one per client
}

func newUDPRelay(t testing.TB, upstream string, delay time.Duration) *udpRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{pc: pc, upstream: ua, delay: delay, clients: map[string]*relayClient{}}
	r.wg.Add(1)
	go r.serve() // owned by r: ends when close closes pc
	t.Cleanup(r.close)
	return r
}

func (r *udpRelay) addr() string { return r.pc.LocalAddr().String() }

// send delivers b after the relay's delay, unless the path is cut.
func (r *udpRelay) send(b []byte, deliver func([]byte)) {
	if r.cut.Load() {
		return
	}
	msg := append([]byte(nil), b...)
	r.wg.Add(1)
	time.AfterFunc(r.delay, func() {
		defer r.wg.Done()
		if !r.cut.Load() {
			deliver(msg)
		}
	})
}

func (r *udpRelay) serve() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		c := r.client(from)
		if c == nil {
			return
		}
		r.send(buf[:n], func(b []byte) { c.up.Write(b) })
	}
}

func (r *udpRelay) client(from net.Addr) *relayClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if c := r.clients[from.String()]; c != nil {
		return c
	}
	up, err := net.DialUDP("udp", nil, r.upstream)
	if err != nil {
		return nil
	}
	c := &relayClient{addr: from, up: up}
	r.clients[from.String()] = c
	r.wg.Add(1)
	go func() { // owned by r: ends when close closes up
		defer r.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			r.send(buf[:n], func(b []byte) { r.pc.WriteTo(b, c.addr) })
		}
	}()
	return c
}

func (r *udpRelay) close() {
	r.mu.Lock()
	r.closed = true
	for _, c := range r.clients {
		c.up.Close()
	}
	r.mu.Unlock()
	r.pc.Close()
	r.wg.Wait()
}
