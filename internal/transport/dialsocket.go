package transport

import (
	"fmt"
	"net"
	"sync"

	"github.com/quic-go/quic-go"
)

// maxConnsPerDialSocket bounds the connections that share one dialing
// socket. One socket, with one quic-go goroutine reading it, serves
// every connection on it (as a listener's does); the bound keeps a
// process with thousands of busy connections from funnelling all their
// packets through one reader. A variable for tests.
var maxConnsPerDialSocket = 256

// dialSocket is a UDP socket and the quic.Transport on it that dialed
// connections share (Dial). It is closed when its last connection is
// released.
type dialSocket struct {
	network string
	pc      *net.UDPConn
	tr      *quic.Transport
	conns   int // connections dialed or being dialed on it; guarded by dialSockets.mu
}

// dialSockets are the open dialing sockets of this process, by network
// ("udp4", "udp6"). A socket is removed from it, under mu, before it is
// closed, so a dial never picks one that is closing.
var dialSockets struct {
	mu   sync.Mutex
	open map[string][]*dialSocket
}

// acquireDialSocket returns a socket of network with room for one more
// connection, opening one if none has, and counts the connection on it.
// The caller calls release exactly once when the connection is gone (or
// was never made).
func acquireDialSocket(network string) (*dialSocket, error) {
	dialSockets.mu.Lock()
	defer dialSockets.mu.Unlock()
	for _, s := range dialSockets.open[network] {
		if s.conns < maxConnsPerDialSocket {
			s.conns++
			return s, nil
		}
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, err
	}
	s := &dialSocket{network: network, pc: pc, tr: &quic.Transport{Conn: pc}, conns: 1}
	if dialSockets.open == nil {
		dialSockets.open = make(map[string][]*dialSocket)
	}
	dialSockets.open[network] = append(dialSockets.open[network], s)
	return s, nil
}

// release uncounts one connection; the last one closes the socket.
func (s *dialSocket) release() {
	dialSockets.mu.Lock()
	s.conns--
	if s.conns > 0 {
		dialSockets.mu.Unlock()
		return
	}
	if s.conns < 0 {
		dialSockets.mu.Unlock()
		panic(fmt.Sprintf("transport: dialing socket %s released more often than acquired", s.pc.LocalAddr()))
	}
	open := dialSockets.open[s.network]
	for i, o := range open {
		if o == s {
			open = append(open[:i], open[i+1:]...)
			break
		}
	}
	if len(open) == 0 {
		delete(dialSockets.open, s.network)
	} else {
		dialSockets.open[s.network] = open
	}
	dialSockets.mu.Unlock()
	// With a PacketConn it did not create, quic.Transport.Close stops its
	// reader and closes nothing else; the socket is ours to close.
	s.tr.Close()
	_ = s.pc.Close()
}

// openDialSockets returns how many dialing sockets are open, and how many
// connections they count in all (tests).
func openDialSockets() (sockets, conns int) {
	dialSockets.mu.Lock()
	defer dialSockets.mu.Unlock()
	for _, ss := range dialSockets.open {
		for _, s := range ss {
			sockets++
			conns += s.conns
		}
	}
	return sockets, conns
}
